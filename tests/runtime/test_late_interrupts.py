"""A cancel stops a running call with a terminating revoke: Celery sends SIGUSR1 to the pool
process running the call's task, and prefork turns it into SoftTimeLimitExceeded (a call's own
soft time limit arrives the same way). The call's task goes on after its action has ended: it
applies its own outcome to the run (inline, under the run's row lock). A signal that arrives
then has nothing left to stop, and must neither lose the outcome (the run would wait in
`canceling`) nor break the step's database transaction in the middle.

The test makes the late signal certain instead of hoping for it: it holds the run's row lock
so that the cancel queues first and the call's own step second, lets the cancel through, takes
the lock again before the call's step gets it, and waits for the worker to log that it sent the
signal while the step still waits."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from orchestrator import submit

from .conftest import DATABASE_URL, WorkerProcess, _libpq, lock_waiters

BOUND = 60


def _lock_waiters(conn: psycopg.Connection, schema: str) -> int:
    """This test's connections (its deployment's and its own) waiting for a lock on a run row."""
    return lock_waiters(conn, schema, "%workflow_runs%")


def _until(check, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        time.sleep(0.02)


@pytest.fixture
def lone_worker(orchestrator_env, tmp_path):
    """One pool process, so the run after the signal uses the process that received it."""
    env = {**orchestrator_env, "ORCHESTRATOR_TEST_EFFECTS": str(tmp_path / "effects.log")}
    process = WorkerProcess(env, tmp_path / "worker.log", concurrency=1).wait_ready()
    yield process
    process.stop_in_background()


def test_a_cancel_signal_after_the_action_ended_loses_nothing(lone_worker, pg_schema, tmp_path):
    _, schema = pg_schema
    gate = tmp_path / "gate"
    flow = tmp_path / "held.yaml"
    flow.write_text('version: "1.0"\n'
                    "parameters: {gate: {type: string}}\n"
                    "tasks:\n"
                    '  - {name: held, action: tests.effect, input: {value: 1, gate: "{{ parameters.gate }}"}}\n')
    run = submit(str(flow), {"gate": str(gate)})
    waiting = tmp_path / "effects.log.waiting"
    _until(waiting.exists, "the call to reach its gate")

    def locker() -> psycopg.Connection:
        conn = psycopg.connect(_libpq(DATABASE_URL), options=f"-csearch_path={schema}",
                               application_name=schema)
        return conn

    watch = locker()
    watch.autocommit = True
    first, second = locker(), locker()
    first.execute("SELECT id FROM workflow_runs WHERE id = %s FOR UPDATE", (run.id,))
    canceled: list[BaseException | None] = []

    def cancel() -> None:
        try:
            run.cancel()
            canceled.append(None)
        except BaseException as exc:  # reported below
            canceled.append(exc)

    threading.Thread(target=cancel, daemon=True).start()
    _until(lambda: _lock_waiters(watch, schema) == 1, "the cancel to wait for the run's lock")
    second_locked = threading.Event()

    def lock_again() -> None:
        second.execute("SELECT id FROM workflow_runs WHERE id = %s FOR UPDATE", (run.id,))
        second_locked.set()

    threading.Thread(target=lock_again, daemon=True).start()
    _until(lambda: _lock_waiters(watch, schema) == 2, "the test's second lock to queue behind it")
    gate.touch()
    _until(lambda: _lock_waiters(watch, schema) == 3, "the call's own step to queue last")
    first.commit()  # the cancel commits `canceling` and revokes the call; `second` takes the lock
    _until(second_locked.is_set, "the second lock")
    _until(lambda: " (Signals.SIGUSR1)" in lone_worker.text() or " (10)" in lone_worker.text(),
           "the worker to send the revoke's signal")
    time.sleep(0.5)  # the signal handler runs in the pool process (no observable mark to wait for)
    second.commit()
    _until(lambda: bool(canceled), "the cancel to return")
    assert canceled == [None], canceled
    summary = run.wait(BOUND)
    assert summary["status"] == "canceled", summary
    assert summary["tasks"][0]["status"] in ("succeeded", "failed", "canceled"), summary
    # the process that got the signal still has sound database connections: the next run works,
    # and no transaction was left holding a run's row lock
    assert submit("hello", {"name": "Ada", "times": 1}).wait(BOUND)["status"] == "succeeded"
    stuck = watch.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                          "AND state LIKE 'idle in transaction%%'", (schema,)).fetchone()[0]
    assert stuck == 0
    log = lone_worker.text()
    assert "inline failed" not in log and "Traceback" not in log, log[-3000:]
    for conn in (watch, first, second):
        conn.close()
