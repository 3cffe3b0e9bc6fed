"""The orchestrator's Celery tasks. Each is a thin shell over the runner or the supervisor.

Shared tasks: registered on every Celery app of the process, the one `install(app)` made the
orchestrator's (installation.py) included; each uses the app that runs it (`self.app`)."""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Any

from celery import Task, shared_task
from celery.exceptions import Ignore
from celery.local import Proxy
from celery.signals import task_received, task_revoked, worker_process_init, worker_process_shutdown
from sqlalchemy.exc import InterfaceError, OperationalError

from .run_ids import new_run_id
from .runner import FAILED, TIMED_OUT, envelope, record_outcome, run_action
from .secrets import Redactor

log = logging.getLogger("orchestrator.tasks")

# Supervisor work that meets a database error worth retrying (a restart, a lost connection, a
# lock timeout) is retried with backoff rather than dropped: the message is published again and
# this one acknowledged. Errors retrying cannot fix are handled by the supervisor step itself
# (store.database.TRANSIENT_DB_ERRORS): they are never retried.
DURABLE = dict(acks_late=True, autoretry_for=(OperationalError, InterfaceError), retry_backoff=0.5,
               retry_backoff_max=30, retry_jitter=True, max_retries=None)


@shared_task(name="orchestrator.action", bind=True, acks_late=True, reject_on_worker_lost=True,
             retry_on_worker_lost=True, max_retries=None, default_retry_delay=1)
