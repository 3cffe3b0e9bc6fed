"""Server-sent events: a run's summary each time it changes, and each lifecycle event (`event:
lifecycle`, the rows `orchestrator logs` prints) as it is recorded, until the run ends."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator, Callable, Hashable

from ..store.runs import TERMINAL

POLL_SECONDS = 0.2
MAX_SECONDS = 600.0
KEEPALIVE_SECONDS = 15.0


def sse(data: Any, event: str = "summary") -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


async def summary_events(version: Callable[[], Hashable | None], read: Callable[[], dict[str, Any] | None],
                         poll: float = POLL_SECONDS, limit: float = MAX_SECONDS,
                         read_events: Callable[[int], list[dict[str, Any]]] | None = None) -> AsyncIterator[str]:
    """Poll the run's cheap `version` (blocking calls, so in a thread); when it moved, `read` the
    summary and send it if it differs from the last one sent. Stop when the run is terminal or
    gone, or after `limit` s. A client that left is noticed at the next write (a change or the
    periodic keep-alive)."""
    deadline = time.monotonic() + limit
    seen, last, last_sent_at, last_event = None, None, time.monotonic(), 0
    yield "retry: 2000\n\n"
    while True:
        current = await asyncio.to_thread(version)
        summary = await asyncio.to_thread(read) if current is not None and current != seen else None
        if current is None or (current != seen and summary is None):
            yield sse({"detail": "run not found"}, "gone")
            return
        if summary is not None and read_events is not None:
            for event in await asyncio.to_thread(read_events, last_event):
                last_event = event["id"]
                yield sse(event, "lifecycle")
        if summary is not None:
            seen = current
            text = json.dumps(summary, default=str, sort_keys=True)
            if text != last:
                last, last_sent_at = text, time.monotonic()
                yield f"event: summary\ndata: {text}\n\n"
            if summary["status"] in TERMINAL:
                yield sse({"status": summary["status"]}, "end")
                return
        if time.monotonic() - last_sent_at > KEEPALIVE_SECONDS:
            last_sent_at = time.monotonic()
            yield ": keep-alive\n\n"
        if time.monotonic() >= deadline:
            yield sse({"detail": f"stream ended after {limit:.0f} s; reconnect to follow"}, "timeout")
            return
        await asyncio.sleep(poll)
