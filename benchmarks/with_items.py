"""Fan-out overhead: a with_items task over N items against a chord of N no-op tasks, twice.

Sides in one process run, alternating round by round, so their ratios are meaningful even when
absolute figures drift between runs (see ../shared/notes/performance-budget.md):

- plain chord: ``chord([plain.noop.si()] * N, plain.noop.si()).apply_async().get()`` on a plain
  Celery app with its own worker on Celery's defaults (early ack, prefetch 4, results on): what
  users run today;
- same-worker chord: the same with core.noop on the orchestrator's own worker (acks late,
  prefetch 1);
- orchestrated: ``submit(yaml_text).wait()`` of one task ``action: core.noop`` with
  ``with_items: "{{ range(N) | list }}"`` and ``input: {i: "{{ item }}"}`` (all items at once)
- orchestrated, window: the same task with ``concurrency: 50`` (a sliding window of 50 calls in
  flight), orchestrated side only: its per-item cost should not grow with N

For each size the table gives medians, per-item ms and the ratio to the raw chord; then, for each
side, the per-item cost at the largest size over the smallest (1.0 = linear in N).

    python -m benchmarks with_items [--sizes 1000,10000] [--rounds 3] [--window 50] [--no-plain]
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

NAME = "with_items"
PLAIN = "plain chord"
RAW = "same-worker chord"
ORCHESTRATED = "orchestrated"


def workflow_yaml(items: int, concurrency: int | None = None) -> str:
    """YAML text of a one-task workflow that runs core.noop once per item of range(items)."""
    window = f"\n    concurrency: {concurrency}" if concurrency else ""
    return (
        'version: "1.0"\n'
        "tasks:\n"
        "  - name: fan\n"
        "    action: core.noop\n"
        f'    with_items: "{{{{ range({items}) | list }}}}"{window}\n'
        '    input: {i: "{{ item }}"}\n'
    )


def raw_side(items: int, timeout: float, app=None) -> Callable[[], tuple[float, float]]:
    """A callable that runs one raw chord of `items` no-ops plus a no-op callback and returns its
    wall time and this (client) process's CPU time in seconds: core.noop on the orchestrator's
    worker, or plain.noop on `app` (the plain side)."""
    from celery import chord

    if app is None:
        from workers.app import app
        task = "core.noop"
    else:
        task = "plain.noop"

    def run() -> float:
        noop = app.signature(task, immutable=True)
        canvas = chord([noop] * items, app.signature(task, immutable=True))
        start, cpu = time.perf_counter(), time.process_time()
        result = canvas.apply_async()
        result.get(timeout=timeout)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        forget(result)  # drop the stored results (outside the timed span)
        del result
        gc.collect()  # the result graph holds cycles; free it now, not at interpreter exit
        return elapsed, cpu

    return run


def forget(result) -> None:
    """Best-effort removal of a chord's stored results: the callback's, the header's members',
    and the group's own record."""
    from redis.exceptions import RedisError

    try:
        result.forget()
        header = result.parent
        if header is not None:
            for child in getattr(header, "results", None) or ():
                child.forget()
            header.forget()
    except RedisError as exc:  # clean-up only; the keys also expire with result_expires
        print(f"(could not forget chord results: {exc})", flush=True)


def orchestrated_side(items: int, concurrency: int | None, timeout: float,
                      in_run: list[float]) -> Callable[[], tuple[float, float]]:
    """A callable that runs the with_items workflow through the Python API, checks that it
    succeeded with `items` results, and returns its wall time and this (client) process's CPU
    time; it also appends the run's own
    duration (started_at -> finished_at) to `in_run`."""
    from datetime import datetime

    from orchestrator import submit

    text = workflow_yaml(items, concurrency)

    def run() -> float:
        start, cpu = time.perf_counter(), time.process_time()
        summary = submit(text).wait(timeout)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        tasks = summary["tasks"]
        result = tasks[0].get("result") if len(tasks) == 1 else None
        if summary["status"] != "succeeded" or not isinstance(result, list) or len(result) != items:
            got = f"{len(result)} results" if isinstance(result, list) else f"result {str(result)[:80]!r}"
            raise RuntimeError(f"workflow run {summary['id']} (with_items over {items}, concurrency "
                               f"{concurrency or 'unbounded'}) ended {summary['status']} with {len(tasks)} "
                               f"task(s), {got}: {summary.get('error')}")
        began, ended = (datetime.fromisoformat(summary[k]) for k in ("started_at", "finished_at"))
        in_run.append((ended - began).total_seconds())
        release_client_results(summary["id"])  # outside the timed span
        return elapsed, cpu

    return run


def release_client_results(run_id: str) -> None:
    """Drop what this process still holds for the run's item calls, and their Redis results.

    The first items of the run are dispatched from this process (submit() starts the run here);
    with a Redis result backend, Celery's chord apply builds a GroupResult whose barrier
    subscribes this process to every header member's result and keeps the AsyncResult objects
    until their results are read, which a producer that never waits on them never does. Left
    alone they pile up (N Redis subscriptions and N objects per run) and are only released at
    interpreter exit, where their __del__ fails noisily."""
    from redis.exceptions import RedisError

    from workers.app import app

    backend = app.backend
    try:
        held = [result for mapping in backend._pending_results for task_id, waiters in list(mapping.items())
                if task_id.startswith(f"{run_id}-") for result in list(waiters.values())]
        for result in held:
            result.forget()
    except (AttributeError, TypeError, ValueError, RedisError) as exc:  # private Celery structures
        print(f"(could not release the run's client-side results: {exc!r})", flush=True)
    gc.collect()


