"""Flat at a million runs: start, step, list, metrics and tick on a database holding 10^6 finished
runs against the same on a database holding 10^3 (or none).

Two PostgreSQL databases of their own, next to the benchmark database (``<name>_flat_small``,
recreated each time with --small finished runs, 1,000 by default, and ``<name>_flat_full``, kept
between runs because filling it takes minutes; refilled when its size or the schema's head
revision differ, dropped with ``--drop``). The small side holds some runs because a truly empty
database has no finished task executions for the metrics' duration histogram to read, which
flatters it (``--small 0`` measures against an empty one all the same).
The full one is filled in bulk by SQL (generate_series) with --runs finished runs spread over 30
days, each as a real 3-step run leaves it: the run row (its state and output copied from a run
made by the engine), 3 task executions, 8 lifecycle events, a variable, and for 2% of the runs
10 with_items rows; then VACUUM ANALYZE, as autovacuum would have left it.

Everything runs in this process against both databases, one Supervisor each (same settings, same
Redis), alternating the two sides operation by operation, round by round:

- start: ``Supervisor.start()`` of a 3-step workflow (the start transaction and the conductor);
- step: ``Supervisor.complete()`` of one call's envelope with the run snapshot its step sent, as
  the worker that ran the call does it (the conductor, the one-statement write conditional on the
  run row's version, commit; without a snapshot, fan-out calls: lock, read, conductor, write),
  the calls of the started runs taken one by one;
- list: ``RunStore.list_runs()`` of the newest 50 runs, without a status filter (the web view's
  poll) and with ``succeeded`` (the largest status);
- metrics: one ``/metrics`` scrape (``metrics_text``);
- tick: one interval of housekeeping's shared database sweeps (timers, left outbox rows, left
  fan-in outcomes), each with the claim of its slot, as the worker that wins the claim runs them.

What the supervisor would publish is recorded, not sent (publishing does not depend on the
database); each figure is a median of per-operation times. Target (issue 14): every operation
within 1.2x of the small database (printed, not asserted).

    python -m benchmarks flat [--runs 1000000] [--small 1000] [--rounds 5] [--per-round 20] [--detail] [--drop]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from typing import Any

from . import harness
from .sequential import workflow_yaml

NAME = "flat"
STEPS = 3
TARGET = 1.2
CHUNK = 100_000  # runs per fill statement
OPERATIONS = ("start", "step", "list", "list succeeded", "metrics", "tick")
SWEEPS = ("timers", "outbox", "outcomes")  # the shared database duties of housekeeping.py


# --------------------------------------------------------------------------- databases

def database_url(suffix: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(harness.DATABASE_URL)
    return url.set(database=f"{url.database}_{suffix}").render_as_string(hide_password=False)


def recreate(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    with psycopg.connect(harness._libpq(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    with psycopg.connect(harness._libpq(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    from orchestrator.store import Database

    return ScriptDirectory.from_config(Database("sqlite://").alembic_config()).get_current_head()


def filled_with(url: str) -> tuple[int, str] | None:
    """(runs, schema revision) a previous fill left in `url`, or None."""
    import psycopg

    try:
        with psycopg.connect(harness._libpq(url)) as conn:
            row = conn.execute("SELECT runs, revision FROM bench_fill").fetchone()
    except psycopg.Error:
        return None
    return None if row is None else (row[0], row[1])


# --------------------------------------------------------------------------- the fill

def template_run(sup, workflow) -> str:
    """A real finished run of `workflow`, made by the engine: its rows are what the fill copies."""
    from orchestrator.run_ids import new_run_id

    run_id = new_run_id()
    sup.start(workflow, {}, run_id)
    drive(sup, [run_id])
    return run_id


def fill(url: str, runs: int, sup, workflow) -> None:
    """Fill `url` (migrated, empty) with `runs` finished runs in bulk; minutes, not hours."""
    import psycopg

    template = template_run(sup, workflow)
    began = time.perf_counter()
    with psycopg.connect(harness._libpq(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_template AS SELECT * FROM workflow_runs WHERE id = %s", (template,))
        # No triggers in this session (foreign keys, run_counts): the rows are consistent by
        # construction, and each chunk adds its counts in one statement instead of a counter
        # update per run (the same counter row updated 10^5 times in one transaction is slow).
        conn.execute("SET session_replication_role = replica")
        for first in range(1, runs + 1, CHUNK):
            last = min(runs, first + CHUNK - 1)
            _fill_chunk(conn, first, last, runs)
            print(f"  filled {last:,} of {runs:,} runs ({time.perf_counter() - began:.0f} s)", flush=True)
        conn.execute("DROP TABLE bench_template")
        conn.execute("VACUUM ANALYZE")
        conn.execute("CREATE TABLE bench_fill (runs bigint, revision text, made_at timestamptz DEFAULT now())")
        conn.execute("INSERT INTO bench_fill (runs, revision) VALUES (%s, %s)", (runs, head_revision()))
    print(f"  fill done in {time.perf_counter() - began:.0f} s", flush=True)


def _fill_chunk(conn, first: int, last: int, total: int) -> None:
    """Runs first..last (numbered in creation order over the last 30 days), with their rows. Run
    ids are uuid-shaped and random, as the engine made them before run_ids.py (a database that
    grew on an earlier release): the runs started now go in between them."""
    span = {"first": first, "last": last, "total": total}
    conn.execute(
        "INSERT INTO workflow_runs (id, workflow, definition_id, status, params, output, error, state, "
        "created_at, started_at, finished_at, updated_at) "
        "SELECT md5('fill' || g)::uuid::text, t.workflow, t.definition_id, "
        "CASE WHEN g %% 100 < 90 THEN 'succeeded' WHEN g %% 100 < 97 THEN 'failed' ELSE 'canceled' END, "
        "t.params, t.output, CASE WHEN g %% 100 >= 90 THEN 'step s2 failed' END, t.state, "
        "c.at, c.at, c.at + interval '30 ms', c.at + interval '30 ms' "
        "FROM generate_series(%(first)s::int, %(last)s::int) AS g CROSS JOIN bench_template t "
        "CROSS JOIN LATERAL (SELECT now() - interval '30 days' * (1 - g::float8 / %(total)s) - interval '1 hour' "
        "AS at) c", span)
    conn.execute(
        "INSERT INTO task_executions (run_id, seq, attempt, task, status, items, result, error, started_at, "
        "finished_at) SELECT md5('fill' || g)::uuid::text, s, 1, 's' || s, 'succeeded', NULL, NULL, NULL, "
        "c.at + s * interval '10 ms', c.at + s * interval '10 ms' + interval '3 ms' "
        "FROM generate_series(%(first)s::int, %(last)s::int) AS g CROSS JOIN generate_series(1, 3) AS s "
        "CROSS JOIN LATERAL (SELECT now() - interval '30 days' * (1 - g::float8 / %(total)s) - interval '1 hour' "
        "AS at) c ORDER BY g, s", span)
    conn.execute(
        "INSERT INTO run_events (run_id, at, kind, task, seq, attempt, message) "
        "SELECT md5('fill' || g)::uuid::text, c.at + e * interval '4 ms', "
        "(ARRAY['workflow.started', 'task.started', 'task.succeeded', 'task.started', 'task.succeeded', "
        "'task.started', 'task.succeeded', 'workflow.succeeded'])[e], "
        "CASE WHEN e BETWEEN 2 AND 7 THEN 's' || (e / 2) END, CASE WHEN e BETWEEN 2 AND 7 THEN e / 2 END, "
        "CASE WHEN e BETWEEN 2 AND 7 THEN 1 END, NULL "
        "FROM generate_series(%(first)s::int, %(last)s::int) AS g CROSS JOIN generate_series(1, 8) AS e "
        "CROSS JOIN LATERAL (SELECT now() - interval '30 days' * (1 - g::float8 / %(total)s) - interval '1 hour' "
        "AS at) c ORDER BY g, e", span)
    conn.execute(
        "INSERT INTO workflow_variables (run_id, name, value) SELECT md5('fill' || g)::uuid::text, 'i', "
        "to_jsonb(g) FROM generate_series(%(first)s::int, %(last)s::int) AS g", span)
    conn.execute(
        "INSERT INTO run_counts (status, shard, runs) SELECT u.status, 0, count(*) FROM ("
        "SELECT CASE WHEN g %% 100 < 90 THEN 'succeeded' WHEN g %% 100 < 97 THEN 'failed' ELSE 'canceled' END "
        "AS status FROM generate_series(%(first)s::int, %(last)s::int) AS g) u GROUP BY u.status "
        "ON CONFLICT (status, shard) DO UPDATE SET runs = run_counts.runs + excluded.runs", span)
    conn.execute(
        "INSERT INTO task_items (run_id, seq, idx, value, status, result) "
        "SELECT md5('fill' || g)::uuid::text, 2, i, to_jsonb(i), 'succeeded', NULL "
        "FROM generate_series(%(first)s::int, %(last)s::int) AS g CROSS JOIN generate_series(0, 9) AS i "
        "WHERE g %% 50 = 0", span)


# --------------------------------------------------------------------------- one side

def recording_canvas(app, conf):
    """The supervisor's canvas with publishing replaced by a record of the calls per run."""
    from orchestrator.canvas import Canvas

    class Recording(Canvas):
        def __init__(self):
            super().__init__(app, conf.supervisor_queue, lease=conf.lease)
            self.calls: dict[str, list[Any]] = defaultdict(list)

        def send(self, run_id, workflow, calls, **options):
            seen = options.get("seen")  # the supervisor takes one only for a step that sends one call
            self.calls[run_id].extend((call, seen) for call in calls)

        def send_timer(self, run_id, key, seconds):
            pass

        def take(self, run_id: str) -> list[Any]:
            return self.calls.pop(run_id, [])

    return Recording()


