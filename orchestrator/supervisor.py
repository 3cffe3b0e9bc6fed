"""The supervisor: applies events to a run's durable state and carries out what the conductor decides.

One step is: lock the run's row, load its compact state, let the conductor decide, write what
changed (execution rows, variables, timers, the run row), commit; only then publish
(publishing.py). A step whose call carried the run's snapshot (store/snapshot.py) decides from
it and writes only if the run row is still that version, else it is done the usual way. A
redelivered or duplicated envelope matches no execution in flight, so the conductor returns
nothing and the step writes nothing. Timers are rows deleted under the same lock when they fire,
so each fires once.
"""

from __future__ import annotations

import atexit
import logging
import time
from collections import defaultdict
from functools import lru_cache
from types import SimpleNamespace
from typing import Any, Callable, Iterable

from sqlalchemy.exc import DBAPIError

from . import guard
from .canvas import Canvas
from .config import Settings
from .engine import storable
from .engine.commands import (CallLost, Control, Dispatch, Event, ItemEnded, ItemsCreated, Responded, Rerun, Revoke,
                              RunFinished, TaskEnded, TimerFired)
from .core.items import ItemStore
from .core.run import RunInfo
from .events import EventPublisher
from . import whereabouts
from .whereabouts import child_run_id
from .lifecycle import LifecycleEvent
from .core.errors import OperationRefused, ParametersInvalid, WorkflowInvalid
from .core.refusals import check_operation, nothing_changed
from .formats import AnyWorkflow, conductor_for, resolve_params, state_from_dict
from .registry import WorkflowNotFound, load_stored
from .secrets import Redactor
from .pending import PendingIds
from .publishing import Outcome, Publishing
from .store import Database, RunStore, snapshot
from .store.database import transient
from .store import liveness
from .store.runs import TERMINAL, StoredItems, iso, utcnow

log = logging.getLogger("orchestrator.supervisor")

