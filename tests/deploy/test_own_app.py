"""A team's own Celery project (tests/deploy/sample: its celery.py calls orchestrator.install(app))
served by real `celery -A tests.deploy.sample worker` processes, one per queue: workflows started
with submit() and with app.send_task("orchestrator.start_workflow") run end to end, each action
lands on the worker the project's task_routes name (the recorded host says so), a task's own
`queue:` wins over the route, housekeeping runs in those workers, and `celery -A
tests.deploy.sample beat` fires a stored schedule."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import text

from tests.runtime.conftest import BROKER_URL, ROOT, WorkerProcess, drop_schema, new_schema
from tests.runtime.test_cli import cli

from .conftest import BeatProcess, quiesce, wait_for

pytestmark = [pytest.mark.runtime, pytest.mark.timeout(300)]  # real processes on a loaded CI machine

APP = "tests.deploy.sample"


class CeleryWorker(WorkerProcess):
    """`celery -A tests.deploy.sample worker` as the team starts it (no orchestrator command)."""

    def __init__(self, env: dict[str, str], log, name: str, queues: list[str] | None = None):
        self.log = log
        argv = [sys.executable, "-m", "celery", "-A", APP, "worker", "-P", "prefork", "-c", "1", "-n", name,
                "--without-mingle", "--without-gossip", "-l", "info", "--logfile", str(log)]
        if queues:
            argv += ["-Q", ",".join(queues)]
        self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _forget_app() -> None:
    """This test process goes back to the standalone app (the sample's stays imported, unused)."""
    from orchestrator import config, runtime

    config.use_app_settings(None)
    runtime._app = None
    runtime._named_app.cache_clear()
    runtime.supervisor.cache_clear()
    runtime._imported_actions.cache_clear()
    config.settings.cache_clear()
    sys.modules.pop("tests.deploy.sample.celery", None)
    sys.modules.pop("tests.deploy.sample.tasks", None)
    sys.modules.pop("tests.deploy.sample", None)
    from workers.app import app

    app.set_current()


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """One deployment of the sample project: its own schema, queues, and two workers (the default
    queue, with the supervisor; the heavy queue its routes name). Its settings come from the
    app's conf: no ORCHESTRATOR_BROKER_URL or ORCHESTRATOR_DATABASE_URL anywhere."""
    tmp = tmp_path_factory.mktemp("sample")
    url, schema = new_schema()
    env = {"SAMPLE_BROKER_URL": BROKER_URL, "SAMPLE_DATABASE_URL": url, "SAMPLE_QUEUE": f"{schema}.default",
           "SAMPLE_HEAVY_QUEUE": f"{schema}.heavy", "ORCHESTRATOR_SUPERVISOR_QUEUE": f"{schema}.supervisor",
           "ORCHESTRATOR_HOME": str(tmp / "home"), "ORCHESTRATOR_APP": f"{APP}.celery:app"}
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_") or k.startswith("ORCHESTRATOR_TEST_")}
    full = {**base, **env, "PYTHONPATH": str(ROOT)}
    workers: list[CeleryWorker] = []
    _forget_app()  # before ORCHESTRATOR_APP is set: the standalone app stays the standalone one
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("ORCHESTRATOR_") and not k.startswith("ORCHESTRATOR_TEST_")]:
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        from orchestrator.config import settings

        settings.cache_clear()
        try:
            workers.append(CeleryWorker(full, tmp / "light.log", f"light.{schema}@%h").wait_ready())
            workers.append(CeleryWorker(full, tmp / "heavy.log", f"heavy.{schema}@%h", [f"{schema}.heavy"])
                           .wait_ready())
            yield {"env": full, "schema": schema, "url": url, "tmp": tmp, "workers": workers}
        finally:
            for worker in workers:
                worker.stop()
            from orchestrator.store.database import database

            database(url).dispose()
    _forget_app()
    drop_schema(schema)


def routed_workflow(schema: str) -> str:
    return textwrap.dedent(f"""
        version: "1.0"
        tasks:
          - name: light
            action: tests.deploy.sample.tasks.light
            input: {{word: "{{{{ parameters.word }}}}"}}
            next: [{{do: heavy}}]
          - name: heavy
            action: sample.crunch
            input: {{n: 4}}
            next: [{{do: pinned}}]
          - name: pinned
            action: sample.crunch
            queue: {schema}.default
            input: {{n: 2}}
        parameters:
          word: {{type: string, default: light}}
        output_map:
          heavy: "{{{{ task.heavy.result }}}}"
    """)


