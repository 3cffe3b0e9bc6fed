"""The Orquesta format's side of the run control: what core/control.py's RunControl needs to
know about an Orquesta run, on Orquesta's own state (records, with-items bookkeeping, staged
tasks). Given to the RunControl by the OrquestaConductor; holds no state of its own.

What is Orquesta's here: a pause leaves ready tasks staged, holds a delay that comes due and does
not refill a with-items window; resume releases them and, as in Orquesta, completes a run that
has nothing left to run. A canceled execution is terminal (its context reaches the output). An
ask's timeout is its input's ``timeout`` (seconds) or ``ttl`` (minutes, StackStorm's name); one
that passes fails the task.
"""

from __future__ import annotations

from bisect import insort
from typing import Any, Protocol

from ..core.commands import CancelTimer, ExecutionEnded, ItemEnded, TaskEnded
from ..core.control import CONTROL, Call
from ..core.statuses import CANCELED, CANCELING, DELAYED, FAILED, RUNNING, SUCCEEDED, TIMED_OUT
from . import items as item_book
from .expressions import Expressions
from .flow import Flow, Step
from .graph import OrquestaGraph
from ..core.items import LocalItems
from .state import OrquestaState

ASK = "core.ask"

# Orquesta's operators' machine: the shared one, plus cancel while a failed run's siblings still
# run (fail fast lets them finish) and while a task's own cancellation makes the run canceling.
TABLE: dict[str, dict[str, str]] = {**CONTROL, FAILED: {"cancel": CANCELING},
                                    CANCELING: {**CONTROL[CANCELING], "cancel": CANCELING}}

_OUT = (RUNNING, CANCELING)  # record statuses whose calls are out


class OrquestaFlow(Protocol):
    """What this side of the run control uses of the OrquestaConductor."""

    graph: OrquestaGraph
    expressions: Expressions
    items: LocalItems

    def task_ended(self, state: OrquestaState, flow: Flow, event: TaskEnded) -> bool: ...

    def resend(self, state: OrquestaState, flow: Flow, call: Call) -> None: ...

    def release(self, state: OrquestaState, flow: Flow, record: dict[str, Any]) -> None: ...

    def dispatch_items(self, state: OrquestaState, flow: Flow, record: dict[str, Any]) -> None: ...


