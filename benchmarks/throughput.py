"""Throughput: W small workflows started at once against W Celery chains started at once, for
each W in --workflows (200 and 2,000 by default), with the cost per run at each W.

Sides in one process run, alternating round by round, so their ratios are meaningful even when
absolute figures drift between runs (see ../shared/notes/performance-budget.md):

- plain chains: W ``chain(plain.noop.si() x S)`` on a plain Celery app with its own worker on
  Celery's defaults (early ack, prefetch 4, results on), sent with ``apply_async()`` one after
  the other, then ``.get()`` on each (S = 3 by default): what users run today;
- same-worker chains: the same with core.noop on the orchestrator's own worker (acks late,
  prefetch 1);
- orchestrated, submit(): W ``submit(yaml_text)`` of ``s1 -> s2 -> ... -> sS`` (core.noop) from
  this process (each start's transaction and first dispatch happen here);
- orchestrated, start_workflow: W ``orchestrator.start_workflow.delay(yaml_text)`` (the start
  happens in the worker, as for any Celery producer).

The orchestrated sides wait for the runs' ends by LISTEN on the channel each run's last step
notifies (no polling), then check that every run succeeded with S succeeded tasks.

Throughput is W x S action calls over the wall time from the first send to the last completion;
per-run cost is that wall time over W (flat from 200 to 2,000 is the target). Targets (issue 14,
printed, not asserted): orchestrated tasks/s >= 0.75 x plain through submit(), >= 0.65 through
start_workflow.

    python -m benchmarks throughput [--workflows 200,2000] [--steps 3] [--rounds 3] [--no-plain]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import harness
from .sequential import workflow_yaml
from .with_items import parse_sizes

NAME = "throughput"
PLAIN = "plain chains"
RAW = "same-worker chains"
SUBMIT = "orchestrated, submit()"
CELERY = "orchestrated, start_workflow"
TARGETS = {SUBMIT: 0.75, CELERY: 0.65}  # of the plain side's tasks/s


@dataclass
class Round:
    wall: float           # first send -> last completion, seconds
    cpu: float            # this (client) process's CPU time in that span
    span: float | None    # orchestrated: min(created_at) -> max(finished_at) of the W runs (database clock)


@dataclass
class Figures:
    rounds: list[Round] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        values = [getattr(r, attribute) for r in self.rounds if getattr(r, attribute) is not None]
        return harness.median(values) if values else float("nan")

    def walls(self) -> list[float]:
        return [r.wall for r in self.rounds]


def raw_side(workflows: int, steps: int, timeout: float, app=None) -> Callable[[], Round]:
    """A callable that sends `workflows` chains of `steps` no-ops at once and waits for all:
    core.noop on the orchestrator's worker, or plain.noop on `app` (the plain side)."""
    from celery import chain

    if app is None:
        from workers.app import app
        task = "core.noop"
    else:
        task = "plain.noop"

    def run() -> Round:
        canvases = [chain(*(app.signature(task, immutable=True) for _ in range(steps)))
                    for _ in range(workflows)]
        start, cpu = time.perf_counter(), time.process_time()
        results = [canvas.apply_async() for canvas in canvases]
        deadline = time.monotonic() + timeout
        for result in results:
            result.get(timeout=max(0.1, deadline - time.monotonic()))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        for result in results:  # drop the stored results (outside the timed span)
            node = result
            while node is not None:
                node.forget()
                node = node.parent
        del results
        gc.collect()
        return Round(elapsed, cpu, None)

    return run


class Finished:
    """LISTEN on the channel a run's last step notifies with the run id (store.steps), opened
    before the runs start, so waiting for W runs costs no query per run and no polling."""

    def __init__(self, database_url: str):
        import psycopg

        from orchestrator.store.runs import RUN_FINISHED

        self.conn = psycopg.connect(harness._libpq(database_url), autocommit=True)
        self.conn.execute(f'LISTEN "{RUN_FINISHED}"')

    def wait(self, run_ids: list[str], timeout: float) -> None:
        """Block until every run in `run_ids` has notified; after a quiet second, ask the database
        (a run that ended without notifying would otherwise hold the wait until `timeout`)."""
        pending = set(run_ids)
        deadline = time.monotonic() + timeout
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(pending)} of {len(run_ids)} runs not finished after {timeout} s")
            heard = False
            for note in self.conn.notifies(timeout=min(1.0, left)):
                heard = True
                pending.discard(note.payload)
                if not pending:
                    return
            if not heard:
                pending -= finished_among(list(pending))

    def close(self) -> None:
        self.conn.close()


