"""Counting PostgreSQL round trips in this process, from what psycopg sends: outside pipeline
mode every query (and BEGIN, COMMIT, a statement's preparation) is a round trip of its own; in
pipeline mode the queued queries travel together and each Sync is one round trip. (Counted from
what is sent, not from waits on the socket, whose number depends on when the replies arrive.)

Relies on psycopg 3's private send methods (checked at install: a psycopg that renamed them
fails loudly here rather than counting nothing). Used by tests/runtime/test_round_trips.py (a
supervisor step's count is part of its design) and by the profiled benchmark worker
(worker_profiler.py), which prints it per step.
"""

from __future__ import annotations

from typing import Any, Callable

from psycopg._connection_base import BaseConnection
from psycopg._cursor_base import BaseCursor
from psycopg._pipeline_base import BasePipeline

# (class, method, how to tell whether the call is in pipeline mode; None: always a round trip)
_SENDS: list[tuple[type, str, Callable[[Any], bool] | None]] = [
    (BaseCursor, "_execute_send", lambda cursor: bool(cursor._conn._pipeline)),
    (BaseCursor, "_send_query_prepared", lambda cursor: bool(cursor._conn._pipeline)),
    (BaseCursor, "_send_prepare", lambda cursor: bool(cursor._conn._pipeline)),
    (BaseConnection, "_exec_command", lambda conn: bool(conn._pipeline)),
    (BasePipeline, "_enqueue_sync", None),
]


class PostgresRoundTrips:
    """`with PostgresRoundTrips() as trips: ...` then `trips.count`; or `install()` for the life
    of the process and read `count` (reset it by assigning 0)."""

    def __init__(self) -> None:
        self.count = 0
        self._originals: list[tuple[type, str, Any]] = []

    def install(self) -> "PostgresRoundTrips":
        for cls, name, pipelined in _SENDS:
            original = getattr(cls, name)  # AttributeError: this psycopg sends differently
            self._originals.append((cls, name, original))
            setattr(cls, name, self._counting(original, pipelined))
        return self

    def uninstall(self) -> None:
        for cls, name, original in reversed(self._originals):
            setattr(cls, name, original)
        self._originals.clear()

    def __enter__(self) -> "PostgresRoundTrips":
        return self.install()

    def __exit__(self, *_: Any) -> None:
        self.uninstall()

    def _counting(self, original: Any, pipelined: Callable[[Any], bool] | None) -> Any:
        counter = self

        def send(obj: Any, *args: Any, **kwargs: Any) -> Any:
            if pipelined is None or not pipelined(obj):
                counter.count += 1
            return original(obj, *args, **kwargs)

        return send
