"""The plain side: a Celery app as users run one today, on Celery's defaults.

Nothing of the orchestrator's configuration: tasks are acknowledged early (before they run), the
worker prefetches 4 messages per process, results are stored (Redis, as the broker), no task
events. Only the broker URL and the queue are set, from the environment (so the worker process,
``celery -A benchmarks.plain worker``, and the benchmark agree), and each benchmark run gets a
queue of its own on a Redis database of its own (harness.plain_env).

The benchmark process configures the same app with `configure()` before use, since it may run
several benchmarks one after the other.
"""

from __future__ import annotations

import os

from celery import Celery

BROKER_ENV = "BENCH_PLAIN_BROKER_URL"
QUEUE_ENV = "BENCH_PLAIN_QUEUE"

app = Celery("plain", set_as_current=False)


# What benchmarks/worker_config.py turns on, one at a time, in the worker's environment: the
# settings the orchestrator's worker runs with (installation.py), on this plain app.
ACKS_LATE_ENV = "BENCH_PLAIN_ACKS_LATE"   # task_acks_late (and reject_on_worker_lost)
PREFETCH_ENV = "BENCH_PLAIN_PREFETCH"     # worker_prefetch_multiplier
EVENTS_ENV = "BENCH_PLAIN_EVENTS"         # worker_send_task_events


def configure(broker_url: str, queue: str) -> Celery:
    """Point the app at `broker_url` (broker and result backend) and `queue`; returns it."""
    app.conf.update(broker_url=broker_url, result_backend=broker_url, task_default_queue=queue)
    return app


def adjust(env: dict[str, str]) -> None:
    """Celery settings of the orchestrator's worker that `env` asks for (worker_config.py); none
    by default."""
    if env.get(ACKS_LATE_ENV):
        app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True)
    if env.get(PREFETCH_ENV):
        app.conf.update(worker_prefetch_multiplier=int(env[PREFETCH_ENV]))
    if env.get(EVENTS_ENV):
        app.conf.update(worker_send_task_events=True)


@app.task(name="plain.noop")
def noop(*_args, **_kwargs) -> None:
    """Does nothing (what core.noop does on the orchestrator's side)."""
    return None


if os.environ.get(BROKER_ENV):  # the worker process: configured by its environment
    configure(os.environ[BROKER_ENV], os.environ.get(QUEUE_ENV, "celery"))
    adjust(dict(os.environ))