class Supervisor(Publishing):
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
        self._carried_out = PendingIds(self.flush_carried_out, interval=min(2.0, settings.outbox_grace / 5))
        # True in worker processes, which live long enough for carried-out outbox rows to be
        # deleted lazily; elsewhere (the CLI, a script) a row no call message carries is deleted
        # before returning.
        self.long_lived = False
        atexit.register(self._flush_quietly)

    # Starting -------------------------------------------------------------------------------

    def start(self, workflow: AnyWorkflow, params: dict[str, Any] | None, run_id: str,
              parent: dict[str, Any] | None = None) -> str:
        """Create the run and dispatch its entry tasks; a second call with the same id does nothing.
        Raises ParametersInvalid before anything is written. `parent` names the calling task
        ({run, seq, attempt, item}) of a sub-workflow run."""
        resolved = resolve_params(workflow, params)
        why = storable.problem(resolved)
        if why:
            raise ParametersInvalid(workflow.name, [f"cannot be stored: {why}"])
        now = utcnow()
        with self.db.step() as conn:  # BEGIN with its first statement, COMMIT with the write
            definition_id = self.store.save_definition(conn, workflow.name, workflow.text, workflow.source)
            if not self.store.create_run(conn, run_id, workflow.name, definition_id, resolved, parent=parent):
                return run_id
            conductor = conductor_for(workflow, self._run_info(run_id, resolved, iso(now)))
            with guard.step():  # the run's expressions get one time budget per step
                state, commands = conductor.start()
                commands = storable.checked(commands, [], lambda extra: _apply_to(conductor, state, extra))
            outcome = Outcome(run_id, workflow.name, commands, parent)
            rows, written = self.store.write_step(conn, run_id, state, outcome.commands, started_at=now,
                                                  outbox=self._effects(outcome))
        if _one_call(commands):
            started = SimpleNamespace(definition_id=definition_id, status="running", params=resolved, started_at=now,
                                      parent_run_id=(parent or {}).get("run"), parent_seq=(parent or {}).get("seq"),
                                      parent_attempt=(parent or {}).get("attempt"),
                                      parent_item=(parent or {}).get("item"))
            outcome.seen = snapshot.take(started, rows, written, dict(rows.variables), self.store.redact)
        outcome.recorded(rows)
        self._finish(outcome, written.outbox_id)
        return run_id

    def record_rejected(self, run_id: str, workflow: str, error: str, params: dict[str, Any] | None = None) -> None:
        """A start that cannot run (unknown workflow, bad parameters) still leaves a failed run,
        so whoever holds its id can see why."""
        params = params or {}
        if storable.problem(params):
            params = {}  # the error says why; what cannot be stored is not kept
        with self.db.transaction() as conn:
            if self.store.create_run(conn, run_id, workflow, None, params, status="failed", error=error):
                self.store.record_events(conn, run_id, [LifecycleEvent("workflow.failed", message=error)])

    # Events ---------------------------------------------------------------------------------

    def complete(self, envelopes: Iterable[dict[str, Any]], fan_in: bool = False, skip_locked: bool = False,
                 seen: Any = None) -> bool:
        """Apply action envelopes (one, or a fan-in's batch) to their runs. A fan-in's envelopes
        were also kept in `call_outcomes`; the step deletes those rows. False when a run was
        busy and `skip_locked` left it for later. `seen`: the run snapshot the call's message
        carried (store/snapshot.py), decided from before the stored state is read."""
        by_run: dict[str, list[Event]] = defaultdict(list)
        hosts: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        for envelope in envelopes:
            if isinstance(envelope, dict) and "run" in envelope:
                if isinstance(envelope.get("worker"), str):
                    hosts[envelope["run"]].append((envelope["seq"], envelope["attempt"], envelope["worker"]))
                by_run[envelope["run"]].append(TaskEnded(
                    seq=envelope["seq"], attempt=envelope["attempt"], status=envelope["status"],
                    result=envelope.get("result"), error=envelope.get("error"), item=envelope.get("item")))
            else:
                log.warning("ignoring malformed completion %r", envelope)
        done = True
        for run_id, events in by_run.items():
            calls = [(e.seq, e.attempt, e.item) for e in events] if fan_in else None
            known = None
            if seen is not None and not fan_in and len(by_run) == 1 and not self.db.is_sqlite:
                known = snapshot.read(run_id, seen)
            done = self._step(run_id, lambda conn, events=events: events, skip_locked=skip_locked,
                              drop_outcomes=calls, hosts=hosts.get(run_id), seen=known) and done
        return done

    def carried_out(self, outbox_id: int, run_id: str | None = None) -> None:
        """An outbox row whose effects were carried out (a worker received its last message):
        deleted with the next step of its run in this process or by the flusher, within ~2 s."""
        self._carried_out.add((run_id, outbox_id))

    def fire_timers(self, run_id: str, keys: list[str] | None = None, skip_locked: bool = False) -> bool:
        """Fire the run's due timers (the named ones, or all that are due)."""
        return self._step(run_id, lambda conn: [self._timer_event(conn, run_id, k)
                                                for k in self.store.take_due_timers(conn, run_id, keys)],
                          skip_locked=skip_locked)

    def fire_due_timers(self, budget: float = 1.0, batch: int = 200) -> int:
        """The timer sweep (housekeeping, once per interval for the deployment): fire the timers
        that are due, most overdue first, for up to `budget` seconds. A run another step holds is
        skipped, not waited for; its timers stay due for the next sweep."""
        deadline = time.monotonic() + budget
        fired = 0
        with self.db.reading() as conn:
            runs = liveness.due_timer_runs(conn, batch)
        for run_id in runs:
            if time.monotonic() > deadline:
                break
            try:
                self.fire_timers(run_id, skip_locked=True)
            except Exception as exc:  # one run's trouble must not hold the others' timers back
                log.warning("run %s: firing its due timers failed: %s", run_id, exc)
            fired += 1
        return fired

    def _timer_event(self, conn: Any, run_id: str, key: str) -> Event:
        return whereabouts.watch_event(self, conn, run_id, key)

    def held(self, conn: Any, task_id: str, besides: tuple[str, int] | None = None, retries: int = 0,
             running_only: bool = False) -> bool:
        return whereabouts.held(conn, self.settings.worker_timeout, task_id, besides, retries, running_only)

    def lose(self, run_id: str, seq: int, attempt: int, item: int | None, reason: str) -> bool:
        """A call no live worker holds and whose message is gone: the conductor sends it again
        (or, while canceling, ends it); a call no longer in flight changes nothing."""
        def events_of(conn: Any) -> list[Event]:
            ended = whereabouts.ended_elsewhere(self, conn, run_id, seq, attempt, item)
            if ended is not None:
                return [ended]
            if self.store.ended_run(conn, child_run_id(run_id, seq, attempt, item)) is not None:
                return []  # a sub-workflow call: its child run goes on
            return [CallLost(seq, attempt, item, reason)]

        return self._step(run_id, events_of)

    def in_flight(self, run_id: str) -> set[tuple[int, int, int | None]] | None:
        """The run's calls out on workers, read without a lock (None: no such run, or it ended)."""
        with self.db.reading() as conn:
            run = self.store.read_run(conn, run_id)
            if run is None or run.definition_id is None or run.status in TERMINAL:
                return None
            return self._calls(conn, run)

    def _calls(self, conn: Any, run: Any) -> set[tuple[int, int, int | None]]:
        workflow = self._workflow_by_definition(run.definition_id)
        state = state_from_dict(*self.store.load_state(conn, run))
        return set(self._conductor(run, workflow, StoredItems(conn, run.id)).calls(state))

    # Operations -----------------------------------------------------------------------------

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

    # One step -------------------------------------------------------------------------------

    def _step(self, run_id: str, events_of: Callable[[Any], list[Event]], reopen: bool = False,
              skip_locked: bool = False,
              drop_outcomes: list[tuple[int, int, int | None]] | None = None, operation: str | None = None,
              hosts: list[tuple[int, int, str]] | None = None, seen: snapshot.RunSnapshot | None = None) -> bool:
        """Lock, decide, write, commit, then carry out. Returns False only when `skip_locked`
        found the run busy. A database error that retrying cannot fix (a value PostgreSQL refuses,
        a constraint) fails the run with that error instead of failing every retry. `operation`
        names an operator's request: one the run's status forbids, or that changes nothing,
        raises OperationRefused (core/refusals.py) instead of passing as a stale event."""
        # The run's outbox rows carried out earlier are deleted by this step's write instead of
        # a commit of their own (never another run's: a step writes only its run's rows); they
        # go back to the flusher unless that write commits.
        forget = self._carried_out.take(run_id)
        try:
            outcome, outbox_id = None, None
            if seen is not None:  # one round trip, if the run is still as the snapshot has it
                outcome, outbox_id = self._decide_from_snapshot(seen, events_of(None), forget, hosts)
            if outcome is None:
                outcome, outbox_id = self._decide_and_write(run_id, events_of, reopen, forget, skip_locked,
                                                            drop_outcomes, operation, hosts)
        except DBAPIError as exc:
            self._carried_out.extend(run_id, forget)
            if transient(exc):
                raise
            log.error("run %s: a step could not be stored: %s", run_id, exc)
            self.fail_run(run_id, f"the run's state could not be stored: {_short(exc)}")
            return True
        except _Unloadable as exc:  # no retry can read it either: the run ends, saying why
            self._carried_out.extend(run_id, forget)
            log.error("run %s: %s", run_id, exc)
            self.fail_run(run_id, str(exc))
            return True
        except BaseException:
            self._carried_out.extend(run_id, forget)
            raise
        if outcome is _BUSY:
            self._carried_out.extend(run_id, forget)
            return False
        if outcome is None:
            self._carried_out.extend(run_id, forget)
            return True
        self._finish(outcome, outbox_id)
        return True

    def _decide_and_write(self, run_id: str, events_of: Callable[[Any], list[Event]], reopen: bool,
                          forget: list[int], skip_locked: bool = False,
                          drop_outcomes: list[tuple[int, int, int | None]] | None = None,
                          operation: str | None = None, hosts: list[tuple[int, int, str]] | None = None
                          ) -> tuple[Any, int | None]:
        with self.db.step() as conn:  # two round trips: BEGIN + the lock, the write + COMMIT
            run = self.store.lock_run(conn, run_id, skip_locked=skip_locked)
            if run is None and skip_locked and self.store.run_exists(conn, run_id):
                return _BUSY, None
            if operation is not None and run is not None:
                check_operation(operation, run_id, run.status, started=run.definition_id is not None)
            if drop_outcomes:
                liveness.drop_outcomes(conn, run_id, drop_outcomes)
            if run is None or run.definition_id is None or (run.status in TERMINAL and not reopen):
                return None, None
            events = events_of(conn)
            if not events:
                return None, None
            try:
                workflow = self._workflow_by_definition(run.definition_id)
            except WorkflowInvalid as exc:
                raise _Unloadable(f"the run's stored definition cannot be loaded: {exc.lines()[0]}") from None
            with guard.step():  # the row lock is held: the step's expressions share one time budget
                commands = self._decide(conn, run, workflow, events)
            if not commands:
                if operation is not None:
                    raise nothing_changed(operation, run_id, run.status)
                return None, None  # stale or duplicate: nothing changes
            state, commands = commands
            parent = _parent_of(run)
            # Calls sent because their message was lost may still exist somewhere: their worker
            # checks them before running them.
            resent = any(isinstance(e, CallLost) or (isinstance(e, TimerFired) and e.running is False) for e in events)
            outcome = Outcome(run_id, workflow.name, commands, parent, resent=resent)
            rows, written = self.store.write_step(conn, run_id, state, commands, outbox=self._effects(outcome),
                                                  forget=forget, hosts=hosts)
        self._written(outcome, run, rows, written)
        return outcome, written.outbox_id

    def _decide_from_snapshot(self, run: snapshot.RunSnapshot, events: list[Event], forget: list[int],
                              hosts: list[tuple[int, int, str]] | None) -> tuple[Any, int | None]:
        """The step decided from the snapshot the call's message carried, written in one round
        trip if the run row is still the version the snapshot names. (None, None) when it cannot
        be: the run changed since, or deciding needs what the snapshot does not hold (rows of
        with_items, a value that cannot be stored, a step that changes nothing); the caller then
        steps from the stored state, which decides every such case."""
        if run.status in TERMINAL or not events:
            return None, None
        try:
            workflow = self._workflow_by_definition(run.definition_id)
        except WorkflowInvalid:
            return None, None  # the usual step fails the run, saying why
        conductor = self._conductor(run, workflow, _NO_ROWS)
        try:
            with guard.step():
                state = state_from_dict(run.state, run.variables)
                commands = _apply_to(conductor, state, events)
        except _NeedsRows:
            return None, None
        if not commands or storable.first_unstorable(commands) is not None \
                or any(isinstance(c, (ItemsCreated, ItemEnded)) for c in commands):
            return None, None
        outcome = Outcome(run.id, workflow.name, commands, _parent_of(run))
        with self.db.step() as conn:  # one round trip: BEGIN, the conditional write, COMMIT
            rows, written = self.store.write_step(conn, run.id, state, commands, outbox=self._effects(outcome),
                                                  forget=forget, hosts=hosts, expect=run.expect)
        if not written.applied:
            return None, None
        self._written(outcome, run, rows, written)
        return outcome, written.outbox_id

    def _written(self, outcome: Outcome, run: Any, rows: Any, written: Any) -> None:
        """What a step's committed write leaves to its outcome: the lifecycle events to publish
        and, when it sends one call, the run's snapshot for that call's message."""
        outcome.recorded(rows)
        if _one_call(outcome.commands):
            variables = {**(getattr(run, "variables", None) or {}), **rows.variables}
            outcome.seen = snapshot.take(run, rows, written, variables, self.store.redact)

    def _decide(self, conn: Any, run: Any, workflow: AnyWorkflow, events: list[Event]) -> tuple[Any, list[Any]] | None:
        """The conductor's state and commands for `events`, every value they would store checked
        (engine/storable.py) at the one place both formats' steps pass before they are written."""
        step: dict[str, Any] = {}

        def again(replaced: list[Event]) -> list[Any]:  # applying changed the state read with the row
            step["state"], commands = self._apply(conn, self.store.lock_run(conn, run.id), workflow, replaced)
            return commands

        def failing() -> None:  # the run fails; if its state holds the value too, keep the stored one
            if storable.problem(step["state"].to_dict()):
                step["state"] = state_from_dict(*self.store.load_state(conn, self.store.lock_run(conn, run.id)))

        step["state"], commands = self._apply(conn, run, workflow, events)
        if not commands:
            return None
        commands = storable.checked(commands, events, lambda extra: self._more(conn, run, workflow, step["state"], extra),
                                    again, failing, log=lambda why: log.warning("run %s: %s", run.id, why))
        return (step["state"], commands) if commands else None

    def _conductor(self, run: Any, workflow: AnyWorkflow, items: ItemStore) -> Any:
        """The run's conductor; `items`: where it reads with_items rows (the step's connection)."""
        return conductor_for(workflow, self._run_info(run.id, run.params, iso(run.started_at)), items=items)

    def _apply(self, conn: Any, run: Any, workflow: AnyWorkflow, events: list[Event]) -> tuple[Any, list[Any]]:
        state = state_from_dict(*self.store.load_state(conn, run))
        return state, self._more(conn, run, workflow, state, events)

    def _more(self, conn: Any, run: Any, workflow: AnyWorkflow, state: Any, events: list[Event]) -> list[Any]:
        return _apply_to(self._conductor(run, workflow, StoredItems(conn, run.id)), state, events)

    def fail_run(self, run_id: str, error: str) -> None:
        """End a run as failed outside the conductor (its state could not be stored): its calls
        in flight are revoked, its timers dropped, its parent told."""
        with self.db.step() as conn:
            run = self.store.lock_run(conn, run_id)
            if run is None or run.status in TERMINAL:
                return
            try:
                calls = self._calls(conn, run)
                state = state_from_dict(*self.store.load_state(conn, run))
            except Exception:  # the state itself may be what cannot be read
                calls, state = set(), None
            commands: list[Any] = [Revoke(seq, attempt, item, terminate=True) for seq, attempt, item in sorted(
                calls, key=lambda c: (c[0], c[1], -1 if c[2] is None else c[2]))]
            commands.append(RunFinished("failed", None, error))
            outcome = Outcome(run_id, run.workflow, commands, _parent_of(run))
            if state is None:
                state = state_from_dict({}, {})
            rows, written = self.store.write_step(conn, run_id, state, commands, outbox=self._effects(outcome))
        outcome.recorded(rows)
        self._finish(outcome, written.outbox_id)

    # Helpers --------------------------------------------------------------------------------

    def _run_info(self, run_id: str, params: dict[str, Any], started_at: str | None) -> RunInfo:
        return RunInfo(run_id, params, started_at or "", self.settings.config, self.settings.execution_limit,
                       self.settings.timeout_grace, self.settings.lease, self.settings.max_input_bytes)

    def _load_definition(self, definition_id: int) -> AnyWorkflow:
        with self.db.reading() as conn:
            row = self.store.definition(conn, definition_id)
        return load_stored(row.text, row.source, row.name)


