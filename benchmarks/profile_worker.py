"""Where one sequential step's time goes on the worker side: a real worker, profiled.

A worker with the solo pool (one process: the consumer, the task and the publish of the next call
all in its main thread, so one profile sees the whole step) runs --runs sequential workflows of
--steps core.noop steps, first without the profiler (the wall time per step), then with cProfile
on after a warm-up run (benchmarks/worker_profiler.py, imported by the worker, starts it on a
signal and writes the stats at shutdown). A raw Celery chain of as many core.noop
tasks on the same kind of worker, unprofiled, gives the floor of a step that has no state.

Two tables, both as shares of the profiled event loop converted to milliseconds a step with the
unprofiled wall time (cProfile slows Python code more than waits on sockets, so the shares of
Python-heavy parts are overstated):

- where the time is spent, by the exclusive time of every function grouped by what it is: waiting
  for the next message, waiting on PostgreSQL (round trips, the server's work, the commit's
  flush), on Redis, and the CPU of each library and of our code;
- the parts of a step, by the cumulative time of the functions that make each part (message
  receipt, acknowledgement, task events, Celery's trace, the action, the supervisor's transaction
  -- lock, load, conductor, write, commit --, the publish of the next call).

--output keeps the raw stats.

    python -m benchmarks profile_worker [--steps 100] [--runs 5] [--output worker.prof]
"""

from __future__ import annotations

import argparse
import os
import pstats
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from . import harness
from .sequential import raw_side, workflow_yaml

NAME = "profile_worker"

# (part, depth, [(file suffix, function name), ...]): the part's time is the summed cumulative
# time of those functions (none calls another of the same part). A part at depth d + 1 is
# included in the one above it at depth d.
PARTS: list[tuple[str, int, list[tuple[str, str]]]] = [
    ("waiting for the next message (epoll)", 1, [("~", "<method 'poll' of 'select.epoll' objects>")]),
    ("a message taken and handled (BRPOP reply onward)", 1, [("kombu/transport/redis.py", "_brpop_read")]),
    ("celery: request, strategy, solo pool", 2, [("celery/worker/consumer/consumer.py", "on_task_received")]),
    ("celery task trace (around the task)", 3, [("celery/app/trace.py", "trace_task")]),
    ("orchestrator.action (the task)", 4, [("orchestrator/tasks.py", "action")]),
    ("the action and its traces", 5, [("orchestrator/runner.py", "run_action")]),
    ("supervisor step: the transaction", 5, [("orchestrator/supervisor.py", "_decide_and_write"),
                                             ("orchestrator/supervisor.py", "_decide_from_snapshot")]),
    ("BEGIN + lock the run row and variables (none from a snapshot)", 6,
     [("orchestrator/store/runs.py", "lock_run")]),
    ("load the state", 6, [("orchestrator/store/runs.py", "load_state")]),
    ("conductor (decide)", 6, [("orchestrator/engine/conductor.py", "apply"),
                               ("orchestrator/orquesta/conductor.py", "apply_all")]),
    ("write the step (fold + one statement, with BEGIN from a snapshot, and COMMIT)", 6,
     [("orchestrator/store/runs.py", "write_step")]),
    ("COMMIT on its own (none when the write carries it)", 6, [("sqlalchemy/engine/base.py", "_commit_impl")]),
    ("publish the next call", 5, [("orchestrator/canvas.py", "send")]),
    ("task events queued (received, started, succeeded)", 1, [("celery/events/dispatcher.py", "send")]),
    ("task events published (the queued ones, batched)", 1, [("celery/events/dispatcher.py", "flush")]),
    ("acknowledgement (after the task: acks late)", 1, [("kombu/message.py", "ack")]),
]

# Exclusive time, by what the function is: the first matching (substring of the file, or of the
# builtin's name) wins.
WHERE: list[tuple[str, tuple[str, ...]]] = [
    ("waiting for the next message (epoll)", ("'poll' of 'select.epoll'",)),
    ("PostgreSQL: driver and waits (round trips, server work, flush)", ("/psycopg/", "psycopg_binary")),
    ("Redis: socket reads and writes (round trips)", ("'recv' of '_socket", "'sendall' of '_socket",
                                                      "'send' of '_socket", "'recv_into' of '_socket")),
    ("Redis: redis-py", ("/redis/",)),
    ("kombu", ("/kombu/",)),
    ("celery, billiard, vine", ("/celery/", "/billiard/", "/vine/")),
    ("SQLAlchemy", ("/sqlalchemy/",)),
    ("orchestrator", ("/orchestrator/", "/workers/")),
    ("json", ("/json/", "'encode' of '_json", "_json.")),
    ("the rest (stdlib, builtins)", ("",)),
]


