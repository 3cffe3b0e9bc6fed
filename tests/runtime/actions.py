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


@app.task(name="tests.hold")
def hold(key, value=None, timeout=120):
    """Holds until the test lets it go: marks itself started (one entry per call in the Redis
    list `held:<key>`), then waits for the key `release:<key>` and returns `value`. Tests act on
    these signals instead of hoping a sleep is long enough; fails after `timeout` s unreleased."""
    client = _redis()
    client.rpush(f"held:{key}", os.getpid())
    deadline = time.monotonic() + timeout
    while not client.exists(f"release:{key}"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"hold {key}: not released within {timeout} s")
        time.sleep(0.05)
    return value