def hosts_of(summary: dict) -> dict[str, str]:
    return {task["name"]: task["worker"] for task in summary["tasks"]}


def assert_routed(summary: dict, schema: str) -> None:
    assert summary["status"] == "succeeded", summary
    hosts = hosts_of(summary)
    assert hosts["light"].startswith(f"light.{schema}@"), hosts       # the app's default queue
    assert hosts["heavy"].startswith(f"heavy.{schema}@"), hosts       # its task_routes: the heavy queue
    assert hosts["pinned"].startswith(f"light.{schema}@"), hosts      # the task's queue: wins over the route
    assert summary["output"]["heavy"] == {"sum": 10}


def test_submit_runs_on_the_workers_the_projects_routes_name(sample):
    from orchestrator import runtime, submit

    assert "tests.deploy.sample" not in sys.modules  # ORCHESTRATOR_APP is how this process finds the app
    summary = submit(routed_workflow(sample["schema"]), {"word": "ada"}).wait(120)
    from tests.deploy.sample import app

    assert runtime.celery_app() is app
    assert_routed(summary, sample["schema"])
    assert summary["tasks"][0]["result"] == "ADA"


def test_send_task_start_workflow_from_the_projects_app(sample):
    from orchestrator.api import RunHandle

    from tests.deploy.sample import app

    sent = app.send_task("orchestrator.start_workflow", args=(routed_workflow(sample["schema"]), {"word": "x"}))
    summary = wait_for(lambda: _ended(sent.id), 120, "the run started by send_task")
    assert_routed(summary, sample["schema"])
    assert sent.get(timeout=60) == sent.id  # start_workflow returns the run id: its own task id
    shown = cli("--app", f"{APP}.celery:app", "status", sent.id, env=_cli_env(sample))
    assert shown.returncode == 0, shown.stderr
    assert f"heavy.{sample['schema']}@" in shown.stdout  # the host column of `orchestrator status`
    assert RunHandle(sent.id).status() == "succeeded"


def test_housekeeping_runs_in_each_celery_worker(sample):
    from orchestrator.runtime import supervisor

    schema = sample["schema"]
    both = (f"light.{schema}@", f"heavy.{schema}@")
    names = wait_for(lambda: (lambda names: names if all(any(n.startswith(p) for n in names) for p in both) else None)(
        _heartbeats(supervisor())), 60, "both workers' heartbeats")
    assert len(names) == 2, names  # one housekeeper per worker main process (none in its pool processes)


def test_celery_beat_of_the_project_fires_a_schedule(sample):
    from orchestrator import add_schedule, pause_schedule
    from orchestrator.api import RunHandle
    from orchestrator.scheduling import schedule_fires

    add_schedule("sample-every-second", "hello", every=1, params={"name": "beat"})
    beat = BeatProcess(sample["env"], sample["tmp"] / "beat.log", sample["tmp"], app=APP)
    try:
        fires = wait_for(lambda: schedule_fires("sample-every-second"), 90, "a fire")
        quiesce("sample-every-second")  # the fire's start went out before beat stops
    finally:
        pause_schedule("sample-every-second")
        beat.stop()
    assert "schedule sample-every-second: due" in beat.text(), beat.text()  # our scheduler, set by install()
    summary = wait_for(lambda: _ended(fires[0]["run_id"]), 90, "the scheduled run")
    assert summary["status"] == "succeeded", summary
    assert summary["schedule"]["name"] == "sample-every-second"
    assert RunHandle(fires[0]["run_id"]).status() == "succeeded"


def _ended(run_id: str) -> dict | None:
    from orchestrator.api import RunHandle

    try:
        summary = RunHandle(run_id).summary()
    except LookupError:
        return None
    return summary if summary["status"] in ("succeeded", "failed", "canceled") else None


def _heartbeats(sup) -> list[str]:
    with sup.db.reading() as conn:
        return [row[0] for row in conn.execute(text("SELECT hostname FROM workers"))]


def _cli_env(sample) -> dict[str, str]:
    return {**{k: v for k, v in sample["env"].items() if k != "ORCHESTRATOR_APP"}, "COLUMNS": "250"}
