"""Scale by simulation: many worker processes on one machine, thousands of runs in flight, and
what PostgreSQL sees meanwhile.

W `orchestrator worker` processes (as W hosts would run, --workers 4 by default) of C prefork
processes each (--concurrency 2: 8 processes on the 2 cores), all on the same queues, with state
in a database of their own (``<benchmark database>_scale``, recreated each time). --runs
workflows (2,000) of --steps sequential no-op steps (10) are started at once with
``orchestrator.start_workflow.delay()`` (as producers on other hosts would), then the benchmark
waits for their ends (LISTEN on the run-finished channel) while a sampler reads, every
--interval seconds, from PostgreSQL's statistics views:

- transactions committed and rolled back in the database (pg_stat_database deltas),
- connections to it by state, and how many wait on a lock (pg_stat_activity),
- runs not yet finished (the status index).

It prints supervisor steps/s (task executions finished per second: each is one supervisor
step, by the database clock) and PostgreSQL transactions/s over the whole span and over its
middle half (all runs started, most in flight), connections held (median and peak, and per
worker process), lock waits, and the transactions a step costs. Nothing is asserted.

    python -m benchmarks scale [--workers 4] [--concurrency 2] [--runs 2000] [--steps 10]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from . import harness
from .flat import database_url, drop, recreate
from .sequential import workflow_yaml
from .throughput import Finished, check_runs

NAME = "scale"


@dataclass
class Sample:
    at: float             # monotonic seconds
    commits: int          # pg_stat_database.xact_commit of the database
    rollbacks: int
    connections: int      # backends connected to the database (the sampler's own excluded)
    active: int           # ... running a statement
    idle_in_transaction: int
    lock_waits: int       # ... waiting for a lock
    in_flight: int        # runs not finished


class Sampler:
    """Reads PostgreSQL's view of the database every `interval` seconds in a thread of its own."""

    def __init__(self, url: str, interval: float):
        import psycopg

        self.conn = psycopg.connect(harness._libpq(url), autocommit=True)
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def sample(self) -> Sample:
        with self.conn.transaction():  # one commit per sample, taken off the rates (rate())
            return self._sample()

    def _sample(self) -> Sample:
        self.conn.execute("SELECT pg_stat_clear_snapshot()")
        commits, rollbacks = self.conn.execute(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()").fetchone()
        connections, active, idle_tx, waits = self.conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE state = 'active'), "
            "count(*) FILTER (WHERE state LIKE 'idle in transaction%'), "
            "count(*) FILTER (WHERE wait_event_type = 'Lock') FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchone()
        in_flight = self.conn.execute(
            "SELECT count(*) FROM workflow_runs WHERE status IN ('requested', 'running', 'pausing', 'paused', "
            "'canceling')").fetchone()[0]
        return Sample(time.monotonic(), commits, rollbacks, connections, active, idle_tx, waits, in_flight)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(self.sample())

    def start(self) -> "Sampler":
        self.samples.append(self.sample())
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.samples.append(self.sample())
        self.conn.close()


def steps_between(url: str, first: float, last: float, began_wall: float, began_mono: float) -> int:
    """Task executions that finished between two monotonic instants (mapped to the database
    clock through the wall clock at the start: same machine)."""
    import psycopg

    with psycopg.connect(harness._libpq(url)) as conn:
        return conn.execute(
            "SELECT count(*) FROM task_executions WHERE finished_at >= to_timestamp(%s) "
            "AND finished_at < to_timestamp(%s)",
            (began_wall + first - began_mono, began_wall + last - began_mono)).fetchone()[0]


def rate(samples: list[Sample], first: float, last: float) -> tuple[float, float]:
    """(commits/s, rollbacks/s) between the samples nearest to `first` and `last`, without the
    sampler's own transactions (one per sample)."""
    a = min(samples, key=lambda s: abs(s.at - first))
    b = min(samples, key=lambda s: abs(s.at - last))
    span = max(b.at - a.at, 1e-9)
    own = sum(1 for s in samples if a.at < s.at <= b.at)
    return (b.commits - a.commits - own) / span, (b.rollbacks - a.rollbacks) / span


