"""Counting PostgreSQL round trips in this process: each time psycopg waits to read a reply from
the server (a `Wait.R` its generators yield to `Connection.wait`). Commands queued in pipeline
mode, flushes that only wait for the socket to be writable, and psycopg's local bookkeeping
(autocommit, entering a pipeline) are not round trips and are not counted.

Used by tests/runtime/test_round_trips.py (the count of a supervisor step is part of its design)
and by the profiled benchmark worker (worker_profiler.py), which print it per step.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import psycopg
from psycopg.waiting import Wait


class PostgresRoundTrips:
    """`with PostgresRoundTrips() as trips: ...` then `trips.count`; or `install()` for the life
    of the process and read `count` (reset it by assigning 0)."""

    def __init__(self) -> None:
        self.count = 0
        self._original: Any = None

    def install(self) -> "PostgresRoundTrips":
        original = self._original = psycopg.Connection.wait
        counter = self

        def wait(conn: psycopg.Connection, gen: Generator, *args: Any, **kwargs: Any) -> Any:
            return original(conn, counter._counted(gen), *args, **kwargs)

        psycopg.Connection.wait = wait  # type: ignore[method-assign]
        return self

    def uninstall(self) -> None:
        if self._original is not None:
            psycopg.Connection.wait = self._original  # type: ignore[method-assign]
            self._original = None

    def __enter__(self) -> "PostgresRoundTrips":
        return self.install()

    def __exit__(self, *_: Any) -> None:
        self.uninstall()

    def _counted(self, gen: Generator) -> Generator:
        sent = None
        while True:
            try:
                waiting = gen.send(sent)
            except StopIteration as stop:
                return stop.value
            if waiting == Wait.R:
                self.count += 1
            sent = yield waiting
