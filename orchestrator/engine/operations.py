"""Operators' requests on a run, as the conductor applies them: pause, resume, cancel, rerun,
answers to `core.ask`, and a sub-workflow's pause reaching its parent. A mixin of Conductor, kept
apart so conductor.py holds the flow of tasks and this file the operations on it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .commands import (CallLost, CallPaused, CancelTimer, Command, Event, ExecutionEnded, ItemEnded, Responded, Revoke,
                       RunFinished, SetTimer, StateUpdated, StatusChanged, TaskEnded, TimerFired)
from .state import CANCELED, CANCELING, FAILED, PAUSING, RUNNING, SUCCEEDED, TASK_FAILURES, Execution, WorkflowState
from .timers import CANCEL_CHECK, DEADLINE, LEASE, WATCHES, parse_timer_key, timer_key


if TYPE_CHECKING:
    from .conductor import _Step


class Operations:
    """Requires the Conductor's `_drain`, `_start_task`, `_launch_or_fail`, `_in_flight`, `graph`, `run`,
    `_new_step`."""

    def _control(self, state: WorkflowState, action: str) -> list[Command]:
        """pause: running calls finish, nothing new starts (pausing, then paused); resume: the
        held-back work starts; cancel: running calls are revoked and the run ends canceled."""
        step = self._new_step()
        if action == "pause" and state.status == RUNNING:
            state.status = PAUSING
            step.commands.append(StatusChanged(PAUSING))
        elif action == "resume" and state.paused:
            state.status = RUNNING
            state.paused_calls = []
            step.commands.append(StatusChanged(RUNNING))
            deferred, state.deferred = state.deferred, []
            for entry in deferred:
                if entry[0] == "request":
                    step.queue.append(("request", entry[1], entry[2]))
                else:
                    self._relaunch(state, step, entry[1], entry[2], entry[3])
        elif action == "cancel":
            self._cancel(state, step, "canceled by request")
            self._drain(state, step)
            return step.commands
        else:
            return []
        self._drain(state, step)
        return step.commands

    def _call_paused(self, state: WorkflowState, event: CallPaused) -> list[Command]:
        entry = [event.seq, event.attempt, event.item]
        if not state.paused or entry in state.paused_calls:
            return []
        state.paused_calls.append(entry)
        step = self._new_step()
        self._drain(state, step)
        return step.commands or [StateUpdated()]

    def _relaunch(self, state: WorkflowState, step: _Step, seq: int, attempt: int, item: int | None) -> None:
        execution = state.active.get(seq)
        if execution is None:
            return
        self._launch_or_fail(state, step, self.graph.nodes[execution.task], execution, attempt, item)

    def _cancel(self, state: WorkflowState, step: _Step, reason: str) -> None:
        """Running calls are revoked (interrupted where the worker pool allows it); the run stays
        `canceling` until each has reported or is found never to have started, then `canceled`.
        Executions with nothing running (delayed, held back, waiting for a response) end now."""
        held = self._held(state)
        state.failure = reason
        for seq, execution in sorted(state.active.items()):
            running = self._running(state, seq, execution, held)
            for item, attempt in sorted(running.items(), key=lambda pair: -1 if pair[0] is None else pair[0]):
                step.commands.append(Revoke(seq, attempt, item, terminate=True))
                if self.run.lease:  # look for it soon: a revoked call that never started never reports
                    step.commands.append(SetTimer(timer_key(LEASE, seq, attempt, item), CANCEL_CHECK))
            if running:
                execution.waiting = []
                if execution.items is not None:
                    execution.in_flight = dict(running)
            else:
                del state.active[seq]
                step.commands.append(ExecutionEnded(seq, execution.task, execution.attempt, CANCELED, None, reason))
        state.asks.clear()
        state.deferred = []
        state.paused_calls = []
        state.status = CANCELING
        step.commands.append(StatusChanged(CANCELING))
        self._maybe_canceled(state, step)

    def _while_canceling(self, state: WorkflowState, event: Event) -> list[Command]:
        """Only the calls still running matter now: each one's report (or proof that it never
        started) ends its execution without transitions; the last one ends the run."""
        if isinstance(event, TimerFired):
            if event.key.split(":", 1)[0] not in WATCHES:
                return []
            _, seq, attempt, item = parse_timer_key(event.key)
            outcome: tuple[str, Any, str | None] | None = None
            if event.running is False:
                outcome = (CANCELED, None, "it never started")
        elif isinstance(event, CallLost):
            seq, attempt, item = event.seq, event.attempt, event.item
            outcome = (CANCELED, None, event.reason)
        elif isinstance(event, TaskEnded):
            seq, attempt, item = event.seq, event.attempt, event.item
            outcome = (event.status, event.result, event.error)
        else:
            return []
        execution = state.active.get(seq)
        if execution is None or not self._in_flight(execution, attempt, item):
            return []
        step = self._new_step()
        if outcome is None:  # still running, or the worker cannot tell: look again later
            step.commands.append(SetTimer(event.key, CANCEL_CHECK))
            return step.commands
        status, result, error = outcome
        step.commands.append(CancelTimer(timer_key(LEASE, seq, attempt, item)))
        step.commands.append(CancelTimer(timer_key(DEADLINE, seq, attempt, item)))
        if status != SUCCEEDED:  # interrupted by the revoke, or failed on its own: either way canceled
            status, result, error = CANCELED, None, f"{state.failure} ({error})" if error else state.failure
        if item is None:
            del state.active[seq]
            step.commands.append(ExecutionEnded(seq, execution.task, attempt, status, result, error))
        else:
            del execution.in_flight[item]
            step.commands.append(ItemEnded(seq, item, status, result if status == SUCCEEDED else error))
            if not execution.in_flight:
                del state.active[seq]
                step.commands.append(ExecutionEnded(seq, execution.task, execution.attempt, CANCELED, None,
                                                    state.failure))
        self._maybe_canceled(state, step)
        return step.commands

    @staticmethod
    def _maybe_canceled(state: WorkflowState, step: _Step) -> None:
        if not state.active:
            state.status = CANCELED
            step.commands.append(RunFinished(CANCELED, None, state.failure))

    @staticmethod
    def _held(state: WorkflowState) -> set[tuple[int, int, int | None]]:
        """Calls that are not running: launches held back by a pause, and paused child runs."""
        held = {(e[1], e[2], e[3]) for e in state.deferred if e[0] == "launch"}
        return held | {tuple(call) for call in state.paused_calls}

    def _respond(self, state: WorkflowState, event: Responded) -> list[Command]:
        """Answer a core.ask task: the response, checked against its schema, is the result."""
        for seq, ask in sorted(state.asks.items()):
            if ask["task"] == event.task:
                break
        else:
            raise ValueError(f"task '{event.task}' is not waiting for a response")
        from jsonschema import Draft202012Validator

        from .schemas import standard_schema  # StackStorm's `required: true` on a property

        problems = [e.message for e in Draft202012Validator(standard_schema(ask.get("schema") or {}))
                    .iter_errors(event.data)]
        if problems:
            raise ValueError(f"response for task '{event.task}' does not match its schema: " + "; ".join(problems))
        del state.asks[seq]
        step = self._new_step()
        step.queue.append(("ended", seq, SUCCEEDED, event.data, None))
        self._drain(state, step)
        return step.commands

    def _rerun(self, state: WorkflowState, tasks: tuple[str, ...]) -> list[Command]:
        """A failed run goes on from its failed tasks (or the named ones); what succeeded stays."""
        if state.status != FAILED:
            raise ValueError(f"only a failed run can be rerun (this one is {state.status})")
        names = list(tasks) or sorted(name for name, info in state.tasks.items() if info["status"] in TASK_FAILURES)
        unknown = [n for n in names if n not in self.graph.nodes]
        if unknown or not names:
            raise ValueError(f"cannot rerun {', '.join(unknown) or 'nothing'}: "
                             f"{'no such task' if unknown else 'no task failed'}")
        state.status = RUNNING
        state.failure = None
        state.joins = {}
        step = self._new_step()
        step.commands.append(StatusChanged(RUNNING))
        for name in names:
            self._start_task(state, step, self.graph.nodes[name])
        self._drain(state, step)
        return step.commands

    def _calls_running(self, state: WorkflowState) -> int:
        held = self._held(state)
        return sum(len(self._running(state, seq, execution, held)) for seq, execution in state.active.items())

    @staticmethod
    def _running(state: WorkflowState, seq: int, execution: Execution,
                 held: set[tuple[int, int, int | None]]) -> dict[int | None, int]:
        """An execution's calls that are running ({item or None: attempt}): not delayed, not
        held back by a pause, not a paused child run, not a core.ask waiting for its answer."""
        if execution.items is None:
            idle = execution.waiting or seq in state.asks or (seq, execution.attempt, None) in held
            return {} if idle else {None: execution.attempt}
        return {i: a for i, a in execution.in_flight.items() if (seq, a, i) not in held}
