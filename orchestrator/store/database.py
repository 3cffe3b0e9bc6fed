"""Connections, transactions and migrations for one database URL."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, create_engine, event, inspect
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.pool import NullPool

# The Alembic environment lives in the top-level `migrations/` folder, installed beside this
# package (pyproject.toml ships both). Found by its place, not imported: migrations/env.py imports
# the models from here, and an import from the store up to it would run back up the layers.
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


# Database errors worth retrying: the server or the connection went away, a lock or statement
# timed out, a deadlock or serialization failure. Anything else (a value refused, a constraint,
# a statement that cannot run) fails the same way every time: it is not retried.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


def transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_DB_ERRORS) or bool(getattr(exc, "connection_invalidated", False))


class Database:
    """A pooled engine. SQLite (embedded mode) has no row locks, so its transactions are serialised
    by a process-wide lock: the embedded runtime is a single process by design.

    PostgreSQL: each process keeps at most `pool_size` idle connections and opens at most
    `pool_size + max_overflow` at once (waiting up to 30 s for one beyond that). With `pgbouncer`
    (transaction pooling) no session state is relied on: psycopg's server-side prepared statements
    are off, the lock timeout is set per transaction, and LISTEN, which needs a session, goes to
    `listen_url` (PostgreSQL itself) when given, else `RunHandle.wait()` polls."""

    def __init__(self, url: str, *, pool_size: int = 2, max_overflow: int = 3, pgbouncer: bool = False,
                 listen_url: str | None = None):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.pgbouncer = pgbouncer and not self.is_sqlite
        self._listen_engine = None
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
            connect_args = {"prepare_threshold": None} if self.pgbouncer else {}
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_timeout=30,
                                        pool_recycle=3600, connect_args=connect_args)
            if not self.pgbouncer:
                event.listen(self.engine, "connect", _postgres_session)
                event.listen(self.engine, "before_cursor_execute", _begin_first)
            if listen_url:
                # One connection per waiting RunHandle.wait(), opened and closed around the wait.
                self._listen_engine = create_engine(listen_url, poolclass=NullPool)
            self._lock = None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        if self._lock is None:
            with self.engine.begin() as conn:
                if self.pgbouncer:  # no session to hold it: this transaction's own lock timeout
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
                yield conn
            return
        with self._lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def step(self) -> Iterator[Connection]:
        """One transaction, like `transaction()`, whose BEGIN travels with its first statement and
        whose COMMIT with its last (PostgreSQL, without PgBouncer): a supervisor step that locks
        with `first_row` and writes with `last_row` is two round trips instead of four. The
        connection runs in autocommit mode and the transaction is opened by an explicit BEGIN
        before whatever statement comes first (`_begin_first`), so every statement of the block
        is inside it; nothing may run after `last_row` (its COMMIT ended the transaction)."""
        if self._lock is not None or self.pgbouncer:
            with self.transaction() as conn:
                yield conn
            return
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            info = conn.info  # kept: an invalidated connection cannot be asked for it again
            state = info[_STEP] = _Step()
            try:
                yield conn
                if state.begun and not state.committed:
                    with _driver_errors(conn, "COMMIT"):
                        conn.connection.driver_connection.execute(b"COMMIT")
            except BaseException:
                _roll_back_quietly(conn)
                raise
            finally:
                info.pop(_STEP, None)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def listening(self, channel: str) -> Iterator[Callable[[float], list[str]] | None]:
        """PostgreSQL: LISTEN on `channel` with a pooled connection and yield `wait(seconds)`,
        which returns the payloads notified meanwhile ([] on timeout). SQLite, or PgBouncer without
        a `listen_url` (LISTEN needs a session): yield None, and the caller polls."""
        engine = self._listen_engine or (None if self.is_sqlite or self.pgbouncer else self.engine)
        if engine is None:
            yield None
            return
        with engine.connect() as conn:
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
        if self._listen_engine is not None:
            self._listen_engine.dispose()


_STEP = "orchestrator_step"  # Connection.info key of a `Database.step()` block's _Step


class _Step:
    """Where a `Database.step()` transaction stands: BEGIN sent, COMMIT sent."""

    __slots__ = ("begun", "committed")

    def __init__(self) -> None:
        self.begun = False
        self.committed = False


def _begin_first(conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any,
                 executemany: bool) -> None:
    """In a step's block, a statement sent through SQLAlchemy before `first_row` opens the
    transaction first (a round trip of its own); one after `last_row` would run outside it."""
    state = conn.info.get(_STEP)
    if state is None:
        return
    if state.committed:
        raise RuntimeError("a statement after the step's COMMIT would run outside its transaction")
    if not state.begun:
        state.begun = True
        cursor.execute("BEGIN")


def first_row(conn: Connection, statement: str, params: dict[str, Any]) -> Any:
    """The first row of `statement` (SQL text with %(name)s parameters), or None. As the first
    statement of a `Database.step()` block, BEGIN is sent with it: one round trip (pipeline
    mode), where psycopg would send BEGIN on its own first."""
    state = conn.info.get(_STEP)
    if state is None or state.begun:
        return conn.exec_driver_sql(statement, params).first()
    raw = conn.connection.driver_connection
    with _driver_errors(conn, statement, params):
        cursor = raw.cursor(row_factory=namedtuple_row)
        state.begun = True
        with raw.pipeline():
            raw.execute(b"BEGIN")
            cursor.execute(statement, params)
        return cursor.fetchone()


def last_row(conn: Connection, statement: str, params: dict[str, Any]) -> Any:
    """The first row of `statement`, the last one of a `Database.step()` block: COMMIT is sent
    with it (and BEGIN too if nothing ran before), one round trip. Elsewhere an ordinary execute
    inside the caller's transaction."""
    state = conn.info.get(_STEP)
    if state is None:
        return conn.exec_driver_sql(statement, params).first()
    if state.committed:
        raise RuntimeError("a statement after the step's COMMIT would run outside its transaction")
    raw = conn.connection.driver_connection
    with _driver_errors(conn, statement, params):
        cursor = raw.cursor(row_factory=namedtuple_row)
        with raw.pipeline():
            if not state.begun:
                state.begun = True
                raw.execute(b"BEGIN")
            cursor.execute(statement, params)
            raw.execute(b"COMMIT")
        state.committed = True
        return cursor.fetchone()


