"""`install(app)`: the orchestrator on a Celery app, a team's own or the standalone one.

    # proj/celery.py
    app = Celery("proj")
    app.config_from_object("proj.celeryconfig")
    orchestrator.install(app)

Registers the orchestrator's tasks (start_workflow, supervise, the action wrapper, fire_timer)
and the built-in actions (core.*) on the app, the housekeeping bootstep in its workers, and
defaults where the app left Celery's own (never over what it set):

- task_acks_late, task_reject_on_worker_lost: a killed worker loses no action call;
- worker_prefetch_multiplier=1: a long action does not hold calls that others could run;
- worker_send_task_events: Flower shows the calls (each named workflow.task:action); not with
  ORCHESTRATOR_TASK_EVENTS=0 (they cost plain Celery about a fifth of its throughput);
- result_backend: chords (fan-ins) and call traces need one (the broker if it is Redis);
- beat_scheduler: `celery -A proj beat` fires the stored schedules (orchestrator.beat:Scheduler);
- broker_transport_options (Redis visibility timeout), broker_heartbeat (RabbitMQ: 20 s).

Routes: the orchestrator's own tasks go to its supervisor queue (ORCHESTRATOR_SUPERVISOR_QUEUE),
ahead of the app's task_routes; every other name is routed by the app's routes. A worker started
without -Q also consumes the supervisor queue.

Settings: ORCHESTRATOR_* variables, else the app's `orchestrator_*` keys (e.g.
`orchestrator_database_url`): the environment wins. The broker, the result backend and the
default queue are the app's own.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from importlib import import_module
from typing import Any

from celery import Celery
from celery.app.defaults import DEFAULTS
from celery.signals import celeryd_after_setup

from . import config

BUILTIN_MODULES = ("orchestrator.tasks", "workers.actions.core")
SCHEDULER = "orchestrator.beat:Scheduler"
OWN_TASKS = ("orchestrator.supervise", "orchestrator.supervise_batch", "orchestrator.action_lost",
             "orchestrator.start_workflow", "orchestrator.fire_timer")
_LISTS = {"workflows": os.pathsep, "actions": ","}  # list-valued settings and their separators


class OrchestratorRoutes(dict):
    """The orchestrator's own routes, put ahead of the app's task_routes (recognised when found)."""


def install(app: Celery) -> Celery:
    """Make `app` serve workflows (idempotent); returns it. See the module's docstring."""
    return _install(app, standalone=False)


def _install(app: Celery, standalone: bool) -> Celery:
    from . import runtime
    from .housekeeping import install as install_housekeeping

    if getattr(app, "_orchestrator_installed", None) is None:
        app._orchestrator_installed = "standalone" if standalone else "app"
        for module in BUILTIN_MODULES:
            import_module(module)  # shared tasks: registered on every app, this one included
        install_housekeeping(app)
        if not standalone:
            config.use_app_settings(lambda: app_settings(app))
            app.on_after_configure.connect(_on_configure, sender=app, weak=False)
            if app.configured:
                _apply_defaults(app)
    if not standalone:
        runtime.use_app(app)
    return app


def _on_configure(sender: Celery, source: Any = None, **_: Any) -> None:
    _apply_defaults(sender)


def app_settings(app: Celery) -> tuple[dict[str, str], dict[str, str]]:
    """(defaults, forced) ORCHESTRATOR_* values from the app's conf: the `orchestrator_*` keys
    (the environment wins over them) and what the app itself decides (broker, backend, queue)."""
    conf = app.conf
    defaults: dict[str, str] = {}
    for key in list(conf.keys()):
        if isinstance(key, str) and key.startswith("orchestrator_") and conf.get(key) is not None:
            defaults["ORCHESTRATOR_" + key[len("orchestrator_"):].upper()] = _text(key[13:], conf.get(key))
    visibility = (conf.broker_transport_options or {}).get("visibility_timeout")
    if visibility is not None:
        defaults.setdefault("ORCHESTRATOR_VISIBILITY_TIMEOUT", str(int(visibility)))
    forced = {"ORCHESTRATOR_BROKER_URL": _broker_url(app), "ORCHESTRATOR_DEFAULT_QUEUE": conf.task_default_queue}
    if conf.result_backend:
        forced["ORCHESTRATOR_RESULT_BACKEND"] = str(conf.result_backend)
    return defaults, forced


def _broker_url(app: Celery) -> str:
    url = app.conf.broker_url or app.conf.broker_read_url
    if isinstance(url, (list, tuple)):
        url = url[0]
    return str(url or "amqp://guest@localhost//")


def _text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return _LISTS.get(name, ",").join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, timedelta):
        return f"{int(value.total_seconds())}s"
    return str(value)


def _apply_defaults(app: Celery) -> None:
    """Our defaults where the app left Celery's; our routes ahead of its own; the actions' modules."""
    conf = app.conf
    config.settings.cache_clear()
    ours = config.settings()
    wanted: dict[str, Any] = {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "result_backend": ours.effective_result_backend,
        "beat_scheduler": SCHEDULER,
    }
    if ours.task_events:  # ORCHESTRATOR_TASK_EVENTS=0 leaves them to the app (and Flower)
        wanted["worker_send_task_events"] = True
    url = _broker_url(app)
    if url.startswith(("redis", "rediss", "sentinel")):
        wanted["broker_transport_options"] = {"visibility_timeout": ours.visibility_timeout, **ours.broker_options}
    if url.startswith(("amqp", "pyamqp")):
        wanted["broker_heartbeat"] = 20  # a vanished host's unacknowledged calls come back in ~40 s
    for key, value in wanted.items():
        if conf.get(key) == DEFAULTS.get(key):
            conf[key] = value
    conf.task_routes = with_own_routes(conf.task_routes, ours.supervisor_queue)
    missing = [m for m in ours.actions if m not in tuple(conf.imports or ())]
    if missing:
        conf.imports = (*tuple(conf.imports or ()), *missing)
    config.settings.cache_clear()  # the backend may have changed what the settings derive


def own_routes(supervisor_queue: str) -> OrchestratorRoutes:
    return OrchestratorRoutes({name: {"queue": supervisor_queue} for name in OWN_TASKS})


def with_own_routes(routes: Any, supervisor_queue: str) -> tuple:
    """The app's task_routes with the orchestrator's own in front (replacing an earlier copy)."""
    if routes is None:
        theirs: tuple = ()
    elif isinstance(routes, (list, tuple)):
        theirs = tuple(r for r in routes if not isinstance(r, OrchestratorRoutes))
    else:
        theirs = () if isinstance(routes, OrchestratorRoutes) else (routes,)
    return (own_routes(supervisor_queue), *theirs)


@celeryd_after_setup.connect
def _consume_supervisor_queue(sender: Any = None, instance: Any = None, **_: Any) -> None:
    """A worker of an installed app started without -Q serves the supervisor queue too."""
    app = getattr(instance, "app", None)
    if app is None or getattr(app, "_orchestrator_installed", None) is None:
        return
    queues = app.amqp.queues
    if getattr(queues, "_consume_from", None) is None:
        queues.select_add(config.settings().supervisor_queue)
