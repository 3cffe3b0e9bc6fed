"""Definitions are stored once per (name, checksum), even when two processes store the same new
definition at the same moment (runs of a new workflow started side by side)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from sqlalchemy import text

from orchestrator.store.database import Database
from orchestrator.store.runs import RunStore

from .conftest import DATABASE_URL, _libpq, lock_waiters

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
            with psycopg.connect(_libpq(DATABASE_URL), autocommit=True) as watch:
                for _ in range(600):
                    waiting = lock_waiters(watch, schema, "INSERT INTO workflow_definitions%")
                    if waiting:
                        break
                    time.sleep(0.05)
                assert waiting, "the second insert never waited on the first"
            a.commit()
            thread.join(30)
        assert found["a"] == found["b"]
        with db.reading() as conn:
            rows = conn.execute(text("SELECT id, registered FROM workflow_definitions")).all()
        assert [(row.id, row.registered) for row in rows] == [(found["a"], True)]
    finally:
        db.dispose()