def supervisor_for(url: str):
    from orchestrator.config import settings
    from orchestrator.store import Database
    from orchestrator.supervisor import Supervisor
    from workers.app import app

    app.loader.import_default_modules()
    conf = settings()
    return Supervisor(Database(url), recording_canvas(app, conf), conf)


def envelope(run_id: str, call) -> dict[str, Any]:
    return {"run": run_id, "seq": call.seq, "attempt": call.attempt, "item": call.item, "task": call.task,
            "status": "succeeded", "result": None, "error": None}


def drive(sup, run_ids: Sequence[str], times: list[float] | None = None) -> None:
    """Complete the calls the runs dispatched, one by one, and those each completion dispatches,
    until none is left; each completion's time goes to `times`."""
    pending = deque((run_id, sent) for run_id in run_ids for sent in sup.canvas.take(run_id))
    while pending:
        run_id, (call, seen) = pending.popleft()
        began = time.perf_counter()
        sup.complete([envelope(run_id, call)], seen=seen)  # from the snapshot, as the worker that ran it
        if times is not None:
            times.append(time.perf_counter() - began)
        pending.extend((run_id, sent) for sent in sup.canvas.take(run_id))


def housekeeping(sup) -> Callable[[], Any]:
    """One interval of the deployment's shared database sweeps, as the worker that claims them
    runs them (orchestrator/housekeeping.py): for each of the timers, the left outbox rows and the
    left fan-in outcomes, the claim of its slot and the sweep. The production duties themselves,
    each made due at every call (interval 0); the Redis-side ones (orphans, census) and the
    heartbeat are left out: they do not read the runs."""
    from dataclasses import replace

    from orchestrator.housekeeping import Housekeeper, add_default_duties

    keeper = Housekeeper(lambda: sup)
    add_default_duties(keeper)
    sweeps = [replace(duty, interval=0.0) for duty in keeper.duties if duty.name in SWEEPS]
    if [duty.name for duty in sweeps] != list(SWEEPS):
        raise RuntimeError(f"housekeeping has no {set(SWEEPS) - {d.name for d in sweeps}} duty: point "
                           "benchmarks/flat.py SWEEPS at the shared database sweeps")
    keeper.duties = sweeps

    def tick() -> None:
        for duty in sweeps:
            keeper.run_duty(duty.name)
    return tick


