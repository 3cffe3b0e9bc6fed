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


def configure(broker_url: str, queue: str) -> Celery:
    """Point the app at `broker_url` (broker and result backend) and `queue`; returns it."""
    app.conf.update(broker_url=broker_url, result_backend=broker_url, task_default_queue=queue)
    return app


@app.task(name="plain.noop")
def noop(*_args, **_kwargs) -> None:
    """Does nothing (what core.noop does on the orchestrator's side)."""
    return None


if os.environ.get(BROKER_ENV):  # the worker process: configured by its environment
    configure(os.environ[BROKER_ENV], os.environ.get(QUEUE_ENV, "celery"))
