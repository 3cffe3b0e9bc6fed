"""Operators' requests on an Orquesta run, with the engine's semantics (engine/operations.py) on
Orquesta's status machine: pause, resume, cancel, answers to ``core.ask``, a sub-workflow's pause
reaching its parent, and reruns named by task. A mixin of OrquestaConductor.

- pause: ``pausing`` while calls run; they finish (their transitions are applied) but nothing new
  starts: ready tasks stay staged, a delay that comes due is held, a with-items window is not
  refilled. ``paused`` once no call runs (a pending ``core.ask`` and a paused child run do not
  count). As in Orquesta, a run whose last task ended while pausing is ``paused``, not finished;
  resuming it completes it.
- resume: ``running``; held delays are dispatched, with-items windows refilled, staged tasks
  handed out.
- cancel: ``canceling``; every running call gets a terminating Revoke (and, when the runtime has
  leases, a check timer that finds calls that never started); executions with nothing running end
  ``canceled`` at once. A call's late report ends its execution (its result kept if it succeeded)
  without transitions; ``canceled`` when none is left.
- core.ask: the task is not dispatched; it waits for ``Responded`` data that matches the
  ``schema`` of its input, and fails when its input's ``timeout`` (seconds) or ``ttl`` (minutes,
  StackStorm's name) passes first.
"""

from __future__ import annotations

from bisect import insort
from typing import TYPE_CHECKING, Any

from ..engine.commands import (CallLost, CallPaused, CancelTimer, Event, ExecutionEnded, ItemEnded, Responded, Revoke,
                               SetTimer, StatusChanged, TaskEnded, TimerFired)
from ..engine.timers import CANCEL_CHECK, LEASE, WATCHES, parse_timer_key, timer_key
from . import items as item_book
from .state import (CANCELED, CANCELING, DELAYED, FAILED, PAUSED, PAUSING, RESUMING, RUNNING, SUCCEEDED,
                    OrquestaState, split_key)

if TYPE_CHECKING:
    from .flow import Flow

ASK = "core.ask"
CANCELED_BY_REQUEST = "canceled by request"


def ask_timer_key(seq: int, attempt: int) -> str:
    """Not a watch key (lease/deadline): the shell hands it back as a plain TimerFired."""
    return f"ask:{seq}:{attempt}"