def report(args: argparse.Namespace, samples: list[Sample], url: str, began_wall: float, began_mono: float,
           done: float, span_db: float) -> None:
    total = args.runs * args.steps
    wall = done - began_mono
    mid_first, mid_last = began_mono + wall / 4, began_mono + 3 * wall / 4
    mid_steps = steps_between(url, mid_first, mid_last, began_wall, began_mono)
    commits, rollbacks = rate(samples, began_mono, done)
    mid_commits, mid_rollbacks = rate(samples, mid_first, mid_last)
    during = [s for s in samples if began_mono <= s.at <= done] or samples
    connections = sorted(s.connections for s in during)
    processes = args.workers * (args.concurrency + 1)
    rows = [
        ["supervisor steps/s", f"{total / wall:.0f}", f"{mid_steps / (mid_last - mid_first):.0f}"],
        ["PostgreSQL commits/s", f"{commits:.0f}", f"{mid_commits:.0f}"],
        ["PostgreSQL rollbacks/s (reads end so)", f"{rollbacks:.1f}", f"{mid_rollbacks:.1f}"],
        ["commits per step (all commits / steps)", f"{commits * wall / total:.2f}",
         f"{mid_commits * (mid_last - mid_first) / max(mid_steps, 1):.2f}"],
    ]
    print()
    print(f"{args.runs} runs of {args.steps} no-op steps ({total} steps) started at once on {args.workers} workers "
          f"x {args.concurrency} processes: {wall:.1f} s to the last end ({span_db:.1f} s by the database clock)")
    print(harness.format_table(["", "whole span", "middle half"], rows))
    print(f"runs in flight: peak {max(s.in_flight for s in samples)}")
    print(f"connections to the database: median {harness.median(connections):.0f}, peak {connections[-1]} "
          f"({connections[-1] / processes:.1f} per worker process, {processes} processes: {args.workers} main + "
          f"{args.workers * args.concurrency} pool), active at once: peak {max(s.active for s in during)}, "
          f"idle in transaction: peak {max(s.idle_in_transaction for s in during)}")
    print(f"backends waiting on a lock: peak {max(s.lock_waits for s in during)}, "
          f"mean {sum(s.lock_waits for s in during) / len(during):.2f} (samples every {args.interval} s)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks scale", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=4, help="worker processes, as hosts (default 4)")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork processes per worker (default 2)")
    parser.add_argument("--runs", type=int, default=2000, help="workflows started at once (default 2000)")
    parser.add_argument("--steps", type=int, default=10, help="sequential no-op steps in each (default 10)")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between samples (default 0.25)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the runs (default 1800)")
    parser.add_argument("--rounds", type=int, default=1, help="accepted for `python -m benchmarks --rounds`")
    args = parser.parse_args(argv)
    if min(args.workers, args.concurrency, args.runs, args.steps) < 1 or args.interval <= 0:
        parser.error("--workers, --concurrency, --runs and --steps must be at least 1, --interval positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"== {NAME}: {args.runs} runs in flight on {args.workers} workers x {args.concurrency} processes ==")
    harness.print_facts(harness.machine_facts())
    url = database_url("scale")
    recreate(url)
    try:
        harness.migrate(url)
        env = harness.deployment_env(NAME, url)
        harness.apply_env(env)
        from orchestrator.tasks import start_workflow

        text = workflow_yaml(args.steps)
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, ExitStack() as stack:
            workers = [harness.start_worker(env, Path(tmp) / f"worker{i}.log", concurrency=args.concurrency,
                                            name=f"w{i}") for i in range(args.workers)]
            for worker in workers:
                stack.callback(worker.stop)
            stack.callback(harness.purge_queues, env["ORCHESTRATOR_BROKER_URL"], harness.queues_of(env))
            for worker in workers:
                worker.wait_ready()
            print(f"  workers     {args.workers} x `orchestrator worker -P prefork -c {args.concurrency}`, "
                  f"queues {', '.join(harness.queues_of(env))}", flush=True)
            warm = [start_workflow.delay(text).id for _ in range(args.workers * args.concurrency)]
            finished = Finished(url)
            stack.callback(finished.close)
            finished.wait(warm, args.timeout)
            sampler = Sampler(url, args.interval).start()
            began_wall, began_mono = time.time(), time.monotonic()
            run_ids = [start_workflow.delay(text).id for _ in range(args.runs)]
            try:
                finished.wait(run_ids, args.timeout)
            except TimeoutError:
                print("\nworker logs (tails):\n" + "\n".join(w.log_tail(1500) for w in workers), flush=True)
                raise
            done = time.monotonic()
            sampler.stop()
            span_db = check_runs(run_ids, args.steps)
        report(args, sampler.samples, url, began_wall, began_mono, done, span_db)
    finally:
        from orchestrator.store.database import database

        database(url).dispose()
        drop(url)
    return 0


if __name__ == "__main__":
    harness.interrupt_on_termination()
    raise SystemExit(main())
