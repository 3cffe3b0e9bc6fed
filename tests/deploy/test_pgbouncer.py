"""A supported PgBouncer setup: a real pgbouncer (Debian's package) in transaction pooling mode in
front of PostgreSQL, a real prefork worker and this process behind it with ORCHESTRATOR_PGBOUNCER=1.
No session state is relied on: prepared statements off, the lock timeout set per transaction, and
RunHandle.wait() polls (or LISTENs on ORCHESTRATOR_DATABASE_LISTEN_URL, PostgreSQL itself)."""

from __future__ import annotations

import pytest

from orchestrator import submit
from orchestrator.runtime import supervisor
from orchestrator.store.database import LOCK_TIMEOUT_MS, database

from .conftest import WorkerProcess, _reset_process
from .servers import PgBouncer

pytestmark = [pytest.mark.runtime, pytest.mark.timeout(300)]  # real processes on a loaded CI machine


@pytest.fixture
def bouncer(pg_schema):
    url, schema = pg_schema
    server = PgBouncer(url.split("?", 1)[0], schema, pool_size=3)
    yield server
    server.stop()


@pytest.fixture
def bounced_env(deploy_env, bouncer, monkeypatch):
    """The deployment's database URL is PgBouncer's; PostgreSQL's own stays for LISTEN tests."""
    direct = deploy_env["ORCHESTRATOR_DATABASE_URL"]
    env = dict(deploy_env, ORCHESTRATOR_DATABASE_URL=bouncer.url, ORCHESTRATOR_PGBOUNCER="1")
    for key in ("ORCHESTRATOR_DATABASE_URL", "ORCHESTRATOR_PGBOUNCER"):
        monkeypatch.setenv(key, env[key])
    _reset_process()
    yield env, direct
    database(bouncer.url).dispose()


def test_workflows_run_end_to_end_through_pgbouncer(bounced_env, tmp_path):
    env, _ = bounced_env
    worker = WorkerProcess(env, tmp_path / "worker.log", concurrency=3).wait_ready()
    try:
        db = supervisor().db
        assert db.pgbouncer
        with db.listening("anything") as notified:
            assert notified is None  # LISTEN needs a session: wait() polls
        with db.transaction() as conn:
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == f"{LOCK_TIMEOUT_MS // 1000}s"
        # Enough runs that every statement runs well past psycopg's prepare threshold (5), on
        # connections PgBouncer hands out in turn.
        runs = [submit(name, params) for _ in range(4) for name, params in
                (("hello", {"name": "Ada"}), ("with-items", {}), ("subworkflow", {}))]
        summaries = [run.wait(120) for run in runs]
    finally:
        worker.stop()
    assert [s["status"] for s in summaries] == ["succeeded"] * 12, [s["error"] for s in summaries]
    assert "prepared statement" not in worker.text()


def test_wait_listens_on_postgresql_itself_when_given_a_listen_url(bounced_env, monkeypatch, tmp_path):
    env, direct = bounced_env
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_LISTEN_URL", direct)
    _reset_process()
    worker = WorkerProcess(env, tmp_path / "worker.log").wait_ready()
    try:
        with supervisor().db.listening("anything") as notified:
            assert notified is not None
        assert submit("hello", {"name": "Ada"}).wait(60)["status"] == "succeeded"
    finally:
        worker.stop()
        database(env["ORCHESTRATOR_DATABASE_URL"]).dispose()


def test_prepared_statements_are_what_breaks_without_the_setting(bouncer):
    """Why ORCHESTRATOR_PGBOUNCER exists: psycopg prepares a statement after 5 executions on its
    connection, and PgBouncer hands the next transaction another server connection."""
    import threading

    from sqlalchemy import text

    from orchestrator.store import Database

    def errors_with(pgbouncer: bool) -> list[str]:
        db, errors = Database(bouncer.url, pgbouncer=pgbouncer), []

        def work() -> None:
            for i in range(30):
                try:
                    with db.transaction() as conn:
                        conn.execute(text("SELECT CAST(:x AS integer) + 1"), {"x": i}).scalar()
                except Exception as exc:  # noqa: BLE001 - counted
                    errors.append(str(exc))

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        db.dispose()
        return errors

    assert errors_with(pgbouncer=True) == []
    broken = errors_with(pgbouncer=False)
    assert broken and all("prepared statement" in e for e in broken)
