"""Shell: the time guard that bounds every expression evaluation in this process.

The pure core (engine/budget.py) holds the limits; this module gives it a clock. ``install()``
is called once per process by every entry point that evaluates expressions (the Celery worker
processes, the embedded runtime, the CLI, the HTTP server, and any process that starts runs
through the Supervisor); it is idempotent and survives ``fork`` (prefork pool children).

How an evaluation is interrupted: signals only reach the main thread and the embedded runtime
evaluates in a thread pool, so one watcher thread per process keeps a heap of deadlines and, when
one passes, raises ``TimeExceeded`` in the evaluating thread with
``PyThreadState_SetAsyncExc``. The pitfalls, and what answers each:

- An asynchronous exception must never land outside the evaluation: ``disarm`` marks the
  evaluation finished under the same lock the watcher fires under, then clears an exception
  still pending for that thread (``PyThreadState_SetAsyncExc(id, NULL)``), so once it returns
  nothing can arrive. budget.evaluation() disarms in a ``finally`` and once more when the
  exception interrupted the first attempt.
- Code may swallow the exception (a bare ``except``): the watcher raises it again every second
  until the evaluation is disarmed.
- It is delivered only between Python bytecodes: one long C-level operation (a huge string
  join, a backtracking regular expression) cannot be interrupted. The size budget refuses such
  operations before they run, and YAQL's regular expressions run on RE2 (linear time).
- ``fork`` copies no threads and may copy a held lock: the guard starts afresh in the child.
"""

from __future__ import annotations

import contextlib
import ctypes
import heapq
import itertools
import os
import threading
import time
from typing import Any, Iterator

from .engine import budget as budgets

REFIRE = 1.0  # seconds between repeated interruptions of an evaluation that goes on

# Two prototypes of one C function: raise an exception class in a thread, or clear (NULL) one.
_set_async_exc = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.py_object)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi))
_clear_async_exc = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi))


class _Entry:
    """One deadline: of an evaluation, or of a step (whose evaluations come and go: `inside`)."""

    __slots__ = ("thread", "due", "done", "pending", "step", "inside", "expired", "started", "entered")

    def __init__(self, due: float, step: bool = False):
        self.thread = threading.get_ident()
        self.due = due
        self.done = False        # left for good: never fired at again
        self.pending = False     # an exception was raised in the thread and may not be delivered yet
        self.step = step
        self.inside = not step   # an evaluation of the step is running
        self.expired = False     # the step's budget is spent
        self.started = self.entered = time.monotonic()


class Guard:
    """Deadlines of the evaluations running in this process, and the thread that enforces them."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._steps = threading.local()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, _Entry]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def _push(self, entry: _Entry) -> None:  # under the lock
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="orchestrator-expression-guard", daemon=True)
            self._thread.start()
        heapq.heappush(self._heap, (entry.due, next(self._order), entry))
        if self._heap[0][2] is entry:
            self._wake.notify()

    # budget.Watch ---------------------------------------------------------------------------

    def arm(self, seconds: float) -> _Entry:
        """An evaluation starts. Inside a step it runs on the step's deadline (which comes first:
        the step began earlier with the same budget), costing a flag instead of a deadline."""
        step = getattr(self._steps, "entry", None)
        if step is not None:
            with self._lock:
                if step.expired:
                    raise budgets.StepTimeExceeded()
                step.inside = True
                step.entered = time.monotonic()
            return step
        entry = _Entry(time.monotonic() + seconds)
        with self._lock:
            self._push(entry)
        return entry

    def disarm(self, entry: _Entry) -> None:
        """The evaluation has ended: nothing is raised in its thread from now on."""
        with self._lock:
            if entry.step:
                entry.inside = False
            else:
                entry.done = True
            if entry.pending:
                _clear_async_exc(entry.thread, None)  # raised but not yet delivered
                entry.pending = False

    @contextlib.contextmanager
    def step(self, seconds: float | None = None) -> Iterator[None]:
        """A supervisor step, which holds its run's row lock: the evaluations inside it share
        one budget of `seconds` (default: the expression timeout), so a step that evaluates
        many expressions (a with-items window, a long `publish`) still ends in bounded time.
        Once it is spent, each further evaluation of the step fails at once."""
        if getattr(self._steps, "entry", None) is not None:
            yield
            return
        limit = budgets.limits().timeout if seconds is None else seconds
        entry = _Entry(time.monotonic() + limit, step=True)
        with self._lock:
            self._push(entry)
        self._steps.entry = entry
        try:
            yield
        finally:
            self._steps.entry = None
            with self._lock:
                entry.done = True

    # The watcher ----------------------------------------------------------------------------

    def _run(self) -> None:
        with self._wake:
            while True:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._wake.wait()
                    continue
                due, _, entry = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                heapq.heappop(self._heap)
                entry.expired = True
                if not entry.inside:
                    continue  # a step between evaluations: its next evaluation fails at once
                # a step's first evaluation, begun with the step, is itself what took the time
                late = entry.step and entry.entered > entry.started + 0.1
                _set_async_exc(entry.thread, budgets.StepTimeExceeded if late else budgets.TimeExceeded)
                entry.pending = True
                entry.due = due + REFIRE
                heapq.heappush(self._heap, (entry.due, next(self._order), entry))


def step() -> Any:
    """The step budget of the installed guard (a no-op before install)."""
    return _GUARD.step() if _GUARD is not None else contextlib.nullcontext()


_GUARD: Guard | None = None


def install(timeout: float | None = None, max_bytes: int | None = None) -> Guard:
    """Bound every expression evaluation in this process: the limits (from the settings when not
    given: ORCHESTRATOR_EXPRESSION_TIMEOUT / ORCHESTRATOR_EXPRESSION_MAX_BYTES) and the guard.
    Idempotent; safe to call from any entry point."""
    global _GUARD
    if timeout is None or max_bytes is None:
        from .config import settings
        current = settings()
        timeout = current.expression_timeout if timeout is None else timeout
        max_bytes = current.expression_max_bytes if max_bytes is None else max_bytes
    if _GUARD is None:
        _GUARD = Guard()
    limits = budgets.limits()
    if (limits.timeout, limits.max_bytes) != (timeout, max_bytes):
        limits = budgets.Limits(timeout=timeout, max_bytes=max_bytes)
    budgets.configure(limits, _GUARD)
    return _GUARD
