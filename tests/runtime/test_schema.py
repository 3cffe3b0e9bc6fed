"""The migrations build exactly the schema the models describe (no drift either way)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from orchestrator.store.database import Database
from orchestrator.store.models import Base

pytestmark = pytest.mark.runtime


def differences(db: Database) -> list:
    try:
        with db.engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        db.dispose()


def test_migrations_match_the_models_on_postgresql(pg_schema):
    url, _ = pg_schema
    assert differences(Database(url)) == []


def test_migrations_match_the_models_on_sqlite(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'schema.db'}")
    db.upgrade()
    assert differences(db) == []
