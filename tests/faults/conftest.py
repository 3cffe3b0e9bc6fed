"""Servers the fault-injection suite may kill: a Redis and a PostgreSQL of its own (never the
shared ones), RabbitMQ as the alternative broker, and worker processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis as redis_lib

from tests.runtime.conftest import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql") / (sorted(os.listdir("/usr/lib/postgresql"))[-1] if Path("/usr/lib/postgresql").exists() else "15") / "bin"
AMQP_URL = os.environ.get("ORCHESTRATOR_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout} s")


class RedisServer:
    """A throw-away redis-server without persistence: a restart loses every message."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.folder = folder
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.folder)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: redis_lib.Redis(port=self.port).ping(), 10, "redis")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, down_for: float = 1.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


class PostgresServer:
    """A throw-away PostgreSQL cluster (initdb as the postgres user), trust auth on loopback."""

    def __init__(self):
        self.port = free_port()
        # Not under pytest's tmp dir: that is private to root, and the server runs as postgres.
        self.folder = Path(tempfile.mkdtemp(prefix="orchestrator-faults-pg-"))
        shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "pgdata"
        self._as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"])

    def _as_postgres(self, args: list[str]) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> "PostgresServer":
        self._as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.data / "log"),
                           "-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1", "start"])
        wait_for(lambda: psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres").close() or True,
                 20, "postgres")
        return self

    def stop(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m",
                        "immediate", "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def restart(self, down_for: float = 1.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    server = PostgresServer().start()
    yield server
    server.stop()
    shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture(params=["redis", "rabbitmq"])
def deployment(request, postgres, redis_server, tmp_path):
    """One isolated deployment: its own schema, queues and result backend, a fast reconciler
    (tick 0.5 s, outbox grace 2 s, lease 4 s) and Redis's unacked-restore sweep made quick."""
    schema = f"f_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    database_url = f"{postgres.url}?options=-csearch_path%3D{schema}"
    from orchestrator.store import Database

    db = Database(database_url)
    db.upgrade()
    broker = f"{redis_server.url}/0" if request.param == "redis" else AMQP_URL
    faults = tmp_path / "faults"
    faults.mkdir()
    env = {
        "ORCHESTRATOR_BROKER_URL": broker,
        "ORCHESTRATOR_RESULT_BACKEND": f"{redis_server.url}/1",
        "ORCHESTRATOR_DATABASE_URL": database_url,
        "ORCHESTRATOR_DEFAULT_QUEUE": f"{schema}.actions",
        "ORCHESTRATOR_SUPERVISOR_QUEUE": f"{schema}.supervisor",
        "ORCHESTRATOR_ACTIONS": "tests.runtime.actions",
        "ORCHESTRATOR_WORKFLOWS": str(Path(__file__).parent / "workflows"),
        "ORCHESTRATOR_TICK_INTERVAL": "0.5",
        "ORCHESTRATOR_OUTBOX_GRACE": "2",
        "ORCHESTRATOR_LEASE": "4",
        "ORCHESTRATOR_VISIBILITY_TIMEOUT": "5",
        "ORCHESTRATOR_BROKER_OPTIONS": '{"unacked_restore_interval": 1, "unacked_restore_throttle": 1}'
        if request.param == "redis" else "{}",
        "ORCHESTRATOR_FAULT_DIR": str(faults),
        "ORCHESTRATOR_TEST_REDIS_URL": redis_server.url,
        "PYTHONPATH": str(ROOT),
    }
    deployment = Deployment(request.param, env, db, tmp_path, redis_server, postgres)
    yield deployment
    deployment.stop_workers()
    db.dispose()


class Deployment:
    def __init__(self, broker: str, env: dict[str, str], db, folder: Path, redis_server, postgres):
        self.broker = broker
        self.env = env
        self.db = db
        self.folder = folder
        self.redis = redis_server
        self.postgres = postgres
        self.workers: list[WorkerProcess] = []
        self._restarting = threading.Event()
        self._watchdog = threading.Thread(target=self._restart_policy, daemon=True)
        self._watchdog.start()

    def worker(self, concurrency: int = 2) -> WorkerProcess:
        name = f"w{len(self.workers)}"
        process = WorkerProcess(self.env, self.folder / f"{name}.log", concurrency=concurrency, name=name)
        self.workers.append(process)
        return process.wait_ready(60)

    def _restart_policy(self) -> None:
        """What docker-compose's `restart: unless-stopped` does: a worker process that exits (or
        is killed) is replaced. Celery's Redis transport exits on some reconnect errors."""
        while not self._restarting.wait(0.5):
            live = [w for w in self.workers if w.proc.poll() is None]
            if self.workers and not live:
                try:
                    self.worker()
                except Exception:
                    pass

    def stop_workers(self) -> None:
        self._restarting.set()
        for process in self.workers:
            process.stop()

    def arm(self, point: str) -> None:
        (Path(self.env["ORCHESTRATOR_FAULT_DIR"]) / point).touch()

    def armed(self, point: str) -> bool:
        return (Path(self.env["ORCHESTRATOR_FAULT_DIR"]) / point).exists()

    def start(self, workflow: str, *params: str) -> str:
        result = subprocess.run([sys.executable, "-m", "orchestrator", "start", workflow, *params],
                                env={**os.environ, **self.env}, capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def summary(self, run_id: str) -> dict:
        from orchestrator.store import RunStore

        with self.db.reading() as conn:
            return RunStore().summary(conn, run_id)

    def wait(self, run_ids: list[str], timeout: float = 120) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                summaries = [self.summary(r) for r in run_ids]
            except Exception:  # the database may be restarting
                summaries = []
            if summaries and all(s and s["status"] in ("succeeded", "failed", "canceled") for s in summaries):
                return summaries
            if time.monotonic() > deadline:
                logs = "\n".join(w.text()[-3000:] for w in self.workers)
                raise AssertionError(f"runs not finished after {timeout} s: "
                                     f"{[(s or {}).get('status') for s in summaries]}\n"
                                     f"{self.debug(run_ids)}\n{logs}")
            time.sleep(0.25)

    def debug(self, run_ids: list[str]) -> str:
        """The durable state of unfinished runs, for a failure message."""
        from sqlalchemy import text

        lines = []
        with self.db.reading() as conn:
            for run_id in run_ids:
                state = conn.execute(text("SELECT status, state FROM workflow_runs WHERE id = :id"), {"id": run_id}).first()
                timers = conn.execute(text("SELECT key, due_at FROM timers WHERE run_id = :id"), {"id": run_id}).all()
                outbox = conn.execute(text("SELECT count(*) FROM outbox WHERE run_id = :id"), {"id": run_id}).scalar()
                lines.append(f"{run_id}: {state} timers={timers} outbox={outbox}")
        return "\n".join(lines)

    def rows(self, table: str) -> int:
        from sqlalchemy import text

        with self.db.reading() as conn:
            return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def pool_children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
