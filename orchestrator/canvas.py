"""Turns the conductor's Dispatch commands into Celery canvas and sends it.

Each call is one `orchestrator.action` signature. A single call applies its own outcome in the
worker that ran it (no extra hop); calls that went out together go as one group; a fan-in (the items of a with_items task
sent at once, sibling branches straight into a join) goes as a chord whose callback is the
supervisor's batch task. Correctness never rests on the canvas: the supervisor re-checks every
envelope against the durable state.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable

from celery import Celery, chord, group
from celery.canvas import Signature

from .engine.commands import Dispatch, Revoke
from .runner import call_id, read_trace

OUTBOX_HEADER = "orchestrator_outbox"  # message header: the outbox row its receiver deletes
OUTBOX_RUN_HEADER = "orchestrator_outbox_run"  # and the run it belongs to
HARD_LIMIT_GRACE = 10  # seconds between the soft limit (reported as timed_out) and the kill


class Canvas:
    def __init__(self, app: Celery, supervisor_queue: str, single_queue: bool = False, lease: float | None = None):
        self.app = app
        self.supervisor_queue = supervisor_queue
        # A call watched by its lease leaves its "running" trace only if it runs this long (runner.py).
        self.trace_after = 0.0 if not lease else min(1.0, lease / 4)
        # The embedded worker consumes only the default and supervisor queues: route everything there.
        self.single_queue = single_queue
        self._queue_for = lru_cache(maxsize=1024)(self._route)

    def send(self, run_id: str, workflow: str, calls: Iterable[Dispatch], resent: bool = False,
             outbox: int | None = None, seen: dict[str, Any] | None = None) -> None:
        """Publish the calls. `resent`: they may have been sent before (a lost message, a
        reconciled outbox row), so the worker checks each one before running it. `outbox`: the
        id of the step's outbox row, carried in a header of the last message sent: the worker
        that receives it deletes the row (everything else was published by then). `seen`: the
        run as the step left it (store/snapshot.py), carried by a call sent on its own, whose
        worker then applies the call's outcome without reading the run back."""
        singles: list[Signature] = []
        fan_ins: dict[str, list[Signature]] = {}
        last: Signature | None = None
        for call in calls:
            if call.barrier:
                signature = self.signature(run_id, workflow, call, resent=resent)
                fan_ins.setdefault(call.barrier, []).append(signature)
            else:
                signature = self.single(self.signature(run_id, workflow, call, inline=True, resent=resent),
                                        bool(call.timeout))
                singles.append(signature)
        if fan_ins:
            last = list(fan_ins.values())[-1][-1]
        elif singles:
            last = singles[-1]
        if last is not None and outbox is not None:
            last.set(headers={OUTBOX_HEADER: outbox, OUTBOX_RUN_HEADER: run_id})
        if len(singles) == 1:
            if seen is not None and not fan_ins and not resent:
                singles[0].args[0]["seen"] = seen  # after argsrepr: Flower and the logs do not show it
            singles[0].apply_async()
        elif singles:
            group(singles).apply_async()
        for key, header in fan_ins.items():
            body = self.app.signature("orchestrator.supervise_batch", queue=self.supervisor_queue,
                                      shadow=f"orchestrator.supervise [{workflow} {key}]")
            chord(header, body).apply_async()

    def signature(self, run_id: str, workflow: str, call: Dispatch, inline: bool = False,
                  resent: bool = False) -> Signature:
        meta = {"run": run_id, "seq": call.seq, "attempt": call.attempt, "item": call.item,
                "task": call.task, "action": call.action, "workflow": workflow, "timeout": call.timeout,
                "inline": inline, "trace_after": 0.0 if call.timeout else self.trace_after}
        if resent:
            meta["resent"] = True
        options: dict[str, Any] = {
            "task_id": call_id(run_id, call.seq, call.attempt, call.item),
            "queue": self.app.conf.task_default_queue if self.single_queue else call.queue or self._queue_for(call.action),
            "shadow": f"{workflow}.{call.task}:{call.action}",
            "argsrepr": repr((meta,)),
            "kwargsrepr": repr({"workflow_id": run_id, "task": call.task, "seq": call.seq, "item": call.item}),
            "root_id": run_id,
        }
        if call.timeout:
            options["soft_time_limit"] = call.timeout
            options["time_limit"] = call.timeout + HARD_LIMIT_GRACE
        return self.app.signature("orchestrator.action", args=(meta, call.input), options=options)

    def has_task(self, name: str) -> bool:
        return name in self.app.tasks

    def send_timer(self, run_id: str, key: str, seconds: float) -> None:
        """The fast path of a durable timer: a countdown message. The periodic tick fires the
        timer from the database if this message is late or lost."""
        self.app.signature("orchestrator.fire_timer", args=(run_id, key), queue=self.supervisor_queue,
                           countdown=seconds, shadow=f"orchestrator.fire_timer [{key}]").apply_async()

    def report(self, envelope: dict[str, Any]) -> None:
        """Send an envelope to the supervisor (a sub-workflow's outcome, a call that could not start)."""
        self.app.signature("orchestrator.supervise", args=(envelope,), queue=self.supervisor_queue).apply_async()

    def revoke(self, run_id: str, call: Revoke) -> None:
        """Best effort: its late envelope would be ignored anyway. A terminating revoke (cancel)
        sends the running call SIGUSR1, which prefork turns into SoftTimeLimitExceeded inside the
        action: it can clean up, and its envelope still reports that it stopped."""
        task_id = call_id(run_id, call.seq, call.attempt, call.item)
        if call.terminate:
            self.app.control.revoke(task_id, terminate=True, signal="SIGUSR1")
        else:
            self.app.control.revoke(task_id)

    def trace(self, run_id: str, seq: int, attempt: int, item: int | None
              ) -> tuple[str, float] | dict[str, Any] | None:
        """What the worker left of a call: ("running", age in seconds), its envelope, or None
        (see runner.py)."""
        return read_trace(self.app, call_id(run_id, seq, attempt, item))

    def single(self, signature: Signature, time_limited: bool = False) -> Signature:
        """A call that reports its own outcome (inline in tasks.action). Only a hard time limit
        kills it without an envelope (a lost worker requeues it), so only a call that has one
        (its own timeout, or the workers' task_time_limit) carries the errback that reports it."""
        signature.set(ignore_result=True)
        if time_limited or self.app.conf.task_time_limit:
            signature.link_error(self.app.signature("orchestrator.action_lost", queue=self.supervisor_queue))
        return signature

    def _route(self, action: str) -> str:
        """The queue Celery's own routing gives the action (task_routes), else the default."""
        route = self.app.amqp.router.route({}, action, args=(), kwargs={})
        queue = route.get("queue")
        return getattr(queue, "name", queue) or self.app.conf.task_default_queue
