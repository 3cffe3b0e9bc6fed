"""A step decided from the run snapshot a call's message carried (store/snapshot.py) writes only
over the version of the run row it was taken from; anything else that wrote the run since makes
it write nothing, and the step is done again from the stored state. Real PostgreSQL, the real
supervisor; only the publishing is recorded instead of sent."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from sqlalchemy import text

from benchmarks.round_trips import PostgresRoundTrips
from orchestrator.lifecycle import LifecycleEvent
from orchestrator.secrets import Redactor
from orchestrator.store import steps
from orchestrator.store.snapshot import LIMIT, read
from tests.runtime.conftest import lock_waiters
from tests.runtime.test_round_trips import WORKFLOW, ended, recording_supervisor

pytestmark = pytest.mark.runtime


@pytest.fixture
def sup(orchestrator_env):
    supervisor = recording_supervisor(orchestrator_env["ORCHESTRATOR_DATABASE_URL"])
    writes: list[tuple[bool, bool]] = []  # (conditional, applied) of every step's write
    write_step = supervisor.store.write_step

    def recording(*args, **kwargs):
        rows, written = write_step(*args, **kwargs)
        writes.append((kwargs.get("expect") is not None, written.applied))
        return rows, written

    supervisor.store.write_step = recording
    supervisor.writes = writes
    yield supervisor
    supervisor.db.dispose()


def started(sup, params=None, workflow: str = WORKFLOW) -> str:
    from orchestrator.registry import compile_workflow

    run_id = str(uuid.uuid4())
    sup.start(compile_workflow(workflow, "trips.yaml"), params or {}, run_id)
    sup.writes.clear()
    return run_id


def scalar(sup, query: str, run_id: str):
    with sup.db.reading() as conn:
        return conn.execute(text(query), {"id": run_id}).scalar()


def events_of(sup, run_id: str, kind: str) -> int:
    with sup.db.reading() as conn:
        return conn.execute(text("SELECT count(*) FROM run_events WHERE run_id = :id AND kind = :kind"),
                            {"id": run_id, "kind": kind}).scalar()


def test_a_snapshot_older_than_the_run_writes_nothing_and_the_step_reads_the_run(sup):
    """A pause written after s1 was sent: s1's snapshot says "running", and deciding from it
    would send s2. The conditional write finds another version, writes nothing, and the step
    from the stored state holds s2 back, as a pausing run must."""
    run_id = started(sup)
    call, seen = sup.canvas.calls[run_id].pop(0)
    assert seen is not None and read(run_id, seen).status == "running"
    sup.control(run_id, "pause")
    assert scalar(sup, "SELECT status FROM workflow_runs WHERE id = :id", run_id) == "pausing"
    sup.writes.clear()
    with PostgresRoundTrips() as trips:
        sup.complete([{**ended(call), "run": run_id}], seen=seen)
    assert sup.writes == [(True, False), (False, True)]  # the snapshot's write did not apply; the usual one did
    assert trips.count == 3  # the conditional write (BEGIN, write, COMMIT), then BEGIN + lock, write + COMMIT
    assert sup.canvas.calls[run_id] == []  # s2 held back
    assert scalar(sup, "SELECT status FROM workflow_runs WHERE id = :id", run_id) == "paused"
    assert events_of(sup, run_id, "task.succeeded") == 1
    sup.control(run_id, "resume")
    call, seen = sup.canvas.calls[run_id].pop(0)
    assert call.task == "s2" and seen is not None


def test_a_snapshot_used_twice_changes_nothing_the_second_time(sup):
    run_id = started(sup)
    call, seen = sup.canvas.calls[run_id].pop(0)
    envelope = {**ended(call), "run": run_id}
    sup.complete([envelope], seen=seen)
    assert sup.writes == [(True, True)]
    state = scalar(sup, "SELECT state::text FROM workflow_runs WHERE id = :id", run_id)
    sup.complete([envelope], seen=seen)  # a duplicate delivery of the same message
    assert sup.writes == [(True, True), (True, False)]  # stale: the stored state says s1 ended
    assert scalar(sup, "SELECT state::text FROM workflow_runs WHERE id = :id", run_id) == state
    assert events_of(sup, run_id, "task.succeeded") == 1
    assert [c.task for c, _ in sup.canvas.calls[run_id]] == ["s2"]


def test_a_step_waiting_on_the_run_rows_lock_sees_the_version_written_meanwhile(sup):
    """Another transaction holds the run row and writes it; the snapshot's write waits for its
    lock, then finds the row changed (PostgreSQL re-checks the condition on the newest version)
    and writes nothing; the step is then done from the stored state."""
    run_id = started(sup)
    call, seen = sup.canvas.calls[run_id].pop(0)
    schema = sup.db.engine.url.query["application_name"]  # the test's schema (tests/runtime/conftest.py)
    holder = psycopg.connect(f"host=127.0.0.1 user=postgres dbname={sup.db.engine.url.database}")
    try:
        holder.execute(f"SET search_path = {schema}")
        holder.execute("SELECT 1 FROM workflow_runs WHERE id = %s FOR UPDATE", (run_id,))
        holder.execute("UPDATE workflow_runs SET updated_at = updated_at + interval '1 ms' WHERE id = %s", (run_id,))
        errors: list[BaseException] = []

        def complete() -> None:
            try:
                sup.complete([{**ended(call), "run": run_id}], seen=seen)
            except BaseException as exc:  # reported below
                errors.append(exc)

        stepping = threading.Thread(target=complete)
        stepping.start()
        with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={sup.db.engine.url.database}",
                             autocommit=True) as watcher:
            deadline = time.monotonic() + 30
            while not lock_waiters(watcher, schema, "WITH run AS (UPDATE workflow_runs%"):
                assert time.monotonic() < deadline, "the snapshot's write never waited for the run row"
                time.sleep(0.02)
        holder.commit()
        stepping.join(30)
        assert not stepping.is_alive() and not errors
    finally:
        holder.close()
    assert sup.writes == [(True, False), (False, True)]
    assert events_of(sup, run_id, "task.succeeded") == 1
    assert [c.task for c, _ in sup.canvas.calls[run_id]] == ["s2"]


def test_a_malformed_or_foreign_snapshot_is_not_used(sup):
    run_id = started(sup)
    call, seen = sup.canvas.calls[run_id].pop(0)
    assert read(run_id, {**seen, "state": "not a state"}) is None
    assert read(run_id, {"v": "1"}) is None
    sup.complete([{**ended(call), "run": run_id}], seen={**seen, "v": "1"})  # a version the row never had
    assert sup.writes == [(True, False), (False, True)]
    assert [c.task for c, _ in sup.canvas.calls[run_id]] == ["s2"]


def test_a_run_too_large_to_carry_sends_no_snapshot(sup):
    workflow = WORKFLOW.replace("tasks:", "parameters:\n  blob: {type: string}\ntasks:")
    run_id = started(sup, params={"blob": "x" * LIMIT}, workflow=workflow)
    _, seen = sup.canvas.calls[run_id][0]
    assert seen is None


def test_every_row_of_a_conditional_write_waits_for_the_run_rows_version(pg_schema):
    """Each kind of row a step writes (a CTE each) is written when the run row is the expected
    version, and none is when it is not."""
    from orchestrator.store import Database

    db = Database(pg_schema[0])
    now = datetime.now(timezone.utc)
    tables = ("task_executions", "run_events", "outbox", "timers", "workflow_variables")

    def counts() -> dict[str, int]:
        with db.reading() as conn:
            found = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in tables}
            found["worker"] = conn.execute(text("SELECT count(*) FROM task_executions WHERE worker IS NOT NULL")).scalar()
            found["ended"] = conn.execute(text("SELECT count(*) FROM task_executions WHERE status = 'succeeded'")).scalar()
            return found

    def rows(expect) -> steps.StepRows:
        step = steps.StepRows("r", now, {"state": {"tasks": {}}, "updated_at": now + timedelta(seconds=1)})
        step.started[(3, 1)] = dict(seq=3, attempt=1, task="c", status="running", items=None, result=None,
                                    error=None, finished_at=None, worker=None)
        step.ended[(1, 1)] = dict(seq=1, attempt=1, worker="w1", status="succeeded", result={"a": 1}, error=None)
        step.hosted[(2, 1)] = "w2"
        step.variables = {"x": 1}
        step.timers = {"drop": None, "lease:3:1": now + timedelta(minutes=5)}
        step.events = [LifecycleEvent("task.succeeded", task="a", seq=1, attempt=1)]
        step.forget = [forget_id]
        step.outbox = {"commands": []}
        step.finished = True
        step.expect = expect
        return step

    try:
        with db.transaction() as conn:
            conn.execute(text("INSERT INTO workflow_runs (id, workflow, status, params, created_at, updated_at) "
                              "VALUES ('r', 'w', 'running', '{}', :now, :now)"), {"now": now})
            for seq, task in ((1, "a"), (2, "b")):
                conn.execute(text("INSERT INTO task_executions (run_id, seq, attempt, task, status, started_at) "
                                  "VALUES ('r', :seq, 1, :task, 'running', :now)"), {"seq": seq, "task": task, "now": now})
            conn.execute(text("INSERT INTO timers (run_id, key, due_at) VALUES ('r', 'drop', :now)"), {"now": now})
            forget_id = conn.execute(text("INSERT INTO outbox (run_id, payload, created_at) "
                                          "VALUES ('r', '{}', :now) RETURNING id"), {"now": now}).scalar()
            version = conn.execute(text("SELECT xmin::text FROM workflow_runs WHERE id = 'r'")).scalar()
        before = counts()
        with db.listening(steps.RUN_FINISHED) as listen:
            def wait(seconds: float) -> list[str]:
                """This run's notifications within `seconds`: NOTIFY reaches the whole database, so
                runs of tests beside this one (other schemas, other processes) notify too."""
                deadline, mine = time.monotonic() + seconds, []
                while not mine and time.monotonic() < deadline:
                    mine += [p for p in listen(deadline - time.monotonic()) if p == "r"]
                return mine

            for wrong in ((version, now + timedelta(microseconds=1)), (str(int(version) + 1), now)):
                with db.step() as conn:
                    written = steps.write(conn, rows(wrong), Redactor({}))
                assert (written.applied, written.version, written.outbox_id) == (False, None, None)
                assert counts() == before
            assert wait(0.2) == []  # nor did it notify
            with db.step() as conn:
                written = steps.write(conn, rows((version, now)), Redactor({}))
            assert written.applied and written.version != version and written.outbox_id is not None
            assert wait(5) == ["r"]  # the finished run's notification went with the write
        assert counts() == {"task_executions": 3, "run_events": 1, "outbox": 1, "timers": 1, "workflow_variables": 1,
                            "worker": 2, "ended": 1}
    finally:
        db.dispose()


def test_a_run_holding_a_secret_sends_no_snapshot(orchestrator_env, monkeypatch):
    """The deployment's secrets reach the broker only in the inputs of the calls that use them,
    never in a snapshot of the run (its variables keep the real values)."""
    from orchestrator.config import settings

    monkeypatch.setenv("ORCHESTRATOR_CONFIG", '{"secrets": {"token": "s3cr3t-t0ken"}}')
    settings.cache_clear()
    supervisor = recording_supervisor(orchestrator_env["ORCHESTRATOR_DATABASE_URL"])
    supervisor.writes = []
    try:
        plain = started(supervisor)
        holding = started(supervisor, workflow=WORKFLOW.replace(
            "tasks:", 'vars:\n  token: "{{ config.secrets.token }}"\ntasks:'))
        assert supervisor.canvas.calls[plain][0][1] is not None
        assert supervisor.canvas.calls[holding][0][1] is None
    finally:
        supervisor.db.dispose()
        settings.cache_clear()


def test_a_runs_times_read_the_same_from_the_row_and_from_a_snapshot():
    """A row read in a session whose time zone is not UTC gives the same `workflow_start` text as
    the start's own clock, which the first call's snapshot carries."""
    from orchestrator.store.runs import iso

    berlin = datetime(2026, 12, 4, 20, 0, tzinfo=timezone(timedelta(hours=1)))
    assert iso(berlin) == iso(berlin.astimezone(timezone.utc)) == "2026-12-04T19:00:00+00:00"
    assert iso(datetime(2026, 12, 4, 19, 0)) == "2026-12-04T19:00:00+00:00"  # SQLite's naive UTC
