"""A profile of the supervisor's hot path: N sequential steps in this process, on real PostgreSQL
and Redis, under cProfile.

No worker process: this process plays the worker. Every call the supervisor dispatches is still
published to Redis by the real canvas (into the benchmark's own queues, which nobody consumes and
which are purged afterwards), and is also recorded; the recorded calls are then run here, one at a
time, through the real ``orchestrator.action`` task body. So one step is what a worker does for a
single call: trace "running", run core.noop, trace the envelope, apply it inline (lock, load,
conductor, write, commit), publish the next call. Message consumption and acknowledgement by a
Celery worker are not included.

Prints the wall time per step without and with the profiler, then the top functions by cumulative
time (and by own time). ``--output FILE`` keeps the raw stats for ``python -m pstats FILE`` or
snakeviz.

    python -m benchmarks profile [--steps 200] [--limit 30] [--output steps.prof]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from collections import deque
from collections.abc import Sequence

from . import harness
from .sequential import workflow_yaml

NAME = "profile"


class InlineDriver:
    """Records what the supervisor dispatches (after publishing it as usual) and runs it here."""

    def __init__(self):
        from orchestrator.runtime import supervisor

        self.supervisor = supervisor()
        canvas = self.supervisor.canvas
        self.pending: deque = deque()
        publish = canvas.send

        def send(run_id, workflow, calls, **options):
            calls = list(calls)
            publish(run_id, workflow, calls, **options)  # the real publish to Redis stays on the measured path
            for call in calls:
                signature = canvas.signature(run_id, workflow, call, inline=not call.barrier)
                if options.get("seen") is not None and len(calls) == 1 and not call.barrier:
                    signature.args[0]["seen"] = options["seen"]  # as canvas.send puts the run's snapshot
                self.pending.append(signature)

        canvas.send = send  # this instance only, in this process

    def run(self, steps: int) -> tuple[float, dict]:
        """Start a `steps`-step workflow and run its calls here until none is left; returns the
        wall time and the run's summary."""
        from orchestrator import submit
        from orchestrator.tasks import action

        text = workflow_yaml(steps)
        start = time.perf_counter()
        handle = submit(text)
        while self.pending:
            signature = self.pending.popleft()
            action(*signature.args)  # the task body, in this process
        elapsed = time.perf_counter() - start
        summary = handle.summary()
        if summary["status"] != "succeeded" or len(summary["tasks"]) != steps:
            raise RuntimeError(f"run {summary['id']} ended {summary['status']} with {len(summary['tasks'])} "
                               f"of {steps} tasks: {summary.get('error')}")
        return elapsed, summary


def print_stats(profile: cProfile.Profile, sort: str, limit: int) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.strip_dirs().sort_stats(sort).print_stats(limit)
    print(out.getvalue().strip("\n"))
    print()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks profile", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="sequential core.noop steps (default 200)")
    parser.add_argument("--limit", type=int, default=30, help="functions listed per table (default 30)")
    parser.add_argument("--output", default=None, help="also write the raw cProfile stats to this file")
    parser.add_argument("--rounds", type=int, default=1, help="accepted for `python -m benchmarks --rounds`; "
                                                              "unprofiled runs timed (default 1)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.limit < 1 or args.rounds < 1:
        parser.error("--steps, --limit and --rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"== {NAME}: {args.steps} sequential supervisor steps in-process (PostgreSQL, Redis) under cProfile ==")
    harness.print_facts(harness.machine_facts())
    with harness.bench_schema() as url:
        env = harness.deployment_env(NAME, url)
        harness.apply_env(env)  # before the first import of orchestrator / workers
        try:
            driver = InlineDriver()
            print("warming up (20 steps) ...", flush=True)
            driver.run(20)
            plain = [driver.run(args.steps)[0] for _ in range(args.rounds)]
            profile = cProfile.Profile()
            profile.enable()
            profiled, _ = driver.run(args.steps)
            profile.disable()
        finally:
            harness.purge_queues(env["ORCHESTRATOR_BROKER_URL"], harness.queues_of(env))
    wall = harness.median(plain)
    print()
    print(f"{args.steps} steps: {wall:.3f} s without the profiler ({wall / args.steps * 1000:.2f} ms a step, "
          f"median of {len(plain)}), {profiled:.3f} s under cProfile ({profiled / args.steps * 1000:.2f} ms a step)")
    if args.output:
        profile.dump_stats(args.output)
        print(f"raw stats written to {args.output}")
    print()
    print(f"-- top {args.limit} by cumulative time --")
    print_stats(profile, "cumulative", args.limit)
    print(f"-- top {args.limit} by own time --")
    print_stats(profile, "tottime", args.limit)
    return 0


if __name__ == "__main__":
    harness.interrupt_on_termination()
    raise SystemExit(main())
