"""A supervisor step on PostgreSQL is two round trips: BEGIN travels with the run row's lock and
COMMIT with the step's one-statement write (Database.step, docs/performance.md). This is part of
the step's design, not a timing: a change that adds a round trip to every step fails here. The
step stays one transaction: what a failed write leaves is rolled back whole."""

from __future__ import annotations

import uuid
from collections import defaultdict

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DataError

from benchmarks.round_trips import PostgresRoundTrips
from orchestrator.store import Database
from orchestrator.store.database import first_row, last_row

pytestmark = pytest.mark.runtime

WORKFLOW = """
version: "1.0"
name: trips
tasks:
  - {name: s1, action: core.noop, next: [{do: s2}]}
  - {name: s2, action: core.noop, next: [{do: s3}]}
  - {name: s3, action: core.noop}
"""


def recording_supervisor(url: str):
    from orchestrator.canvas import Canvas
    from orchestrator.config import settings
    from orchestrator.supervisor import Supervisor
    from workers.app import app

    conf = settings()

    class Recording(Canvas):  # what the supervisor would publish, kept instead of sent
        def __init__(self):
            super().__init__(app, conf.supervisor_queue, lease=conf.lease)
            self.calls: dict[str, list] = defaultdict(list)

        def send(self, run_id, workflow, calls, resent=False, outbox=None, seen=None):
            self.calls[run_id].extend((call, seen) for call in calls)

        def send_timer(self, run_id, key, seconds):
            pass

    return Supervisor(Database(url), Recording(), conf)


def ended(call) -> dict:
    """The envelope of a call that succeeded, but for its run."""
    return {"seq": call.seq, "attempt": call.attempt, "item": call.item, "task": call.task,
            "status": "succeeded", "result": None, "error": None}


def drive(sup, run_id: str, snapshots: bool = True) -> list[int]:
    """Complete the run's calls one by one as they are sent, with the snapshot each call's
    message would carry (or without); the round trips of each step."""
    trips_per_step = []
    while sup.canvas.calls[run_id]:
        call, seen = sup.canvas.calls[run_id].pop(0)
        with PostgresRoundTrips() as trips:
            sup.complete([{**ended(call), "run": run_id}], seen=seen if snapshots else None)
        trips_per_step.append(trips.count)
    return trips_per_step


def assert_succeeded(sup, run_id: str, tasks: int) -> None:
    with sup.db.reading() as conn:
        assert conn.execute(text("SELECT status FROM workflow_runs WHERE id = :id"), {"id": run_id}).scalar() \
            == "succeeded"
        assert conn.execute(text("SELECT count(*) FROM task_executions WHERE run_id = :id AND status = 'succeeded'"),
                            {"id": run_id}).scalar() == tasks


def test_a_step_is_one_round_trip_from_a_snapshot_two_without_and_a_start_two(orchestrator_env):
    from orchestrator.registry import compile_workflow

    sup = recording_supervisor(orchestrator_env["ORCHESTRATOR_DATABASE_URL"])
    workflow = compile_workflow(WORKFLOW, "trips.yaml")
    for warm_up in ("stores the definition", "finds it, remembers its id"):  # and the pool's connections
        sup.start(workflow, {}, warm_up)
        drive(sup, warm_up)
    run_id = str(uuid.uuid4())
    with PostgresRoundTrips() as trips:
        sup.start(workflow, {}, run_id)
    assert trips.count == 2  # BEGIN + INSERT of the run; the write + COMMIT
    assert all(seen is not None for _, seen in sup.canvas.calls[run_id])  # one call sent: it carries the run
    assert drive(sup, run_id) == [1, 1, 1]  # BEGIN + the conditional write + COMMIT (the last one notifies)
    assert_succeeded(sup, run_id, 3)
    run_id = str(uuid.uuid4())
    sup.start(workflow, {}, run_id)
    assert drive(sup, run_id, snapshots=False) == [2, 2, 2]  # BEGIN + lock; write + COMMIT
    assert_succeeded(sup, run_id, 3)
    sup.db.dispose()


def test_a_step_transaction_is_one_unit(pg_schema):
    """What ran before a failed write is rolled back with it; the connection goes back clean; and
    nothing can run after the write's COMMIT (it would be outside the transaction)."""
    db = Database(pg_schema[0])
    try:
        with db.transaction() as conn:
            conn.execute(text("CREATE TABLE probe (id int PRIMARY KEY, note text)"))
            conn.execute(text("INSERT INTO probe VALUES (1, 'before')"))
        with pytest.raises(DataError):
            with db.step() as conn:
                assert first_row(conn, "SELECT note FROM probe WHERE id = %(id)s FOR UPDATE", {"id": 1}).note == "before"
                conn.execute(text("UPDATE probe SET note = 'changed' WHERE id = 1"))
                last_row(conn, "UPDATE probe SET id = %(id)s::int RETURNING id", {"id": "not a number"})
        with pytest.raises(RuntimeError, match="after the step's COMMIT"):
            with db.step() as conn:
                assert last_row(conn, "UPDATE probe SET note = 'written' RETURNING id", {})[0] == 1
                conn.execute(text("UPDATE probe SET note = 'outside' WHERE id = 1"))
        with db.step() as conn:  # a statement through SQLAlchemy first: the block's BEGIN goes before it
            conn.execute(text("UPDATE probe SET note = 'rolled back' WHERE id = 1"))
            raw = conn.connection.driver_connection
            assert raw.info.transaction_status.name == "INTRANS"
            raw.execute("ROLLBACK")  # ends the block's transaction: the update is gone
            raw.execute("BEGIN")
        with db.reading() as conn:
            assert conn.execute(text("SELECT note FROM probe")).scalar() == "written"
    finally:
        db.dispose()


def test_a_step_deletes_only_its_own_runs_carried_out_outbox_rows(orchestrator_env):
    """A step's write deletes the outbox rows of its own run this process carried out; another
    run's wait for that run's step or the flusher: a step writes no other run's rows."""
    from orchestrator.registry import compile_workflow

    sup = recording_supervisor(orchestrator_env["ORCHESTRATOR_DATABASE_URL"])
    workflow = compile_workflow(WORKFLOW, "trips.yaml")
    sup.long_lived = True  # carried-out rows wait for a step or the flusher, as in a worker
    for run_id in ("a", "b"):
        sup.start(workflow, {}, run_id)

    def outbox() -> dict[int, str]:
        with sup.db.reading() as conn:
            return dict(conn.execute(text("SELECT id, run_id FROM outbox")).all())

    rows = outbox()
    assert sorted(rows.values()) == ["a", "b"]  # each start's row, its call "sent"
    for outbox_id, run_id in rows.items():
        sup.carried_out(outbox_id, run_id)  # as the worker that receives each call does
    call, seen = sup.canvas.calls["a"].pop(0)
    sup.complete([{**ended(call), "run": "a"}], seen=seen)
    left = outbox()
    assert sorted(left.values()) == ["a", "b"]  # a's start row is gone, a's step left one; b's is there
    assert [i for i, r in left.items() if r == "b"] == [i for i, r in rows.items() if r == "b"]
    assert [i for i, r in left.items() if r == "a"] != [i for i, r in rows.items() if r == "a"]
    sup.flush_carried_out()  # b's row goes with the flusher's batch
    assert sorted(outbox().values()) == ["a"]
    sup.db.dispose()
