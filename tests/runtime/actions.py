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


def _call_id() -> str:
    """The id of the orchestrator call running this action (its Celery task id)."""
    return app.tasks["orchestrator.action"].request.id or "?"


def _record(line: str, suffix: str = "") -> None:
    path = os.environ.get("ORCHESTRATOR_TEST_EFFECTS")
    if path:
        with open(path + suffix, "a") as out:  # one short O_APPEND write per line: lines never interleave
            out.write(line + "\n")


@app.task(name="tests.effect")
def effect(seconds=0.0, value=None, gate=""):
    """Sleeps, waits until the file `gate` exists (when one is named: the test holds the call
    running until it has injected its fault), then records that it finished (its call id, one
    line in the file named by ORCHESTRATOR_TEST_EFFECTS) and returns `value`: a call that ran
    twice leaves two lines."""
    time.sleep(seconds)
    if gate and not os.path.exists(gate):
        _record(_call_id(), ".waiting")  # the test waits for its calls to reach the gate
        deadline = time.monotonic() + 300
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.05)
    _record(_call_id())
    return value


@app.task(name="tests.exit")
def exit_process(code=3, after=0.0):
    """A poison call: records that it started, then kills its worker process."""
    _record(_call_id())
    time.sleep(after)
    os._exit(code)


@app.task(name="tests.unstorable")
def unstorable(kind):
    """Returns a value that JSON or PostgreSQL cannot keep."""
    return {"nan": {"v": float("nan")}, "inf": [float("inf")], "nul": {"text": "a\x00b"},
            "surrogate": {"text": "a\ud800b"}, "bigint": {"n": 7 ** 6000}}[kind]
