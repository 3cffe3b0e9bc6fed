"""install(app) on a team's own app, without servers: our defaults only where the app left
Celery's, its own settings kept, our routes ahead of its routes, the orchestrator's settings
from the app's conf with the environment winning, the broker the app's own."""

from __future__ import annotations

import sys

import pytest
from celery import Celery

from orchestrator import config, runtime
from orchestrator.installation import OrchestratorRoutes, install


@pytest.fixture
def fresh(monkeypatch):
    for key in [k for k in __import__("os").environ if k.startswith("ORCHESTRATOR_")]:
        monkeypatch.delenv(key)
    yield monkeypatch
    config.use_app_settings(None)
    runtime._app = None
    runtime._named_app.cache_clear()
    runtime.supervisor.cache_clear()
    runtime._imported_actions.cache_clear()
    from workers.app import app

    app.set_current()


def make_app(**conf) -> Celery:
    app = Celery("theirs", set_as_current=False)
    app.conf.update(broker_url="redis://127.0.0.1:1/0", **conf)
    return app


def test_defaults_only_where_the_app_left_celerys(fresh):
    theirs = lambda *a, **k: None  # noqa: E731 - a router function of their own
    app = install(make_app(worker_prefetch_multiplier=8, beat_scheduler="their.Scheduler",
                           result_backend="redis://127.0.0.1:1/5", task_routes=[{"proj.*": {"queue": "proj"}}, theirs]))
    conf = app.conf
    assert conf.worker_prefetch_multiplier == 8 and conf.beat_scheduler == "their.Scheduler"
    assert conf.result_backend == "redis://127.0.0.1:1/5"
    assert conf.task_acks_late is True and conf.task_reject_on_worker_lost is True
    assert conf.worker_send_task_events is True
    assert conf.broker_transport_options == {"visibility_timeout": 3600}
    ours, *rest = conf.task_routes
    assert isinstance(ours, OrchestratorRoutes) and ours["orchestrator.start_workflow"] == {"queue": "orchestrator"}
    assert rest == [{"proj.*": {"queue": "proj"}}, theirs]
    assert app.amqp.router.route({}, "proj.build")["queue"].name == "proj"  # their routes still decide
    assert "orchestrator.action" in app.tasks and "core.echo" in app.tasks
    assert runtime.celery_app() is app


def test_unset_options_get_the_orchestrators(fresh):
    app = install(make_app())
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.beat_scheduler == "orchestrator.beat:Scheduler"
    assert app.conf.result_backend == "redis://127.0.0.1:1/0"  # chords need one: the Redis broker
    install(app)  # idempotent: our routes once
    assert sum(isinstance(r, OrchestratorRoutes) for r in app.conf.task_routes) == 1


def test_task_events_can_be_left_to_the_app(fresh):
    """ORCHESTRATOR_TASK_EVENTS=0 (or the app's orchestrator_task_events) leaves Celery's task
    events as the app has them: off by Celery's default, on where the app turns them on."""
    assert install(make_app(orchestrator_task_events=False)).conf.worker_send_task_events is False
    assert install(make_app(orchestrator_task_events=False, worker_send_task_events=True)
                   ).conf.worker_send_task_events is True
    fresh.setenv("ORCHESTRATOR_TASK_EVENTS", "0")
    assert install(make_app()).conf.worker_send_task_events is False
    from workers.app import configure  # the standalone worker's settings, here on an app of the test's

    config.use_app_settings(None)
    config.settings.cache_clear()
    standalone = Celery("standalone", set_as_current=False)
    configure(standalone, config.settings())
    assert standalone.conf.worker_send_task_events is False
    fresh.delenv("ORCHESTRATOR_TASK_EVENTS")
    config.settings.cache_clear()
    configure(standalone, config.settings())
    assert standalone.conf.worker_send_task_events is True


def test_settings_from_the_apps_conf_the_environment_wins(fresh):
    app = install(make_app(orchestrator_database_url="postgresql+psycopg://conf/db", orchestrator_lease=60,
                           orchestrator_actions=["proj.a", "proj.b"], task_default_queue="proj-default"))
    conf = config.settings()
    assert conf.database_url == "postgresql+psycopg://conf/db" and conf.lease == 60.0
    assert conf.actions == ("proj.a", "proj.b") and set(app.conf.imports) >= {"proj.a", "proj.b"}
    assert conf.broker_url == "redis://127.0.0.1:1/0"  # the app's broker
    assert conf.default_queue == "proj-default"
    fresh.setenv("ORCHESTRATOR_DATABASE_URL", "postgresql+psycopg://env/db")
    fresh.setenv("ORCHESTRATOR_BROKER_URL", "redis://elsewhere:6379/0")
    config.settings.cache_clear()
    assert config.settings().database_url == "postgresql+psycopg://env/db"
    assert config.settings().broker_url == "redis://127.0.0.1:1/0"  # never another broker than the app's


def test_orchestrator_app_names_the_app(fresh):
    named = install(make_app())
    fresh.setattr(sys.modules[__name__], "NAMED", named, raising=False)
    runtime._app = None  # found by its reference alone
    fresh.setenv("ORCHESTRATOR_APP", "tests.deploy.test_install:NAMED")
    app = runtime.celery_app()
    assert app is named and "orchestrator.supervise" in app.tasks
    fresh.setenv("ORCHESTRATOR_APP", "tests.deploy.test_install:BARE")
    with pytest.raises(ValueError, match=r"has not been installed: call orchestrator.install\(app\) in 'tests.deploy.test_install'"):
        runtime.celery_app()
    fresh.setenv("ORCHESTRATOR_APP", "tests.deploy.test_install:nothing")
    with pytest.raises(ValueError, match="no Celery app found"):
        runtime.celery_app()


BARE = make_app()  # an app nobody installed


def test_a_bad_app_reference_is_one_line_and_exit_2():
    from tests.runtime.test_cli import cli

    missing = cli("--app", "no_such_project.celery:app", "list")
    assert missing.returncode == 2, missing.stderr
    assert "cannot import 'no_such_project.celery'" in missing.stderr and "Traceback" not in missing.stderr
    wrong = cli("--app", "tests.deploy.test_install:nothing", "list")
    assert wrong.returncode == 2 and "no Celery app found" in wrong.stderr, wrong.stderr
