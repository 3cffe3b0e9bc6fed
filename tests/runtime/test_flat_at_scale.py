"""What keeps list, metrics and ids flat at ten million runs (migration 0007): the counts of
finished runs kept by triggers, the indexes the list and the metrics read, bigint ids."""

from __future__ import annotations

import textwrap
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from alembic import command
from sqlalchemy import event, text

from orchestrator.http.metrics import run_counts
from orchestrator.store import Database, RunStore
from orchestrator.store.runs import TERMINAL

pytestmark = pytest.mark.runtime

MIGRATION = "0007"


def truth(conn) -> dict[str, int]:
    return {s: n for s, n in conn.execute(text("SELECT status, count(*) FROM workflow_runs GROUP BY status"))}


def add_run(conn, run_id: str, status: str, created_at: datetime | None = None) -> None:
    conn.execute(text("INSERT INTO workflow_runs (id, workflow, status, params, created_at, updated_at) "
                      "VALUES (:id, 'w', :status, '{}', :at, :at)"),
                 {"id": run_id, "status": status, "at": created_at or datetime.now(timezone.utc)})


def set_status(conn, run_id: str, status: str) -> None:
    conn.execute(text("UPDATE workflow_runs SET status = :status WHERE id = :id"), {"id": run_id, "status": status})


def exercise(db: Database) -> None:
    """Runs entering and leaving terminal statuses every way the shell moves them."""
    store = RunStore()
    with db.transaction() as conn:
        for i in range(6):
            store.create_run(conn, f"r{i}", "w", None, {})                      # requested
        store.create_run(conn, "rejected", "w", None, {}, status="failed", error="bad")  # created finished
        assert not store.create_run(conn, "r0", "w", None, {})               # a redelivered start: no row
    with db.transaction() as conn:
        for i in range(6):
            set_status(conn, f"r{i}", "running")
        set_status(conn, "r0", "succeeded")
        set_status(conn, "r1", "failed")
        set_status(conn, "r2", "canceling")
        set_status(conn, "r3", "succeeded")
    with db.transaction() as conn:
        set_status(conn, "r2", "canceled")
        set_status(conn, "r1", "running")    # a rerun reopens a failed run
        set_status(conn, "r3", "succeeded")  # no change of status: counted once
        conn.execute(text("UPDATE workflow_runs SET error = 'x' WHERE id = 'r0'"))  # other columns only
    with db.transaction() as conn:
        set_status(conn, "r1", "succeeded")
        conn.execute(text("DELETE FROM workflow_runs WHERE id IN ('r3', 'r5')"))  # one finished, one active


def test_counts_follow_every_way_into_and_out_of_a_terminal_status_on_postgresql(pg_schema):
    db = Database(pg_schema[0])
    try:
        exercise(db)
        with db.reading() as conn:
            assert run_counts(conn) == truth(conn) == {"succeeded": 2, "failed": 1, "canceled": 1, "running": 1}
            # finished runs come from the counters, not from the runs table
            stored = dict(conn.execute(text("SELECT status, sum(runs) FROM run_counts GROUP BY status")).all())
            assert {s: int(n) for s, n in stored.items() if n} == {"succeeded": 2, "failed": 1, "canceled": 1}
    finally:
        db.dispose()


def test_counts_on_sqlite(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'counts.db'}")
    db.upgrade()
    try:
        exercise(db)
        with db.reading() as conn:
            assert run_counts(conn) == truth(conn)
            assert run_counts(conn)["succeeded"] == 2
    finally:
        db.dispose()


def test_runs_finishing_at_once_on_many_connections_are_all_counted(pg_schema):
    """Eight connections finish 400 runs concurrently: no update is lost, and they were spread
    over shards (each backend writes its own counter rows) rather than queued on one row."""
    db = Database(pg_schema[0])
    try:
        with db.transaction() as conn:
            for i in range(400):
                add_run(conn, f"c{i}", "running")
        barrier = threading.Barrier(8)
        errors: list[BaseException] = []

        def finish(worker: int) -> None:
            try:
                barrier.wait(10)
                for i in range(worker, 400, 8):
                    with db.transaction() as conn:
                        set_status(conn, f"c{i}", "failed" if i % 4 == 0 else "succeeded")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=finish, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors
        with db.reading() as conn:
            assert run_counts(conn) == truth(conn) == {"succeeded": 300, "failed": 100}
            shards = conn.execute(text("SELECT count(DISTINCT shard) FROM run_counts")).scalar_one()
        assert shards > 1
    finally:
        db.dispose()


