"""Shared plumbing for the benchmarks: servers, an isolated deployment, a worker subprocess.

A benchmark typically does::

    with harness.bench_schema() as url:         # fresh migrated schema in orchestrator_bench
        env = harness.deployment_env("sequential", url)
        harness.apply_env(env)                  # before importing orchestrator / workers
        with harness.running_worker(env, log_path):
            ...                                 # import orchestrator here, measure, print

Nothing in this module imports ``orchestrator`` or ``workers`` at import time: their settings are
read when they are first imported, so the environment has to be in place first.

Defaults (override with environment variables):

- Redis: ``ORCHESTRATOR_BENCH_REDIS_URL`` (``redis://127.0.0.1:6379``), database ``BROKER_DB`` (2),
  away from the tests' database 1; the plain Celery side (plain.py) uses database ``PLAIN_DB`` (3).
- PostgreSQL: ``ORCHESTRATOR_BENCH_DATABASE_URL``
  (``postgresql+psycopg://postgres@127.0.0.1:5432/orchestrator_bench``), created when missing.
  Each benchmark run works in a fresh schema of that database, dropped at the end, so every run
  starts from empty tables.
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("ORCHESTRATOR_BENCH_REDIS_URL", "redis://127.0.0.1:6379")
BROKER_DB = 2
BROKER_URL = f"{REDIS_URL}/{BROKER_DB}"
PLAIN_DB = 3
PLAIN_BROKER_URL = f"{REDIS_URL}/{PLAIN_DB}"
DATABASE_URL = os.environ.get("ORCHESTRATOR_BENCH_DATABASE_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/orchestrator_bench")

# kombu's Redis transport: priority queues are stored under "<queue><SEP><priority>", and the
# same separator joins the fields of a binding.
_KOMBU_PRIORITY_SEP = "\x06\x16"
_KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)


# --------------------------------------------------------------------------- environment

def deployment_env(tag: str, database_url: str, broker_url: str = BROKER_URL,
                   extra: dict[str, str] | None = None) -> dict[str, str]:
    """ORCHESTRATOR_* settings for one isolated deployment: unique action and supervisor queues on
    `broker_url`, state in `database_url`. `tag` only makes the queue names readable."""
    unique = f"bench.{tag}.{uuid.uuid4().hex[:8]}"
    env = {
        "ORCHESTRATOR_BROKER_URL": broker_url,
        "ORCHESTRATOR_DATABASE_URL": database_url,
        "ORCHESTRATOR_DEFAULT_QUEUE": f"{unique}.actions",
        "ORCHESTRATOR_SUPERVISOR_QUEUE": f"{unique}.supervisor",
        "PYTHONPATH": str(ROOT),
    }
    env.update(extra or {})
    return env


def queues_of(env: dict[str, str]) -> list[str]:
    """The deployment's queue names (action queue first, then the supervisor queue)."""
    return [env["ORCHESTRATOR_DEFAULT_QUEUE"], env["ORCHESTRATOR_SUPERVISOR_QUEUE"]]


def _isolated(base: dict[str, str], env: dict[str, str]) -> dict[str, str]:
    """`base` without any ORCHESTRATOR_* setting of its own (they would leak in), plus `env`."""
    clean = {k: v for k, v in base.items()
             if not k.startswith("ORCHESTRATOR_") or k.startswith("ORCHESTRATOR_BENCH_")}
    return {**clean, **env}


def apply_env(env: dict[str, str]) -> None:
    """Make `env` this process's deployment. Call it before importing orchestrator or workers.

    If they were already imported (a previous benchmark in the same process), their cached
    settings and wiring are rebuilt, as the runtime tests do; the broker URL must then stay the
    same, since the Celery app's connection pool is not rebuilt.
    """
    for key in [k for k in os.environ if k.startswith("ORCHESTRATOR_") and not k.startswith("ORCHESTRATOR_BENCH_")]:
        del os.environ[key]
    os.environ.update(env)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if "workers.app" in sys.modules:
        from orchestrator import runtime
        from orchestrator.config import settings
        from workers.app import app, configure

        settings.cache_clear()
        configure(app, settings())
        runtime.supervisor.cache_clear()
        runtime._imported_actions.cache_clear()


# --------------------------------------------------------------------------- PostgreSQL

