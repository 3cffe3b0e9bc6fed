"""What the orchestrator's worker configuration costs plain Celery, before any engine code runs.

The orchestrator's worker acknowledges late (a killed worker loses no call), prefetches one
message per process (a long action does not hold calls another process could run) and sends
task events (Flower shows every call): installation.py. The comparisons of the other benchmarks
put the engine on that worker beside a plain app on Celery's defaults, so part of each ratio is
the configuration, not the engine. This benchmark measures that part alone: plain.noop (the
plain side's task, no orchestrator code) on plain Celery workers that differ only in those
settings, turned on one at a time and all together, alternating round by round:

- sequential: a chain of --steps no-ops, `apply_async().get()`;
- throughput: --workflows chains of 3 no-ops sent at once, each `.get()`.

Each worker is `celery -A benchmarks.plain worker -c 2` with a queue of its own. Printed: medians
and each configuration's ratio to Celery's defaults (>1: slower).

    python -m benchmarks worker_config [--rounds 7] [--steps 100] [--workflows 200]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from . import harness, plain
from .sequential import raw_side as chain_side
from .throughput import raw_side as chains_side

NAME = "worker_config"

DEFAULTS = "Celery's defaults"
# name -> what the worker's environment turns on (benchmarks/plain.py)
CONFIGS: dict[str, dict[str, str]] = {
    DEFAULTS: {},
    "acks late": {plain.ACKS_LATE_ENV: "1"},
    "prefetch 1": {plain.PREFETCH_ENV: "1"},
    "task events": {plain.EVENTS_ENV: "1"},
    "all three (the orchestrator's)": {plain.ACKS_LATE_ENV: "1", plain.PREFETCH_ENV: "1", plain.EVENTS_ENV: "1"},
}


def measure(sides: dict[str, Callable[[], float]], rounds: int, label: str) -> dict[str, list[float]]:
    print(f"warming up ({label}) ...", flush=True)
    for run in sides.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for index in range(1, rounds + 1):
        for name, run in sides.items():
            times[name].append(run())
        print(f"{label} round {index}/{rounds}: " + ", ".join(f"{n} {t[-1]:.3f} s" for n, t in times.items()),
              flush=True)
    return times


def report(title: str, times: dict[str, list[float]], unit: Callable[[float], str], unit_name: str) -> None:
    base = harness.median(times[DEFAULTS])
    rows = []
    for name, values in times.items():
        median = harness.median(values)
        per_round = harness.median([t / d for t, d in zip(values, times[DEFAULTS])])
        rows.append([name, f"{median:.3f}", unit(median), f"{median / base:.2f}", f"{per_round:.2f}"])
    print()
    print(title)
    print(harness.format_table(["worker configuration", "median s", unit_name, "x defaults (medians)",
                                "x defaults (median of rounds)"], rows))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks worker_config", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds per configuration (default 7)")
    parser.add_argument("--steps", type=int, default=100, help="no-ops in the sequential chain (default 100)")
    parser.add_argument("--workflows", type=int, default=200, help="chains of 3 sent at once (default 200)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one round (default 300)")
    args = parser.parse_args(argv)
    if min(args.rounds, args.steps, args.workflows) < 1:
        parser.error("--rounds, --steps and --workflows must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"== {NAME}: plain Celery workers with the orchestrator's settings, one at a time ==")
    harness.print_facts(harness.machine_facts())
    with tempfile.TemporaryDirectory(prefix="bench-worker-config-") as tmp, ExitStack() as stack:
        apps = {}
        for index, (name, settings) in enumerate(CONFIGS.items()):
            env = {**harness.plain_env(f"{NAME}{index}"), **settings}
            stack.enter_context(harness.running_plain_worker(env, Path(tmp) / f"worker{index}.log"))
            apps[name] = _client(env)
            print(f"  worker {index}    {name}: celery -A benchmarks.plain worker -c 2, queue "
                  f"{env[harness.PLAIN_QUEUE_ENV]}", flush=True)
        sequential = measure({name: chain_side(args.steps, args.timeout, app) for name, app in apps.items()},
                             args.rounds, "sequential")
        throughput = measure({name: _wall(chains_side(args.workflows, 3, args.timeout, app))
                              for name, app in apps.items()}, args.rounds, "throughput")
    report(f"a chain of {args.steps} no-ops, {args.rounds} rounds, alternating", sequential,
           lambda s: f"{s / args.steps * 1000:.2f}", "per step ms")
    report(f"{args.workflows} chains of 3 no-ops at once, {args.rounds} rounds, alternating", throughput,
           lambda s: f"{args.workflows * 3 / s:.0f}", "tasks/s")
    return 0


def _client(env: dict[str, str]):
    """A client app of its own for one worker's queue (the module's plain app is one object)."""
    from celery import Celery

    app = Celery(f"plain-{env[harness.PLAIN_QUEUE_ENV]}", set_as_current=False)
    broker = env[harness.PLAIN_BROKER_ENV]
    app.conf.update(broker_url=broker, result_backend=broker, task_default_queue=env[harness.PLAIN_QUEUE_ENV])
    return app


def _wall(run: Callable[[], object]) -> Callable[[], float]:
    return lambda: run().wall


if __name__ == "__main__":
    harness.interrupt_on_termination()
    raise SystemExit(main())
