"""Runs one action call on a worker and turns every outcome into a result envelope.

An action never raises into Celery: success, failure, a soft time limit or an unknown action all
come back as data. That keeps chords from wedging on one failed branch and gives the supervisor
one shape to read.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from .engine import storable
from .interrupts import interruptible

SUCCEEDED, FAILED, TIMED_OUT = "succeeded", "failed", "timed_out"

log = logging.getLogger("orchestrator.runner")


def envelope(call: dict[str, Any], status: str, result: Any = None, error: str | None = None) -> dict[str, Any]:
    """What the supervisor receives: the call's identity plus its outcome."""
    return {"run": call["run"], "seq": call["seq"], "attempt": call["attempt"], "item": call.get("item"),
            "task": call.get("task"), "status": status, "result": result, "error": error}


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    if name in ("ActionFailed",) and text:
        return text
    return f"{name}: {text}" if text else name


def call_id(run_id: str, seq: int, attempt: int, item: int | None) -> str:
    """The Celery task id of one action call: derived, so a call can be found, traced and revoked."""
    return f"{run_id}-{seq}-{attempt}" + ("" if item is None else f"-i{item}")


def trace_key(task_id: str) -> str:
    return f"orchestrator-call-{task_id}"


def _trace(app: Celery, call: dict[str, Any], value: str) -> None:
    """Leave a trace of the call in the result backend: "running" when it starts, its envelope
    when it ends. The supervisor reads it when a call goes quiet: running, finished with a lost
    report, or no trace at all (the message was lost). Best effort: never fails the action."""
    try:
        app.backend.set(trace_key(call_id(call["run"], call["seq"], call["attempt"], call.get("item"))), value)
    except Exception as exc:  # the backend being down must not fail the action itself
        log.warning("could not record the trace of call %s: %s", call.get("task"), exc)


RUNNING = "running"


def running_mark() -> str:
    """The "running" trace, with when it was written: a call whose worker died leaves it behind,
    so only a recent one (or a live worker's heartbeat) says the call runs."""
    return f"{RUNNING} {time.time():.6f}"


def read_trace(app: Celery, task_id: str) -> tuple[str, float] | dict[str, Any] | None:
    """("running", seconds since it was written), the envelope of a finished call, or None when
    there is no trace."""
    value = app.backend.get(trace_key(task_id))
    if value is None:
        return None
    value = value.decode() if isinstance(value, bytes) else value
    if value.startswith(RUNNING):
        written = value[len(RUNNING):].strip()
        return RUNNING, max(0.0, time.time() - float(written)) if written else float("inf")
    return json.loads(value)


class _RunningTraces:
    """Writes the "running" trace of calls that are still running `trace_after` seconds after
    they started. Only a watch timer reads it, and none comes due that soon (the canvas sets
    `trace_after` to 0 for calls with a deadline and well under the lease otherwise), so the
    many calls that end sooner never pay a write. One daemon thread per process."""

    def __init__(self) -> None:
        self._due: dict[str, tuple[float, Celery, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def begin(self, app: Celery, call: dict[str, Any]) -> str:
        key = call_id(call["run"], call["seq"], call["attempt"], call.get("item"))
        delay = call.get("trace_after", 0) or 0
        if delay <= 0:
            _trace(app, call, running_mark())
            return key
        with self._lock:
            self._due[key] = (time.monotonic() + delay, app, call)
            if self._thread is None or not self._thread.is_alive():  # also after a fork
                self._thread = threading.Thread(target=self._run, name="orchestrator-traces", daemon=True)
                self._thread.start()
        return key

    def end(self, key: str) -> None:
        with self._lock:  # waits for a write in progress, so "running" never lands after the end
            self._due.pop(key, None)

    def _run(self) -> None:
        while True:
            time.sleep(0.1)
            with self._lock:
                now = time.monotonic()
                for key in [k for k, (at, _, _) in self._due.items() if at <= now]:
                    _, app, call = self._due.pop(key)
                    _trace(app, call, running_mark())


_running = _RunningTraces()


def run_action(app: Celery, call: dict[str, Any], payload: dict[str, Any], max_result_bytes: int | None = None,
               trace_outcome: bool = True) -> dict[str, Any]:
    """Run the call between its two traces. Without `trace_outcome` the caller applies the
    outcome itself and calls `record_outcome()` only if it cannot (inline supervision)."""
    key = _running.begin(app, call)
    try:
        outcome = _run(app, call, payload, max_result_bytes)
    finally:
        _running.end(key)
    if trace_outcome:
        record_outcome(app, outcome)
    return outcome


def record_outcome(app: Celery, outcome: dict[str, Any]) -> None:
    _trace(app, outcome, json.dumps(outcome))


def _failure_result(exc: Exception, max_result_bytes: int | None) -> Any:
    """The result a failing action attached to its exception (core.local's {stdout, stderr, ...},
    which Orquesta workflows read as result()), when it is JSON and within the size limit."""
    result = getattr(exc, "result", None)
    if result is None:
        return None
    try:
        size = len(json.dumps(result))
    except (TypeError, ValueError):
        return None
    return None if max_result_bytes is not None and size > max_result_bytes else result


def _run(app: Celery, call: dict[str, Any], payload: dict[str, Any], max_result_bytes: int | None) -> dict[str, Any]:
    action = app.tasks.get(call["action"])
    if action is None:
        return envelope(call, FAILED, error=f"unknown action '{call['action']}': no such task is registered "
                                             f"on this worker (check ORCHESTRATOR_ACTIONS)")
    try:
        with interruptible():  # a cancel's or soft time limit's signal stops only the action's code
            result = action(**payload)
    except SoftTimeLimitExceeded:
        if call.get("timeout"):
            return envelope(call, TIMED_OUT, error=f"timed out after {call['timeout']} s")
        return envelope(call, FAILED, error="interrupted (the call was revoked)")
    except TypeError as exc:
        return envelope(call, FAILED, error=f"bad input for {call['action']}: {exc}")
    except Exception as exc:  # the action's own failure, reported as data
        return envelope(call, FAILED, result=_failure_result(exc, max_result_bytes), error=describe(exc))
    text, why = storable.encode(result)
    if why:
        return envelope(call, FAILED, error=f"result of {call['action']} cannot be stored: {why}")
    size = len(text)
    if max_result_bytes is not None and size * 4 > max_result_bytes:
        size = len(text.encode("utf-8"))
    if max_result_bytes is not None and size > max_result_bytes:
        return envelope(call, FAILED, error=f"result of {call['action']} is {size} bytes, over the limit of "
                                            f"{max_result_bytes} (ORCHESTRATOR_MAX_RESULT_BYTES)")
    return envelope(call, SUCCEEDED, result=result)
