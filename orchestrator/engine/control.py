"""The native format's side of the run control: what core/control.py's RunControl needs to know
about a native run (which calls are out, how an execution ends, what a pause held back). Given to
the RunControl by the Conductor; holds no state of its own."""

from __future__ import annotations

from typing import Any, Protocol

from ..core.commands import ExecutionEnded, ItemEnded, RunFinished, TaskEnded
from ..core.control import CONTROL, Call
from ..core.statuses import CANCELED, SUCCEEDED
from ..core.timers import DISPATCH, timer_key
from .graph import TaskNode, WorkflowGraph
from .state import Execution, WorkflowState

_Step = Any  # the conductor's step: `commands` and the work `queue` it drains


class NativeFlow(Protocol):
    """What this side of the run control uses of the native Conductor."""

    graph: WorkflowGraph

    def launch_or_fail(self, state: WorkflowState, step: _Step, node: TaskNode, execution: Execution, attempt: int,
                       item: int | None) -> None: ...

    def item_ended(self, state: WorkflowState, step: _Step, execution: Execution, event: TaskEnded) -> None: ...

    def forget(self, seq: int) -> None: ...


class NativeControl:
    """A `core.control.Conducted` over a native Conductor."""

    table = CONTROL

    def __init__(self, conductor: NativeFlow):
        self.conductor = conductor

    # Calls ------------------------------------------------------------------------------------

    def calls_out(self, state: WorkflowState) -> list[Call]:
        held = _held(state)
        calls: list[Call] = []
        for seq, execution in sorted(state.active.items()):
            if execution.items is None:
                call = (seq, execution.attempt, None)
                if not execution.waiting and seq not in state.asks and call not in held:
                    calls.append(call)
            else:
                calls += [(seq, attempt, item) for item, attempt in sorted(execution.in_flight.items())
                          if (seq, attempt, item) not in held
                          and timer_key(DISPATCH, seq, attempt, item) not in execution.waiting]
        return calls

    def is_out(self, state: WorkflowState, call: Call) -> bool:
        seq, attempt, item = call
        execution = state.active.get(seq)
        if execution is None:
            return False
        if item is None:
            if execution.items is not None or attempt != execution.attempt or execution.waiting or seq in state.asks:
                return False
        elif (execution.in_flight.get(item) != attempt
              or timer_key(DISPATCH, seq, attempt, item) in execution.waiting):
            return False
        return not state.deferred or ["launch", seq, attempt, item] not in state.deferred

    def call_timeout(self, state: WorkflowState, call: Call) -> float | None:
        execution = state.active.get(call[0])
        return None if execution is None else self.conductor.graph.nodes[execution.task].spec.timeout

    def has_active(self, state: WorkflowState) -> bool:
        return bool(state.active)

    # Ending calls -----------------------------------------------------------------------------

    def task_ended(self, state: WorkflowState, step: _Step, event: TaskEnded) -> bool:
        if event.item is None:
            step.queue.append(("ended", event.seq, event.status, event.result, event.error))
        else:
            self.conductor.item_ended(state, step, state.active[event.seq], event)
        return True

    def resend(self, state: WorkflowState, step: _Step, call: Call) -> None:
        seq, attempt, item = call
        execution = state.active[seq]
        self.conductor.launch_or_fail(state, step, self.conductor.graph.nodes[execution.task], execution,
                                      attempt, item)

    def asks(self, state: WorkflowState) -> list[tuple[int, dict[str, Any]]]:
        return sorted(state.asks.items())

    def end_ask(self, state: WorkflowState, step: _Step, seq: int, status: str, result: Any,
                error: str | None) -> None:
        del state.asks[seq]
        step.queue.append(("ended", seq, status, result, error))

    # Pause and cancel -------------------------------------------------------------------------

    def release(self, state: WorkflowState, step: _Step) -> None:
        deferred, state.deferred = state.deferred, []
        for entry in deferred:
            if entry[0] == "request":
                step.queue.append(("request", entry[1], entry[2]))
                continue
            execution = state.active.get(entry[1])
            if execution is not None:
                self.conductor.launch_or_fail(state, step, self.conductor.graph.nodes[execution.task], execution,
                                              entry[2], entry[3])

    def cancel_rest(self, state: WorkflowState, step: _Step, running: list[Call], reason: str) -> None:
        state.failure = reason
        by_seq: dict[int, dict[int | None, int]] = {}
        for seq, attempt, item in running:
            by_seq.setdefault(seq, {})[item] = attempt
        for seq, execution in sorted(state.active.items()):
            calls = by_seq.get(seq)
            if calls:
                execution.waiting = []
                if execution.items is not None:
                    execution.in_flight = dict(calls)
            else:
                del state.active[seq]
                self.conductor.forget(seq)
                step.commands.append(ExecutionEnded(seq, execution.task, execution.attempt, CANCELED, None, reason))
        state.asks.clear()
        state.deferred = []

    def end_canceled(self, state: WorkflowState, step: _Step, call: Call, status: str, result: Any,
                     error: str | None) -> None:
        seq, attempt, item = call
        execution = state.active[seq]
        if item is None:
            del state.active[seq]
            step.commands.append(ExecutionEnded(seq, execution.task, attempt, status, result, error))
            return
        del execution.in_flight[item]
        step.commands.append(ItemEnded(seq, item, status, result if status == SUCCEEDED else error))
        if not execution.in_flight:
            del state.active[seq]
            self.conductor.forget(seq)
            step.commands.append(ExecutionEnded(seq, execution.task, execution.attempt, CANCELED, None, state.failure))

    def canceled(self, state: WorkflowState, step: _Step) -> None:
        step.commands.append(RunFinished(CANCELED, None, state.failure))

    # Fan-ins ----------------------------------------------------------------------------------

    def fan_in(self, task: str) -> str | None:
        targets = self.conductor.graph.nodes[task].targets
        if len(targets) == 1:
            target = next(iter(targets))
            if self.conductor.graph.nodes[target].spec.join == "all":
                return target
        return None

    def retries(self, task: str) -> bool:
        return self.conductor.graph.nodes[task].spec.retry is not None


def _held(state: WorkflowState) -> set[Call]:
    """Launches held back by a pause (not dispatched)."""
    return {(e[1], e[2], e[3]) for e in state.deferred if e[0] == "launch"}