_BUSY = object()  # a step's run was locked by another transaction and `skip_locked` left it


class _Unloadable(Exception):
    """A run's stored definition does not load even without the static checks."""


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _apply_to(conductor: Any, state: Any, events: list[Event]) -> list[Any]:
    return list(conductor.apply_all(state, events))


def _parent_of(run: Any) -> dict[str, Any] | None:
    """The calling task of a sub-workflow run ({run, seq, attempt, item}), from its row."""
    if not run.parent_run_id:
        return None
    return {"run": run.parent_run_id, "seq": run.parent_seq, "attempt": run.parent_attempt, "item": run.parent_item}


def _one_call(commands: list[Any]) -> bool:
    """The step sends exactly one call on its own (not into a fan-in): its message may carry the
    run's snapshot."""
    calls = [c for c in commands if isinstance(c, Dispatch)]
    return len(calls) == 1 and not calls[0].barrier


class _NeedsRows(BaseException):
    """Deciding from a snapshot reached for stored rows (with_items values and results, Orquesta's
    task()): the step reads the run instead. A BaseException, so that no handler of the
    conductor's own (an expression's error, say) turns it into a decision."""


class _NoRows(ItemStore):
    def item(self, seq: int, index: int) -> Any:
        raise _NeedsRows()

    def results(self, seq: int) -> dict[int, Any]:
        raise _NeedsRows()

    def execution(self, seq: int) -> dict[str, Any] | None:
        raise _NeedsRows()


_NO_ROWS = _NoRows()


__all__ = ["Supervisor", "ParametersInvalid", "WorkflowInvalid", "WorkflowNotFound"]