def finished_among(run_ids: list[str]) -> set[str]:
    from sqlalchemy import select

    from orchestrator.runtime import supervisor
    from orchestrator.store.runs import RUNS, TERMINAL

    with supervisor().db.reading() as conn:
        return set(conn.execute(select(RUNS.c.id).where(RUNS.c.id.in_(run_ids), RUNS.c.status.in_(TERMINAL)))
                   .scalars())


def check_runs(run_ids: list[str], steps: int) -> float:
    """Raise unless every run succeeded with `steps` succeeded executions; returns the span from
    the first run's creation to the last run's end (database clock), in seconds."""
    from sqlalchemy import func, select

    from orchestrator.runtime import supervisor
    from orchestrator.store.runs import RUNS, TASKS

    sup = supervisor()
    with sup.db.reading() as conn:
        statuses = dict(conn.execute(select(RUNS.c.status, func.count()).where(RUNS.c.id.in_(run_ids))
                                     .group_by(RUNS.c.status)).all())
        succeeded_tasks = conn.execute(select(func.count()).where(TASKS.c.run_id.in_(run_ids),
                                                                   TASKS.c.status == "succeeded")).scalar_one()
        first, last = conn.execute(select(func.min(RUNS.c.created_at), func.max(RUNS.c.finished_at))
                                   .where(RUNS.c.id.in_(run_ids))).one()
    if statuses != {"succeeded": len(run_ids)} or succeeded_tasks != len(run_ids) * steps:
        raise RuntimeError(f"runs ended {statuses} with {succeeded_tasks} of {len(run_ids) * steps} "
                           f"tasks succeeded")
    return (last - first).total_seconds()


def submit_side(workflows: int, steps: int, timeout: float, finished: Finished) -> Callable[[], Round]:
    """A callable that starts `workflows` runs with submit() from this process and waits for all."""
    from orchestrator import submit

    text = workflow_yaml(steps)

    def run() -> Round:
        start, cpu = time.perf_counter(), time.process_time()
        run_ids = [submit(text).id for _ in range(workflows)]
        finished.wait(run_ids, timeout)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        return Round(elapsed, cpu, check_runs(run_ids, steps))

    return run


def celery_side(workflows: int, steps: int, timeout: float, finished: Finished) -> Callable[[], Round]:
    """A callable that starts `workflows` runs through orchestrator.start_workflow.delay() (the
    worker starts them) and waits for all."""
    from orchestrator.tasks import start_workflow

    text = workflow_yaml(steps)

    def run() -> Round:
        start, cpu = time.perf_counter(), time.process_time()
        results = [start_workflow.delay(text) for _ in range(workflows)]
        run_ids = [result.id for result in results]  # the run id is the start task's id
        finished.wait(run_ids, timeout)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        for result in results:
            result.forget()
        return Round(elapsed, cpu, check_runs(run_ids, steps))

    return run


