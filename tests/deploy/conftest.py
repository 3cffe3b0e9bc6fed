"""Fixtures of the deployment tests: the runtime suite's isolated schema, environment and workers,
with this folder's workflows found by name too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.runtime.conftest import (ROOT, WorkerProcess,  # noqa: F401 (fixtures used by this folder's tests)
                                    _reset_process, orchestrator_env, pg_schema, worker)

HERE = Path(__file__).parent


@pytest.fixture
def deploy_env(orchestrator_env, monkeypatch):
    paths = f"{orchestrator_env['ORCHESTRATOR_WORKFLOWS']}{os.pathsep}{HERE / 'workflows'}"
    monkeypatch.setenv("ORCHESTRATOR_WORKFLOWS", paths)
    orchestrator_env["ORCHESTRATOR_WORKFLOWS"] = paths
    _reset_process()
    return orchestrator_env


@pytest.fixture
def deploy_worker(deploy_env, tmp_path):
    process = WorkerProcess(deploy_env, tmp_path / "worker.log").wait_ready()
    yield process
    process.stop_in_background()


def wait_status(run, wanted: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while run.status() != wanted:
        assert time.monotonic() < deadline, f"{run.id} still {run.status()}, wanted {wanted}"
        time.sleep(0.05)


def wait_for(condition, timeout: float = 60, what: str = "condition"):
    """Poll `condition()` until it returns something truthy (returned), else fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not met after {timeout} s"
        time.sleep(0.1)


def all_started(name: str) -> bool:
    """Every fire of schedule `name` has its run (its start message was sent and taken)."""
    from orchestrator.scheduling import schedule_fires

    fires = schedule_fires(name)
    return bool(fires) and all(exists(f["run_id"]) for f in fires)


def exists(run_id: str) -> bool:
    from orchestrator.api import RunHandle

    try:
        RunHandle(run_id).status()
    except LookupError:
        return False
    return True


def quiesce(name: str) -> None:
    """Pause the schedule (nothing more is claimed), then wait until each claimed due time's start
    went out and its run exists: a beat stopped between its claim and its send leaves a fire that
    only the next beat's resend would start (five minutes later). Call it before stopping beat."""
    from orchestrator import pause_schedule

    pause_schedule(name)
    wait_for(lambda: all_started(name), 60, f"every fire of {name} started")


class BeatProcess:
    """`orchestrator beat` as a user starts it (or `celery -A APP beat` with `app`), logging to a file."""

    def __init__(self, env: dict[str, str], log: Path, home: Path, app: str | None = None):
        self.log = log
        command = ["celery", "-A", app] if app else ["orchestrator"]
        self.proc = subprocess.Popen([sys.executable, "-m", *command, "beat", "-l", "info", "--logfile", str(log),
                                      "--schedule", str(home / "celerybeat-schedule")],
                                     env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
