"""The fault-injection suite's fixtures and deployments: its own Redis and PostgreSQL (servers.py,
never the shared ones), RabbitMQ as the alternative broker, and worker processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.runtime.conftest import WorkerProcess

from .servers import PostgresServer, RedisServer, wait_for

ROOT = Path(__file__).resolve().parents[2]
AMQP_URL = os.environ.get("ORCHESTRATOR_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


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


# Deployments with the DEFAULT settings users get (test_liveness.py) --------------------------

class Worker:
    """`orchestrator worker` (prefork) in a process group of its own, so that killing the group
    kills the main process and its pool at once, as when a host dies."""

    def __init__(self, env: dict[str, str], log: Path, name: str, concurrency: int = 2):
        self.log = log
        self.name = name
        args = [sys.executable, "-m", "orchestrator", "worker", "-P", "prefork", "-c", str(concurrency),
                "-n", f"{name}.{env['ORCHESTRATOR_DEFAULT_QUEUE']}@%h", "--without-mingle", "--without-gossip",
                "-l", "info", "--logfile", str(log)]
        self.proc = subprocess.Popen(args, env={**os.environ, **env}, cwd=ROOT, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready(self, timeout: float = 90) -> "Worker":
        wait_for(lambda: self.proc.poll() is None and self.log.exists() and " ready." in self.log.read_text(),
                 timeout, f"worker {self.name}")
        return self

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill_host(self) -> None:
        """SIGKILL the whole process group (main process and pool), never restarted."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill_host()


