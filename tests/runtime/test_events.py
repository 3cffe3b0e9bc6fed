"""Lifecycle events on the distributed runtime: recorded in PostgreSQL (read by `orchestrator logs`)
and sent as Celery custom events (seen by a real event receiver on the broker)."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from datetime import datetime

import pytest
from celery.utils.time import adjust_timestamp

from orchestrator import submit
from orchestrator.events import event_type

from .test_cli import cli

pytestmark = pytest.mark.runtime

RETRY_THEN_FAIL = textwrap.dedent("""
    version: "1.0"
    tasks:
      - {name: prepare, action: core.echo, input: {message: ready}, next: [{do: flaky}]}
      - name: flaky
        action: core.fail
        input: {message: "still broken"}
        retry: {count: 1, delay: 0}
""")


def test_logs_tell_the_story_of_a_run_with_a_retry(worker, orchestrator_env):
    run = submit(RETRY_THEN_FAIL)
    assert run.wait(30)["status"] == "failed"
    result = cli("logs", run.id, "--json", env=orchestrator_env)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["kind"], e["task"], e["attempt"]) for e in events] == [
        ("workflow.started", None, None),
        ("task.started", "prepare", 1), ("task.succeeded", "prepare", 1),
        ("task.started", "flaky", 1), ("task.failed", "flaky", 1),
        ("task.started", "flaky", 2), ("task.failed", "flaky", 2),
        ("workflow.failed", None, None)]
    assert events[4]["message"] == "still broken" and "still broken" in events[-1]["message"]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    text = cli("logs", run.id, env=orchestrator_env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) == 8 and "flaky (attempt 2)" in lines[6] and "failed" in lines[6]
    missing = cli("logs", "no-such-run", env=orchestrator_env)
    assert missing.returncode == 2 and "no run with id no-such-run" in missing.stderr


def test_pause_resume_and_cancel_are_logged_in_order(worker, orchestrator_env):
    run = submit(textwrap.dedent("""
        version: "1.0"
        tasks:
          - {name: first, action: core.sleep, input: {seconds: 1}, next: [{do: second}]}
          - {name: second, action: core.sleep, input: {seconds: 60}}
    """))
    time.sleep(0.3)
    run.pause()
    deadline = time.monotonic() + 20
    while run.status() != "paused":
        assert time.monotonic() < deadline, run.status()
        time.sleep(0.05)
    run.resume()
    while not any(e["kind"] == "task.started" and e["task"] == "second" for e in run.events()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    run.cancel()
    assert run.wait(20)["status"] == "canceled"
    # `logs --follow` on a finished run prints everything and returns
    followed = cli("logs", run.id, "--follow", "--json", env=orchestrator_env, timeout=30)
    assert followed.returncode == 0, followed.stderr
    kinds = [json.loads(line)["kind"] for line in followed.stdout.splitlines()]
    assert kinds == ["workflow.started", "task.started", "workflow.pausing", "task.succeeded", "workflow.paused",
                     "workflow.running", "task.started", "workflow.canceling", "task.canceled", "workflow.canceled"]


@pytest.fixture
def events_worker(orchestrator_env, tmp_path, monkeypatch):
    """A worker started with -E (which turns lifecycle events on), and this process sending them
    too (it runs the first step of what it submits)."""
    from .conftest import WorkerProcess, _reset_process

    monkeypatch.delenv("ORCHESTRATOR_SEND_EVENTS", raising=False)  # the worker has only -E
    process = WorkerProcess(orchestrator_env, tmp_path / "worker.log", extra=["-E"]).wait_ready()
    monkeypatch.setenv("ORCHESTRATOR_SEND_EVENTS", "1")
    _reset_process()
    yield process
    process.stop_in_background()


def test_lifecycle_events_reach_a_celery_event_receiver(events_worker, orchestrator_env):
    from workers.app import app

    seen: list[dict] = []
    ready = threading.Event()
    stop = threading.Event()

    def listen() -> None:
        with app.connection_for_read() as conn:
            receiver = app.events.Receiver(conn, handlers={"*": seen.append})
            receiver.should_stop = False
            ready.set()
            for _ in receiver.consume(limit=None, timeout=0.5, wakeup=False):
                if stop.is_set():
                    break

    def consume_until_stopped() -> None:
        try:
            listen()
        except Exception:  # the socket timeout ends consume(); go on until told to stop
            if not stop.is_set():
                consume_until_stopped()

    thread = threading.Thread(target=consume_until_stopped, daemon=True)
    thread.start()
    assert ready.wait(10)
    time.sleep(1.0)  # the receiver's queue is bound before anything is sent
    run = submit(RETRY_THEN_FAIL)
    assert run.wait(30)["status"] == "failed"
    recorded = run.events()  # the durable record, in the order the steps wrote it
    deadline = time.monotonic() + 10
    while len(ours := [e for e in seen if e.get("run_id") == run.id]) < len(recorded):
        assert time.monotonic() < deadline, [e.get("type") for e in seen]
        time.sleep(0.1)
    stop.set()
    # A step publishes its events after its calls, so the next step (another pool process) may
    # publish first: a run's events are ordered by their timestamp, the step's time (a stable
    # sort: one step's events arrive in their order, on one connection).
    ours.sort(key=lambda e: e["timestamp"])
    assert [(e["type"], e["task"], e["attempt"]) for e in ours] == [
        ("workflow-started", None, None),
        ("workflow-task-started", "prepare", 1), ("workflow-task-succeeded", "prepare", 1),
        ("workflow-task-started", "flaky", 1), ("workflow-task-failed", "flaky", 1),
        ("workflow-task-started", "flaky", 2), ("workflow-task-failed", "flaky", 2),
        ("workflow-failed", None, None)]
    assert [(event_type(row["kind"]), row["task"], row["attempt"]) for row in recorded] == \
        [(e["type"], e["task"], e["attempt"]) for e in ours]
    assert [e["timestamp"] for e in ours] == pytest.approx(
        [adjust_timestamp(datetime.fromisoformat(row["at"]).timestamp(), e["utcoffset"])
         for row, e in zip(recorded, ours)], abs=1e-5)
    assert all(e["workflow"] == "<string>" or e["workflow"] for e in ours)
    assert ours[-1]["hostname"].startswith("orchestrator@")