@dataclass
class Figures:
    """One variant's measurements at one size, a value per measured round."""

    wall: list[float] = field(default_factory=list)    # submit/apply -> done, seconds
    cpu: list[float] = field(default_factory=list)     # this (client) process's CPU in that span
    in_run: list[float] = field(default_factory=list)  # orchestrated only: started_at -> finished_at


def measure(sizes: Sequence[int], rounds: int, window: int, timeout: float,
            plain_app=None) -> dict[int, dict[str, Figures]]:
    """Warm each variant up once at the smallest size, then for each size alternate plain /
    same-worker / orchestrated / orchestrated with a window for `rounds` rounds (no plain side
    without `plain_app`). Returns {size: {variant: figures}}."""
    windowed = f"{ORCHESTRATED}, c={window}"
    figures: dict[int, dict[str, Figures]] = {}
    warm = min(sizes)
    print(f"warming up ({warm} items) ...", flush=True)
    scratch: list[float] = []
    if plain_app is not None:
        raw_side(warm, timeout, plain_app)()
    raw_side(warm, timeout)()
    orchestrated_side(warm, None, timeout, scratch)()
    orchestrated_side(warm, window, timeout, scratch)()
    for size in sizes:
        variants = {PLAIN: Figures()} if plain_app is not None else {}
        variants.update({RAW: Figures(), ORCHESTRATED: Figures(), windowed: Figures()})
        runs = {PLAIN: raw_side(size, timeout, plain_app)} if plain_app is not None else {}
        runs.update({RAW: raw_side(size, timeout),
                     ORCHESTRATED: orchestrated_side(size, None, timeout, variants[ORCHESTRATED].in_run),
                     windowed: orchestrated_side(size, window, timeout, variants[windowed].in_run)})
        for index in range(1, rounds + 1):
            line = []
            for variant, run in runs.items():
                wall, cpu = run()
                variants[variant].wall.append(wall)
                variants[variant].cpu.append(cpu)
                line.append(f"{variant} {wall:.3f} s")
            print(f"{size} items, round {index}/{rounds}: {', '.join(line)}", flush=True)
        figures[size] = variants
    return figures


def report(figures: dict[int, dict[str, Figures]], rounds: int) -> None:
    per_item: dict[str, dict[int, float]] = {}
    for size, variants in figures.items():
        bases = {base: harness.median(variants[base].wall) for base in (PLAIN, RAW) if base in variants}
        rows = []
        for variant, got in variants.items():
            median = harness.median(got.wall)
            per_item.setdefault(variant, {})[size] = median / size * 1000
            rows.append([variant, f"{median:.3f}", f"{median / size * 1000:.3f}", f"{min(got.wall):.3f}",
                         f"{max(got.wall):.3f}", f"{harness.median(got.in_run):.3f}" if got.in_run else "-",
                         f"{harness.median(got.cpu):.2f}",
                         *(f"{median / base:.2f}" for base in bases.values())])
        print()
        print(f"with_items over {size} no-op items, {rounds} round(s), alternating")
        print(harness.format_table(["side", "median s", "per item ms", "min s", "max s", "in-run s",
                                    "client cpu s", *(f"ratio to {base}" for base in bases)], rows))
        walls = {variant: got.wall for variant, got in variants.items()}
        print(harness.ratio_lines(walls, ORCHESTRATED, list(bases), targets={PLAIN: 1.5, RAW: 1.5}))
    if len(figures) > 1:
        small, large = min(figures), max(figures)
        print()
        print(f"linearity: per-item ms at {large} items / per-item ms at {small} items (1.00 = linear)")
        rows = [[variant, f"{costs[small]:.3f}", f"{costs[large]:.3f}", f"{costs[large] / costs[small]:.2f}"]
                for variant, costs in per_item.items()]
        print(harness.format_table(["side", f"ms/item @{small}", f"ms/item @{large}", f"{large}/{small}"], rows))
    print("(in-run s: the orchestrated run's own started_at -> finished_at; client cpu s: CPU time of\n"
          " this benchmark process while waiting, which competes with the 2-process worker; medians)")


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive integers")
    return sorted(set(sizes))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks with_items", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=[1000, 10000],
                        help="comma-separated item counts (default 1000,10000)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per size and side (default 3)")
    parser.add_argument("--window", type=int, default=50,
                        help="concurrency of the windowed orchestrated variant (default 50)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for one run (default 900)")
    parser.add_argument("--no-plain", action="store_true", help="leave out the plain Celery side")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.window < 1:
        parser.error("--rounds and --window must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print machine facts and the tables; returns the exit code."""
    args = parse_args(argv)
    print(f"== {NAME}: orchestrated with_items vs Celery chords ==")
    harness.print_facts(harness.machine_facts())
    with tempfile.TemporaryDirectory(prefix="bench-with-items-") as tmp, harness.bench_schema() as url:
        env = harness.deployment_env(NAME, url)
        harness.apply_env(env)  # before the first import of orchestrator / workers
        with harness.both_workers(NAME, env, Path(tmp), plain=not args.no_plain) as (worker, _, plain_app):
            try:
                figures = measure(args.sizes, args.rounds, args.window, args.timeout, plain_app)
            except (RuntimeError, TimeoutError):
                print(f"\nworker log (tail):\n{worker.log_tail()}", flush=True)
                raise
    report(figures, args.rounds)
    return 0


if __name__ == "__main__":
    harness.interrupt_on_termination()
    raise SystemExit(main())
