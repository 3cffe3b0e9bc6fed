"""After a supervisor step commits: carrying out what it decided.

The calls go out through the canvas (the last message names the step's outbox row, which its
receiver deletes), with the run's snapshot when there is one call (store/snapshot.py); child
runs are started, revokes and reports to a parent run sent, and the step's lifecycle events
published. What must not be lost between the commit and the publish was kept in the outbox row
(`_effects`), written in the step's transaction: a process that dies in between leaves it to the
reconciler (recovery.py).

`Publishing` is the Supervisor's half that does this (supervisor.py decides and writes steps);
it uses the supervisor's canvas, store, database and settings, and starts child runs and steps
the parent run through it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .core.errors import ParametersInvalid, WorkflowInvalid
from .engine.commands import CallPaused, Dispatch, Revoke, RunFinished, SetTimer, StatusChanged, to_data
from .faults import crash_point
from .formats import AnyWorkflow
from .lifecycle import LifecycleEvent
from .whereabouts import child_run_id

log = logging.getLogger("orchestrator.supervisor")


@dataclass
class Outcome:
    """What a committed step leaves to do outside the transaction."""

    run_id: str
    workflow: str
    commands: list[Any]
    parent: dict[str, Any] | None = None
    events: list[LifecycleEvent] = field(default_factory=list)
    resent: bool = False  # its calls were sent before and lost (or may have been): workers check them
    seen: dict[str, Any] | None = None  # the run as this step left it, for the one call it sends (store/snapshot.py)
    at: datetime | None = None  # the step's time, as its run_events rows have it

    def recorded(self, rows: Any) -> None:
        """Take from the step's written rows what is published after the commit: its lifecycle
        events and their time."""
        self.events, self.at = rows.events, rows.now


class Publishing:
    """The Supervisor's after-commit half (see the module's docstring)."""

    canvas: Any
    db: Any
    store: Any
    settings: Any
    events: Any
    long_lived: bool
    _carried_out: Any
    find_workflow: Any
    start: Any
    _step: Any

    def _effects(self, outcome: Outcome) -> dict[str, Any] | None:
        """What of the step must not be lost between commit and publish: kept in the outbox, in
        the step's transaction."""
        effects = [c for c in outcome.commands if isinstance(c, (Dispatch, Revoke))
                   or (isinstance(c, RunFinished) and outcome.parent)]
        if not effects:
            return None
        return {"workflow": outcome.workflow, "parent": outcome.parent, "commands": [to_data(c) for c in effects]}

    def _finish(self, outcome: Outcome, outbox_id: int | None) -> None:
        """Carry out a committed step. Its outbox row is deleted without a round trip of its own
        where possible: by the worker that receives its last call message (batched, in that
        worker's main process), else by this process (lazily in a worker, at once in a
        short-lived process such as the CLI)."""
        crash_point("after_commit")
        carried_by_call = self.carry_out(outcome, outbox_id)
        if outbox_id is not None and not carried_by_call:
            if self.long_lived:
                self._carried_out.add((outcome.run_id, outbox_id))
            else:
                self._forget_now([outbox_id])
        if self.events is not None:
            self.events.publish(outcome.run_id, outcome.workflow, outcome.events, outcome.at)

    def _forget_now(self, ids: list[int]) -> None:
        try:
            with self.db.transaction() as conn:
                self.store.remove_outbox_many(conn, ids)
        except Exception as exc:  # the reconciler finds the row and checks its calls before resending
            log.warning("could not clear carried-out outbox rows: %s", exc)

    def flush_carried_out(self) -> None:
        ids = self._carried_out.take()
        if ids:
            with self.db.transaction() as conn:
                self.store.remove_outbox_many(conn, ids)

    def _flush_quietly(self) -> None:
        try:
            self.flush_carried_out()
        except Exception:  # the process is exiting; the reconciler checks rows before resending
            pass

    def carry_out(self, outcome: Outcome, outbox_id: int | None = None) -> bool:
        """Publish what a committed step decided. Child runs, revokes and reports go first and
        the calls last, so that the last call message, which carries `outbox_id`, is sent only
        once everything else was: its receiver deletes the row. True when a message carries it."""
        calls: list[Dispatch] = []
        children: list[tuple[Dispatch, AnyWorkflow]] = []
        for command in outcome.commands:
            if isinstance(command, Dispatch):
                child = None if self.canvas.has_task(command.action) else self.find_workflow(command.action)
                if child is None:
                    calls.append(command)
                else:
                    children.append((command, child))
            elif (isinstance(command, SetTimer) and command.seconds < self.settings.timer_fast_path
                  and not command.key.startswith("lease:")):  # a lease is a slow safety net: the sweep fires it
                self.canvas.send_timer(outcome.run_id, command.key, command.seconds)
            elif isinstance(command, Revoke):
                self.canvas.revoke(outcome.run_id, command)
            elif isinstance(command, RunFinished) and outcome.parent:
                self._report_to_parent(outcome, command)
            elif isinstance(command, StatusChanged) and command.status == "paused" and outcome.parent:
                parent = outcome.parent
                self._step(parent["run"], lambda conn: [CallPaused(parent["seq"], parent["attempt"], parent["item"])])
        for call, child in children:
            self._start_child(outcome.run_id, call, child)
        if calls:
            self.canvas.send(outcome.run_id, outcome.workflow, calls, resent=outcome.resent, outbox=outbox_id,
                             seen=outcome.seen)  # taken only for a step that sends one call (supervisor._one_call)
            return outbox_id is not None
        return False

    def _start_child(self, run_id: str, call: Dispatch, child: AnyWorkflow) -> None:
        """A task whose action names a workflow runs it as a child run; the child's output is the
        task's result. The child's id derives from the call, so a repeated start does nothing."""
        parent = {"run": run_id, "seq": call.seq, "attempt": call.attempt, "item": call.item}
        try:
            self.start(child, call.input, child_run_id(run_id, call.seq, call.attempt, call.item), parent=parent)
        except (ParametersInvalid, WorkflowInvalid) as exc:
            self.canvas.report({**parent, "task": call.task, "status": "failed", "result": None,
                                "error": f"sub-workflow '{child.name}': {exc}"})

    def _report_to_parent(self, outcome: Outcome, finished: RunFinished) -> None:
        parent = outcome.parent
        failed = finished.status != "succeeded"
        error = f"sub-workflow '{outcome.workflow}' ({outcome.run_id}) {finished.status}: {finished.error}"
        self.canvas.report({**parent, "task": None, "status": "failed" if failed else "succeeded",
                            "result": None if failed else finished.output, "error": error if failed else None})