def _libpq(url: str, dbname: str | None = None) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    parts = [f"host={parsed.host or '127.0.0.1'}", f"port={parsed.port or 5432}",
             f"user={parsed.username or 'postgres'}", f"dbname={dbname or parsed.database}"]
    if parsed.password:
        parts.append(f"password={parsed.password}")
    return " ".join(parts)


def ensure_database(url: str = DATABASE_URL) -> None:
    """Create the PostgreSQL database `url` names, if it does not exist yet."""
    import psycopg
    from psycopg import errors
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    with psycopg.connect(_libpq(url, "postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        try:
            conn.execute(f'CREATE DATABASE "{name}"')
        except errors.DuplicateDatabase:  # created concurrently by another run
            pass


def migrate(url: str) -> None:
    """Bring the orchestrator schema at `url` up to date (alembic upgrade head)."""
    from orchestrator.store import Database

    db = Database(url)
    try:
        db.upgrade()
    finally:
        db.engine.dispose()


@contextmanager
def bench_schema(url: str = DATABASE_URL) -> Iterator[str]:
    """A fresh, migrated schema in the benchmark database (created if missing); yields the URL
    that selects it (search_path) and drops the schema afterwards."""
    ensure_database(url)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    import psycopg

    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in url else "?"
    scoped = f"{url}{separator}options=-csearch_path%3D{schema}"
    try:
        migrate(scoped)
        yield scoped
    finally:
        if "orchestrator.store.database" in sys.modules:  # this process's pooled connections
            from orchestrator.store.database import database

            database(scoped).dispose()
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


# --------------------------------------------------------------------------- Redis

def purge_queues(broker_url: str, queues: Iterable[str]) -> None:
    """Delete the Redis keys kombu keeps for `queues`: waiting messages, exchange bindings and
    delivered-but-unacknowledged messages (left by a worker stopped mid-task; kombu would
    otherwise restore them into the abandoned queue after the visibility timeout)."""
    import json

    import redis

    queues = list(queues)
    client = redis.Redis.from_url(broker_url)
    try:
        keys = [q for q in queues]
        keys += [f"{q}{_KOMBU_PRIORITY_SEP}{p}" for q in queues for p in _KOMBU_PRIORITY_STEPS]
        client.delete(*keys)
        # Binding sets "<prefix><exchange>" hold "routing_key SEP pattern SEP queue" members.
        for prefix in ("_kombu.binding.", "_kombu.binding_permanent."):
            for binding in client.scan_iter(match=f"{prefix}*"):
                if client.type(binding) != b"set":
                    continue
                stale = [m for m in client.smembers(binding)
                         if m.decode(errors="replace").split(_KOMBU_PRIORITY_SEP)[-1] in queues]
                if stale:
                    client.srem(binding, *stale)
        # "unacked" maps delivery tag -> JSON [message, exchange, routing_key]; "unacked_index"
        # orders the tags by delivery time.
        for tag, value in client.hscan_iter("unacked"):
            try:
                routing_key = json.loads(value)[-1]
            except (ValueError, IndexError, TypeError):
                continue
            if routing_key in queues:
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
    finally:
        client.close()


# --------------------------------------------------------------------------- worker subprocess

@dataclass
class WorkerProcess:
    """An `orchestrator worker` subprocess in its own session (so a Ctrl-C in the terminal reaches
    only the benchmark, which then stops the worker in order)."""

    env: dict[str, str]
    log: Path
    nodename: str
    proc: subprocess.Popen = field(repr=False)
    broker: str = ""

    @property
    def broker_url(self) -> str:
        return self.broker or self.env["ORCHESTRATOR_BROKER_URL"]

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def wait_ready(self, timeout: float = 60) -> WorkerProcess:
        """Block until the worker answers a ping (its consumer is up); raise if it exits or
        stays silent for `timeout` seconds."""
        from celery import Celery

        probe = Celery("bench-probe", broker=self.broker_url, set_as_current=False)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"worker exited with code {self.proc.returncode}:\n{self.log_tail()}")
                if probe.control.ping(destination=[self.nodename], timeout=0.5):
                    return self
                time.sleep(0.1)
        finally:
            probe.close()
        raise RuntimeError(f"worker {self.nodename} not ready after {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15) -> None:
        """Warm shutdown (SIGTERM); after `timeout` s, or on a second Ctrl-C, SIGKILL the worker's
        process group (its pool children included)."""
        if self.proc.poll() is not None:
            return
        try:
            self.proc.terminate()
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"worker {self.nodename} still running {timeout} s after SIGTERM; killing it", file=sys.stderr)
            self.kill()
        except KeyboardInterrupt:
            self.kill()

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group this worker leads (start_new_session)
        except ProcessLookupError:
            pass
        self.proc.wait(10)


def start_worker(env: dict[str, str], log: Path, *, concurrency: int = 2, pool: str = "prefork",
                 loglevel: str = "warning", name: str = "worker",
                 extra_args: Sequence[str] = (), python_args: Sequence[str] = ()) -> WorkerProcess:
    """Start `python -m orchestrator worker` consuming the deployment's two queues, configured by
    `env` only (the caller's ORCHESTRATOR_* variables are not inherited). `python_args` go
    before `-m orchestrator` (e.g. `-m cProfile -o FILE`). Returns at once; call `wait_ready()`
    before sending work."""
    nodename = f"{name}.{env['ORCHESTRATOR_DEFAULT_QUEUE']}@{socket.gethostname()}"
    args = [sys.executable, *python_args, "-m", "orchestrator", "worker", "-P", pool, "-c", str(concurrency),
            "-n", nodename, "--without-mingle", "--without-gossip", "-l", loglevel,
            "--logfile", str(log), "-Q", ",".join(queues_of(env)), *extra_args]
    return _spawn(args, env, log, nodename)


def start_plain_worker(env: dict[str, str], log: Path, *, concurrency: int = 2,
                       loglevel: str = "warning") -> WorkerProcess:
    """Start `celery -A benchmarks.plain worker` on Celery's defaults (prefork, early ack,
    prefetch 4, mingle and gossip on) but for the concurrency, consuming the plain queue of
    `env` (plain_env)."""
    nodename = f"plain.{env[PLAIN_QUEUE_ENV]}@{socket.gethostname()}"
    args = [sys.executable, "-m", "celery", "-A", "benchmarks.plain", "worker", "-c", str(concurrency),
            "-n", nodename, "-l", loglevel, "--logfile", str(log), "-Q", env[PLAIN_QUEUE_ENV]]
    return _spawn(args, env, log, nodename, broker_url=env[PLAIN_BROKER_ENV])


def _spawn(args: list[str], env: dict[str, str], log: Path, nodename: str,
           broker_url: str | None = None) -> WorkerProcess:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.with_suffix(".stderr").open("wb") as stderr:  # the child keeps its own descriptor
        proc = subprocess.Popen(args, env=_isolated(dict(os.environ), env), cwd=ROOT,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                start_new_session=True)
    return WorkerProcess(env=env, log=log, nodename=nodename, proc=proc,
                         broker=broker_url or env["ORCHESTRATOR_BROKER_URL"])


@contextmanager
def running_worker(env: dict[str, str], log: Path, *, ready_timeout: float = 60,
                   purge: bool = True, **options) -> Iterator[WorkerProcess]:
    """A ready worker for the duration of the block (see `start_worker` for `options`); stopped
    afterwards even on errors or Ctrl-C, and its queues purged from the broker when `purge`."""
    worker = start_worker(env, log, **options)
    try:
        yield worker.wait_ready(ready_timeout)
    finally:
        worker.stop()
        if purge:
            purge_queues(worker.broker_url, queues_of(env))


@contextmanager
def running_plain_worker(env: dict[str, str], log: Path, *, ready_timeout: float = 60,
                         **options) -> Iterator[WorkerProcess]:
    """A ready plain Celery worker (start_plain_worker) for the block; stopped afterwards and its
    queue purged."""
    worker = start_plain_worker(env, log, **options)
    try:
        yield worker.wait_ready(ready_timeout)
    finally:
        worker.stop()
        purge_queues(worker.broker_url, [env[PLAIN_QUEUE_ENV]])


# --------------------------------------------------------------------------- the plain side

PLAIN_BROKER_ENV = "BENCH_PLAIN_BROKER_URL"  # as benchmarks.plain reads them
PLAIN_QUEUE_ENV = "BENCH_PLAIN_QUEUE"


def plain_env(tag: str, broker_url: str = PLAIN_BROKER_URL) -> dict[str, str]:
    """Settings of one plain Celery deployment (benchmarks/plain.py): its own Redis database and
    a queue unique to this run."""
    return {PLAIN_BROKER_ENV: broker_url, PLAIN_QUEUE_ENV: f"bench.plain.{tag}.{uuid.uuid4().hex[:8]}",
            "PYTHONPATH": str(ROOT)}


def plain_app(env: dict[str, str]):
    """This process's client of the plain deployment `env`."""
    from . import plain

    return plain.configure(env[PLAIN_BROKER_ENV], env[PLAIN_QUEUE_ENV])


@contextmanager
def both_workers(tag: str, env: dict[str, str], tmp: Path, *, concurrency: int = 2,
                 plain: bool = True) -> Iterator[tuple[WorkerProcess, WorkerProcess | None, object]]:
    """The orchestrator's worker for `env` and, when `plain`, a plain Celery worker of its own;
    yields (worker, plain worker or None, plain app or None) and prints what runs."""
    with running_worker(env, tmp / "worker.log", concurrency=concurrency, pool="prefork") as worker:
        print(f"  worker      orchestrator worker, prefork -c {concurrency}, acks late, prefetch 1, "
              f"queues {', '.join(queues_of(env))}", flush=True)
        if not plain:
            yield worker, None, None
            return
        penv = plain_env(tag)
        with running_plain_worker(penv, tmp / "plain.log", concurrency=concurrency) as plain_worker:
            print(f"  plain       celery worker on Celery's defaults, prefork -c {concurrency}, early ack, "
                  f"prefetch 4, results on, queue {penv[PLAIN_QUEUE_ENV]} (redis db {PLAIN_DB})", flush=True)
            yield worker, plain_worker, plain_app(penv)


# --------------------------------------------------------------------------- signals

def interrupt_on_termination() -> None:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt, so `finally` blocks stop workers and drop
    schemas. (A process started in the background by a non-interactive shell inherits an ignored
    SIGINT; a bare SIGTERM would skip the clean-up.) Call it from the main thread."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


# --------------------------------------------------------------------------- reporting

def machine_facts(broker_url: str = BROKER_URL, database_url: str = DATABASE_URL) -> dict[str, str]:
    """The facts that make figures comparable: cores, Python, Celery, server versions."""
    import celery
    import kombu

    cores = str(os.cpu_count())
    if hasattr(os, "sched_getaffinity"):
        cores += f" ({len(os.sched_getaffinity(0))} usable)"
    facts = {
        "cores": cores,
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "celery": f"{celery.__version__} (kombu {kombu.__version__})",
        "platform": platform.platform(),
        "code": code_version(),
    }
    import psycopg
    import redis

    try:  # facts are informative: an unreachable server shows up later, with a real error
        client = redis.Redis.from_url(broker_url)
        facts["redis"] = str(client.info("server").get("redis_version"))
        client.close()
    except redis.RedisError as exc:
        facts["redis"] = f"unknown ({type(exc).__name__})"
    try:
        with psycopg.connect(_libpq(database_url, "postgres")) as conn:
            facts["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    except psycopg.Error as exc:
        facts["postgresql"] = f"unknown ({type(exc).__name__})"
    return facts


def code_version() -> str:
    """The commit measured, and whether the code under measurement had uncommitted changes
    (figures from a dirty tree are not reproducible from the commit alone)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD") or "unknown"
        dirty = git("status", "--porcelain", "--", "orchestrator", "workers", "migrations")
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    return f"{commit} + uncommitted changes in orchestrator/workers" if dirty else commit


def print_facts(facts: dict[str, str]) -> None:
    width = max(map(len, facts))
    for key, value in facts.items():
        print(f"  {key:<{width}}  {value}")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratio_lines(times: dict[str, Sequence[float]], subject: str, baselines: Sequence[str],
                targets: dict[str, float] | None = None, higher_is_better: bool = False) -> str:
    """One line per baseline present in `times`: median(subject) / median(baseline), and the
    median of the per-round ratios (each round's sides ran back to back, so this one is the
    steadier when the machine's speed drifts). With `higher_is_better` (rates), the ratio is
    subject / baseline all the same and the target is a floor instead of a ceiling."""
    lines = []
    for base in baselines:
        if base not in times or not times[base]:
            continue
        overall = median(times[subject]) / median(times[base])
        rounds = median([s / b for s, b in zip(times[subject], times[base])])
        target = (targets or {}).get(base)
        goal = "" if target is None else f" (target {'>=' if higher_is_better else '<='} {target:.2f})"
        lines.append(f"ratio {subject} / {base}: {overall:.2f} medians, {rounds:.2f} median of rounds{goal}")
    return "\n".join(lines)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells[1:]]
    return "\n".join(out)
