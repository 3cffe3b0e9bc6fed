"""The one run control both formats' conductors use.

What an operator or the runtime does to a run, as opposed to the flow of its tasks, lives here
once: pause (``pausing`` while calls run, ``paused`` once none does), resume, cancel
(``canceling`` until every revoked call is accounted for, then ``canceled``), answers to
``core.ask`` (checked against its schema) and their timeouts, the watch on every call (a
deadline when the task has a timeout, else a lease: a call the shell finds no trace of is sent
again), a call found lost, a sub-workflow call whose child run is paused, the input size limit,
and the marking of calls that go out together as one fan-in (``barrier``).

A conductor hands itself to the RunControl as a `Conducted`: the few things only the format
knows (which calls are out, how an execution ends, how held-back work is released). Each step,
the conductor routes the operators' and the watches' events here (`route`) and ends with
`finish_step`, which sets the watch of every call dispatched and marks fan-ins.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Protocol

from .commands import (CallLost, CallPaused, CancelTimer, Command, Control, Dispatch, Event, ExecutionStarted,
                       Responded, Revoke, SetTimer, StatusChanged, TaskEnded, TimerFired)
from .run import RunInfo
from .schemas import schema_problem, standard_schema
from .statuses import CANCELED, CANCELING, PAUSED, PAUSING, RESUMING, RUNNING, SUCCEEDED, TIMED_OUT
from .timers import ASK, CANCEL_CHECK, DEADLINE, LEASE, WATCHES, parse_timer_key, timer_key, timer_kind

Call = tuple[int, int, int | None]  # (seq, attempt, item)

CANCELED_BY_REQUEST = "canceled by request"

# The operators' part of the run status machine, shared by both formats: run status -> operation
# -> next status. `quiet`: no call runs any more; `drained`: nothing is left in flight.
CONTROL: dict[str, dict[str, str]] = {
    RUNNING: {"pause": PAUSING, "cancel": CANCELING},
    RESUMING: {"pause": PAUSING, "cancel": CANCELING},
    PAUSING: {"resume": RUNNING, "cancel": CANCELING, "quiet": PAUSED},
    PAUSED: {"resume": RUNNING, "cancel": CANCELING},
    CANCELING: {"drained": CANCELED},
}


class RunState(Protocol):
    """What the run control reads and writes on a format's state."""

    status: str
    reason: str | None          # why the run is canceling (set by cancel)
    paused_calls: list[list[Any]]  # [seq, attempt, item] of calls whose child run is paused


class StepOut(Protocol):
    commands: list[Command]


class Conducted(Protocol):
    """What a format gives the run control (engine/control.py, orquesta/control.py)."""

    table: dict[str, dict[str, str]]  # the operators' status machine for this format (CONTROL, perhaps extended)

    def calls_out(self, state: Any) -> list[Call]:
        """Calls dispatched and not yet ended, in seq order: not a delayed or held-back launch, not
        a core.ask (a paused child run's call is out)."""

    def is_out(self, state: Any, call: Call) -> bool:
        """Whether this call is out (as `calls_out`, without listing them all)."""

    def call_timeout(self, state: Any, call: Call) -> float | None:
        """The task's `timeout` in seconds, if it has one (its call is watched by a deadline)."""

    def task_ended(self, state: Any, step: Any, event: TaskEnded) -> bool:
        """A call that is out reported (or timed out): end it the format's way (retries,
        transitions, the with_items window). False: the format ignores this report."""

    def resend(self, state: Any, step: Any, call: Call) -> None:
        """Dispatch this call again (same attempt): its message was lost."""

    def cancel_rest(self, state: Any, step: Any, running: list[Call], reason: str) -> None:
        """Cancel everything but the `running` calls: executions with nothing running end
        canceled now, held-back and delayed work is dropped, pending asks end."""

    def end_canceled(self, state: Any, step: Any, call: Call, status: str, result: Any, error: str | None) -> None:
        """While canceling: a revoked call is accounted for; end it (and its execution, when it was
        the last of it) without transitions."""

    def has_active(self, state: Any) -> bool:
        """Whether any execution is still in flight."""

    def canceled(self, state: Any, step: Any) -> None:
        """The run just became canceled (the format emits RunFinished its way)."""

    def release(self, state: Any, step: Any) -> None:
        """The run resumed: start the work the pause held back."""

    def asks(self, state: Any) -> list[tuple[int, dict[str, Any]]]:
        """(seq, ask) of every core.ask waiting for its answer, in seq order; an ask holds `task`,
        `schema`, `prompt` and, when it has a timeout, `timer` and `seconds`."""

    def end_ask(self, state: Any, step: Any, seq: int, status: str, result: Any, error: str | None) -> None:
        """An ask was answered (succeeded, with the response) or not in time (timed_out): the ask
        leaves the state and its execution ends the format's way."""

    def fan_in(self, task: str) -> str | None:
        """The join that task leads straight into (its only target, a `join: all`), if any."""

    def retries(self, task: str) -> bool:
        """Whether the task has a retry policy (its calls never join a fan-in)."""