def where_times(stats: pstats.Stats) -> dict[str, float]:
    found = dict.fromkeys((name for name, _ in WHERE), 0.0)
    for (filename, _line, function), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():
        key = filename if filename != "~" else function
        for name, needles in WHERE:
            if any(needle in key for needle in needles):
                found[name] += tt
                break
    return found


def redis_sends(stats: pstats.Stats) -> int:
    """Redis commands or pipelines sent: how many times a socket sent (only redis-py uses Python
    sockets here). PostgreSQL round trips are counted by the worker itself (round_trips.py)."""
    return sum(nc for (filename, _line, function), (_cc, nc, _tt, _ct, _callers) in stats.stats.items()
               if filename == "~" and function == "<method 'sendall' of '_socket.socket' objects>")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    from .worker_profiler import OUTPUT_ENV, START_SIGNAL

    args = parse_args(argv)
    print(f"== {NAME}: {args.runs} x {args.steps} sequential steps on a solo worker, profiled ==")
    harness.print_facts(harness.machine_facts())
    with tempfile.TemporaryDirectory(prefix="bench-profile-worker-") as tmp, harness.bench_schema() as url:
        tmp = Path(tmp)
        output = Path(args.output).resolve() if args.output else tmp / "worker.prof"
        env = harness.deployment_env(NAME, url)
        harness.apply_env(env)
        with harness.running_worker(env, tmp / "plain.log", pool="solo", concurrency=1) as worker:
            run_workload(1, args.steps, args.timeout)  # warm-up
            chain = raw_side(args.steps, args.timeout)
            chain()
            cpu = cpu_seconds(worker.proc.pid)
            raw = [chain() / args.steps for _ in range(args.runs)]
            raw_cpu, cpu = cpu_seconds(worker.proc.pid) - cpu, cpu_seconds(worker.proc.pid)
            unprofiled = run_workload(args.runs, args.steps, args.timeout)
            ours_cpu = cpu_seconds(worker.proc.pid) - cpu
        env = harness.deployment_env(NAME, url, extra={"ORCHESTRATOR_ACTIONS": "benchmarks.worker_profiler",
                                                       OUTPUT_ENV: str(output)})
        harness.apply_env(env)
        with harness.running_worker(env, tmp / "profiled.log", pool="solo", concurrency=1) as worker:
            run_workload(1, args.steps, args.timeout)
            os.kill(worker.proc.pid, START_SIGNAL)  # the worker is idle: the warm-up run has ended
            profiled = run_workload(args.runs, args.steps, args.timeout)
        stats = pstats.Stats(str(output))
        postgres = int(Path(str(output) + ".pg").read_text())
    steps = args.runs * args.steps
    wall = harness.median(unprofiled)
    parts = part_times(stats)
    loop = stats.total_tt or 1.0  # everything the worker did with the profiler on
    print()
    print(f"per step: orchestrated {wall * 1000:.2f} ms, raw chain on the same solo worker "
          f"{harness.median(raw) * 1000:.2f} ms, orchestrated with the profiler on {harness.median(profiled) * 1000:.2f} ms "
          f"(medians of {args.runs} runs of {args.steps} steps)")
    print(f"worker CPU per step (user + system, unprofiled): orchestrated {ours_cpu / steps * 1000:.2f} ms, "
          f"raw chain {raw_cpu / steps * 1000:.2f} ms")
    print(f"round trips per step (do not depend on the load): PostgreSQL {postgres / steps:.2f}, "
          f"Redis {redis_sends(stats) / steps:.2f}")
    print()
    rows = [[name, f"{seconds / steps * 1000:.3f}", f"{seconds / loop * 100:.1f}", f"{seconds / loop * wall * 1000:.2f}"]
            for name, seconds in where_times(stats).items()]
    print(harness.format_table(["where the time goes (exclusive)", "profiled ms/step", "share %",
                                "est. ms/step"], rows))
    print()
    rows = [["all the worker did", f"{loop / steps * 1000:.3f}", "100.0", f"{wall * 1000:.2f}"]]
    rows += [[("  " * depth) + part, f"{parts[part] / steps * 1000:.3f}", f"{parts[part] / loop * 100:.1f}",
              f"{parts[part] / loop * wall * 1000:.2f}"] for part, depth, _ in PARTS]
    print(harness.format_table(["part of a step (inclusive)", "profiled ms/step", "share %", "est. ms/step"], rows))
    if args.output:
        print(f"raw stats in {args.output} (python -m pstats {args.output})")
    return 0


if __name__ == "__main__":
    harness.interrupt_on_termination()
    raise SystemExit(main())
