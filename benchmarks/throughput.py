"""Throughput: W small workflows started at once against W raw Celery chains started at once.

Both sides run on the same Redis broker and the same worker (one `orchestrator worker`, prefork,
concurrency 2) in one process run, alternating round by round, so their ratios are meaningful even
when absolute figures drift between runs (see ../shared/notes/performance-budget.md).

- raw: W ``chain(core.noop.si() x S)`` sent with ``apply_async()`` one after the other, then
  ``.get()`` on each (S = 3 by default)
- orchestrated, submit(): W ``submit(yaml_text)`` of ``s1 -> s2 -> ... -> sS`` (core.noop) from
  this process (each start's transaction and first dispatch happen here), then waiting until all
  W runs are finished (one query over the W ids every 20 ms)
- orchestrated, start_workflow: W ``orchestrator.start_workflow.delay(yaml_text)`` (the start
  happens in the worker, as for any Celery producer), then the same wait

Throughput is W x S action calls over the wall time from the first send to the last completion;
the target (issue 6) is orchestrated tasks/s >= 50% of raw tasks/s (printed, not asserted).

    python -m benchmarks throughput [--workflows 200] [--steps 3] [--rounds 3]
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

NAME = "throughput"
RAW = "raw chains"
SUBMIT = "orchestrated, submit()"
CELERY = "orchestrated, start_workflow"
POLL = 0.02  # seconds between checks of the runs' status


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


def raw_side(workflows: int, steps: int, timeout: float) -> Callable[[], Round]:
    """A callable that sends `workflows` chains of `steps` no-ops at once and waits for all."""
    from celery import chain

    from workers.app import app

    def run() -> Round:
        canvases = [chain(*(app.signature("core.noop", immutable=True) for _ in range(steps)))
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


def wait_all(run_ids: list[str], timeout: float) -> None:
    """Block until every run in `run_ids` has a terminal status (one count query per POLL)."""
    from sqlalchemy import func, select

    from orchestrator.runtime import supervisor
    from orchestrator.store.runs import RUNS, TERMINAL

    sup = supervisor()
    query = select(func.count()).where(RUNS.c.id.in_(run_ids), RUNS.c.status.in_(TERMINAL))
    deadline = time.monotonic() + timeout
    while True:
        with sup.db.reading() as conn:
            done = conn.execute(query).scalar_one()
        if done == len(run_ids):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{len(run_ids) - done} of {len(run_ids)} runs not finished after {timeout} s")
        time.sleep(POLL)


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


def submit_side(workflows: int, steps: int, timeout: float) -> Callable[[], Round]:
    """A callable that starts `workflows` runs with submit() from this process and waits for all."""
    from orchestrator import submit

    text = workflow_yaml(steps)

    def run() -> Round:
        start, cpu = time.perf_counter(), time.process_time()
        run_ids = [submit(text).id for _ in range(workflows)]
        wait_all(run_ids, timeout)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        return Round(elapsed, cpu, check_runs(run_ids, steps))

    return run


def celery_side(workflows: int, steps: int, timeout: float) -> Callable[[], Round]:
    """A callable that starts `workflows` runs through orchestrator.start_workflow.delay() (the
    worker starts them) and waits for all."""
    from orchestrator.tasks import start_workflow

    text = workflow_yaml(steps)

    def run() -> Round:
        start, cpu = time.perf_counter(), time.process_time()
        results = [start_workflow.delay(text) for _ in range(workflows)]
        run_ids = [result.id for result in results]  # the run id is the start task's id
        wait_all(run_ids, timeout)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        for result in results:
            result.forget()
        return Round(elapsed, cpu, check_runs(run_ids, steps))

    return run


def measure(workflows: int, steps: int, rounds: int, timeout: float, sides: Sequence[str]) -> dict[str, Figures]:
    """Warm every side up with a tenth of the workflows, then alternate the sides for `rounds`."""
    makers = {RAW: raw_side, SUBMIT: submit_side, CELERY: celery_side}
    warm = max(1, workflows // 10)
    print(f"warming up ({warm} workflows per side) ...", flush=True)
    for side in sides:
        makers[side](warm, steps, timeout)()
    runs = {side: makers[side](workflows, steps, timeout) for side in sides}
    figures = {side: Figures() for side in sides}
    calls = workflows * steps
    for index in range(1, rounds + 1):
        line = []
        for side, run in runs.items():
            got = run()
            figures[side].rounds.append(got)
            line.append(f"{side} {got.wall:.2f} s ({calls / got.wall:.0f}/s)")
        print(f"round {index}/{rounds}: {', '.join(line)}", flush=True)
    return figures


def report(workflows: int, steps: int, figures: dict[str, Figures]) -> None:
    calls = workflows * steps
    raw_rate = calls / figures[RAW].median("wall") if RAW in figures else None
    rows = []
    for side, got in figures.items():
        wall = got.median("wall")
        rate = calls / wall
        walls = [r.wall for r in got.rounds]
        span = got.median("span")
        rows.append([side, f"{wall:.2f}", f"{rate:.0f}", f"{min(walls):.2f}", f"{max(walls):.2f}",
                     "-" if span != span else f"{span:.2f}", f"{got.median('cpu'):.2f}",
                     f"{rate / raw_rate:.2f}" if raw_rate else "-"])
    print()
    print(f"{workflows} workflows of {steps} sequential no-op steps started at once ({calls} action calls), "
          f"{len(next(iter(figures.values())).rounds)} round(s), medians")
    print(harness.format_table(["side", "wall s", "tasks/s", "min s", "max s", "in-db span s", "client cpu s",
                                "ratio to raw"], rows))
    print("target: orchestrated tasks/s >= 0.50 x raw (not asserted)")
    print("(tasks/s: action calls over the wall time from the first send to the last completion; in-db span:\n"
          " first run created -> last run finished, by the database clock; client cpu s: CPU time of this\n"
          " benchmark process meanwhile, which competes with the 2-process worker for the 2 cores)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--workflows", type=int, default=200, help="workflows / chains started at once (default 200)")
    parser.add_argument("--steps", type=int, default=3, help="sequential no-op steps in each (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per side (default 3)")
    parser.add_argument("--start", choices=("both", "submit", "celery"), default="both",
                        help="how the orchestrated runs are started (default both, as two sides)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one round (default 300)")
    args = parser.parse_args(argv)
    if min(args.workflows, args.steps, args.rounds) < 1:
        parser.error("--workflows, --steps and --rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print machine facts and the table; returns the exit code."""
    args = parse_args(argv)
    sides = [RAW] + {"both": [SUBMIT, CELERY], "submit": [SUBMIT], "celery": [CELERY]}[args.start]
    print(f"== {NAME}: {args.workflows} raw Celery chains vs {args.workflows} orchestrated workflows at once ==")
    harness.print_facts(harness.machine_facts())
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp, harness.bench_schema() as url:
        env = harness.deployment_env(NAME, url)
        harness.apply_env(env)  # before the first import of orchestrator / workers
        with harness.running_worker(env, Path(tmp) / "worker.log", concurrency=2, pool="prefork") as worker:
            print(f"  worker      prefork -c 2, queues {', '.join(harness.queues_of(env))}", flush=True)
            try:
                figures = measure(args.workflows, args.steps, args.rounds, args.timeout, sides)
            except (RuntimeError, TimeoutError):
                print(f"\nworker log (tail):\n{worker.log_tail()}", flush=True)
                raise
    report(args.workflows, args.steps, figures)
    return 0


if __name__ == "__main__":
    harness.interrupt_on_termination()
    raise SystemExit(main())
