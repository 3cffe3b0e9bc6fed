"""Real servers for end-to-end tests: each test gets its own PostgreSQL schema and its own Celery
queues on a real Redis broker, served by a real `orchestrator worker` subprocess (prefork)."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis as redis_lib
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
DATABASE_URL = os.environ.get("ORCHESTRATOR_TEST_DATABASE_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/orchestrator_test")
REDIS_URL = os.environ.get("ORCHESTRATOR_TEST_REDIS_URL", "redis://127.0.0.1:6379")
BROKER_URL = f"{REDIS_URL}/1"


def _libpq(url: str) -> str:
    parsed = make_url(url)
    return f"host={parsed.host} port={parsed.port or 5432} user={parsed.username} dbname={parsed.database}"


def new_schema() -> tuple[str, str]:
    """A fresh, migrated schema in the test database: (its URL, its name). Connections made with
    the URL carry the schema as their application_name."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(DATABASE_URL), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    # application_name: what this deployment's connections show in pg_stat_activity, so a test that
    # reads it counts its own (another test process shares the database)
    url = f"{DATABASE_URL}?options=-csearch_path%3D{schema}&application_name={schema}"
    from orchestrator.store import Database

    db = Database(url)
    db.upgrade()
    db.dispose()
    return url, schema


def lock_waiters(conn: psycopg.Connection, schema: str, statement_like: str) -> int:
    """How many of one test's connections (application_name is its schema: new_schema) wait for a
    lock in a statement LIKE `statement_like`. `conn` in autocommit: each call reads a fresh
    pg_stat_activity (it is a snapshot per transaction)."""
    return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                        "AND wait_event_type = 'Lock' AND query LIKE %s", (schema, statement_like)).fetchone()[0]


def drop_schema(schema: str) -> None:
    with psycopg.connect(_libpq(DATABASE_URL), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def pg_schema():
    """A fresh, migrated schema in the test database; dropped afterwards."""
    url, schema = new_schema()
    yield url, schema
    drop_schema(schema)


@pytest.fixture
def orchestrator_env(pg_schema, monkeypatch, tmp_path):
    """Environment for one isolated deployment, applied to this process and given to workers."""
    url, schema = pg_schema
    env = {
        "ORCHESTRATOR_BROKER_URL": BROKER_URL,
        "ORCHESTRATOR_DATABASE_URL": url,
        "ORCHESTRATOR_DEFAULT_QUEUE": f"{schema}.actions",
        "ORCHESTRATOR_SUPERVISOR_QUEUE": f"{schema}.supervisor",
        "ORCHESTRATOR_ACTIONS": "tests.runtime.actions",
        "ORCHESTRATOR_WORKFLOWS": str(ROOT / "examples"),
        "ORCHESTRATOR_HOME": str(tmp_path / "home"),
        "ORCHESTRATOR_TEST_REDIS_URL": REDIS_URL,
        "PYTHONPATH": str(ROOT),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _reset_process()
    yield env
    from orchestrator.store.database import database

    database(url).dispose()
    for key in env:
        monkeypatch.delenv(key, raising=False)
    _reset_process()


def _reset_process() -> None:
    """Re-read settings and rebuild the cached wiring (the broker URL stays the same)."""
    from orchestrator import runtime
    from orchestrator.config import settings
    from workers.app import app, configure

    settings.cache_clear()
    configure(app, settings())
    runtime.supervisor.cache_clear()
    runtime._imported_actions.cache_clear()


class WorkerProcess:
    def __init__(self, env: dict[str, str], log: Path, concurrency: int = 2, name: str = "w1",
                 extra: list[str] | None = None):
        self.log = log
        args = [sys.executable, "-m", "orchestrator", "worker", "-P", "prefork", "-c", str(concurrency),
                "-n", f"{name}.{env['ORCHESTRATOR_DEFAULT_QUEUE']}@%h", "--without-mingle", "--without-gossip",
                "-l", "info", "--logfile", str(log), *(extra or [])]
        self.proc = subprocess.Popen(args, env={**os.environ, **env}, cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_ready(self, timeout: float = 90) -> "WorkerProcess":
        # 90 s: a worker starts in ~2 s, but the suite runs in two processes, and the other one
        # may be in a phase that takes both cores (the fault suite's expression bombs): a worker
        # fixture's setup took 30 s on a 2-core machine with one core kept busy.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.proc.stderr.read().decode()[-2000:]}")
            if self.log.exists() and " ready." in self.log.read_text():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready after {timeout} s:\n{self.text()[-2000:]}")

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> None:
        """Cold shutdown, waited for (the test's queues are thrown away)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            self._reap()

    def stop_in_background(self) -> None:
        """For a fixture's teardown: the same cold shutdown, not waited for. A worker takes ~2 s
        to exit once its consumer has stopped (kombu's Redis channel waits out its BRPOP, 1 s;
        billiard's pool processes sleep 1 s before exiting), which the next test's setup
        overlaps; the process is reaped when the test session ends."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            _STOPPING.append(self)

    def _reap(self) -> None:
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


_STOPPING: list[WorkerProcess] = []


@atexit.register
def _reap_stopping() -> None:
    while _STOPPING:
        _STOPPING.pop()._reap()


@pytest.fixture
def worker(orchestrator_env, tmp_path):
    """A real prefork worker subprocess consuming this test's queues."""
    process = WorkerProcess(orchestrator_env, tmp_path / "worker.log").wait_ready()
    yield process
    process.stop_in_background()


@pytest.fixture
def test_redis():
    client = redis_lib.Redis.from_url(f"{REDIS_URL}/15")
    yield client