def action(self, call: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """Run one action call; always returns an envelope (see runner.py).

    A single call (`call["inline"]`) applies its own outcome right here, in the worker that ran
    it: one broker hop less per step. The message is acknowledged only afterwards, so a crash in
    between re-runs the call and its envelope is applied then (or ignored if it was); its
    envelope is traced only when it cannot be applied here. When the database cannot be reached
    the envelope goes to the supervisor queue, which retries. A fan-in call (a chord header)
    keeps its envelope in the database before returning it to the chord.

    A delivery that may not be the first (redelivered by the broker, retried by Celery after its
    pool process died, or sent again by the orchestrator) is checked first (recovery.py): a call
    that ended or that another delivery runs is not run again, and one whose worker was lost
    ORCHESTRATOR_MAX_DELIVERIES times fails."""
    from .config import settings
    from .runtime import supervisor

    inline = bool(call.get("inline"))
    seen = call.pop("seen", None)  # the run as the step that sent this call left it (store/snapshot.py)
    request = self.request
    retries = request.retries or 0
    outcome, kept = None, False
    if retries or (request.delivery_info or {}).get("redelivered") or call.get("resent"):
        seen = None  # maybe not the first delivery: the run is read back
        outcome, kept = _again(self, call, payload, retries)
    if outcome is None:
        outcome = run_action(self.app, call, payload, settings().max_result_bytes, trace_outcome=False)
    if request.hostname:
        outcome = {**outcome, "worker": request.hostname}  # the host that ran it (task_executions.worker)
    if inline:
        try:
            supervisor().complete([outcome], seen=seen)
        except Exception as exc:  # the supervisor task retries with backoff
            log.warning("applying %s inline failed (%s); handing it to the supervisor queue", call.get("task"), exc)
            record_outcome(self.app, outcome)  # the report may be lost now: leave it where a lease finds it
            _own("orchestrator.supervise", self.app).apply_async((outcome,), queue=settings().supervisor_queue)
        # What Celery logs and Flower shows: secrets masked (the run got the real outcome).
        return _redactor().data(outcome)
    from .recovery import keep_outcome

    if not kept and not keep_outcome(supervisor(), outcome):
        record_outcome(self.app, outcome)
    return outcome


def _again(task: Any, call: dict[str, Any], payload: dict[str, Any], retries: int
           ) -> tuple[dict[str, Any] | None, bool]:
    """A delivery that may not be the first: (None, False) to run the call, else the envelope to
    apply instead and whether it is already kept (raises Ignore when there is nothing to do)."""
    from .recovery import Verdict, on_redelivery
    from .runner import _trace, running_mark
    from .runtime import supervisor

    sup = supervisor()
    try:
        verdict = on_redelivery(sup, call, task.request.hostname or "", os.getpid(), retries)
    except Exception as exc:  # the database cannot tell now: neither run it blind nor drop it
        verdict = Verdict("defer", f"cannot check it now ({type(exc).__name__}: {exc})")
    if verdict.action == "skip":
        log.warning("not running %s again: %s", call.get("task"), verdict.reason)
        raise Ignore()
    if verdict.action == "defer":
        deferred = int(call.get("deferred") or 0)
        countdown = sup.settings.sweep_interval * min(2 ** deferred, 12)
        log.warning("%s: %s; looking again in %g s", call.get("task"), verdict.reason, countdown)
        again = {**call, "resent": True, "deferred": deferred + 1}
        task.signature_from_request(args=(again, payload), countdown=countdown).apply_async()
        raise Ignore()
    if verdict.action == "fail":
        log.error("%s: %s", call.get("task"), verdict.reason)
        return envelope(call, FAILED, error=verdict.reason), False
    if verdict.action == "apply":
        log.warning("not running %s again: %s", call.get("task"), verdict.reason)
        return verdict.outcome, True
    _trace(task.app, call, running_mark())  # a lease or a cancel must see it runs, however short it is
    return None, False


def _own(name: str, app: Any = None) -> Any:
    """One of these tasks, on the given app or the orchestrator's."""
    if app is None:
        from .runtime import celery_app

        app = celery_app()
    return app.tasks[name]


@lru_cache(maxsize=1)
def _redactor() -> Redactor:
    from .config import settings

    return Redactor(settings().config)


@shared_task(name="orchestrator.supervise", ignore_result=True, **DURABLE)
def supervise(result: dict[str, Any]) -> None:
    """Apply one action's envelope to its run."""
    from .runtime import supervisor

    supervisor().complete([result])


@shared_task(name="orchestrator.supervise_batch", ignore_result=True, **DURABLE)
def supervise_batch(results: list[dict[str, Any]]) -> None:
    """Apply a fan-in's envelopes (a chord's header results) to their run in one step."""
    from .runtime import supervisor

    supervisor().complete(results, fan_in=True)


@shared_task(name="orchestrator.action_lost", ignore_result=True)
def action_lost(request: Any, exc: BaseException, traceback: Any) -> None:
    """Errback for an action that died without an envelope (hard time limit, lost worker)."""
    args = getattr(request, "args", None) or ()
    if not args or not isinstance(args[0], dict):
        log.error("action %s failed without call metadata: %r", getattr(request, "id", "?"), exc)
        return
    status = TIMED_OUT if type(exc).__name__ == "TimeLimitExceeded" else FAILED
    _own("orchestrator.supervise").delay(envelope(args[0], status, error=f"{type(exc).__name__}: {exc}"))


class _StartsRun(Task):
    """The start task's id becomes the run's id: a time-ordered one (run_ids.py) unless the
    producer names one (`apply_async(task_id=...)`)."""

    def apply_async(self, args=None, kwargs=None, task_id=None, *rest, **options):
        return super().apply_async(args, kwargs, task_id or new_run_id(), *rest, **options)


@shared_task(name="orchestrator.start_workflow", base=_StartsRun, bind=True, **DURABLE)
def _start_workflow(self, workflow: str, params: dict[str, Any] | None = None) -> str:
    """Start a workflow by name (or YAML text) from any Celery producer; the run id is this
    task's id, so `start_workflow.delay(...).id` names the run and a redelivery starts nothing."""
    from .api import start_run

    return start_run(workflow, params, run_id=self.request.id, record_rejection=True)


# What producers import (`from orchestrator import start_workflow`): the task on this process's
# app (runtime.celery_app: ORCHESTRATOR_APP, the installed app, else the standalone one), looked up
# when used; Celery's "current app" may be another one, or none.
start_workflow = Proxy(lambda: _own("orchestrator.start_workflow"))


@shared_task(name="orchestrator.fire_timer", ignore_result=True, **DURABLE)
def fire_timer(run_id: str, key: str) -> None:
    """A timer's countdown message arrived: fire it if it is still due (else it was fired)."""
    from .runtime import supervisor

    supervisor().fire_timers(run_id, [key])


@task_received.connect
def _received(request: Any = None, **_: Any) -> None:
    """The worker's main process received a call: the outbox row its message names (the step
    that sent it) has been carried out; delete it with the next batch (no round trip here)."""
    from .canvas import OUTBOX_HEADER, OUTBOX_RUN_HEADER
    from .runtime import supervisor

    headers = getattr(getattr(request, "message", None), "headers", None) or {}
    outbox = headers.get(OUTBOX_HEADER)
    if outbox:
        supervisor().carried_out(outbox, headers.get(OUTBOX_RUN_HEADER))


@task_revoked.connect
def _revoked(request: Any = None, terminated: bool = False, **_: Any) -> None:
    """A revoked call that had been delivered before (its worker was lost running it) leaves an
    envelope saying so: a cancel then reports what happened instead of waiting for a call that
    will never run, or claiming it never started."""
    if request is None or getattr(request, "name", None) != "orchestrator.action" or terminated:
        return
    retries = (getattr(request, "request_dict", None) or {}).get("retries") or 0
    args = getattr(request, "args", None) or ()
    if retries and args and isinstance(args[0], dict):
        from .runtime import celery_app

        record_outcome(celery_app(), envelope(args[0], FAILED, error=f"revoked after its worker was lost {retries} "
                                                            f"time{'s' if retries > 1 else ''} running it"))


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    """A forked pool process must not share the parent's pooled database connections; it lives
    as long as the worker, so carried-out outbox rows are deleted lazily."""
    from .store.database import after_fork

    after_fork()
    _long_lived()


@worker_process_shutdown.connect
def _flush(**_: Any) -> None:
    from .runtime import supervisor

    try:
        supervisor().flush_carried_out()
    except Exception as exc:  # the reconciler checks such rows before sending anything again
        log.warning("could not clear carried-out outbox rows at exit: %s", exc)


def _long_lived() -> None:
    from . import runtime

    runtime.worker_process = True
    if runtime.supervisor.cache_info().currsize:
        runtime.supervisor().long_lived = True