@contextmanager
def _driver_errors(conn: Connection, statement: str, params: dict[str, Any] | None = None) -> Iterator[None]:
    """psycopg's errors from the raw connection as SQLAlchemy's (as `conn.execute` raises them:
    the supervisor tells transient ones by class), a broken connection invalidated."""
    try:
        yield
    except psycopg.Error as exc:
        raw = conn.connection.driver_connection
        broken = raw.closed or raw.broken
        if broken:
            conn.invalidate(exc)
        raise DBAPIError.instance(statement, params, exc, psycopg.Error, connection_invalidated=broken,
                                  dialect=conn.dialect) from exc


def _roll_back_quietly(conn: Connection) -> None:
    try:
        if not conn.invalidated:
            conn.connection.driver_connection.rollback()  # also in autocommit mode: ROLLBACK if in a transaction
    except Exception:  # the pool's reset on return invalidates a connection that cannot roll back
        pass


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


def database(url: str) -> Database:
    """The process's Database for `url`, with the pool budget and PgBouncer options of the
    settings (ORCHESTRATOR_DB_POOL_SIZE, ORCHESTRATOR_DB_MAX_OVERFLOW, ORCHESTRATOR_PGBOUNCER,
    ORCHESTRATOR_DATABASE_LISTEN_URL)."""
    from ..config import settings

    conf = settings()
    return _database(url, conf.db_pool_size, conf.db_max_overflow, conf.pgbouncer, conf.database_listen_url)


@lru_cache(maxsize=8)
def _database(url: str, pool_size: int, max_overflow: int, pgbouncer: bool, listen_url: str | None) -> Database:
    db = Database(url, pool_size=pool_size, max_overflow=max_overflow, pgbouncer=pgbouncer, listen_url=listen_url)
    _instances.append(db)
    return db


def after_fork() -> None:
    """In a forked child: drop the parent's pooled connections without closing them (they
    belong to the parent), so the child opens its own."""
    for db in _instances:
        db.engine.dispose(close=False)
        if db._listen_engine is not None:
            db._listen_engine.dispose(close=False)
