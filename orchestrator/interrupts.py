"""Shell: a call is interrupted only while its action runs.

A cancel stops a running call with a terminating revoke, and a call's own soft time limit fires
the same way: prefork sends SIGUSR1 to the pool process, whose handler (billiard's) raises
SoftTimeLimitExceeded wherever that process happens to be. The call's task goes on after its
action has returned: it applies its own outcome to the run inside a database transaction that
holds the run's row lock (tasks.action, inline), and only then returns. A signal that arrives
then has nothing left to stop, yet it would be raised in the middle of that transaction (say,
while psycopg waits for the lock: the connection is left mid-protocol and the step fails) or
before the outcome is handed on (the run would wait in `canceling` for a report that never
comes).

So the handler is wrapped, once per process: the signal raises only while `interruptible()`
is active, around the action's own code; at any other moment it is ignored, and the call's
outcome is applied as usual (a canceling run then ends `canceled`). Billiard installs its handler
after Celery's `worker_process_init`, so the wrapper is put in place lazily, on first use, in
the main thread (the only one a signal handler runs in), and only over billiard's handler: the
thread pool and embedded mode are not signalled, and a solo worker's SIGUSR1 (Celery's stack
dump) is left alone.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

from billiard.pool import soft_timeout_sighandler

SIGNAL = getattr(signal, "SIGUSR1", None)


class _Gate:
    """The wrapped handler, and whether the action's code runs now."""

    def __init__(self) -> None:
        self.open = False
        self.wrapped: Any = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.open and callable(self.wrapped):
            self.wrapped(signum, frame)  # billiard's: raises SoftTimeLimitExceeded
        # otherwise the action has ended (or not begun): nothing to stop


_GATE = _Gate()


def _install() -> bool:
    """Wrap the process's handler (again if something replaced ours); False where signals
    cannot reach this thread."""
    if SIGNAL is None or threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(SIGNAL)
    if current is not _GATE:
        if current is not soft_timeout_sighandler:
            return False  # not a prefork pool process (a solo worker's SIGUSR1 dumps its stacks)
        _GATE.wrapped = current
        signal.signal(SIGNAL, _GATE)
    return True


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """The action's own code runs inside: a revoke's or soft time limit's signal raises here
    (SoftTimeLimitExceeded), and is ignored once the block has been left. The signal can land
    on the block's first or last bytecodes: the caller's `except SoftTimeLimitExceeded`
    encloses the whole block."""
    if not _install():
        yield
        return
    try:
        _GATE.open = True
        yield
    finally:
        _GATE.open = False
