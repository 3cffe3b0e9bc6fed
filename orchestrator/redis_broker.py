"""What the orchestrator does with kombu's Redis transport besides consuming from it.

kombu emulates acknowledgements on Redis: a delivered message is kept in the `unacked` hash, and
its delivery time in the `unacked_index` sorted set; a message whose score is older than the
visibility timeout (an hour by default) is put back in its queue by kombu's own sweep. A dead
host's calls would wait that hour, and a live worker's action that runs longer than it would run
twice (celery/celery#5935, #3541). So:

- every live worker refreshes the scores of the delivery tags its channel holds (`refresh`), so a
  held message never looks abandoned, however long its action runs;
- one housekeeping sweep per interval puts back the orchestrator's messages whose score nobody
  refreshed for ORCHESTRATOR_WORKER_TIMEOUT seconds (`restore_abandoned`), with kombu's own
  `restore_by_tag` (the message is marked redelivered) under kombu's own restore mutex;
- `call_ids` lists the orchestrator calls present in Redis (queued or held), and `epoch` keeps a
  marker key whose disappearance shows that Redis lost its data (a restart without persistence,
  a failover to a replica that had not caught up).

Other applications' messages on a shared broker are never touched.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

from celery import Celery

log = logging.getLogger("orchestrator.redis_broker")

EPOCH_KEY = "orchestrator-epoch"
OURS = "orchestrator."  # the task names of the orchestrator's own messages


def is_redis(url: str | None) -> bool:
    return bool(url) and url.split("://", 1)[0] in ("redis", "rediss", "sentinel")


def _headers(raw: Any) -> dict[str, Any]:
    """The Celery headers of a message as kombu stores it (a JSON payload)."""
    try:
        payload = json.loads(raw) if isinstance(raw, (bytes, str)) else raw
        if isinstance(payload, list):  # the unacked hash keeps [message, exchange, routing key]
            payload = payload[0]
        return payload.get("headers") or {}
    except (ValueError, TypeError, AttributeError):
        return {}


def refresh(channel: Any, tags: list[str]) -> int:
    """Mark the delivery tags a live worker holds as fresh (only tags still in the index: one
    acknowledged meanwhile is not added back). Called with the worker's own consuming channel's
    tags, through a separate connection."""
    if not tags:
        return 0
    now = time.time()
    return channel.client.zadd(channel.unacked_index_key, {tag: now for tag in tags}, xx=True, ch=True)


class RedisBroker:
    """A connection of its own to the deployment's Redis broker (never the consuming one)."""

    def __init__(self, app: Celery):
        self.app = app
        self._connection = None
        self._lock = threading.Lock()

    @contextmanager
    def channel(self) -> Iterator[Any]:
        with self._lock:
            try:
                if self._connection is None:
                    self._connection = self.app.connection_for_write()
                yield self._connection.default_channel
            except Exception:
                self.close_unlocked()
                raise

    def close_unlocked(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # already broken
                pass

    def close(self) -> None:
        with self._lock:
            self.close_unlocked()

    def refresh(self, tags: list[str]) -> int:
        with self.channel() as channel:
            return refresh(channel, tags)

    def restore_abandoned(self, older_than: float, limit: int = 1000) -> list[str]:
        """Put back the orchestrator messages held by nobody for `older_than` seconds (their worker
        died); returns their task ids. kombu's own sweep is kept out by its mutex."""
        from kombu.transport.redis import Mutex, MutexHeld

        restored: list[str] = []
        with self.channel() as channel:
            client = channel.client
            ceiling = time.time() - older_than
            try:
                with Mutex(client, channel.unacked_mutex_key, channel.unacked_mutex_expire):
                    tags = client.zrange(channel.unacked_index_key, 0, ceiling, byscore=True, offset=0, num=limit)
                    for tag in tags:
                        raw = client.hget(channel.unacked_key, tag)
                        if raw is None:
                            continue
                        headers = _headers(raw)
                        if not str(headers.get("task", "")).startswith(OURS):
                            continue  # another application's message: its visibility timeout applies
                        score = client.zscore(channel.unacked_index_key, tag)
                        if score is None or score > ceiling:
                            continue  # acknowledged, or refreshed by a live worker meanwhile
                        channel.qos.restore_by_tag(tag, client)
                        restored.append(headers.get("id") or "?")
            except MutexHeld:
                return []
        return restored

    def call_ids(self) -> set[str]:
        """Task ids of every orchestrator message in Redis: queued (any list) or held (unacked)."""
        found: set[str] = set()
        with self.channel() as channel:
            client = channel.client
            for key in client.scan_iter(count=500, _type="LIST"):
                for start in range(0, client.llen(key), 500):
                    for raw in client.lrange(key, start, start + 499):
                        self._collect(found, raw)
            for _, raw in client.hscan_iter(channel.unacked_key, count=500):
                self._collect(found, raw)
        return found

    @staticmethod
    def _collect(found: set[str], raw: Any) -> None:
        headers = _headers(raw)
        if str(headers.get("task", "")).startswith(OURS) and headers.get("id"):
            found.add(headers["id"])

    def epoch(self) -> tuple[str, bool]:
        """The broker's epoch marker, and whether it was just created (the key was missing: this
        Redis has never been seen, or it lost its data)."""
        with self.channel() as channel:
            client = channel.client
            value = client.get(EPOCH_KEY)
            if value is not None:
                return (value.decode() if isinstance(value, bytes) else value), False
            fresh = uuid.uuid4().hex
            if client.set(EPOCH_KEY, fresh, nx=True):
                return fresh, True
            value = client.get(EPOCH_KEY)
            return (value.decode() if isinstance(value, bytes) else value), False
