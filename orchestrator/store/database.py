"""Connections, transactions and migrations for one database URL."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import Connection, create_engine, event, inspect

# The Alembic environment lives in the top-level `migrations/` folder, installed beside this
# package (pyproject.toml ships both). Found by its place, not imported: migrations/env.py imports
# the models from here, and an import from the store up to it would run back up the layers.
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


class Database:
    """A pooled engine. SQLite (embedded mode) has no row locks, so its transactions are serialised
    by a process-wide lock: the embedded runtime is a single process by design."""

    def __init__(self, url: str):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(self.engine, "connect", _sqlite_pragmas)
            self._lock: threading.RLock | None = threading.RLock()
        else:
            # No pre-ping (a round trip per checkout on the hot path): connections are recycled
            # hourly, and a step that meets a dropped connection fails and is retried.
            self.engine = create_engine(url, pool_size=5, max_overflow=10, pool_recycle=3600)
            event.listen(self.engine, "connect", _postgres_session)
            self._lock = None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        if self._lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def listening(self, channel: str) -> Iterator[Callable[[float], list[str]] | None]:
        """PostgreSQL: LISTEN on `channel` with a pooled connection and yield `wait(seconds)`,
        which returns the payloads notified meanwhile ([] on timeout). SQLite: yield None (poll)."""
        if self.is_sqlite:
            yield None
            return
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql(f'LISTEN "{channel}"')
            raw = conn.connection.driver_connection

            def wait(seconds: float) -> list[str]:
                return [n.payload for n in raw.notifies(timeout=max(seconds, 0.0), stop_after=1)]

            try:
                yield wait
            finally:
                conn.exec_driver_sql("UNLISTEN *")

    def alembic_config(self):
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return config

    def upgrade(self) -> None:
        """Apply every migration (alembic upgrade head)."""
        from alembic import command

        with self.engine.begin() as conn:
            config = self.alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def is_migrated(self) -> bool:
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self.alembic_config()).get_current_head()
        with self.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return False
            return MigrationContext.configure(conn).get_current_revision() == head

    def ensure_schema(self, migrate: bool) -> None:
        """Migrate when allowed (embedded mode), else fail with the command that fixes it."""
        if self.is_migrated():
            return
        if not migrate:
            raise RuntimeError("the database schema is not up to date: run `orchestrator db upgrade`")
        self.upgrade()

    def dispose(self) -> None:
        self.engine.dispose()


LOCK_TIMEOUT_MS = int(float(os.environ.get("ORCHESTRATOR_LOCK_TIMEOUT", "10")) * 1000)


def _postgres_session(dbapi_connection, _record) -> None:
    """Per connection, once: a lock wait longer than ORCHESTRATOR_LOCK_TIMEOUT raises (and the
    supervisor step is retried) instead of wedging a worker behind a stuck transaction."""
    cursor = dbapi_connection.cursor()
    cursor.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
    cursor.close()
    dbapi_connection.commit()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_instances: list[Database] = []


@lru_cache(maxsize=8)
def database(url: str) -> Database:
    db = Database(url)
    _instances.append(db)
    return db


def after_fork() -> None:
    """In a forked child: drop the parent's pooled connections without closing them (they
    belong to the parent), so the child opens its own."""
    for db in _instances:
        db.engine.dispose(close=False)
