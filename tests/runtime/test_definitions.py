"""Definitions are stored once per (name, checksum), even when two processes store the same new
definition at the same moment (runs of a new workflow started side by side)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from orchestrator.store.database import Database
from orchestrator.store.runs import RunStore

pytestmark = pytest.mark.runtime

SOURCE = "version: 1\ntasks: {}\n"


def test_two_transactions_storing_one_new_definition_share_its_row(pg_schema):
    url, schema = pg_schema
    db = Database(url)
    try:
        first, second = RunStore(), RunStore()
        found: dict[str, int] = {}
        with db.engine.connect() as a:
            a.begin()
            found["a"] = first.save_definition(a, "side-by-side", SOURCE, "x.yaml")

            def other() -> None:
                with db.transaction() as b:
                    found["b"] = second.save_definition(b, "side-by-side", SOURCE, "x.yaml", registered=True)

            thread = threading.Thread(target=other)
            thread.start()
            # The second insert waits on the first's uncommitted row: commit only once it does.
            with db.engine.connect() as watch:
                for _ in range(600):
                    waiting = watch.execute(text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = :schema "
                        "AND query LIKE 'INSERT INTO workflow_definitions%'"), {"schema": schema}).scalar()
                    watch.commit()  # pg_stat_activity is a snapshot per transaction: take a new one
                    if waiting:
                        break
                    watch.execute(text("SELECT pg_sleep(0.05)"))
                    watch.commit()
                assert waiting, "the second insert never waited on the first"
            a.commit()
            thread.join(30)
        assert found["a"] == found["b"]
        with db.reading() as conn:
            rows = conn.execute(text("SELECT id, registered FROM workflow_definitions")).all()
        assert [(row.id, row.registered) for row in rows] == [(found["a"], True)]
    finally:
        db.dispose()
