"""Sequential overhead: an N-step workflow of core.noop against a chain of N no-op tasks, twice.

Three sides in one process run, alternating round by round, so their ratios are meaningful even
when absolute figures drift between runs (see ../shared/notes/performance-budget.md):

- plain chain: ``chain(plain.noop.si() x N).apply_async().get()`` on a plain Celery app with its
  own worker on Celery's defaults (early ack, prefetch 4, results on): what users run today;
- same-worker chain: ``chain(core.noop.si() x N)`` on the orchestrator's own worker (acks late,
  prefetch 1, task events on);
- orchestrated: ``submit(yaml_text).wait()`` of ``s1 -> s2 -> ... -> sN`` (``next: [{do: sK}]``).

Both workers are prefork with 2 processes on the same Redis server (separate databases).

    python -m benchmarks sequential [--rounds 7] [--steps 100] [--no-plain]
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


def raw_side(steps: int, timeout: float, app=None) -> Callable[[], float]:
    """A callable that runs one raw chain of `steps` no-ops and returns its wall time in seconds:
    core.noop on the orchestrator's worker, or plain.noop on `app` (the plain side)."""
    from celery import chain

    if app is None:
        from workers.app import app
        task = "core.noop"
    else:
        task = "plain.noop"

    def run() -> float:
        canvas = chain(*(app.signature(task, immutable=True) for _ in range(steps)))
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


PLAIN, SAME, ORCHESTRATED = "plain chain", "same-worker chain", "orchestrated"


def measure(rounds: int, steps: int, timeout: float, plain_app=None,
            wait_lags: list[float] | None = None) -> tuple[dict[str, list[float]], list[float]]:
    """Warm each side up once, then alternate plain / same-worker / orchestrated for `rounds`
    rounds (no plain side without `plain_app`). Returns ({side: wall times}, orchestrated in-run
    times)."""
    in_run: list[float] = []
    sides = {}
    if plain_app is not None:
        sides[PLAIN] = raw_side(steps, timeout, plain_app)
    sides[SAME] = raw_side(steps, timeout)
    sides[ORCHESTRATED] = orchestrated_side(steps, timeout, in_run, wait_lags)
    print("warming up ...", flush=True)
    for run in sides.values():
        run()
    in_run.clear()
    if wait_lags is not None:
        wait_lags.clear()
    times: dict[str, list[float]] = {side: [] for side in sides}
    for index in range(1, rounds + 1):
        for side, run in sides.items():
            times[side].append(run())
        print(f"round {index}/{rounds}: " + ", ".join(f"{side} {t[-1]:.3f} s" for side, t in times.items()),
              flush=True)
    return times, in_run


def report(steps: int, times: dict[str, list[float]], in_run: Sequence[float],
           wait_lags: Sequence[float] = ()) -> None:
    medians = {side: harness.median(t) for side, t in times.items()}
    rows = [[side, f"{m:.3f}", f"{m / steps * 1000:.2f}", f"{min(times[side]):.3f}", f"{max(times[side]):.3f}"]
            for side, m in medians.items()]
    print()
    print(f"{steps} sequential no-op steps, {len(times[ORCHESTRATED])} rounds, alternating")
    print(harness.format_table(["side", "median s", "per step ms", "min s", "max s"], rows))
    print(harness.ratio_lines(times, ORCHESTRATED, [PLAIN, SAME], targets={PLAIN: 1.4, SAME: 1.25}))
    if in_run:
        print(f"orchestrated in-run time (started_at -> finished_at, median): {harness.median(in_run):.3f} s")
    if wait_lags:
        print(f"wait() returned after finished_at: median {harness.median(wait_lags) * 1000:.1f} ms, "
              f"max {max(wait_lags) * 1000:.1f} ms (target <= 50 ms)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks sequential", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds per side (default 7)")
    parser.add_argument("--steps", type=int, default=100, help="tasks in the chain / workflow (default 100)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one run (default 120)")
    parser.add_argument("--no-plain", action="store_true", help="leave out the plain Celery side")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print machine facts and the table; returns the exit code."""
    args = parse_args(argv)
    print(f"== {NAME}: orchestrated workflow vs Celery chains ==")
    harness.print_facts(harness.machine_facts())
    with tempfile.TemporaryDirectory(prefix="bench-sequential-") as tmp, harness.bench_schema() as url:
        env = harness.deployment_env(NAME, url)
        harness.apply_env(env)  # before the first import of orchestrator / workers
        with harness.both_workers(NAME, env, Path(tmp), plain=not args.no_plain) as (_, _, plain_app):
            wait_lags: list[float] = []
            times, in_run = measure(args.rounds, args.steps, args.timeout, plain_app, wait_lags)
    report(args.steps, times, in_run, wait_lags)
    return 0


if __name__ == "__main__":
    harness.interrupt_on_termination()
    raise SystemExit(main())