class Cluster:
    """One deployment with default settings: PostgreSQL schema, its own Redis (the broker, or the
    result backend with RabbitMQ as broker), two workers, an effects file every test action
    appends its call id to when it finishes."""

    def __init__(self, broker: str, postgres: "PostgresServer", folder: Path):
        self.broker = broker
        self.folder = folder
        self.redis = RedisServer(folder).start()
        schema = f"l_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres",
                             autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {schema}")
        database_url = f"{postgres.url}?options=-csearch_path%3D{schema}"
        from orchestrator.store import Database

        self.db = Database(database_url)
        self.db.upgrade()
        self.effects = folder / "effects.log"  # and effects.log.waiting: calls waiting at a gate
        self.env = {
            "ORCHESTRATOR_BROKER_URL": f"{self.redis.url}/0" if broker == "redis" else AMQP_URL,
            "ORCHESTRATOR_RESULT_BACKEND": f"{self.redis.url}/1",
            "ORCHESTRATOR_DATABASE_URL": database_url,
            "ORCHESTRATOR_DEFAULT_QUEUE": f"{schema}.actions",
            "ORCHESTRATOR_SUPERVISOR_QUEUE": f"{schema}.supervisor",
            "ORCHESTRATOR_ACTIONS": "tests.runtime.actions",
            "ORCHESTRATOR_WORKFLOWS": str(Path(__file__).parent / "workflows"),
            "ORCHESTRATOR_TEST_EFFECTS": str(self.effects),
            "PYTHONPATH": str(ROOT),
        }
        self.workers: list[Worker] = []
        self.notes: dict[str, object] = {}

    # Workers --------------------------------------------------------------------------------

    def add_workers(self, count: int) -> list[Worker]:
        new = [Worker(self.env, self.folder / f"w{len(self.workers) + i}.log", f"w{len(self.workers) + i}")
               for i in range(count)]
        self.workers.extend(new)
        for worker in new:
            worker.ready()
        return new

    def live_workers(self) -> list[Worker]:
        return [w for w in self.workers if w.alive()]

    def keep_workers(self, count: int) -> None:
        """What a restart policy does (Celery's Redis transport can exit after a broker restart,
        celery/celery#10205): start workers until `count` run."""
        missing = count - len(self.live_workers())
        if missing > 0:
            self.add_workers(missing)

    def stop(self) -> None:
        http = self.notes.get("http")
        if http is not None:
            http[0].terminate()
            http[0].wait(15)
        for worker in self.workers:
            worker.stop()
        self.redis.stop()
        self.db.dispose()

    # Starting runs ----------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "orchestrator", *args], env={**os.environ, **self.env},
                              capture_output=True, text=True, cwd=ROOT, timeout=timeout)

    def python(self, code: str, timeout: float = 120) -> str:
        result = subprocess.run([sys.executable, "-c", code], env={**os.environ, **self.env},
                                capture_output=True, text=True, cwd=ROOT, timeout=timeout)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout.strip().splitlines()[-1]

    def start(self, workflow: str, *params: str) -> str:
        result = self.cli("start", workflow, *params)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout.strip()

    # Reading ----------------------------------------------------------------------------------

    def summary(self, run_id: str) -> dict:
        from orchestrator.store import RunStore

        with self.db.reading() as conn:
            return RunStore().summary(conn, run_id)

    def finished_at(self, run_id: str) -> float:
        from sqlalchemy import text

        with self.db.reading() as conn:
            value = conn.execute(text("SELECT finished_at FROM workflow_runs WHERE id = :id"), {"id": run_id}).scalar()
        return value.timestamp()

    def wait(self, run_ids: list[str], timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                summaries = [self.summary(r) for r in run_ids]
            except Exception:  # the database may be restarting
                summaries = []
            if summaries and all(s and s["status"] in ("succeeded", "failed", "canceled") for s in summaries):
                return summaries
            if time.monotonic() > deadline:
                raise AssertionError(f"[{self.broker}] runs not finished after {timeout:.0f} s: "
                                     f"{[(r, (s or {}).get('status')) for r, s in zip(run_ids, summaries)]}\n"
                                     f"{self.debug(run_ids)}\n" + self.logs())
            time.sleep(0.25)

    def logs(self, tail: int = 4000) -> str:
        return "\n".join(f"--- {w.name} ---\n" + w.text()[-tail:] for w in self.workers)

    def debug(self, run_ids: list[str]) -> str:
        from sqlalchemy import text

        lines = []
        with self.db.reading() as conn:
            for run_id in run_ids:
                row = conn.execute(text("SELECT status, state FROM workflow_runs WHERE id = :id"), {"id": run_id}).first()
                timers = conn.execute(text("SELECT key, due_at FROM timers WHERE run_id = :id"), {"id": run_id}).all()
                lines.append(f"{run_id}: {row} timers={timers}")
            lines.append(f"workers: {conn.execute(text('SELECT id, heartbeat_at, calls FROM workers')).all()}")
            lines.append(f"housekeeping: {conn.execute(text('SELECT duty, value FROM housekeeping')).all()}")
        return "\n".join(lines)

    def rows(self, sql: str, **params) -> list:
        from sqlalchemy import text

        with self.db.reading() as conn:
            return conn.execute(text(sql), params).all()

    def effect_counts(self) -> dict[str, int]:
        """How many times each call finished (its call id -> lines in the effects file)."""
        counts: dict[str, int] = {}
        if self.effects.exists():
            for line in self.effects.read_text().splitlines():
                if line:
                    counts[line] = counts.get(line, 0) + 1
        return counts

    def finished_calls(self, run_ids: list[str]) -> set[str]:
        """Call ids whose outcome the runs had recorded (the calls that must never run again)."""
        done = set()
        for run_id, seq, attempt in self.rows(
                "SELECT run_id, seq, attempt FROM task_executions WHERE run_id = ANY(:ids) AND items IS NULL "
                "AND finished_at IS NOT NULL AND task <> 'continue'", ids=run_ids):  # Orquesta's pseudo-task
            done.add(f"{run_id}-{seq}-{attempt}")
        for run_id, seq, idx, attempt in self.rows(
                "SELECT i.run_id, i.seq, i.idx, e.attempt FROM task_items i JOIN task_executions e ON "
                "e.run_id = i.run_id AND e.seq = i.seq WHERE i.run_id = ANY(:ids) AND i.status IS NOT NULL",
                ids=run_ids):
            done.add(f"{run_id}-{seq}-{attempt}-i{idx}")
        return done


@pytest.fixture(scope="module")
def clusters(postgres, tmp_path_factory):
    """Two deployments with default settings, up at once: Redis as broker, and RabbitMQ as broker
    (with Redis as result backend). Each test runs its scenario on both concurrently."""
    made: list[Cluster] = []
    try:
        for broker in ("redis", "rabbitmq"):
            made.append(Cluster(broker, postgres, tmp_path_factory.mktemp(f"live-{broker}")))
        workers = [w for c in made for w in (Worker(c.env, c.folder / "w0.log", "w0"),
                                             Worker(c.env, c.folder / "w1.log", "w1"))]
        for c, pair in zip(made, (workers[:2], workers[2:])):
            c.workers.extend(pair)
        for worker in workers:
            worker.ready()
        yield made
    finally:
        for c in made:
            c.stop()


def on_both(clusters: list[Cluster], scenario) -> None:
    """Run `scenario(cluster)` on every cluster at once; fail naming each broker that failed."""
    import traceback

    errors: dict[str, str] = {}

    def run(cluster: Cluster) -> None:
        try:
            scenario(cluster)
        except BaseException:  # reported below, per broker
            errors[cluster.broker] = traceback.format_exc()

    threads = [threading.Thread(target=run, args=(c,)) for c in clusters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        pytest.fail("\n".join(f"[{broker}]\n{text}" for broker, text in errors.items()), pytrace=False)