class BufferMeter:
    """Shared buffers the operations on one database touch (heap, index and TOAST blocks of its
    tables, hit or read: pg_statio_user_tables), a measure of the database's work that does not
    drift with the machine's load. A backend publishes its counts when it exits, so each reading
    first closes the side's pooled connections and waits for their backends to be gone."""

    def __init__(self, url: str, sup):
        import psycopg

        self.sup = sup
        self.conn = psycopg.connect(harness._libpq(url), autocommit=True)
        self.last = self._read()

    def _read(self) -> dict[str, int]:
        self.sup.flush_carried_out()  # nothing left for the flusher thread to do meanwhile
        self.sup.db.engine.dispose()
        deadline = time.monotonic() + 30
        while self.conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'").fetchone()[0]:
            if time.monotonic() > deadline:
                raise RuntimeError("the side's database connections did not close within 30 s")
            time.sleep(0.01)
        self.conn.execute("SELECT pg_stat_clear_snapshot()")
        counts = dict(self.conn.execute(
            "SELECT relname || ' (heap, toast)', coalesce(heap_blks_hit, 0) + coalesce(heap_blks_read, 0) "
            "+ coalesce(toast_blks_hit, 0) + coalesce(toast_blks_read, 0) + coalesce(tidx_blks_hit, 0) "
            "+ coalesce(tidx_blks_read, 0) FROM pg_statio_user_tables "
            "UNION ALL SELECT indexrelname, coalesce(idx_blks_hit, 0) + coalesce(idx_blks_read, 0) "
            "FROM pg_statio_user_indexes").fetchall())
        return {name: int(blocks) for name, blocks in counts.items()}

    def since_last(self) -> dict[str, int]:
        """Blocks touched since the last reading, per table (heap and TOAST) and per index."""
        now = self._read()
        delta = {name: blocks - self.last.get(name, 0) for name, blocks in now.items()}
        self.last = now
        return {name: blocks for name, blocks in delta.items() if blocks}

    def close(self) -> None:
        self.conn.close()


