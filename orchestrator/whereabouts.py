"""Where a call in flight is, when its run has not heard from it: ended without its report
reaching the run (a sub-workflow call's child run finished, a fan-in call kept its outcome, a
call traced its envelope), held by a live worker, running, or lost.

Read only when a watch timer fires (a lease, a deadline, a cancel check) or a call is delivered a
second time, never on a call's first delivery.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from .engine.commands import Event, TaskEnded, TimerFired
from .core.timers import WATCHES, parse_timer_key
from .runner import call_id
from .store import liveness
from .store.runs import TERMINAL

log = logging.getLogger("orchestrator.whereabouts")


MAX_RUN_ID = 64  # workflow_runs.id and every run_id column
_KEPT = 36        # of a derived id too long to store: the start (a root run's uuid), then a hash


def child_run_id(run_id: str, seq: int, attempt: int, item: int | None) -> str:
    """The id of the run a sub-workflow call starts: derived, so a repeated start does nothing.
    `<parent>.<seq>.<attempt>[.<item>]` while that fits the id column; deeper down (each level
    adds a few characters) the first 36 characters of it and a hash of the whole, so ids of any
    depth stay distinct and storable. The parent is kept in the child's parent_run_id."""
    full = f"{run_id}.{seq}.{attempt}" + ("" if item is None else f".{item}")
    if len(full) <= MAX_RUN_ID:
        return full
    return f"{full[:_KEPT]}.~{hashlib.sha256(full.encode()).hexdigest()[:MAX_RUN_ID - _KEPT - 2]}"


def ended_elsewhere(sup: Any, conn: Any, run_id: str, seq: int, attempt: int, item: int | None) -> TaskEnded | None:
    """The outcome of a call that ended without its report reaching the run: a sub-workflow
    call's finished child run, or a fan-in call's kept outcome."""
    child = sup.store.ended_run(conn, child_run_id(run_id, seq, attempt, item))
    if child is not None:
        if child.status not in TERMINAL:
            return None
        if child.status == "succeeded":
            return TaskEnded(seq, attempt, "succeeded", child.output, None, item)
        return TaskEnded(seq, attempt, "failed", None,
                         f"sub-workflow '{child.workflow}' ({child_run_id(run_id, seq, attempt, item)}) "
                         f"{child.status}: {child.error}", item)
    kept = liveness.outcome(conn, run_id, seq, attempt, item)
    if kept is not None:
        return TaskEnded(seq, attempt, kept["status"], kept.get("result"), kept.get("error"), item)
    return None


def held(conn: Any, worker_timeout: float, task_id: str, besides: tuple[str, int] | None = None,
         retries: int = 0, running_only: bool = False) -> bool:
    """Whether a live worker holds this call, by its last heartbeat. `besides` leaves out one
    delivery (hostname, pool process id); `retries` counts only deliveries at least this far
    along (an older one was lost before this one was sent); `running_only` counts only
    deliveries that started running."""
    for worker in liveness.live_workers(conn, worker_timeout):
        for entry in worker.calls or ():
            held_id, pid, running = entry[0], entry[1], entry[2]
            held_retries = entry[3] if len(entry) > 3 else 0
            if held_id != task_id or held_retries < retries or (running_only and not running):
                continue
            if besides is not None and worker.hostname == besides[0] and pid == besides[1]:
                continue
            return True
    return False


def watch_event(sup: Any, conn: Any, run_id: str, key: str) -> Event:
    """A watch timer of the run fired: the event that says what became of its call. A finished
    call whose report was lost is applied from what it left. It runs if a live worker holds it
    (by its heartbeat) or its "running" trace is younger than a heartbeat could be. Otherwise it
    is lost: the conductor sends it again; a run being canceled learns instead that the call's
    worker was lost, when the call had started."""
    if key.split(":", 1)[0] not in WATCHES:
        return TimerFired(key)
    _, seq, attempt, item = parse_timer_key(key)
    ended = ended_elsewhere(sup, conn, run_id, seq, attempt, item)
    if ended is not None:
        return ended
    if sup.store.ended_run(conn, child_run_id(run_id, seq, attempt, item)) is not None:
        return TimerFired(key, running=True)  # a child run still going
    try:
        trace = sup.canvas.trace(run_id, seq, attempt, item)
    except Exception as exc:  # the backend cannot tell: let the conductor be cautious
        log.warning("cannot read the trace of %s %s: %s", run_id, key, exc)
        return TimerFired(key, running=None)
    if isinstance(trace, dict):
        return TaskEnded(seq=seq, attempt=attempt, status=trace["status"], result=trace.get("result"),
                         error=trace.get("error"), item=item)
    timeout = sup.settings.worker_timeout
    started = isinstance(trace, tuple)
    if (started and trace[1] < timeout) or held(conn, timeout, call_id(run_id, seq, attempt, item)):
        return TimerFired(key, running=True)
    if started and sup.store.status(conn, run_id) == "canceling":
        return TaskEnded(seq, attempt, "failed", None, "its worker was lost while running it", item)
    return TimerFired(key, running=False)