def test_the_migration_counts_the_runs_already_stored(pg_schema):
    """Upgrading a database that already holds runs: the counters start from them."""
    url, _ = pg_schema
    db = Database(url)
    try:
        config = db.alembic_config()
        with db.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0004")
        with db.transaction() as conn:
            for i, status in enumerate(["succeeded"] * 3 + ["failed", "running", "canceled", "canceled"]):
                add_run(conn, f"old{i}", status)
            conn.execute(text("INSERT INTO task_executions (run_id, seq, attempt, task, status, started_at) "
                              "VALUES ('old0', 1, 1, 't', 'succeeded', now())"))
        db.upgrade()
        with db.reading() as conn:
            assert run_counts(conn) == truth(conn) == {"succeeded": 3, "failed": 1, "running": 1, "canceled": 2}
            types = dict(conn.execute(text(
                "SELECT table_name, data_type FROM information_schema.columns WHERE column_name = 'id' "
                "AND table_schema = current_schema() AND table_name IN ('task_executions', 'run_events', 'outbox')")).all())
            assert types == dict.fromkeys(("task_executions", "run_events", "outbox"), "bigint")
            # the sequences were widened too, not only the columns
            for table in ("task_executions", "run_events", "outbox"):
                assert conn.execute(text("SELECT s.seqmax FROM pg_sequence s WHERE s.seqrelid = "
                                         "pg_get_serial_sequence(:t, 'id')::regclass"), {"t": table}).scalar() \
                    == 2 ** 63 - 1
    finally:
        db.dispose()


