"""Housekeeping's mechanisms on real PostgreSQL and Redis: one claimant per duty and interval for
the whole deployment, timer sweeps that never wait for a busy run, and the Redis unacked index
kept fresh for held messages and restored for abandoned ones (orchestrator messages only)."""

from __future__ import annotations

import json
import textwrap
import threading
import time
import uuid

import pytest
from celery import Celery
from kombu import Connection, Exchange, Queue

from orchestrator.redis_broker import RedisBroker
from orchestrator.runtime import supervisor
from orchestrator.store import liveness

from .conftest import REDIS_URL

pytestmark = pytest.mark.runtime


def test_each_duty_slot_goes_to_one_worker_per_interval(orchestrator_env):
    """Four claimants try a 1 s duty as fast as they can for 3.5 s: one wins each interval."""
    sup = supervisor()
    wins: list[tuple[float, str]] = []
    lock = threading.Lock()
    stop = time.monotonic() + 3.5

    def claimant(name: str) -> None:
        while time.monotonic() < stop:
            with sup.db.transaction() as conn:
                won = liveness.claim(conn, "test-duty", name, 1.0)
            if won:
                with lock:
                    wins.append((time.monotonic(), name))
            time.sleep(0.01)

    threads = [threading.Thread(target=claimant, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    times = [at for at, _ in sorted(wins)]
    assert 3 <= len(times) <= 5, wins
    assert all(later - earlier > 0.9 for earlier, later in zip(times, times[1:])), wins


def test_the_timer_sweep_skips_a_run_another_step_holds_and_fires_it_next_time(orchestrator_env):
    """No worker runs here: the sweep is called directly. While a transaction holds the run's row,
    the sweep returns at once without firing; afterwards it fires the due timer."""
    from orchestrator import submit

    run = submit(textwrap.dedent("""
        version: "1.0"
        tasks:
          - {name: later, action: core.noop, delay: 0.2}
    """))
    sup = supervisor()
    time.sleep(0.5)  # the delay timer is due
    with sup.db.transaction() as holder:
        sup.store.lock_run(holder, run.id)
        began = time.monotonic()
        sup.fire_due_timers(budget=5)
        assert time.monotonic() - began < 3, "the sweep waited for the run's lock"
        with sup.db.reading() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM timers").scalar() == 1
    sup.fire_due_timers(budget=5)
    with sup.db.reading() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM timers").scalar() == 1  # the new lease
        assert conn.exec_driver_sql("SELECT key FROM timers").scalar().startswith("lease:")


@pytest.fixture
def redis_app():
    """A Celery app on the test Redis's database 9 (used by these tests only, emptied before and
    after) and a queue of its own."""
    def empty() -> None:
        with Connection(f"{REDIS_URL}/9") as conn:
            conn.default_channel.client.flushdb()

    empty()
    app = Celery("housekeeping-test", broker=f"{REDIS_URL}/9", backend=f"{REDIS_URL}/9")
    queue = Queue(f"hk-{uuid.uuid4().hex[:8]}", Exchange("hk", type="direct"), routing_key="hk")
    taken: list = []
    yield app, queue, taken
    for conn in taken:  # closing a channel gives its unacknowledged messages back (kombu): then empty
        conn.release()
    empty()


def _publish(app: Celery, queue: Queue, task: str, task_id: str) -> None:
    with app.connection_for_write() as conn:
        conn.Producer().publish({"x": 1}, exchange=queue.exchange, routing_key="hk", declare=[queue],
                                headers={"task": task, "id": task_id}, serializer="json")


def _take(app: Celery, queue: Queue, taken: list) -> tuple:
    """Receive a message without acknowledging it (it is then in the unacked hash and index)."""
    conn = app.connection_for_read()
    taken.append(conn)
    channel = conn.channel()
    message = queue(channel).get(no_ack=False)
    assert message is not None
    return conn, channel, message


def _age(app: Celery, tag: str, seconds: float) -> None:
    with app.connection_for_write() as conn:
        conn.default_channel.client.zadd("unacked_index", {tag: time.time() - seconds})


def test_abandoned_orchestrator_messages_are_restored_marked_redelivered_and_others_left(redis_app):
    app, queue, taken = redis_app
    _publish(app, queue, "orchestrator.action", "ours")
    _publish(app, queue, "someone.else", "theirs")
    held = [_take(app, queue, taken), _take(app, queue, taken)]
    for _, _, message in held:
        _age(app, message.delivery_tag, 100)  # nobody refreshed them for 100 s: their worker died
    broker = RedisBroker(app)
    assert broker.restore_abandoned(older_than=30) == ["ours"]
    conn, channel, message = _take(app, queue, taken)
    assert message.headers["id"] == "ours" and message.delivery_info.get("redelivered") is True
    assert broker.call_ids() == {"ours"}  # held again (unacked); the other app's message is not ours
    with app.connection_for_write() as c:
        unacked = c.default_channel.client.hvals("unacked")
    assert any(json.loads(raw)[0]["headers"]["id"] == "theirs" for raw in unacked)  # left to its visibility timeout
    broker.close()


def test_a_refreshed_message_is_not_restored(redis_app):
    app, queue, taken = redis_app
    _publish(app, queue, "orchestrator.action", "running-long")
    conn, channel, message = _take(app, queue, taken)
    _age(app, message.delivery_tag, 100)
    broker = RedisBroker(app)
    assert broker.refresh([message.delivery_tag, "a-tag-acknowledged-meanwhile"]) == 1
    assert broker.restore_abandoned(older_than=30) == []
    with app.connection_for_write() as c:
        assert c.default_channel.client.zscore("unacked_index", "a-tag-acknowledged-meanwhile") is None
    message.ack()
    broker.close()


def test_the_epoch_marker_shows_that_redis_lost_its_data(redis_app):
    app, _, _ = redis_app
    broker = RedisBroker(app)
    with app.connection_for_write() as c:
        c.default_channel.client.delete("orchestrator-epoch")
    first, created = broker.epoch()
    assert created
    assert broker.epoch() == (first, False)
    with app.connection_for_write() as c:
        c.default_channel.client.delete("orchestrator-epoch")  # what a restart without persistence does
    second, created = broker.epoch()
    assert created and second != first
    broker.close()
