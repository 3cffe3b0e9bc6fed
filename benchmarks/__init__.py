"""Benchmarks: orchestration overhead against Celery, on real Redis and PostgreSQL.

The comparisons (sequential, with_items, throughput) run two Celery baselines beside the engine:
a plain Celery app on Celery's defaults with a worker of its own (plain.py: what users run
today) and the same canvas on the orchestrator's own worker; both ratios are printed.

    python -m benchmarks                        # every registered benchmark
    python -m benchmarks sequential --rounds 3  # one of them, with its options
    python -m benchmarks with_items --sizes 1000,10000 --rounds 1
    python -m benchmarks step_cost --steps 2000
    python -m benchmarks throughput --workflows 200,2000 --rounds 3
    python -m benchmarks conductor --cap 20     # pure conductors, ours vs Orquesta's (own venv)
    python -m benchmarks profile --steps 200    # cProfile of supervisor steps (not run by "all")
    python -m benchmarks flat --runs 1000000    # 10^3 vs 10^6 finished runs (not run by "all", nor these:)
    python -m benchmarks scale --workers 4      # 2,000 runs in flight on 4 workers: steps/s, PostgreSQL load
    python -m benchmarks profile_worker         # where a step's time goes in a real (solo) worker
    python -m benchmarks worker_config          # what acks late, prefetch 1 and task events cost plain Celery

Each benchmark is a module with a ``main(argv) -> int``, registered in ``BENCHMARKS``. Benchmarks
print figures only; they assert nothing about speed. Only ratios measured in the same run are
comparable (absolute times drift between runs).
"""

from __future__ import annotations

# name -> module (imported only when run, so each benchmark sets its environment first)
BENCHMARKS: dict[str, str] = {
    "sequential": "benchmarks.sequential",
    "with_items": "benchmarks.with_items",
    "step_cost": "benchmarks.step_cost",
    "throughput": "benchmarks.throughput",
    "conductor": "benchmarks.conductor",
}

# name -> module of commands that are not comparisons, run only when named
TOOLS: dict[str, str] = {
    "profile": "benchmarks.profile_steps",
    "flat": "benchmarks.flat",
    "scale": "benchmarks.scale",
    "profile_worker": "benchmarks.profile_worker",
    "worker_config": "benchmarks.worker_config",
}
