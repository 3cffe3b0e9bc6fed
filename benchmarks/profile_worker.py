"""Where one sequential step's time goes on the worker side: a real worker, profiled.

A worker with the solo pool (one process: the consumer, the task and the publish of the next call
all in its main thread, so one profile sees the whole step) runs --runs sequential workflows of
--steps core.noop steps, first without the profiler (the wall time per step), then under cProfile
(``python -m cProfile -m orchestrator worker``). A raw Celery chain of as many core.noop tasks on
the same kind of worker, unprofiled, gives the floor of a step that has no state: one broker hop.

The profile is cut into the parts of a step (message receipt and acknowledgement, Celery's task
trace, task events, the action, the supervisor's transaction -- lock, load, conductor, write,
commit --, the publish of the next call, waiting on the broker) by the cumulative time of the
functions that make each part, as a share of the profiled loop, and converted to milliseconds a
step with the unprofiled wall time (cProfile slows Python code more than waits, so the shares of
Python-heavy parts are overstated). --output keeps the raw stats.

    python -m benchmarks profile_worker [--steps 100] [--runs 5] [--output worker.prof]
"""

from __future__ import annotations

import argparse
import pstats
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from . import harness
from .sequential import raw_side, workflow_yaml

NAME = "profile_worker"

# (part, [(file suffix, function name), ...]): the part's time is the summed cumulative time of
# those functions (none calls another of the same part). Parts nested in another are indented
# in the table and included in their parent's time.
PARTS: list[tuple[str, int, list[tuple[str, str]]]] = [
    ("event loop (all the worker did)", 0, [("celery/worker/loops.py", "asynloop")]),
    ("waiting for the broker (epoll)", 1, [("~", "<method 'poll' of 'select.epoll' objects>")]),
    ("message receipt: read, decode, request", 1, [("kombu/transport/redis.py", "_brpop_read")]),
    ("task events (received, started, succeeded)", 1, [("celery/events/dispatcher.py", "send")]),
    ("acknowledgement (acks late)", 1, [("kombu/message.py", "ack")]),
    ("celery task trace (around the task)", 1, [("celery/app/trace.py", "trace_task")]),
    ("orchestrator.action (the task)", 2, [("orchestrator/tasks.py", "action")]),
    ("the action and its traces", 3, [("orchestrator/runner.py", "run_action")]),
    ("supervisor step (transaction)", 3, [("orchestrator/supervisor.py", "_decide_and_write")]),
    ("connection checkout, BEGIN", 4, [("sqlalchemy/engine/base.py", "begin")]),
    ("lock the run row + variables", 4, [("orchestrator/store/runs.py", "lock_run")]),
    ("load the state", 4, [("orchestrator/store/runs.py", "load_state")]),
    ("conductor (decide)", 4, [("orchestrator/engine/conductor.py", "apply"),
                               ("orchestrator/orquesta/conductor.py", "apply_all")]),
    ("write the step (one statement)", 4, [("orchestrator/store/runs.py", "write_step")]),
    ("commit", 4, [("sqlalchemy/engine/base.py", "commit")]),
    ("publish the next call", 3, [("orchestrator/canvas.py", "send")]),
]


def part_times(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds of each part's functions."""
    found: dict[str, float] = {}
    for part, _, functions in PARTS:
        total = 0.0
        for (filename, _line, function), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
            if any(filename.endswith(suffix) and function == name for suffix, name in functions):
                total += ct
        found[part] = total
    return found


def run_workload(runs: int, steps: int, timeout: float) -> list[float]:
    """`runs` sequential workflows one after the other; wall seconds per step of each."""
    from orchestrator import submit

    text = workflow_yaml(steps)
    per_step = []
    for _ in range(runs):
        began = time.perf_counter()
        summary = submit(text).wait(timeout)
        per_step.append((time.perf_counter() - began) / steps)
        if summary["status"] != "succeeded":
            raise RuntimeError(f"run {summary['id']} ended {summary['status']}: {summary.get('error')}")
    return per_step


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks profile_worker", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="sequential core.noop steps per run (default 100)")
    parser.add_argument("--runs", type=int, default=5, help="runs measured, each way (default 5)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one run (default 300)")
    parser.add_argument("--output", default=None, help="also keep the raw cProfile stats in this file")
    parser.add_argument("--rounds", type=int, default=1, help="accepted for `python -m benchmarks --rounds`")
    args = parser.parse_args(argv)
    if min(args.steps, args.runs) < 1:
        parser.error("--steps and --runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"== {NAME}: {args.runs} x {args.steps} sequential steps on a solo worker, profiled ==")
    harness.print_facts(harness.machine_facts())
    with tempfile.TemporaryDirectory(prefix="bench-profile-worker-") as tmp, harness.bench_schema() as url:
        tmp = Path(tmp)
        env = harness.deployment_env(NAME, url)
        harness.apply_env(env)
        with harness.running_worker(env, tmp / "plain.log", pool="solo", concurrency=1):
            run_workload(1, args.steps, args.timeout)  # warm-up
            chain = raw_side(args.steps, args.timeout)
            chain()
            raw = [chain() / args.steps for _ in range(args.runs)]
            unprofiled = run_workload(args.runs, args.steps, args.timeout)
        output = Path(args.output) if args.output else tmp / "worker.prof"
        with harness.running_worker(env, tmp / "profiled.log", pool="solo", concurrency=1,
                                    python_args=["-m", "cProfile", "-o", str(output)]):
            run_workload(1, args.steps, args.timeout)
            profiled = run_workload(args.runs, args.steps, args.timeout)
        stats = pstats.Stats(str(output))
    steps = (args.runs + 1) * args.steps  # the profile also holds the warm-up run
    wall = harness.median(unprofiled)
    times = part_times(stats)
    loop = times[PARTS[0][0]] or 1.0
    print()
    print(f"per step: orchestrated {wall * 1000:.2f} ms, raw chain on the same solo worker "
          f"{harness.median(raw) * 1000:.2f} ms, orchestrated under cProfile {harness.median(profiled) * 1000:.2f} ms "
          f"(medians of {args.runs} runs of {args.steps} steps)")
    rows = []
    for part, depth, _ in PARTS:
        seconds = times[part]
        rows.append([("  " * depth) + part, f"{seconds / steps * 1000:.3f}", f"{seconds / loop * 100:.1f}",
                     f"{seconds / loop * wall * 1000:.2f}"])
    print(harness.format_table(["part of a step", "profiled ms/step", "share %", "est. ms/step unprofiled"], rows))
    if args.output:
        print(f"raw stats in {args.output} (python -m pstats {args.output})")
    return 0


if __name__ == "__main__":
    harness.interrupt_on_termination()
    raise SystemExit(main())
