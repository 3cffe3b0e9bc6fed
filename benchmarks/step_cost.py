"""Per-step cost early and late in a long loop: does a step get slower as the run's history grows?

One workflow loops a core.noop task K times with a counter in a workflow variable; after the run,
the per-step time is read from the database (the gap between consecutive ``started_at`` of the
run's task executions) and compared near step 10 (median over steps 5..25) and near step K
(median over the last 20 steps). Target: late/early <= 1.2 (printed, not asserted). The worker
runs with ORCHESTRATOR_EXECUTION_LIMIT above K, on one `orchestrator worker` (prefork,
concurrency 2), in an isolated schema and queues.

A warm-up loop of 50 steps runs first. The 21-gap windows are sensitive to a busy moment on the
machine, so the medians over wider windows (steps 26..525 vs the last 500) and per tenth of the
loop are printed as well.

    python -m benchmarks step_cost [--steps 10000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from pathlib import Path

from . import harness

NAME = "step_cost"
EARLY = (5, 25)  # steps (1-based, inclusive) whose gaps make "near step 10"
LATE = 20        # the last steps whose gaps make "near step K"
WIDE = 500       # the wider, less noisy comparison: steps 26..525 against the last 500
WARM_UP = 50     # steps of the warm-up loop run before the measured one(s)


def workflow_yaml(steps: int) -> str:
    """YAML text of a loop that runs `step` (core.noop) `steps` times after an `init` task.
    (`when` sees the counter as it was before the transition's publish.)"""
    return (
        'version: "1.0"\n'
        "vars: {i: 0}\n"
        "tasks:\n"
        "  - {name: init, action: core.noop, next: [{do: step}]}\n"
        "  - name: step\n"
        "    action: core.noop\n"
        "    next:\n"
        '      - publish: [{i: "{{ workflow.i + 1 }}"}]\n'
        f'      - {{when: "{{{{ workflow.i < {steps - 1} }}}}", do: step}}\n'
    )


@dataclass
class Run:
    wall: float                 # submit -> wait returned, seconds
    in_run: float               # the run's started_at -> finished_at, seconds
    steps: int                  # executions of `step`
    gaps: list[float]           # gaps[n - 1]: started_at of step n - that of the execution before it, s

    def median_ms(self, first: int, last: int) -> float:
        """Median gap over steps first..last (1-based, inclusive), in ms."""
        return harness.median(self.gaps[first - 1:last]) * 1000

    @property
    def early_ms(self) -> float:
        return self.median_ms(*EARLY)

    @property
    def late_ms(self) -> float:
        return self.median_ms(self.steps - LATE + 1, self.steps)


def step_gaps(url: str, run_id: str) -> tuple[list[str], list[float]]:
    """Task names and start gaps of the run's executions in seq order, first attempts only
    (gaps[k] = started_at[k + 1] - started_at[k], seconds)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT seq, task, started_at, finished_at FROM task_executions "
                                     "WHERE run_id = :run_id AND attempt = 1 ORDER BY seq"),
                                {"run_id": run_id}).all()
    finally:
        engine.dispose()
    starts = [row.started_at for row in rows]
    return [row.task for row in rows], [(b - a).total_seconds() for a, b in pairwise(starts)]


def run_loop(url: str, steps: int, timeout: float) -> Run:
    from orchestrator import submit

    text = workflow_yaml(steps)
    start = time.perf_counter()
    summary = submit(text).wait(timeout)
    wall = time.perf_counter() - start
    step_count = sum(1 for task in summary["tasks"] if task["name"] == "step")
    if summary["status"] != "succeeded" or step_count != steps:
        raise RuntimeError(f"workflow run {summary['id']} ended {summary['status']} after {step_count} of "
                           f"{steps} steps ({len(summary['tasks'])} executions): {summary.get('error')}")
    began, ended = (datetime.fromisoformat(summary[k]) for k in ("started_at", "finished_at"))
    names, gaps = step_gaps(url, summary["id"])
    if names[0] != "init" or names.count("step") != steps:
        raise RuntimeError(f"run {summary['id']}: unexpected executions {names[:3]}... ({len(names)} rows)")
    return Run(wall=wall, in_run=(ended - began).total_seconds(), steps=steps, gaps=gaps)


def report(steps: int, runs: Sequence[Run]) -> None:
    print()
    print(f"loop of {steps} core.noop steps, {len(runs)} run(s); per-step time = gap between consecutive "
          f"started_at (task_executions)")
    rows = []
    for index, run in enumerate(runs, 1):
        rows.append([f"run {index}", f"{run.wall:.2f}", f"{run.in_run:.2f}", f"{steps / run.wall:.0f}",
                     f"{run.early_ms:.2f}", f"{run.late_ms:.2f}", f"{run.late_ms / run.early_ms:.2f}"])
    if len(runs) > 1:
        early = harness.median([r.early_ms for r in runs])
        late = harness.median([r.late_ms for r in runs])
        wall = harness.median([r.wall for r in runs])
        rows.append(["median", f"{wall:.2f}", f"{harness.median([r.in_run for r in runs]):.2f}",
                     f"{steps / wall:.0f}", f"{early:.2f}", f"{late:.2f}", f"{late / early:.2f}"])
    print(harness.format_table(["", "wall s", "in-run s", "steps/s", f"ms near 10 ({EARLY[0]}..{EARLY[1]})",
                                f"ms near {steps} (last {LATE})", "late/early"], rows))
    print("target: late/early <= 1.2 (not asserted)")
    if steps >= EARLY[1] + 2 * WIDE:
        # 21 gaps are easily swayed by a busy moment on the machine; 500 are not.
        first = (EARLY[1] + 1, EARLY[1] + WIDE)
        wide = [[f"run {index}", f"{run.median_ms(*first):.2f}", f"{run.median_ms(steps - WIDE + 1, steps):.2f}",
                 f"{run.median_ms(steps - WIDE + 1, steps) / run.median_ms(*first):.2f}"]
                for index, run in enumerate(runs, 1)]
        print()
        print(f"wider windows (less sensitive to a busy moment): steps {first[0]}..{first[1]} vs the last {WIDE}")
        print(harness.format_table(["", f"ms {first[0]}..{first[1]}", f"ms last {WIDE}", "late/early"], wide))
    # Where along the loop the cost changes: median gap per tenth of the run (first run).
    run = runs[0]
    parts = min(10, steps // 10)
    if parts >= 2:
        bounds = [round(steps * k / parts) for k in range(parts + 1)]
        cells = [f"{run.median_ms(a + 1, b):.2f}" for a, b in pairwise(bounds)]
        print()
        print("median step ms by segment of the loop (run 1; all steps, not only the ends)")
        print(harness.format_table(["steps"] + [f"{a + 1}-{b}" for a, b in pairwise(bounds)],
                                   [["ms"] + cells]))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks step_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10_000, help="loop iterations K (default 10000)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of the loop (default 1)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for one run (default 1800)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.steps < EARLY[1] + LATE:
        parser.error(f"--steps must be at least {EARLY[1] + LATE}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print machine facts and the table; returns the exit code."""
    args = parse_args(argv)
    print(f"== {NAME}: per-step cost near step 10 vs near step {args.steps} of one loop ==")
    harness.print_facts(harness.machine_facts())
    limit = args.steps + 100  # init + K steps, with room to spare
    with tempfile.TemporaryDirectory(prefix="bench-step-cost-") as tmp, harness.bench_schema() as url:
        env = harness.deployment_env(NAME, url, extra={"ORCHESTRATOR_EXECUTION_LIMIT": str(limit)})
        harness.apply_env(env)  # before the first import of orchestrator / workers
        with harness.running_worker(env, Path(tmp) / "worker.log", concurrency=2, pool="prefork") as worker:
            print(f"  worker      prefork -c 2, execution limit {limit}, queues "
                  f"{', '.join(harness.queues_of(env))}", flush=True)
            runs = []
            try:
                # Warm the worker's processes (connections, imports, compiled templates) on a
                # short loop of the same shape, so "near step 10" is not a cold start.
                print(f"warming up ({WARM_UP} steps) ...", flush=True)
                run_loop(url, WARM_UP, args.timeout)
                for index in range(1, args.rounds + 1):
                    runs.append(run_loop(url, args.steps, args.timeout))
                    print(f"run {index}/{args.rounds}: {runs[-1].wall:.2f} s", flush=True)
            except (RuntimeError, TimeoutError):
                print(f"\nworker log (tail):\n{worker.log_tail()}", flush=True)
                raise
    report(args.steps, runs)
    return 0


if __name__ == "__main__":
    harness.interrupt_on_termination()
    raise SystemExit(main())