class Operations:
    """Requires OrquestaConductor's `_dispatch`, `_dispatch_items`, `rerun`, `run`, `graph`, `items`."""

    # Pause, resume, cancel --------------------------------------------------------------------

    def _control(self, state: OrquestaState, flow: Flow, action: str) -> bool:
        commands = flow.step.commands
        if action == "pause":
            if state.status not in (RUNNING, RESUMING):
                return False
            state.status = PAUSING
            commands.append(StatusChanged(PAUSING))  # _advance makes it paused once no call runs
            return True
        if action == "resume":
            if state.status not in (PAUSING, PAUSED):
                return False
            state.status = RUNNING
            state.paused_calls = []
            commands.append(StatusChanged(RUNNING))
            for record in state.active_records():
                if record.pop("held", False):
                    self._release(state, flow, record)
                elif self._idle_items(record):
                    self._dispatch_items(state, flow, record)
            if not state.has_active() and not state.ready_staged():
                # Orquesta: resuming a workflow with nothing left to run completes it
                state.status = SUCCEEDED
                flow.unreachable_joins()
            return True
        if action == "cancel":
            if state.finished or (state.status == CANCELING and state.reason):
                return False
            self._cancel(state, flow, CANCELED_BY_REQUEST)
            return True
        return False

    def _release(self, state: OrquestaState, flow: Flow, record: dict[str, Any]) -> None:
        """A delayed task whose delay is over: dispatch it (or its items)."""
        state.set_status(record, RUNNING)
        if "items" in record:
            self._dispatch_items(state, flow, record)
        else:
            self._dispatch(state, flow, record)

    @staticmethod
    def _idle_items(record: dict[str, Any]) -> bool:
        """A with-items task whose window a pause left unfilled (items not started, none failed)."""
        items = record.get("items")
        return (items is not None and record.get("status") == RUNNING and not record.get("waiting")
                and item_book.unfinished(items))

    @staticmethod
    def _running_calls(state: OrquestaState) -> list[tuple[dict[str, Any], int | None, int]]:
        """(record, item, attempt) of every call out on a worker: not a delay, a pending ask, a
        held dispatch or a paused child run."""
        paused = {tuple(call) for call in state.paused_calls}
        calls = []
        for record in state.active_records():
            if record.get("status") not in (RUNNING, CANCELING) or record.get("waiting") or record.get("ask") is not None:
                continue
            if "items" in record:
                calls += [(record, item, attempt) for item, attempt in item_book.flight_calls(record["items"])
                          if (record["seq"], attempt, item) not in paused]
            elif (record["seq"], record["attempt"], None) not in paused:
                calls.append((record, None, record["attempt"]))
        return calls

    def _maybe_paused(self, state: OrquestaState, flow: Flow) -> None:
        if state.status == PAUSING and not self._running_calls(state):
            state.status = PAUSED
            flow.step.commands.append(StatusChanged(PAUSED))

    def _call_paused(self, state: OrquestaState, event: CallPaused) -> bool:
        entry = [event.seq, event.attempt, event.item]
        if state.status not in (PAUSING, PAUSED) or entry in state.paused_calls:
            return False
        if not any((r["seq"], a, i) == tuple(entry) for r, i, a in self._running_calls(state)):
            return False  # stale: that call is no longer out
        state.paused_calls.append(entry)
        return True

    def _cancel(self, state: OrquestaState, flow: Flow, reason: str) -> None:
        """Running calls are revoked (interrupted where the pool allows); everything else active
        ends canceled now. Canceling until the revoked calls are accounted for."""
        commands = flow.step.commands
        running = self._running_calls(state)
        out = {id(record) for record, _, _ in running}
        for record, item, attempt in running:
            commands.append(Revoke(record["seq"], attempt, item, terminate=True))
            if self.run.lease:  # a revoked call that never started never reports: look for it
                commands.append(SetTimer(timer_key(LEASE, record["seq"], attempt, item), CANCEL_CHECK))
        paused = {tuple(call) for call in state.paused_calls}
        for record in state.active_records():
            if record.get("status") not in (RUNNING, DELAYED, CANCELING):
                continue
            for key in (record.pop("waiting", None), (record.pop("ask", None) or {}).get("timer")):
                if key:
                    commands.append(CancelTimer(key))
            record.pop("held", None)
            if id(record) in out:
                items = record.get("items")
                if items is not None:  # paused children of this task are no longer waited for
                    for i in [i for i, a in item_book.flight_calls(items) if (record["seq"], a, i) in paused]:
                        item_book.flight_remove(items, i)
                        insort(items["bad"], i)
                state.set_status(record, RUNNING)
                continue
            self._end_canceled(state, flow, record, reason)
        state.paused_calls = []
        state.reason = reason
        state.status = CANCELING
        commands.append(StatusChanged(CANCELING))
        self._maybe_canceled(state)

    @staticmethod
    def _end_canceled(state: OrquestaState, flow: Flow, record: dict[str, Any], reason: str) -> None:
        state.set_status(record, CANCELED)
        record["term"] = True  # where this branch stopped: its context reaches the output
        flow.step.commands.append(ExecutionEnded(record["seq"], record["id"], record["attempt"], CANCELED, None,
                                                 reason))

    @staticmethod
    def _maybe_canceled(state: OrquestaState) -> None:
        if not state.has_active():
            state.status = CANCELED  # _advance renders the output and emits RunFinished

    def _while_canceling(self, state: OrquestaState, flow: Flow, event: Event) -> bool:
        """Only the revoked calls matter now: each report (or proof that the call never started)
        ends its execution without transitions; the last one cancels the run."""
        if isinstance(event, TimerFired):
            if event.key.split(":", 1)[0] not in WATCHES:
                return False
            _, seq, attempt, item = parse_timer_key(event.key)
            outcome = (CANCELED, None, "it never started") if event.running is False else None
        elif isinstance(event, CallLost):
            seq, attempt, item = event.seq, event.attempt, event.item
            outcome = (CANCELED, None, event.reason)
        elif isinstance(event, TaskEnded):
            seq, attempt, item = event.seq, event.attempt, event.item
            outcome = (event.status, event.result, event.error)
        else:
            return False
        record = next((r for r, i, a in self._running_calls(state)
                       if (r["seq"], i, a) == (seq, item, attempt)), None)
        if record is None:
            return False
        commands = flow.step.commands
        if outcome is None:  # still running, or the worker cannot tell: look again later
            commands.append(SetTimer(event.key, CANCEL_CHECK))
            return True
        commands.append(CancelTimer(timer_key(LEASE, seq, attempt, item)))
        status, result, error = outcome
        if status != SUCCEEDED:  # interrupted by the revoke, or failed on its own: canceled either way
            status, result, error = CANCELED, None, f"{state.reason} ({error})" if error else state.reason
        if item is None:
            state.set_status(record, status)
            record["term"] = True
            commands.append(ExecutionEnded(seq, record["id"], attempt, status, result, error))
        else:
            items = record["items"]
            item_book.ended(items, item, status)
            result = result if status == SUCCEEDED else error
            self.items.ended(seq, item, result)
            commands.append(ItemEnded(seq, item, status, result))
            if not items["flight"]:
                self._end_canceled(state, flow, record, state.reason or CANCELED_BY_REQUEST)
        self._maybe_canceled(state)
        return True

    # core.ask ---------------------------------------------------------------------------------

    def _ask(self, flow: Flow, record: dict[str, Any], payload: dict[str, Any]) -> None:
        """Wait for a response instead of dispatching; its timeout fails the task."""
        ask: dict[str, Any] = {"schema": payload.get("schema"), "prompt": payload.get("prompt")}
        seconds = _ask_timeout(payload)
        if seconds:
            ask["timer"] = ask_timer_key(record["seq"], record["attempt"])
            ask["seconds"] = seconds
            flow.step.commands.append(SetTimer(ask["timer"], seconds))
        record["ask"] = ask

    def _respond(self, state: OrquestaState, flow: Flow, event: Responded) -> bool:
        """The response, checked against the ask's schema, is the task's result. Raises
        ValueError when no such task is waiting or the data does not match."""
        waiting = sorted((r for r in state.active_records()
                          if r["id"] == event.task and r.get("status") == RUNNING and r.get("ask") is not None),
                         key=lambda r: r["seq"])
        if not waiting:  # (a failed run that has not finished still takes the answer it waits for)
            raise ValueError(f"task '{event.task}' is not waiting for a response")
        record = waiting[0]
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        from ..engine.schemas import standard_schema  # StackStorm's `required: true` on a property

        schema = standard_schema(record["ask"].get("schema") or {})
        try:
            problems = [e.message for e in Draft202012Validator(schema).iter_errors(event.data)]
        except SchemaError as exc:
            raise ValueError(f"task '{event.task}': its schema is not a valid JSON Schema: {exc.message}") from None
        if problems:
            raise ValueError(f"response for task '{event.task}' does not match its schema: " + "; ".join(problems))
        ask = record.pop("ask")
        if ask.get("timer"):
            flow.step.commands.append(CancelTimer(ask["timer"]))
        flow.step.commands.append(ExecutionEnded(record["seq"], record["id"], record["attempt"], SUCCEEDED,
                                                 event.data))
        flow.complete(record, SUCCEEDED, event.data)
        return True

    def _ask_expired(self, state: OrquestaState, flow: Flow, key: str) -> bool:
        parts = key.split(":")
        record = state.active.get(int(parts[1])) if len(parts) == 3 and parts[1].isdigit() else None
        ask = record.get("ask") if record is not None else None
        if ask is None or ask.get("timer") != key or record.get("status") != RUNNING:
            return False
        del record["ask"]
        error = f"no response within {ask['seconds']:g} s"
        state.log_error("Execution failed. See result for details.", record["id"], result=error)
        flow.step.commands.append(ExecutionEnded(record["seq"], record["id"], record["attempt"], FAILED, None, error))
        flow.complete(record, FAILED, error)
        return True

    # Rerun by task names ----------------------------------------------------------------------

    def _rerun_requests(self, state: OrquestaState, names: tuple[str, ...]) -> list[dict[str, Any]] | None:
        """`name` means the task on every route it ran on; `name__rN` one route."""
        if not names:
            return None
        requests: list[dict[str, Any]] = []
        for name in names:
            if name in state.tasks:
                task, route = name.rsplit("__r", 1)
                requests.append({"task_id": task, "route": int(route)})
                continue
            routes = sorted(route for task, route in map(split_key, state.tasks) if task == name)
            requests += [{"task_id": name, "route": r} for r in routes] or [{"task_id": name}]
        return requests


def _ask_timeout(payload: dict[str, Any]) -> float | None:
    """Seconds from the ask's `timeout` (seconds) or `ttl` (minutes); a bad value is an error."""
    for name, scale in (("timeout", 1), ("ttl", 60)):
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise TypeError(f"core.ask {name} must be a positive number, got {value!r}")
        return float(value) * scale
    return None