class RunControl:
    """The run control of one conductor (see the module docstring)."""

    def __init__(self, conductor: Conducted, run: RunInfo):
        self.conductor = conductor
        self.run = run

    # Routing ------------------------------------------------------------------------------------

    def route(self, state: RunState, step: StepOut, event: Event) -> bool | None:
        """Apply an event that is the run control's: True when it was accepted, False when it
        is stale. None: not the run control's (the format's own timers, reruns)."""
        if self.canceling(state):
            if isinstance(event, (TaskEnded, CallLost, TimerFired)):
                return self._while_canceling(state, step, event)
            if isinstance(event, (Control, Responded, CallPaused)):
                return False
            return None
        if isinstance(event, Control):
            return self.control(state, step, event.action)
        if isinstance(event, Responded):
            return self.respond(state, step, event)
        if isinstance(event, CallPaused):
            return self.call_paused(state, event)
        if isinstance(event, CallLost):
            return self.call_lost(state, step, event)
        if isinstance(event, TaskEnded):
            return self.task_ended(state, step, event)
        if isinstance(event, TimerFired) and timer_kind(event.key) in (*WATCHES, ASK):
            return self.timer(state, step, event)
        return None

    @staticmethod
    def canceling(state: RunState) -> bool:
        """Canceling by request (Orquesta's own `canceling`, from a task that ended canceled,
        has no reason and runs its course)."""
        return state.status == CANCELING and state.reason is not None

    def finish_step(self, commands: list[Command]) -> None:
        """At the end of every step: each Dispatch gets its watch right after it, and calls that
        go out together into one place become one fan-in."""
        watched = False
        out: list[Command] = []
        for command in commands:
            out.append(command)
            if isinstance(command, Dispatch):
                watch = self.watch(command.seq, command.attempt, command.item, command.timeout)
                if watch is not None:
                    out.append(watch)
                    watched = True
        if watched:
            commands[:] = out
        self._mark_fan_ins(commands)

    # Calls ----------------------------------------------------------------------------------------

    def calls(self, state: RunState) -> list[Call]:
        """Every call out on a worker: not delayed, not held back by a pause, not a paused child
        run, not a core.ask waiting for its answer."""
        paused = {tuple(call) for call in state.paused_calls}
        return [call for call in self.conductor.calls_out(state) if call not in paused]

    def watch(self, seq: int, attempt: int, item: int | None, timeout: float | None) -> SetTimer | None:
        """The timer that watches a call: its deadline when the task has a timeout, else the lease
        (when the runtime sets one)."""
        if timeout:
            return SetTimer(timer_key(DEADLINE, seq, attempt, item), timeout + self.run.timeout_grace)
        if self.run.lease:
            return SetTimer(timer_key(LEASE, seq, attempt, item), self.run.lease)
        return None

    def unwatch(self, state: RunState, call: Call) -> list[CancelTimer]:
        seq, attempt, item = call
        if self.conductor.call_timeout(state, call):
            return [CancelTimer(timer_key(DEADLINE, seq, attempt, item))]
        return [CancelTimer(timer_key(LEASE, seq, attempt, item))] if self.run.lease else []

    def task_ended(self, state: RunState, step: StepOut, event: TaskEnded) -> bool:
        call = (event.seq, event.attempt, event.item)
        if not self.conductor.is_out(state, call):
            return False  # stale: redelivered, duplicated, or that attempt is no longer out
        mark = len(step.commands)
        if not self.conductor.task_ended(state, step, event):
            return False
        step.commands[mark:mark] = self.unwatch(state, call)
        return True

    def call_lost(self, state: RunState, step: StepOut, event: CallLost) -> bool:
        """A call no worker holds and whose message is gone is sent again (same attempt)."""
        call = (event.seq, event.attempt, event.item)
        if not self.conductor.is_out(state, call) or list(call) in state.paused_calls:
            return False
        step.commands.extend(self.unwatch(state, call))
        self.conductor.resend(state, step, call)
        return True

    def check_input(self, task: str, payload: Any, item: int | None = None) -> str | None:
        """The error when a call's rendered input is over `max_input_bytes`."""
        limit = self.run.max_input_bytes
        if limit is None:
            return None
        size = len(json.dumps(payload, default=str))
        if size <= limit:
            return None
        where = "input" if item is None else f"input of item {item}"
        return f"task '{task}': {where} is {size} bytes, over the limit of {limit} (pass large data by reference)"

    # Timers ---------------------------------------------------------------------------------------

    def timer(self, state: RunState, step: StepOut, event: TimerFired) -> bool:
        """A watch or an ask's timeout came due."""
        kind, seq, attempt, item = parse_timer_key(event.key)
        if kind == ASK:
            return self._ask_expired(state, step, seq, event.key)
        call = (seq, attempt, item)
        if not self.conductor.is_out(state, call):
            if kind == DEADLINE:  # a core.ask's deadline, as stored before asks had timers of their own
                return self._ask_expired(state, step, seq, event.key)
            return False
        if event.running is False:  # no trace of the call: its message was lost
            self.conductor.resend(state, step, call)
        elif kind == LEASE:  # still running, or cannot tell: keep waiting
            if not self.run.lease:
                return False
            step.commands.append(SetTimer(event.key, self.run.lease))
        else:
            timeout = self.conductor.call_timeout(state, call) or 0
            self.conductor.task_ended(state, step, TaskEnded(seq, attempt, TIMED_OUT, None,
                                                             f"timed out after {timeout:g} s (no report from the worker)",
                                                             item))
        return True

    # Pause, resume, cancel -----------------------------------------------------------------------

    def control(self, state: RunState, step: StepOut, action: str) -> bool:
        """pause: running calls finish, nothing new starts (pausing, then paused); resume: the
        held-back work starts; cancel: running calls are revoked and the run ends canceled."""
        target = self.conductor.table.get(state.status, {}).get(action)
        if target is None:
            return False
        if action == "cancel":
            self.cancel(state, step, CANCELED_BY_REQUEST)
            return True
        state.status = target
        step.commands.append(StatusChanged(target))
        if action == "resume":
            state.paused_calls = []
            self.conductor.release(state, step)
        return True

    def maybe_paused(self, state: RunState, step: StepOut) -> None:
        """A pausing run is paused once no call runs (a pending ask or a paused child run does not
        count)."""
        if state.status == PAUSING and not self.calls(state):
            state.status = CONTROL[PAUSING]["quiet"]
            step.commands.append(StatusChanged(PAUSED))

    def call_paused(self, state: RunState, event: CallPaused) -> bool:
        """A sub-workflow call's child run is paused: for pausing, the call no longer runs."""
        entry = [event.seq, event.attempt, event.item]
        if state.status not in (PAUSING, PAUSED) or entry in state.paused_calls:
            return False
        if not self.conductor.is_out(state, (event.seq, event.attempt, event.item)):
            return False  # stale: that call is no longer out
        state.paused_calls.append(entry)
        return True

    def cancel(self, state: RunState, step: StepOut, reason: str) -> None:
        """Running calls are revoked (interrupted where the worker pool allows it); the run stays
        `canceling` until each has reported or is found never to have started, then `canceled`.
        Everything else ends now."""
        running = self.calls(state)
        for seq, attempt, item in running:
            step.commands.append(Revoke(seq, attempt, item, terminate=True))
            if self.run.lease:  # look for it soon: a revoked call that never started never reports
                step.commands.append(SetTimer(timer_key(LEASE, seq, attempt, item), CANCEL_CHECK))
        for _, ask in self.conductor.asks(state):
            if ask.get("timer"):
                step.commands.append(CancelTimer(ask["timer"]))
        self.conductor.cancel_rest(state, step, running, reason)
        state.paused_calls = []
        state.reason = reason
        state.status = CANCELING
        step.commands.append(StatusChanged(CANCELING))
        self._maybe_canceled(state, step)

    def _while_canceling(self, state: RunState, step: StepOut, event: TaskEnded | CallLost | TimerFired) -> bool:
        """Only the calls still running matter now: each one's report (or proof that it never
        started) ends its execution without transitions; the last one ends the run."""
        outcome: tuple[str, Any, str | None] | None
        if isinstance(event, TimerFired):
            if timer_kind(event.key) not in WATCHES:
                return False
            _, seq, attempt, item = parse_timer_key(event.key)
            outcome = (CANCELED, None, "it never started") if event.running is False else None
        elif isinstance(event, CallLost):
            seq, attempt, item = event.seq, event.attempt, event.item
            outcome = (CANCELED, None, event.reason)
        else:
            seq, attempt, item = event.seq, event.attempt, event.item
            outcome = (event.status, event.result, event.error)
        call = (seq, attempt, item)
        if not self.conductor.is_out(state, call):
            return False
        if outcome is None:  # still running, or the worker cannot tell: look again later
            step.commands.append(SetTimer(event.key, CANCEL_CHECK))
            return True
        step.commands.append(CancelTimer(timer_key(LEASE, seq, attempt, item)))
        step.commands.append(CancelTimer(timer_key(DEADLINE, seq, attempt, item)))
        status, result, error = outcome
        if status != SUCCEEDED:  # interrupted by the revoke, or failed on its own: canceled either way
            status, result, error = CANCELED, None, f"{state.reason} ({error})" if error else state.reason
        self.conductor.end_canceled(state, step, call, status, result, error)
        self._maybe_canceled(state, step)
        return True

    def _maybe_canceled(self, state: RunState, step: StepOut) -> None:
        if state.status == CANCELING and not self.conductor.has_active(state):
            state.status = CONTROL[CANCELING]["drained"]
            self.conductor.canceled(state, step)

    # core.ask ---------------------------------------------------------------------------------

    def ask(self, step: StepOut, task: str, seq: int, attempt: int, payload: Any,
            timeout: float | None) -> dict[str, Any]:
        """A core.ask call: nothing is dispatched; it waits for an answer matching its schema
        (checked now: a bad schema fails the task) and, with a timeout, fails when none comes in
        time. Returns the ask for the format to keep; raises ValueError for a bad input."""
        if not isinstance(payload, dict):
            raise ValueError(f"core.ask input must be a mapping, got {type(payload).__name__}")
        schema = payload.get("schema")
        if schema is not None:
            problem = schema_problem(standard_schema(schema))
            if problem:
                raise ValueError(f"core.ask schema is not a valid JSON Schema: {problem}")
        ask: dict[str, Any] = {"task": task, "schema": schema, "prompt": payload.get("prompt")}
        if timeout:
            ask["timer"] = timer_key(ASK, seq, attempt)
            ask["seconds"] = timeout
            step.commands.append(SetTimer(ask["timer"], timeout))
        return ask

    def respond(self, state: RunState, step: StepOut, event: Responded) -> bool:
        """The response, checked against the ask's schema, is the task's result. Raises
        ValueError when no such task is waiting or the data does not match."""
        waiting = [(seq, ask) for seq, ask in self.conductor.asks(state) if ask.get("task") == event.task]
        if not waiting:
            raise ValueError(f"task '{event.task}' is not waiting for a response")
        seq, ask = waiting[0]
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:  # StackStorm's `required: true` on a property is read as standard JSON Schema
            schema = standard_schema(ask.get("schema") or {})
            problems = [e.message for e in Draft202012Validator(schema).iter_errors(event.data)]
        except SchemaError as exc:
            raise ValueError(f"task '{event.task}': its schema is not a valid JSON Schema: {exc.message}") from None
        if problems:
            raise ValueError(f"response for task '{event.task}' does not match its schema: " + "; ".join(problems))
        if ask.get("timer"):
            step.commands.append(CancelTimer(ask["timer"]))
        self.conductor.end_ask(state, step, seq, SUCCEEDED, event.data, None)
        return True

    def _ask_expired(self, state: RunState, step: StepOut, seq: int, key: str) -> bool:
        ask = dict(self.conductor.asks(state)).get(seq)
        if ask is None or ask.get("timer", key) != key:
            return False
        seconds = ask.get("seconds")
        if seconds is None:  # stored before asks had timers of their own: the task's timeout
            seconds = self.conductor.call_timeout(state, (seq, 0, None)) or 0
        self.conductor.end_ask(state, step, seq, TIMED_OUT, None, f"no response within {seconds:g} s")
        return True

    # Fan-ins --------------------------------------------------------------------------------------

    def _mark_fan_ins(self, commands: list[Command]) -> None:
        """Calls that went out together and all lead into one place become one fan-in: every item
        of a with_items execution dispatched at once, or sibling tasks that go straight into the
        same `join: all`."""
        groups: dict[str, list[int]] = {}
        totals: dict[int, int | None] = {}
        for i, command in enumerate(commands):
            if isinstance(command, ExecutionStarted):
                totals[command.seq] = command.items
            if not isinstance(command, Dispatch) or self.conductor.retries(command.task):
                continue
            if command.item is not None:
                groups.setdefault(f"items:{command.seq}", []).append(i)
                continue
            join = self.conductor.fan_in(command.task)
            if join is not None:
                groups.setdefault(f"join:{join}", []).append(i)
        for key, indexes in groups.items():
            if len(indexes) < 2:
                continue
            if key.startswith("items:") and totals.get(commands[indexes[0]].seq) != len(indexes):
                continue
            for i in indexes:
                commands[i] = replace(commands[i], barrier=key)


