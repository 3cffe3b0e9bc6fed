"""The supervisor: applies events to a run's durable state and carries out what the conductor decides.

One step is: lock the run's row, load its compact state, let the conductor decide, write what
changed (execution rows, variables, timers, the run row), commit; only then publish. A redelivered
or duplicated envelope matches no execution in flight, so the conductor returns nothing and the
step writes nothing. Timers are rows deleted under the same lock when they fire, so each fires once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable

from . import guard
from .canvas import Canvas
from .config import Settings
from .engine.commands import (CallPaused, Control, Dispatch, StatusChanged, Event, Responded, Rerun, Revoke, RunFinished, SetTimer, TaskEnded, TimerFired,
                              from_data, to_data)
from .core.run import RunInfo
from .core.timers import WATCHES, parse_timer_key
from .events import EventPublisher
from .faults import crash_point
from .lifecycle import LifecycleEvent
from .engine.errors import OperationRefused, ParametersInvalid, WorkflowInvalid
from .core.refusals import check_operation, nothing_changed
from .formats import AnyWorkflow, conductor_for, resolve_params, state_from_dict
from .registry import WorkflowNotFound, compile_workflow
from .secrets import Redactor
from .store import Database, RunStore
from .store.runs import TERMINAL, StoredItems, iso, utcnow

log = logging.getLogger("orchestrator.supervisor")


@dataclass
class _Outcome:
    """What a committed step leaves to do outside the transaction."""

    run_id: str
    workflow: str
    commands: list[Any]
    parent: dict[str, Any] | None = None
    events: list[LifecycleEvent] = field(default_factory=list)


class _PendingIds:
    """Ids waiting to be deleted, flushed by a daemon thread if no step takes them first."""

    def __init__(self, flush: Callable[[], None], interval: float):
        self._ids: list[int] = []
        self._lock = threading.Lock()
        self._flush = flush
        self._interval = interval
        self._thread: threading.Thread | None = None

    def add(self, item: int) -> None:
        with self._lock:
            self._ids.append(item)
            if self._thread is None or not self._thread.is_alive():  # also after a fork
                self._thread = threading.Thread(target=self._run, name="orchestrator-outbox", daemon=True)
                self._thread.start()

    def extend(self, ids: list[int]) -> None:
        for item in ids:
            self.add(item)

    def take(self) -> list[int]:
        with self._lock:
            ids, self._ids = self._ids, []
        return ids

    def _run(self) -> None:
        while True:
            time.sleep(self._interval)
            try:
                self._flush()
            except Exception as exc:  # the reconciler carries out the rows again if this keeps failing
                log.warning("could not clear carried-out outbox rows: %s", exc)


def child_run_id(run_id: str, seq: int, attempt: int, item: int | None) -> str:
    """The id of the run a sub-workflow call starts: derived, so a repeated start does nothing."""
    return f"{run_id}.{seq}.{attempt}" + ("" if item is None else f".{item}")


class Supervisor:
    def __init__(self, db: Database, canvas: Canvas, settings: Settings,
                 find_workflow: Callable[[str], AnyWorkflow | None] | None = None,
                 events: EventPublisher | None = None):
        self.db = db
        self.canvas = canvas
        self.events = events
        self.settings = settings
        self.store = RunStore(Redactor(settings.config))
        self.find_workflow = find_workflow or (lambda name: None)
        self._workflow_by_definition = lru_cache(maxsize=256)(self._load_definition)
        self._carried_out = _PendingIds(self.flush_carried_out, interval=min(2.0, settings.outbox_grace / 5))

    # Starting -------------------------------------------------------------------------------

    def start(self, workflow: AnyWorkflow, params: dict[str, Any] | None, run_id: str,
              parent: dict[str, Any] | None = None) -> str:
        """Create the run and dispatch its entry tasks; a second call with the same id does nothing.
        Raises ParametersInvalid before anything is written. `parent` names the calling task
        ({run, seq, attempt, item}) of a sub-workflow run."""
        resolved = resolve_params(workflow, params)
        now = utcnow()
        with self.db.transaction() as conn:
            definition_id = self.store.save_definition(conn, workflow.name, workflow.text, workflow.source)
            if not self.store.create_run(conn, run_id, workflow.name, definition_id, resolved, parent=parent):
                return run_id
            conductor = conductor_for(workflow, self._run_info(run_id, resolved, iso(now)))
            with guard.step():  # the run's expressions get one time budget per step
                state, commands = conductor.start()
            outcome = _Outcome(run_id, workflow.name, commands, parent)
            outcome.events, outbox_id = self.store.write_step(conn, run_id, state, commands, started_at=now,
                                                              outbox=self._effects(outcome))
        self._finish(outcome, outbox_id)
        return run_id

    def record_rejected(self, run_id: str, workflow: str, error: str, params: dict[str, Any] | None = None) -> None:
        """A start that cannot run (unknown workflow, bad parameters) still leaves a failed run,
        so whoever holds its id can see why."""
        with self.db.transaction() as conn:
            if self.store.create_run(conn, run_id, workflow, None, params or {}, status="failed", error=error):
                self.store.record_events(conn, run_id, [LifecycleEvent("workflow.failed", message=error)])

    # Events ---------------------------------------------------------------------------------

    def complete(self, envelopes: Iterable[dict[str, Any]]) -> None:
        """Apply action envelopes (one, or a fan-in's batch) to their runs."""
        by_run: dict[str, list[Event]] = defaultdict(list)
        for envelope in envelopes:
            if isinstance(envelope, dict) and "run" in envelope:
                by_run[envelope["run"]].append(TaskEnded(
                    seq=envelope["seq"], attempt=envelope["attempt"], status=envelope["status"],
                    result=envelope.get("result"), error=envelope.get("error"), item=envelope.get("item")))
            else:
                log.warning("ignoring malformed completion %r", envelope)
        for run_id, events in by_run.items():
            self._step(run_id, lambda conn: events)

    def fire_timers(self, run_id: str, keys: list[str] | None = None) -> None:
        """Fire the run's due timers (the named ones, or all that are due)."""
        self._step(run_id, lambda conn: [self._timer_event(conn, run_id, k)
                                         for k in self.store.take_due_timers(conn, run_id, keys)])

    def _timer_event(self, conn: Any, run_id: str, key: str) -> Event:
        """A watched call went quiet: look at what its worker left. A finished call whose report
        was lost is applied from its trace; otherwise the conductor learns whether it runs.
        A sub-workflow call's trace is its child run."""
        if key.split(":", 1)[0] not in WATCHES:
            return TimerFired(key)
        _, seq, attempt, item = parse_timer_key(key)
        child = self.store.status(conn, child_run_id(run_id, seq, attempt, item))
        if child is not None:
            return TimerFired(key, running=True)  # a finished child reports through the outbox
        try:
            trace = self.canvas.trace(run_id, seq, attempt, item)
        except Exception as exc:  # the backend cannot tell: let the conductor be cautious
            log.warning("cannot read the trace of %s %s: %s", run_id, key, exc)
            return TimerFired(key, running=None)
        if isinstance(trace, dict):
            return TaskEnded(seq=seq, attempt=attempt, status=trace["status"], result=trace.get("result"),
                             error=trace.get("error"), item=item)
        return TimerFired(key, running=trace == "running")

    def tick(self, limit: int = 500) -> int:
        """The reconciler: fire every due timer of every run, and carry out what a crashed process
        committed but never published. Returns how many runs had a due timer."""
        with self.db.reading() as conn:
            runs = self.store.due_runs(conn, limit)
        for run_id in runs:
            self.fire_timers(run_id)
        self.reconcile_outbox()
        return len(runs)

    def reconcile_outbox(self) -> int:
        with self.db.transaction() as conn:
            rows = self.store.stale_outbox(conn, self.settings.outbox_grace)
            for row in rows:
                log.warning("carrying out effects of run %s left unpublished (outbox %s)", row.run_id, row.id)
                payload = row.payload
                self._carry_out(_Outcome(row.run_id, payload["workflow"],
                                         [from_data(c) for c in payload["commands"]], payload.get("parent")))
                self.store.remove_outbox(conn, row.id)
        return len(rows)

    # Operations -----------------------------------------------------------------------------

    # Each raises OperationRefused (core/refusals.py) when the run's status does not allow it.

    def control(self, run_id: str, action: str) -> None:
        """pause, resume or cancel a run, and the same for its running sub-workflow runs."""
        self._require(run_id)
        self._step(run_id, lambda conn: [Control(action)], operation=action)
        with self.db.reading() as conn:
            children = self.store.active_children(conn, run_id)
        for child in children:
            try:
                self.control(child, action)
            except OperationRefused:
                pass  # the child ended, or got there by itself, since it was listed

    def rerun(self, run_id: str, tasks: list[str] | None = None) -> None:
        self._require(run_id)
        named = tuple(dict.fromkeys(tasks or ()))  # `--from X --from X` reruns X once
        self._step(run_id, lambda conn: [Rerun(named)], reopen=True, operation="rerun")

    def respond(self, run_id: str, task: str, data: Any) -> None:
        self._require(run_id)
        self._step(run_id, lambda conn: [Responded(task, data)], operation="respond")

    def _require(self, run_id: str) -> None:
        with self.db.reading() as conn:
            if not self.store.run_exists(conn, run_id):
                raise LookupError(f"no run with id {run_id}")

    def _step(self, run_id: str, events_of: Callable[[Any], list[Event]], reopen: bool = False,
              operation: str | None = None) -> None:
        # Outbox rows this process carried out are deleted by the next step's write instead of a
        # commit of their own; they go back to the flusher unless that write commits.
        forget = self._carried_out.take()
        try:
            outcome, outbox_id = self._decide_and_write(run_id, events_of, reopen, forget, operation)
        except BaseException:
            self._carried_out.extend(forget)
            raise
        if outcome is None:
            self._carried_out.extend(forget)
            return
        self._finish(outcome, outbox_id)

    def _decide_and_write(self, run_id: str, events_of: Callable[[Any], list[Event]], reopen: bool,
                          forget: list[int], operation: str | None = None) -> tuple[_Outcome | None, int | None]:
        """`operation` names an operator's request: one the run's status forbids, or that changes
        nothing, raises OperationRefused instead of passing as a stale event."""
        with self.db.transaction() as conn:
            run = self.store.lock_run(conn, run_id)
            if operation is not None and run is not None:
                check_operation(operation, run_id, run.status, started=run.definition_id is not None)
            if run is None or run.definition_id is None or (run.status in TERMINAL and not reopen):
                return None, None
            events = events_of(conn)
            if not events:
                return None, None
            workflow = self._workflow_by_definition(run.definition_id)
            state = state_from_dict(*self.store.load_state(conn, run))
            conductor = conductor_for(workflow, self._run_info(run.id, run.params, iso(run.started_at)),
                                      items=StoredItems(conn, run_id))
            with guard.step():  # the row lock is held: the step's expressions share one time budget
                commands: list[Any] = conductor.apply_all(state, events)
            if not commands:
                if operation is not None:
                    raise nothing_changed(operation, run_id, run.status)
                return None, None  # stale or duplicate: nothing changes
            parent = None
            if run.parent_run_id:
                parent = {"run": run.parent_run_id, "seq": run.parent_seq, "attempt": run.parent_attempt,
                          "item": run.parent_item}
            outcome = _Outcome(run_id, workflow.name, commands, parent)
            outcome.events, outbox_id = self.store.write_step(conn, run_id, state, commands,
                                                              outbox=self._effects(outcome), forget=forget)
        return outcome, outbox_id

    # After commit ---------------------------------------------------------------------------

    def _effects(self, outcome: _Outcome) -> dict[str, Any] | None:
        """What of the step must not be lost between commit and publish: kept in the outbox, in
        the step's transaction."""
        effects = [c for c in outcome.commands if isinstance(c, (Dispatch, Revoke))
                   or (isinstance(c, RunFinished) and outcome.parent)]
        if not effects:
            return None
        return {"workflow": outcome.workflow, "parent": outcome.parent, "commands": [to_data(c) for c in effects]}

    def _finish(self, outcome: _Outcome, outbox_id: int | None) -> None:
        crash_point("after_commit")
        self._carry_out(outcome)
        if outbox_id is not None:
            self._carried_out.add(outbox_id)
        if self.events is not None:
            self.events.publish(outcome.run_id, outcome.workflow, outcome.events)

    def flush_carried_out(self) -> None:
        ids = self._carried_out.take()
        if ids:
            with self.db.transaction() as conn:
                self.store.remove_outbox_many(conn, ids)

    def _carry_out(self, outcome: _Outcome) -> None:
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
                  and not command.key.startswith("lease:")):  # a lease is a slow safety net: the tick fires it
                self.canvas.send_timer(outcome.run_id, command.key, command.seconds)
            elif isinstance(command, Revoke):
                self.canvas.revoke(outcome.run_id, command)
            elif isinstance(command, RunFinished) and outcome.parent:
                self._report_to_parent(outcome, command)
            elif isinstance(command, StatusChanged) and command.status == "paused" and outcome.parent:
                parent = outcome.parent
                self._step(parent["run"], lambda conn: [CallPaused(parent["seq"], parent["attempt"], parent["item"])])
        if calls:
            self.canvas.send(outcome.run_id, outcome.workflow, calls)
        for call, child in children:
            self._start_child(outcome.run_id, call, child)

    def _start_child(self, run_id: str, call: Dispatch, child: AnyWorkflow) -> None:
        """A task whose action names a workflow runs it as a child run; the child's output is the
        task's result. The child's id derives from the call, so a repeated start does nothing."""
        parent = {"run": run_id, "seq": call.seq, "attempt": call.attempt, "item": call.item}
        try:
            self.start(child, call.input, child_run_id(run_id, call.seq, call.attempt, call.item), parent=parent)
        except (ParametersInvalid, WorkflowInvalid) as exc:
            self.canvas.report({**parent, "task": call.task, "status": "failed", "result": None,
                                "error": f"sub-workflow '{child.name}': {exc}"})

    def _report_to_parent(self, outcome: _Outcome, finished: RunFinished) -> None:
        parent = outcome.parent
        failed = finished.status != "succeeded"
        error = f"sub-workflow '{outcome.workflow}' ({outcome.run_id}) {finished.status}: {finished.error}"
        self.canvas.report({**parent, "task": None, "status": "failed" if failed else "succeeded",
                            "result": None if failed else finished.output, "error": error if failed else None})

    # Helpers --------------------------------------------------------------------------------

    def _run_info(self, run_id: str, params: dict[str, Any], started_at: str | None) -> RunInfo:
        return RunInfo(run_id, params, started_at or "", self.settings.config, self.settings.execution_limit,
                       self.settings.timeout_grace, self.settings.lease, self.settings.max_input_bytes)

    def _load_definition(self, definition_id: int) -> AnyWorkflow:
        with self.db.reading() as conn:
            row = self.store.definition(conn, definition_id)
        return compile_workflow(row.text, row.source, row.name)


__all__ = ["Supervisor", "ParametersInvalid", "WorkflowInvalid", "WorkflowNotFound"]
