"""The migrations build exactly the schema the models describe (no drift either way)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from orchestrator.store.database import Database
from orchestrator.store.models import Base

pytestmark = pytest.mark.runtime


def test_migrations_match_the_models_on_postgresql(pg_schema):
    url, _ = pg_schema
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        db.dispose()
    assert differences == []


def test_migrations_match_the_models_on_sqlite(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'schema.db'}")
    db.upgrade()
    try:
        with db.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        db.dispose()
    assert differences == []
