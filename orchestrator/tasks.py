"""The orchestrator's Celery tasks. Each is a thin shell over the runner or the supervisor."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from celery.signals import worker_process_init, worker_ready, worker_shutdown
from sqlalchemy.exc import DBAPIError

from workers.app import app

from .runner import FAILED, TIMED_OUT, envelope, record_outcome, run_action
from .secrets import Redactor

log = logging.getLogger("orchestrator.tasks")

# Supervisor work that meets a database error (a restart, a lock timeout) is retried with backoff
# rather than dropped: the message is published again and this one acknowledged.
DURABLE = dict(acks_late=True, autoretry_for=(DBAPIError,), retry_backoff=0.5, retry_backoff_max=30,
               retry_jitter=True, max_retries=None)


@app.task(name="orchestrator.action", acks_late=True, reject_on_worker_lost=True)
def action(call: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """Run one action call; always returns an envelope (see runner.py).

    A single call (`call["inline"]`) applies its own outcome right here, in the worker that ran
    it: one broker hop less per step. The message is acknowledged only afterwards, so a crash in
    between re-runs the call and its envelope is applied then (or ignored if it was); its
    envelope is traced only when it cannot be applied here. When the database cannot be reached
    the envelope goes to the supervisor queue, which retries."""
    from .config import settings
    from .runtime import supervisor

    inline = bool(call.get("inline"))
    outcome = run_action(app, call, payload, settings().max_result_bytes, trace_outcome=not inline)
    if inline:
        try:
            supervisor().complete([outcome])
        except Exception as exc:  # the supervisor task retries with backoff
            log.warning("applying %s inline failed (%s); handing it to the supervisor queue", call.get("task"), exc)
            record_outcome(app, outcome)  # the report may be lost now: leave it where a lease finds it
            supervise.apply_async((outcome,), queue=settings().supervisor_queue)
        # What Celery logs and Flower shows: secrets masked (the run got the real outcome).
        return _redactor().data(outcome)
    return outcome


@lru_cache(maxsize=1)
def _redactor() -> Redactor:
    from .config import settings

    return Redactor(settings().config)


@app.task(name="orchestrator.supervise", ignore_result=True, **DURABLE)
def supervise(result: dict[str, Any]) -> None:
    """Apply one action's envelope to its run."""
    from .runtime import supervisor

    supervisor().complete([result])


@app.task(name="orchestrator.supervise_batch", ignore_result=True, **DURABLE)
def supervise_batch(results: list[dict[str, Any]]) -> None:
    """Apply a fan-in's envelopes (a chord's header results) to their run in one step."""
    from .runtime import supervisor

    supervisor().complete(results)


@app.task(name="orchestrator.action_lost", ignore_result=True)
def action_lost(request: Any, exc: BaseException, traceback: Any) -> None:
    """Errback for an action that died without an envelope (hard time limit, lost worker)."""
    args = getattr(request, "args", None) or ()
    if not args or not isinstance(args[0], dict):
        log.error("action %s failed without call metadata: %r", getattr(request, "id", "?"), exc)
        return
    status = TIMED_OUT if type(exc).__name__ == "TimeLimitExceeded" else FAILED
    supervise.delay(envelope(args[0], status, error=f"{type(exc).__name__}: {exc}"))


@app.task(name="orchestrator.start_workflow", bind=True, **DURABLE)
def start_workflow(self, workflow: str, params: dict[str, Any] | None = None) -> str:
    """Start a workflow by name (or YAML text) from any Celery producer; the run id is this
    task's id, so `start_workflow.delay(...).id` names the run and a redelivery starts nothing."""
    from .api import start_run

    return start_run(workflow, params, run_id=self.request.id, record_rejection=True)


@app.task(name="orchestrator.fire_timer", ignore_result=True, **DURABLE)
def fire_timer(run_id: str, key: str) -> None:
    """A timer's countdown message arrived: fire it if it is still due (else it was fired)."""
    from .runtime import supervisor

    supervisor().fire_timers(run_id, [key])


@app.task(name="orchestrator.tick", ignore_result=True)
def tick() -> None:
    """Fire every due timer (the durable path; countdown messages are only the fast path), and
    the daily prune when ORCHESTRATOR_RETENTION is set and it is due (pruning.py)."""
    from .pruning import prune_if_due
    from .runtime import supervisor

    supervisor().tick()
    try:
        prune_if_due()
    except Exception as exc:  # the prune is tried again at a later tick; timers already fired
        log.warning("retention: daily prune failed: %s", exc)


_ticker = None


@worker_ready.connect
def _start_ticker(**_: Any) -> None:
    global _ticker
    from .config import settings
    from .runtime import Ticker

    if _ticker is None and settings().tick_interval > 0:
        _ticker = Ticker(settings().tick_interval).start()


@worker_shutdown.connect
def _stop_ticker(**_: Any) -> None:
    global _ticker
    if _ticker is not None:
        _ticker.stop()
        _ticker = None


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    """A forked pool process must not share the parent's pooled database connections."""
    from .store.database import after_fork

    after_fork()