def one_round(sup, meter: BufferMeter, workflow, per_round: int, times: dict[str, list[float]],
              buffers: dict[str, list[float]], detail: dict[str, dict[str, list[float]]] | None = None) -> None:
    """Every operation `per_round` times (steps: 3 per started run) on one side; appends the
    median time of each operation to `times` and the buffers it touched on average to `buffers`."""
    from orchestrator.http.metrics import metrics_text
    from orchestrator.run_ids import new_run_id

    run_ids: list[str] = []

    def start() -> None:
        run_id = new_run_id()  # as the engine names a run (run_ids.py)
        sup.start(workflow, {}, run_id)
        run_ids.append(run_id)

    def listing(status: str | None) -> Callable[[], Any]:
        def run() -> Any:
            with sup.db.reading() as conn:
                return sup.store.list_runs(conn, status, 50)
        return run

    few = max(3, per_round // 4)
    batches: list[tuple[str, Callable[[list[float]], None]]] = [
        ("start", lambda got: timed(start, got, per_round)),
        ("step", lambda got: drive(sup, run_ids, got)),
        ("list", lambda got: timed(listing(None), got, per_round)),
        ("list succeeded", lambda got: timed(listing("succeeded"), got, per_round)),
        ("metrics", lambda got: timed(lambda: metrics_text(sup), got, few)),
        ("tick", lambda got: timed(housekeeping(sup), got, few)),
    ]
    for operation, batch in batches:
        with sup.db.reading() as conn:  # a pooled connection again, outside the timed span
            conn.exec_driver_sql("SELECT 1")
        meter.since_last()
        got: list[float] = []
        batch(got)
        touched = meter.since_last()
        buffers[operation].append(sum(touched.values()) / len(got))
        if detail is not None:
            for name, blocks in touched.items():
                detail[operation][name].append(blocks / len(got))
        times[operation].append(harness.median(got))


def timed(operation: Callable[[], Any], times: list[float], repeat: int) -> None:
    for _ in range(repeat):
        began = time.perf_counter()
        operation()
        times.append(time.perf_counter() - began)


# --------------------------------------------------------------------------- report

def sizes(url: str) -> str:
    import psycopg

    with psycopg.connect(harness._libpq(url)) as conn:
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
        rows = {t: conn.execute(f"SELECT reltuples::bigint FROM pg_class WHERE relname = '{t}'").fetchone()[0]
                for t in ("workflow_runs", "task_executions", "run_events")}
    return f"{size}; about {', '.join(f'{max(n, 0):,} {t}' for t, n in rows.items())}"


def report(times: dict[str, dict[str, list[float]]], buffers: dict[str, dict[str, list[float]]], runs: int,
           small_runs: int, detail: dict[str, dict[str, dict[str, list[float]]]] | None = None) -> None:
    rounds = len(times["small"]["start"])
    print()
    print(f"each operation on a database holding {small_runs:,} finished runs and on one holding {runs:,} "
          f"({rounds} rounds, alternating)")
    rows = []
    for operation in OPERATIONS:
        small, full = times["small"][operation], times["full"][operation]
        per_round = harness.median([f / s for s, f in zip(small, full)])
        b_small, b_full = harness.median(buffers["small"][operation]), harness.median(buffers["full"][operation])
        rows.append([operation, f"{harness.median(small) * 1000:.2f}", f"{harness.median(full) * 1000:.2f}",
                     f"{per_round:.2f}", f"{b_small:.1f}", f"{b_full:.1f}",
                     f"{b_full / b_small:.2f}" if b_small else "-",
                     "yes" if per_round <= TARGET else "NO"])
    print(harness.format_table(["operation", f"ms @{small_runs:,}", f"ms @{runs:,}", "time ratio",
                                f"buffers @{small_runs:,}", f"buffers @{runs:,}", "buffer ratio",
                                f"time <= {TARGET}"], rows))
    if detail:
        print()
        print("buffers per operation by table and index (median over the rounds; those that differ)")
        rows = []
        for operation in OPERATIONS:
            names = set(detail["small"][operation]) | set(detail["full"][operation])
            for name in sorted(names):
                a = harness.median(detail["small"][operation][name]) if detail["small"][operation][name] else 0.0
                b = harness.median(detail["full"][operation][name]) if detail["full"][operation][name] else 0.0
                if abs(b - a) >= 0.5:
                    rows.append([operation, name, f"{a:.1f}", f"{b:.1f}"])
        print(harness.format_table(["operation", "table or index", f"@{small_runs:,}", f"@{runs:,}"], rows))
    print("(ms: median over the rounds of each round's median; time ratio: median of the rounds' ratios;\n"
          " buffers: shared buffers of the tables and indexes touched per operation, hit or read, which do not\n"
          " depend on the machine's load)")


# --------------------------------------------------------------------------- main

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks flat", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000, help="finished runs in the full database "
                                                                    "(default 1000000)")
    parser.add_argument("--small", type=int, default=1000, help="finished runs in the small database "
                                                                 "(default 1000; 0: empty)")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per side (default 5)")
    parser.add_argument("--per-round", type=int, default=20, help="runs started per round and side, and list "
                                                                  "calls (default 20)")
    parser.add_argument("--refill", action="store_true", help="fill the full database again even if it is ready")
    parser.add_argument("--drop", action="store_true", help="drop the full database afterwards")
    parser.add_argument("--detail", action="store_true", help="also print the buffers per table and index")
    args = parser.parse_args(argv)
    if min(args.runs, args.rounds, args.per_round) < 1 or args.small < 0:
        parser.error("--runs, --rounds and --per-round must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"== {NAME}: start, step, list, metrics and tick, {args.small:,} vs {args.runs:,} finished runs ==")
    harness.print_facts(harness.machine_facts())
    small_url, full_url = database_url("flat_small"), database_url("flat_full")
    env = harness.deployment_env(NAME, small_url)
    harness.apply_env(env)  # settings and the Celery app; each side gets its own Supervisor
    from orchestrator.registry import compile_workflow

    workflow = compile_workflow(workflow_yaml(STEPS), "<string>", None)
    try:
        recreate(small_url)
        harness.migrate(small_url)
        small = supervisor_for(small_url)
        if args.small:
            fill(small_url, args.small, small, workflow)
        if args.refill or filled_with(full_url) != (args.runs, head_revision()):
            print(f"filling {full_url.rsplit('/', 1)[-1]} with {args.runs:,} finished runs ...", flush=True)
            recreate(full_url)
            harness.migrate(full_url)
            filler = supervisor_for(full_url)
            fill(full_url, args.runs, filler, workflow)
            filler.db.dispose()
        else:
            print(f"reusing {full_url.rsplit('/', 1)[-1]} ({args.runs:,} runs, filled before)", flush=True)
        full = supervisor_for(full_url)
        print(f"  full db     {sizes(full_url)}", flush=True)
        sides = {"small": small, "full": full}
        meters = {"small": BufferMeter(small_url, small), "full": BufferMeter(full_url, full)}
        print("warming up ...", flush=True)
        for name, sup in sides.items():
            one_round(sup, meters[name], workflow, args.per_round, defaultdict(list), defaultdict(list))
        times: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in sides}
        buffers: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in sides}
        detail = {name: defaultdict(lambda: defaultdict(list)) for name in sides} if args.detail else None
        for index in range(1, args.rounds + 1):
            for name, sup in sides.items():
                one_round(sup, meters[name], workflow, args.per_round, times[name], buffers[name],
                          detail[name] if detail else None)
            print(f"round {index}/{args.rounds}: " + "; ".join(
                f"{name} " + ", ".join(f"{op} {times[name][op][-1] * 1000:.2f}" for op in OPERATIONS)
                for name in sides) + " (ms)", flush=True)
        for name, sup in sides.items():
            meters[name].close()
            sup.flush_carried_out()
            sup.db.dispose()
    finally:
        harness.purge_queues(env["ORCHESTRATOR_BROKER_URL"], harness.queues_of(env))
        drop(small_url)
        if args.drop:
            drop(full_url)
    report(times, buffers, args.runs, args.small, detail)
    return 0


if __name__ == "__main__":
    harness.interrupt_on_termination()
    raise SystemExit(main())
