"""Carried-out outbox ids waiting to be deleted: a step of their run deletes them with its own
write (no commit of their own), or a daemon thread flushes what no step took within ~2 s."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger("orchestrator.supervisor")


class PendingIds:
    """Outbox ids waiting to be deleted, by run (None: not known), flushed by a daemon thread if
    no step of their run takes them first."""

    def __init__(self, flush: Callable[[], None], interval: float):
        self._ids: list[tuple[str | None, int]] = []
        self._lock = threading.Lock()
        self._flush = flush
        self._interval = interval
        self._thread: threading.Thread | None = None

    def add(self, item: tuple[str | None, int]) -> None:
        with self._lock:
            self._ids.append(item)
            if self._thread is None or not self._thread.is_alive():  # also after a fork
                self._thread = threading.Thread(target=self._run, name="orchestrator-outbox", daemon=True)
                self._thread.start()

    def extend(self, run_id: str | None, ids: list[int]) -> None:
        for item in ids:
            self.add((run_id, item))

    def take(self, run_id: str | None = None) -> list[int]:
        """The ids of `run_id`'s rows (of every run when None); the others stay."""
        with self._lock:
            if run_id is None:
                taken, self._ids = self._ids, []
            else:
                taken = [item for item in self._ids if item[0] == run_id]
                if taken:
                    self._ids = [item for item in self._ids if item[0] != run_id]
        return [outbox_id for _, outbox_id in taken]

    def _run(self) -> None:
        while True:
            time.sleep(self._interval)
            try:
                self._flush()
            except Exception as exc:  # the reconciler carries out the rows again if this keeps failing
                log.warning("could not clear carried-out outbox rows: %s", exc)