def measure(sizes: Sequence[int], steps: int, rounds: int, timeout: float, sides: Sequence[str],
            finished: Finished, plain_app=None) -> dict[int, dict[str, Figures]]:
    """Warm every side up with a tenth of the smallest size, then for each size alternate the
    sides for `rounds` rounds. Returns {size: {side: figures}}."""
    def makers(workflows: int) -> dict[str, Callable[[], Round]]:
        every = {PLAIN: lambda: raw_side(workflows, steps, timeout, plain_app),
                 RAW: lambda: raw_side(workflows, steps, timeout),
                 SUBMIT: lambda: submit_side(workflows, steps, timeout, finished),
                 CELERY: lambda: celery_side(workflows, steps, timeout, finished)}
        return {side: every[side]() for side in sides}

    warm = max(1, min(sizes) // 10)
    print(f"warming up ({warm} workflows per side) ...", flush=True)
    for run in makers(warm).values():
        run()
    figures: dict[int, dict[str, Figures]] = {}
    for workflows in sizes:
        runs = makers(workflows)
        got_size = figures[workflows] = {side: Figures() for side in sides}
        calls = workflows * steps
        for index in range(1, rounds + 1):
            line = []
            for side, run in runs.items():
                got = run()
                got_size[side].rounds.append(got)
                line.append(f"{side} {got.wall:.2f} s ({calls / got.wall:.0f}/s)")
            print(f"{workflows} workflows, round {index}/{rounds}: {', '.join(line)}", flush=True)
    return figures


def report(steps: int, figures: dict[int, dict[str, Figures]]) -> None:
    for workflows, by_side in figures.items():
        calls = workflows * steps
        bases = {base: calls / by_side[base].median("wall") for base in (PLAIN, RAW) if base in by_side}
        rows = []
        for side, got in by_side.items():
            wall = got.median("wall")
            rate = calls / wall
            span = got.median("span")
            rows.append([side, f"{wall:.2f}", f"{rate:.0f}", f"{wall / workflows * 1000:.2f}",
                         f"{min(got.walls()):.2f}", f"{max(got.walls()):.2f}",
                         "-" if span != span else f"{span:.2f}", f"{got.median('cpu'):.2f}",
                         *(f"{rate / base:.2f}" for base in bases.values())])
        print()
        print(f"{workflows} workflows of {steps} sequential no-op steps started at once ({calls} action calls), "
              f"{len(next(iter(by_side.values())).rounds)} round(s), alternating, medians")
        print(harness.format_table(["side", "wall s", "tasks/s", "ms/run", "min s", "max s", "in-db span s",
                                    "client cpu s", *(f"x {base}" for base in bases)], rows))
        walls = {side: got.walls() for side, got in by_side.items()}
        for side in (SUBMIT, CELERY):
            if side in walls:  # tasks/s ratio = inverse of the wall-time ratio
                inverse = {k: [1 / w for w in v] for k, v in walls.items()}
                print(harness.ratio_lines(inverse, side, list(bases), targets={PLAIN: TARGETS[side]},
                                          higher_is_better=True).replace("ratio ", "tasks/s ratio "))
    if len(figures) > 1:
        small, large = min(figures), max(figures)
        print()
        print(f"per-run cost from {small} to {large} workflows at once (1.00 = flat)")
        rows = []
        for side in figures[small]:
            a = figures[small][side].median("wall") / small * 1000
            b = figures[large][side].median("wall") / large * 1000
            rows.append([side, f"{a:.2f}", f"{b:.2f}", f"{b / a:.2f}"])
        print(harness.format_table(["side", f"ms/run @{small}", f"ms/run @{large}", f"{large}/{small}"], rows))
    print("(tasks/s: action calls over the wall time from the first send to the last completion; in-db span:\n"
          " first run created -> last run finished, by the database clock; client cpu s: CPU time of this\n"
          " benchmark process meanwhile, which competes with the 2-process workers for the 2 cores)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--workflows", type=parse_sizes, default=[200, 2000],
                        help="comma-separated numbers of workflows / chains started at once (default 200,2000)")
    parser.add_argument("--steps", type=int, default=3, help="sequential no-op steps in each (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per side (default 3)")
    parser.add_argument("--start", choices=("both", "submit", "celery"), default="both",
                        help="how the orchestrated runs are started (default both, as two sides)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for one round (default 600)")
    parser.add_argument("--no-plain", action="store_true", help="leave out the plain Celery side")
    args = parser.parse_args(argv)
    if min(args.steps, args.rounds) < 1:
        parser.error("--steps and --rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print machine facts and the tables; returns the exit code."""
    args = parse_args(argv)
    sides = ([] if args.no_plain else [PLAIN]) + [RAW]
    sides += {"both": [SUBMIT, CELERY], "submit": [SUBMIT], "celery": [CELERY]}[args.start]
    sizes = ", ".join(map(str, args.workflows))
    print(f"== {NAME}: {sizes} orchestrated workflows vs as many Celery chains at once ==")
    harness.print_facts(harness.machine_facts())
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp, harness.bench_schema() as url:
        env = harness.deployment_env(NAME, url)
        harness.apply_env(env)  # before the first import of orchestrator / workers
        finished = Finished(url)
        try:
            with harness.both_workers(NAME, env, Path(tmp), plain=not args.no_plain) as (worker, _, plain_app):
                try:
                    figures = measure(args.workflows, args.steps, args.rounds, args.timeout, sides, finished,
                                      plain_app)
                except (RuntimeError, TimeoutError):
                    print(f"\nworker log (tail):\n{worker.log_tail()}", flush=True)
                    raise
        finally:
            finished.close()
    report(args.steps, figures)
    return 0


if __name__ == "__main__":
    harness.interrupt_on_termination()
    raise SystemExit(main())
