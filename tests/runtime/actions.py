"""Actions used by the end-to-end tests (loaded by workers through ORCHESTRATOR_ACTIONS)."""

import os
import time

import redis

from workers.app import app


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ.get("ORCHESTRATOR_TEST_REDIS_URL", "redis://127.0.0.1:6379") + "/15")


@app.task(name="tests.add")
def add(a, b):
    return a + b


@app.task(name="tests.flaky")
def flaky(key, failures):
    """Fails `failures` times for a key (counted in Redis, shared by every worker process), then succeeds."""
    count = _redis().incr(f"flaky:{key}")
    if count <= failures:
        raise RuntimeError(f"flaky failure {count}")
    return count


@app.task(name="tests.count")
def count(key):
    """Counts its own executions per key (to prove nothing ran twice)."""
    return _redis().incr(f"count:{key}")


@app.task(name="tests.sleep_then")
def sleep_then(seconds, value=None):
    time.sleep(seconds)
    return value