class OrquestaControl:
    """A `core.control.Conducted` over an OrquestaConductor."""

    table = TABLE

    def __init__(self, conductor: OrquestaFlow):
        self.conductor = conductor

    def _flow(self, state: OrquestaState, step: Step) -> Flow:
        return Flow(self.conductor.graph, self.conductor.expressions, state, step)

    # Calls ------------------------------------------------------------------------------------

    def calls_out(self, state: OrquestaState) -> list[Call]:
        calls: list[Call] = []
        for record in state.active_records():
            if record.get("status") not in _OUT or record.get("waiting") or record.get("ask") is not None:
                continue
            if "items" in record:
                calls += [(record["seq"], attempt, item) for item, attempt in item_book.flight_calls(record["items"])]
            else:
                calls.append((record["seq"], record["attempt"], None))
        return calls

    def is_out(self, state: OrquestaState, call: Call) -> bool:
        seq, attempt, item = call
        record = state.active.get(seq)
        if (record is None or record.get("status") not in _OUT or record.get("waiting")
                or record.get("ask") is not None or attempt != record["attempt"]):
            return False
        if item is None:
            return "items" not in record
        items = record.get("items")
        return items is not None and item_book.flight_attempt(items, item) == attempt

    def call_timeout(self, state: OrquestaState, call: Call) -> float | None:
        return None  # Orquesta tasks have no timeout of their own: every call is watched by the lease

    def has_active(self, state: OrquestaState) -> bool:
        return state.has_active()

    # Ending calls -----------------------------------------------------------------------------

    def task_ended(self, state: OrquestaState, step: Step, event: TaskEnded) -> bool:
        return self.conductor.task_ended(state, self._flow(state, step), event)

    def resend(self, state: OrquestaState, step: Step, call: Call) -> None:
        self.conductor.resend(state, self._flow(state, step), call)

    def asks(self, state: OrquestaState) -> list[tuple[int, dict[str, Any]]]:
        return [(record["seq"], {**record["ask"], "task": record["id"]}) for record in state.active_records()
                if record.get("ask") is not None and record.get("status") == RUNNING]

    def end_ask(self, state: OrquestaState, step: Step, seq: int, status: str, result: Any,
                error: str | None) -> None:
        record = state.active[seq]
        del record["ask"]
        if status == TIMED_OUT:
            status = FAILED
            state.log_error("Execution failed. See result for details.", record["id"], result=error)
        step.commands.append(ExecutionEnded(seq, record["id"], record["attempt"], status, result, error))
        self._flow(state, step).complete(record, status, result if status == SUCCEEDED else error)

    # Pause and cancel -------------------------------------------------------------------------

    def release(self, state: OrquestaState, step: Step) -> None:
        flow = self._flow(state, step)
        for record in state.active_records():
            if record.pop("held", False):
                self.conductor.release(state, flow, record)
            elif _idle_items(record):
                self.conductor.dispatch_items(state, flow, record)
        if not state.has_active() and not state.ready_staged():
            # Orquesta: resuming a workflow with nothing left to run completes it
            state.status = SUCCEEDED
            flow.unreachable_joins()

    def cancel_rest(self, state: OrquestaState, step: Step, running: list[Call], reason: str) -> None:
        out = {seq for seq, _, _ in running}
        paused = {tuple(call) for call in state.paused_calls}
        for record in state.active_records():
            if record.get("status") not in (RUNNING, DELAYED, CANCELING):
                continue
            if record.get("waiting"):
                step.commands.append(CancelTimer(record.pop("waiting")))
            record.pop("ask", None)  # (the run control cancelled its timer)
            record.pop("held", None)
            if record["seq"] in out:
                items = record.get("items")
                if items is not None:  # paused children of this task are no longer waited for
                    for i in [i for i, a in item_book.flight_calls(items) if (record["seq"], a, i) in paused]:
                        item_book.flight_remove(items, i)
                        insort(items["bad"], i)
                state.set_status(record, RUNNING)
                continue
            _end_canceled(state, step, record, reason)

    def end_canceled(self, state: OrquestaState, step: Step, call: Call, status: str, result: Any,
                     error: str | None) -> None:
        seq, attempt, item = call
        record = state.active[seq]
        if item is None:
            state.set_status(record, status)
            record["term"] = True
            step.commands.append(ExecutionEnded(seq, record["id"], attempt, status, result, error))
            return
        items = record["items"]
        item_book.ended(items, item, status)
        result = result if status == SUCCEEDED else error
        self.conductor.items.ended(seq, item, result)
        step.commands.append(ItemEnded(seq, item, status, result))
        if not items["flight"]:
            _end_canceled(state, step, record, state.reason or "canceled")

    def canceled(self, state: OrquestaState, step: Step) -> None:
        """Nothing to do now: the conductor renders the output and emits RunFinished."""

    # Fan-ins ----------------------------------------------------------------------------------

    def fan_in(self, task: str) -> str | None:
        graph = self.conductor.graph
        targets = {edge.target for edge in graph.outbound.get(task, [])}
        if len(targets) == 1:
            target = next(iter(targets))
            if graph.barrier(target) == "*":
                return target
        return None

    def retries(self, task: str) -> bool:
        return task in self.conductor.graph.retry


def _end_canceled(state: OrquestaState, step: Step, record: dict[str, Any], reason: str) -> None:
    state.set_status(record, CANCELED)
    record["term"] = True  # where this branch stopped: its context reaches the output
    step.commands.append(ExecutionEnded(record["seq"], record["id"], record["attempt"], CANCELED, None, reason))


def _idle_items(record: dict[str, Any]) -> bool:
    """A with-items task whose window a pause left unfilled (items not started, none failed)."""
    items = record.get("items")
    return (items is not None and record.get("status") == RUNNING and not record.get("waiting")
            and item_book.unfinished(items))


def ask_timeout(payload: dict[str, Any]) -> float | None:
    """Seconds from the ask's `timeout` (seconds) or `ttl` (minutes); a bad value is an error."""
    for name, scale in (("timeout", 1), ("ttl", 60)):
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise TypeError(f"core.ask {name} must be a positive number, got {value!r}")
        return float(value) * scale
    return None


