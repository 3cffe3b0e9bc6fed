"""Sequential overhead: a raw Celery chain of N no-op tasks against an N-step workflow of core.noop.

Both sides run on the same Redis broker and the same worker (one `orchestrator worker`, prefork,
concurrency 2) in one process run, alternating round by round, so their ratio is meaningful even
when absolute figures drift between runs (see ../shared/notes/performance-budget.md).

- raw: ``chain(core.noop.si() x N).apply_async().get()``
- orchestrated: ``submit(yaml_text).wait()`` of ``s1 -> s2 -> ... -> sN`` (``next: [{do: sK}]``)

    python -m benchmarks sequential [--rounds 5] [--steps 100]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import harness

NAME = "sequential"


def workflow_yaml(steps: int) -> str:
    """YAML text of a workflow whose tasks s1..s<steps> each run core.noop, one after the other."""
    lines = ['version: "1.0"', "tasks:"]
    for i in range(1, steps + 1):
        follow = f", next: [{{do: s{i + 1}}}]" if i < steps else ""
        lines.append(f"  - {{name: s{i}, action: core.noop{follow}}}")
    return "\n".join(lines) + "\n"


def raw_side(steps: int, timeout: float) -> Callable[[], float]:
    """A callable that runs one raw chain of `steps` no-ops and returns its wall time in seconds."""
    from celery import chain

    from workers.app import app

    def run() -> float:
        canvas = chain(*(app.signature("core.noop", immutable=True) for _ in range(steps)))
        start = time.perf_counter()
        result = canvas.apply_async()
        result.get(timeout=timeout)
        elapsed = time.perf_counter() - start
        node = result  # drop the chain's stored results (outside the timed span)
        while node is not None:
            node.forget()
            node = node.parent
        return elapsed

    return run


def orchestrated_side(steps: int, timeout: float, in_run: list[float],
                      wait_lags: list[float] | None = None) -> Callable[[], float]:
    """A callable that runs the `steps`-step workflow through the Python API and returns its wall
    time; it also appends the run's own duration (started_at -> finished_at) to `in_run`, and
    how long after finished_at `wait()` returned to `wait_lags`."""
    from datetime import datetime, timezone

    from orchestrator import submit

    text = workflow_yaml(steps)

    def run() -> float:
        start = time.perf_counter()
        summary = submit(text).wait(timeout)
        elapsed = time.perf_counter() - start
        returned = datetime.now(timezone.utc)
        if summary["status"] != "succeeded" or len(summary["tasks"]) != steps:
            raise RuntimeError(f"workflow run {summary['id']} ended {summary['status']} with "
                               f"{len(summary['tasks'])} of {steps} tasks: {summary.get('error')}")
        began, ended = (datetime.fromisoformat(summary[k]) for k in ("started_at", "finished_at"))
        in_run.append((ended - began).total_seconds())
        if wait_lags is not None:
            wait_lags.append((returned - ended).total_seconds())
        return elapsed

    return run


def measure(rounds: int, steps: int, timeout: float,
            wait_lags: list[float] | None = None) -> tuple[list[float], list[float], list[float]]:
    """Warm each side up once, then alternate raw / orchestrated for `rounds` rounds.
    Returns (raw wall times, orchestrated wall times, orchestrated in-run times)."""
    in_run: list[float] = []
    raw = raw_side(steps, timeout)
    orchestrated = orchestrated_side(steps, timeout, in_run, wait_lags)
    print("warming up ...", flush=True)
    raw()
    orchestrated()
    in_run.clear()
    if wait_lags is not None:
        wait_lags.clear()
    raw_times: list[float] = []
    orchestrated_times: list[float] = []
    for index in range(1, rounds + 1):
        raw_times.append(raw())
        orchestrated_times.append(orchestrated())
        print(f"round {index}/{rounds}: raw {raw_times[-1]:.3f} s, orchestrated {orchestrated_times[-1]:.3f} s",
              flush=True)
    return raw_times, orchestrated_times, in_run


def report(steps: int, raw_times: Sequence[float], orchestrated_times: Sequence[float],
           in_run: Sequence[float], wait_lags: Sequence[float] = ()) -> None:
    raw_median = harness.median(raw_times)
    orchestrated_median = harness.median(orchestrated_times)
    rows = []
    for side, times, median in (("raw chain", raw_times, raw_median),
                                ("orchestrated", orchestrated_times, orchestrated_median)):
        rows.append([side, f"{median:.3f}", f"{median / steps * 1000:.2f}",
                     f"{min(times):.3f}", f"{max(times):.3f}"])
    print()
    print(f"{steps} sequential no-op steps, {len(raw_times)} rounds")
    print(harness.format_table(["side", "median s", "per step ms", "min s", "max s"], rows))
    print(f"ratio orchestrated/raw (median/median): {orchestrated_median / raw_median:.2f}")
    if in_run:
        print(f"orchestrated in-run time (started_at -> finished_at, median): {harness.median(in_run):.3f} s")
    if wait_lags:
        print(f"wait() returned after finished_at: median {harness.median(wait_lags) * 1000:.1f} ms, "
              f"max {max(wait_lags) * 1000:.1f} ms (target <= 50 ms)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks sequential", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per side (default 5)")
    parser.add_argument("--steps", type=int, default=100, help="tasks in the chain / workflow (default 100)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one run (default 120)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print machine facts and the table; returns the exit code."""
    args = parse_args(argv)
    print(f"== {NAME}: raw Celery chain vs orchestrated workflow ==")
    harness.print_facts(harness.machine_facts())
    with tempfile.TemporaryDirectory(prefix="bench-sequential-") as tmp, harness.bench_schema() as url:
        env = harness.deployment_env(NAME, url)
        harness.apply_env(env)  # before the first import of orchestrator / workers
        with harness.running_worker(env, Path(tmp) / "worker.log", concurrency=2, pool="prefork"):
            print(f"  worker      prefork -c 2, queues {', '.join(harness.queues_of(env))}", flush=True)
            wait_lags: list[float] = []
            results = measure(args.rounds, args.steps, args.timeout, wait_lags)
    report(args.steps, *results, wait_lags)
    return 0


if __name__ == "__main__":
    harness.interrupt_on_termination()
    raise SystemExit(main())