def test_the_migration_names_the_terminal_statuses_of_the_store():
    import importlib.util
    from pathlib import Path

    import migrations

    path = Path(migrations.__file__).parent / "versions" / "0007_flat_at_scale.py"
    spec = importlib.util.spec_from_file_location("migration_0007", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.revision == MIGRATION
    assert set(module.TERMINAL) == set(TERMINAL)


# --------------------------------------------------------------------------- plans

@contextmanager
def captured(db: Database):
    """The statements `db` sends meanwhile, with their parameters."""
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def plan(conn, statement: str, parameters) -> dict:
    return conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar()[0]["Plan"]


def nodes(node: dict) -> list[dict]:
    return [node] + [n for child in node.get("Plans", []) for n in nodes(child)]


@pytest.fixture
def many_finished_runs(pg_schema):
    """20,000 finished runs over 20 days and a few active ones, analysed: enough rows that a
    scan of every run costs the planner far more than an index."""
    db = Database(pg_schema[0])
    with db.transaction() as conn:
        conn.execute(text(
            "INSERT INTO workflow_runs (id, workflow, status, params, created_at, updated_at, finished_at) "
            "SELECT 'f' || g, 'w', (ARRAY['succeeded', 'failed', 'canceled'])[1 + g % 3], '{}', "
            "now() - g * interval '90 seconds', now(), now() FROM generate_series(1, 20000) AS g"))
        for i in range(5):
            add_run(conn, f"a{i}", "running")
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE workflow_runs")
    yield db
    db.dispose()


@pytest.mark.parametrize("status", [None, "running", "succeeded"])
def test_the_list_reads_an_index_and_sorts_nothing(many_finished_runs, status):
    db = many_finished_runs
    with captured(db) as seen, db.reading() as conn:
        rows = RunStore().list_runs(conn, status, 50)
    assert len(seen) == 1
    with db.reading() as conn:
        got = nodes(plan(conn, *seen[0]))
        newest = [r[0] for r in conn.execute(text(
            "SELECT id FROM workflow_runs WHERE CAST(:status AS text) IS NULL OR status = :status "
            "ORDER BY created_at DESC LIMIT 50"), {"status": status})]
    assert [r["id"] for r in rows] == newest
    assert not any(n["Node Type"] == "Seq Scan" for n in got), got
    assert any(n.get("Index Name") in ("ix_workflow_runs_created_at", "ix_workflow_runs_status_created")
               for n in got), got
    # read in order from the index, or (a status with few runs) those few sorted: never all runs
    for sort in (n for n in got if n["Node Type"] == "Sort"):
        assert all(child["Plan Rows"] < 1000 for child in sort["Plans"]), got


def test_the_metrics_count_reads_no_finished_run(many_finished_runs):
    db = many_finished_runs
    with captured(db) as seen, db.reading() as conn:
        counts = run_counts(conn)
    assert counts == {"running": 5, "succeeded": 6666, "failed": 6667, "canceled": 6667}
    assert len(seen) == 1
    with db.reading() as conn:
        got = nodes(plan(conn, *seen[0]))
    scans = [n for n in got if n.get("Relation Name") == "workflow_runs"]
    assert scans and all(n["Node Type"] in ("Index Only Scan", "Index Scan", "Bitmap Heap Scan") for n in scans), got
    # the estimate of workflow_runs rows read is the active ones, not the 20,000 finished
    assert sum(n["Plan Rows"] for n in scans) < 1000, got


# --------------------------------------------------------------------------- ids past int4

LONG = textwrap.dedent("""
    version: "1.0"
    tasks:
      - {name: one, action: core.noop, next: [{do: two}]}
      - {name: two, action: core.noop, next: [{do: three}]}
      - {name: three, action: core.noop}
""")


def test_a_workflow_runs_with_ids_past_int4(worker, orchestrator_env):
    """Every sequence of a step-rate table set past 2^31: steps still write, and the outbox rows
    they carried out are still deleted by the next step (the ids go through bigint arrays)."""
    from orchestrator import submit
    from orchestrator.runtime import supervisor

    db = supervisor().db
    start = 2 ** 31 + 10
    with db.transaction() as conn:
        for table in ("task_executions", "run_events", "outbox"):
            conn.execute(text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :v)"), {"t": table, "v": start})
    summary = submit(LONG).wait(60)
    assert summary["status"] == "succeeded", summary
    with db.reading() as conn:
        ids = conn.execute(text("SELECT min(id) FROM task_executions WHERE run_id = :r"),
                           {"r": summary["id"]}).scalar_one()
        assert ids > start
        assert conn.execute(text("SELECT min(id) FROM run_events WHERE run_id = :r"),
                            {"r": summary["id"]}).scalar_one() > start
    deadline = datetime.now(timezone.utc) + timedelta(seconds=30)
    while True:  # carried-out rows leave with a later step or the flusher (within 2 s)
        with db.reading() as conn:
            left = conn.execute(text("SELECT count(*) FROM outbox WHERE run_id = :r"),
                                {"r": summary["id"]}).scalar_one()
        if left == 0:
            break
        assert datetime.now(timezone.utc) < deadline, f"{left} outbox rows past int4 never deleted"
        time.sleep(0.2)


def test_a_step_deletes_carried_out_outbox_rows_past_int4(pg_schema):
    """The one-statement write deletes outbox rows this process carried out earlier by id."""
    from orchestrator.secrets import Redactor
    from orchestrator.store import steps

    db = Database(pg_schema[0])
    big = 2 ** 40
    now = datetime.now(timezone.utc)
    try:
        with db.transaction() as conn:
            add_run(conn, "r", "running")
            conn.execute(text("INSERT INTO outbox (id, run_id, payload, created_at) VALUES "
                              "(:a, 'r', '{}', now()), (:b, 'r', '{}', now()), (:c, 'r', '{}', now())"),
                         {"a": big, "b": big + 1, "c": big + 2})
        with db.transaction() as conn:
            rows = steps.StepRows("r", now, {"updated_at": now}, forget=[big, big + 1])
            rows.outbox = {"workflow": "w", "parent": None, "commands": []}
            new_id = steps.write(conn, rows, Redactor({})).outbox_id
        with db.reading() as conn:
            left = sorted(conn.execute(text("SELECT id FROM outbox")).scalars())
        assert left == [new_id, big + 2]
    finally:
        db.dispose()


# Time-ordered run ids (run_ids.py): a new run's keys go next to the last runs' keys ------------

def test_a_run_id_is_a_version_7_uuid_of_its_millisecond():
    import uuid

    from orchestrator.run_ids import time_ordered_uuid

    for ms, noise in [(0, bytes(10)), (1_700_000_000_123, b"\xff" * 10), ((1 << 48) - 1, bytes(range(10)))]:
        made = time_ordered_uuid(ms, noise)
        assert (made.version, made.variant) == (7, uuid.RFC_4122)
        assert made.int >> 80 == ms
        assert uuid.UUID(str(made)) == made and len(str(made)) == 36
    assert time_ordered_uuid(5, b"\x00" * 10) != time_ordered_uuid(5, b"\x00" * 9 + b"\x01")
    with pytest.raises(ValueError):
        time_ordered_uuid(5, b"short")


def test_run_ids_made_later_sort_later_in_python_and_in_postgresql(pg_schema):
    """Whatever their random bits, ids of successive milliseconds sort in that order, as text and
    under the database's collation (the primary key's order); ids of one process never repeat."""
    import random

    from orchestrator.run_ids import new_run_id, time_ordered_uuid

    start = 1_790_000_000_000
    made = [str(time_ordered_uuid(start + i, (b"\xff" if i % 2 else b"\x00") * 10)) for i in range(200)]
    assert sorted(made) == made
    shuffled = random.Random(7).sample(made, len(made))
    db = Database(pg_schema[0])
    try:
        with db.transaction() as conn:
            for run_id in shuffled:
                add_run(conn, run_id, "running")
        with db.reading() as conn:
            assert [r[0] for r in conn.execute(text("SELECT id FROM workflow_runs ORDER BY id"))] == made
    finally:
        db.dispose()
    fresh = [new_run_id() for _ in range(5000)]
    assert len(set(fresh)) == len(fresh)
    assert [int(r.replace("-", ""), 16) >> 80 for r in fresh] == sorted(int(r.replace("-", ""), 16) >> 80
                                                                        for r in fresh)


def test_runs_started_without_an_id_get_a_time_ordered_one_and_a_given_id_is_kept(orchestrator_env):
    import uuid

    from orchestrator.api import start_run

    first, second = start_run("hello", {"name": "a"}), start_run("hello", {"name": "b"})
    assert uuid.UUID(first).version == 7 and uuid.UUID(second).version == 7
    assert first < second or first[:13] == second[:13]  # later, or within the same millisecond
    assert start_run("hello", {"name": "c"}, run_id="mine-1") == "mine-1"
