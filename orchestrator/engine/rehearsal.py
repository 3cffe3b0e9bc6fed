"""Run a workflow entirely in-process with scripted action outcomes, through the real conductor.

No broker, database or clock: dispatched calls are completed in the order they were sent, each
with the outcome a script gives. Used by the test suite and by users to unit-test workflows.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from .commands import CancelTimer, Dispatch, ExecutionEnded, ExecutionStarted, RunFinished, SetTimer, TaskEnded, TimerFired
from .conductor import Conductor, RunInfo
from .expressions import Evaluator
from .params import resolve_parameters
from ..core.statuses import FAILED, SUCCEEDED
from .state import WorkflowState
from .validate import Workflow

# (task, input, attempt, item) -> (status, result or error)
Outcome = Callable[[str, dict[str, Any], int, int | None], tuple[str, Any]]


def succeed_all(task: str, payload: dict[str, Any], attempt: int, item: int | None) -> tuple[str, Any]:
    return SUCCEEDED, payload


@dataclass
class Rehearsal:
    status: str
    output: Any
    error: str | None
    sequence: list[str] = field(default_factory=list)          # task names in start order
    executions: list[dict[str, Any]] = field(default_factory=list)
    calls: list[Dispatch] = field(default_factory=list)
    timers: list[SetTimer] = field(default_factory=list)
    clock: float = 0.0                                          # virtual seconds elapsed
    state: WorkflowState | None = None


def rehearse(workflow: Workflow, params: dict[str, Any] | None = None, outcome: Outcome = succeed_all,
             run_id: str = "rehearsal", config: dict[str, Any] | None = None,
             execution_limit: int | None = None, max_calls: int = 1_000_000,
             evaluator: Evaluator | None = None) -> Rehearsal:
    resolved = resolve_parameters(workflow.spec, params or {}, workflow.name)
    info = RunInfo(run_id, resolved, "1970-01-01T00:00:00+00:00", config or {}, timeout_grace=0)
    if execution_limit is not None:
        info = RunInfo(run_id, resolved, info.started_at, info.config, execution_limit, timeout_grace=0)
    conductor = Conductor(workflow, info, evaluator)
    state, commands = conductor.start()
    report = Rehearsal(status="running", output=None, error=None, state=state)
    pending: deque[Dispatch] = deque()
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    timers: list[tuple[float, int, str]] = []   # (due, order, key): a virtual clock
    live_timers: dict[str, float] = {}

    def absorb(cmds: list[Any]) -> None:
        for command in cmds:
            if isinstance(command, ExecutionStarted):
                if command.attempt == 1:
                    report.sequence.append(command.task)
                row = {"seq": command.seq, "task": command.task, "attempt": command.attempt,
                       "status": "running", "items": command.items}
                rows[(command.seq, command.attempt)] = row
                report.executions.append(row)
            elif isinstance(command, ExecutionEnded):
                rows[(command.seq, command.attempt)].update(status=command.status, result=command.result,
                                                            error=command.error)
            elif isinstance(command, Dispatch):
                pending.append(command)
                report.calls.append(command)
            elif isinstance(command, RunFinished):
                report.status, report.output, report.error = command.status, command.output, command.error
            elif isinstance(command, SetTimer):
                report.timers.append(command)
                due = report.clock + command.seconds
                live_timers[command.key] = due
                heapq.heappush(timers, (due, len(report.timers), command.key))
            elif isinstance(command, CancelTimer):
                live_timers.pop(command.key, None)

    absorb(commands)
    calls = 0
    while report.status == "running" and (pending or timers):
        if not pending:  # nothing in flight reports: advance the clock to the next timer
            due, _, key = heapq.heappop(timers)
            if live_timers.get(key) != due:
                continue
            del live_timers[key]
            report.clock = max(report.clock, due)
            absorb(conductor.apply(state, TimerFired(key)))
            continue
        call = pending.popleft()
        calls += 1
        if calls > max_calls:
            raise RuntimeError(f"rehearsal exceeded {max_calls} action calls")
        status, value = outcome(call.task, call.input, call.attempt, call.item)
        if status == "hang":  # the worker never reports: only a deadline timer can end it
            continue
        failed = status != SUCCEEDED
        event = TaskEnded(call.seq, call.attempt, status, None if failed else value,
                          (str(value) if value is not None else status) if failed else None, call.item)
        absorb(conductor.apply(state, event))
    return report


def script(**behaviour: Any) -> Outcome:
    """Outcomes by task name: a value means succeed with it; an Exception instance means fail with
    its message; a callable gets (input, attempt, item) and returns either; 'timeout' times out;
    'hang' never reports (the engine's deadline must end it)."""

    def outcome(task: str, payload: dict[str, Any], attempt: int, item: int | None) -> tuple[str, Any]:
        spec = behaviour.get(task, payload)
        if callable(spec) and not isinstance(spec, Exception):
            spec = spec(payload, attempt, item)
        if isinstance(spec, Exception):
            return FAILED, str(spec)
        if spec == "timeout":
            return "timed_out", "timed out"
        if spec == "hang":
            return "hang", None
        return SUCCEEDED, spec

    return outcome
