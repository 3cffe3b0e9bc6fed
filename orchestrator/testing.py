"""A pytest plugin for testing your workflows. Enable it with one line in your conftest.py:

    pytest_plugins = ["orchestrator.testing"]

Fixtures:

- `orchestrator_rehearse`: rehearse a workflow in-process with scripted action outcomes (the real
  conductor; no broker, database or clock: docs/rehearsal.md).

      def test_release_retries_a_flaky_deploy(orchestrator_rehearse):
          run = orchestrator_rehearse("workflows/release.yaml", {"version": "1.2"},
                                      deploy=[RuntimeError("timeout"), {"ok": True}])
          assert run.status == "succeeded" and run.sequence == ["build", "deploy", "notify"]

  `orchestrator_rehearse.cases("release.rehearsal.yaml")` runs a rehearsal file and fails the
  test with every difference when a case does not pass.

- `orchestrator_worker`: run workflows for real, on a Celery worker inside the test process
  (celery.contrib.testing's `start_worker`), against the test's own database: a fresh SQLite
  file per test, or PostgreSQL when you override the `orchestrator_database_url` fixture. Your
  actions (ORCHESTRATOR_ACTIONS) and workflows (ORCHESTRATOR_WORKFLOWS) come from the
  environment, or from the `orchestrator_settings` fixture.

      def test_release_for_real(orchestrator_worker):
          summary = orchestrator_worker.run("release", {"version": "1.2"}, timeout=30)
          assert summary["status"] == "succeeded"
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

__all__ = ["orchestrator_rehearse", "orchestrator_worker", "orchestrator_settings", "orchestrator_database_url",
           "Rehearser", "TestDeployment"]


# Rehearsals -------------------------------------------------------------------------------------


class Rehearser:
    """Callable: `(workflow, params=None, **outcomes)` -> engine.rehearsal.Rehearsal.

    `workflow` is a file path or YAML text. Each keyword names a task: a value is its result, an
    Exception instance fails it with that message, a list gives successive calls in turn (one
    entry per attempt or item), a callable gets (input, attempt, item); 'timeout' times it out,
    'hang' never reports. Tasks not named succeed with their input as result."""

    def __call__(self, workflow: str | Path, params: dict[str, Any] | None = None, **outcomes: Any):
        from .engine.rehearsal import rehearse, script
        from .engine.validate import Workflow
        from .registry import compile_workflow, load_file, looks_like_yaml

        compiled = compile_workflow(str(workflow), "<string>") if looks_like_yaml(str(workflow)) else load_file(workflow)
        if not isinstance(compiled, Workflow):
            raise pytest.UsageError(f"{workflow}: an Orquesta workflow; rehearse it with orchestrator_rehearse.cases("
                                    f"FILE) and a rehearsal file (docs/rehearsal.md)")
        return rehearse(compiled, params, script(**{task: _in_turn(spec) for task, spec in outcomes.items()}))

    def cases(self, path: str | Path, level: str = "strict") -> Any:
        """Run a rehearsal file (docs/rehearsal.md); fails the test naming every difference."""
        from .cases import rehearse_cases
        from .cli_rehearse import read_cases

        report = rehearse_cases(read_cases(path), str(path))
        failures = report.failures(level)
        if failures:
            pytest.fail("\n".join(f"{case.name}: {'; '.join(case.diffs.get(level, []))}" for case in failures),
                        pytrace=False)
        return report


def _in_turn(spec: Any) -> Any:
    """A list of outcomes: the first call gets the first, and so on (the last one repeats)."""
    if not isinstance(spec, list):
        return spec
    calls = iter(range(len(spec)))

    def next_outcome(_input: Any, _attempt: int, _item: int | None) -> Any:
        return spec[min(next(calls, len(spec) - 1), len(spec) - 1)]

    return next_outcome


@pytest.fixture
def orchestrator_rehearse() -> Rehearser:
    """Rehearse a workflow with scripted outcomes (see Rehearser)."""
    return Rehearser()


# Real runs on an in-process worker -------------------------------------------------------------


@pytest.fixture
def orchestrator_settings() -> dict[str, str]:
    """Extra ORCHESTRATOR_* variables for `orchestrator_worker` (override in your conftest.py),
    e.g. {"ORCHESTRATOR_ACTIONS": "myapp.tasks", "ORCHESTRATOR_WORKFLOWS": "workflows"}."""
    return {}


@pytest.fixture
def orchestrator_database_url() -> str | None:
    """The test's database; None (the default) means a fresh SQLite file in the test's tmp_path.
    Override it to return a PostgreSQL URL (one database or schema per test) to test on that."""
    return None


class TestDeployment:
    """What `orchestrator_worker` yields: start runs on the in-process worker and follow them."""

    __test__ = False  # not a test class, whatever pytest's name pattern says

    def __init__(self, worker: Any, database_url: str):
        self.worker = worker
        self.database_url = database_url

    def submit(self, workflow: str | Path, params: dict[str, Any] | None = None):
        """Start a run (a workflow name, file or YAML text) and return its RunHandle."""
        from .api import RunHandle, start_run

        return RunHandle(start_run(workflow, params))

    def run(self, workflow: str | Path, params: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        """Start a run and wait for its summary (interfaces.md)."""
        return self.submit(workflow, params).wait(timeout)


@pytest.fixture
def orchestrator_worker(tmp_path, monkeypatch, orchestrator_settings, orchestrator_database_url) -> Iterator[TestDeployment]:
    """A Celery worker thread in this process (in-memory broker) serving the orchestrator and your
    actions, on the test's own database (migrated here)."""
    from celery.contrib.testing.worker import start_worker

    for name in [n for n in os.environ if n.startswith("ORCHESTRATOR_")]:
        if name not in ("ORCHESTRATOR_ACTIONS", "ORCHESTRATOR_WORKFLOWS", "ORCHESTRATOR_CONFIG",
                        "ORCHESTRATOR_CONFIG_FILE") and not name.startswith("ORCHESTRATOR_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(tmp_path / "orchestrator"))
    if orchestrator_database_url:
        monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", orchestrator_database_url)
    for name, value in orchestrator_settings.items():
        monkeypatch.setenv(name, str(value))
    from . import config, runtime

    # The standalone app is the one reconfigured here, never a team's own installed app.
    installed, layer = runtime._app, config._app_layer
    runtime._app = None
    config.use_app_settings(None)
    app, conf = _configure()
    if conf.broker_url is not None:
        raise pytest.UsageError("orchestrator_worker runs on the in-memory broker: do not set ORCHESTRATOR_BROKER_URL "
                                "in orchestrator_settings")
    from .runtime import supervisor

    supervisor().db.ensure_schema(migrate=True)
    _purge(app, conf)
    try:
        with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=10,
                          queues=[conf.default_queue, conf.supervisor_queue], loglevel="WARNING") as worker:
            yield TestDeployment(worker, conf.effective_database_url)
    finally:
        from .runtime import stop_embedded_worker

        stop_embedded_worker()  # if code under test called submit(), which starts its own
        _purge(app, conf)
        monkeypatch.undo()
        _configure()
        config.use_app_settings(layer)
        if installed is not None:
            runtime.use_app(installed)


def _configure() -> tuple[Any, Any]:
    """Re-read the settings and rebuild the process's wiring from them."""
    from workers.app import app, configure

    from . import runtime
    from .config import settings

    settings.cache_clear()
    conf = settings()
    configure(app, conf)
    runtime.supervisor.cache_clear()
    app.loader.import_default_modules()  # the built-ins and ORCHESTRATOR_ACTIONS
    return app, conf


def _purge(app: Any, conf: Any) -> None:
    """Nothing left on the in-memory queues from another test reaches this one's database."""
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in (conf.default_queue, conf.supervisor_queue):
            try:
                channel.queue_purge(queue)
            except Exception:  # noqa: BLE001 - a queue never declared has nothing to purge
                pass
