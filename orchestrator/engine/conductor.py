"""The conductor: applies one event to a run's state and returns the commands to carry out.

It is pure: no broker, database or clock. The shell loads the state, calls ``start`` or
``apply``, writes what changed and carries out the commands, all in one transaction. Events that
do not match an execution in flight (a redelivered or stale completion) change nothing.

Work inside one event is processed from a queue rather than by recursion, so a long chain of
tasks that end at once (skips, template errors, empty with_items) cannot exhaust the stack.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from .commands import (CallLost, CallPaused, CancelTimer, Command, Control, Dispatch, Event, ExecutionEnded, ExecutionStarted, ItemEnded,
                       ItemsCreated, Responded, Rerun, Revoke, StatusChanged,
                       RunFinished, SetTimer, StateUpdated, TaskEnded, TimerFired, VariablesSet)
from .errors import ExpressionError
from .expressions import Evaluator, shared_evaluator
from .graph import TaskNode, Transition
from .state import (CANCELED, CANCELING, FAILED, PAUSED, PAUSING, RUNNING, SKIPPED, SUCCEEDED, TASK_FAILURES, TIMED_OUT, Execution,
                    ItemStore, WorkflowState)
from .operations import Operations
from .validate import Workflow

DEFAULT_EXECUTION_LIMIT = 10_000

from .timers import DEADLINE, DISPATCH, LEASE, WATCHES, WORKFLOW_TIMER, parse_timer_key, timer_key  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class RunInfo:
    """Facts about the run that the shell supplies (the engine has no clock or ids of its own)."""

    run_id: str
    params: dict[str, Any]
    started_at: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    execution_limit: int = DEFAULT_EXECUTION_LIMIT
    # Seconds past an attempt's `timeout` before the engine itself ends it as timed_out: the
    # worker's own time limit normally reports first; this catches vanished workers and pools
    # without time limits (the embedded runtime sets 0).
    timeout_grace: float = 15.0
    # Seconds after which an attempt without `timeout` that has not reported is checked; a call
    # the shell finds no trace of is dispatched again. None: no lease (rehearsals).
    lease: float | None = None
    max_input_bytes: int | None = None


@dataclass
class _Step:
    """Work and output of one conductor call."""

    commands: list[Command] = field(default_factory=list)
    queue: deque = field(default_factory=deque)
    changed_vars: dict[str, Any] = field(default_factory=dict)


class Conductor(Operations):
    _new_step = staticmethod(lambda: _Step())

    def __init__(self, workflow: Workflow, run: RunInfo, evaluator: Evaluator | None = None,
                 items: ItemStore | None = None):
        self.workflow = workflow
        self.graph = workflow.graph
        self.run = run
        self.evaluator = evaluator or shared_evaluator()
        self.items = items or ItemStore()
        # Item values and results recorded by this conductor, not yet readable from the store.
        self._item_values: dict[int, list[Any]] = {}
        self._item_results: dict[int, dict[int, Any]] = {}

    # Public API -----------------------------------------------------------------------------

    def start(self) -> tuple[WorkflowState, list[Command]]:
        """A new run: render `vars`, then request the entry tasks."""
        state = WorkflowState()
        step = _Step()
        context = self._context(state)
        for name, value in self.workflow.spec.vars.items():
            try:
                state.vars[name] = self.evaluator.render(value, context)
            except ExpressionError as exc:
                state.failure = f"vars.{name}: {exc}"
                break
            step.changed_vars[name] = state.vars[name]
        if state.failure is None:
            if self.workflow.spec.timeout:
                step.commands.append(SetTimer(WORKFLOW_TIMER, self.workflow.spec.timeout))
            for name in self.graph.entry:
                step.queue.append(("request", name, None))
        self._drain(state, step)
        return state, step.commands

    def apply(self, state: WorkflowState, event: Event) -> list[Command]:
        """Apply one event to `state` (mutated in place). Every accepted event yields at least
        one command; [] means the event changed nothing (stale or duplicate)."""
        if isinstance(event, Rerun):
            return self._rerun(state, event.tasks)
        if state.status == CANCELING:
            return self._while_canceling(state, event)
        if state.status not in (RUNNING, PAUSING, PAUSED):
            return []
        if isinstance(event, Control):
            return self._control(state, event.action)
        if isinstance(event, Responded):
            return self._respond(state, event)
        if isinstance(event, CallPaused):
            return self._call_paused(state, event)
        if isinstance(event, TimerFired):
            return self._timer(state, event)
        if isinstance(event, CallLost):
            return self._call_lost(state, event)
        execution = state.active.get(event.seq)
        if execution is None:
            return []
        if event.item is None:
            if execution.items is not None or event.attempt != execution.attempt or execution.waiting:
                return []
        elif execution.in_flight.get(event.item) != event.attempt or timer_key(DISPATCH, event.seq, event.attempt, event.item) in execution.waiting:
            return []
        step = _Step()
        watch = self._watch(self.graph.nodes[execution.task])
        if watch:
            step.commands.append(CancelTimer(timer_key(watch[0], event.seq, event.attempt, event.item)))
        if event.item is None:
            step.queue.append(("ended", event.seq, event.status, event.result, event.error))
        else:
            self._item_ended(state, step, execution, event)
        self._drain(state, step)
        return step.commands

    def calls(self, state: WorkflowState) -> list[tuple[int, int, int | None]]:
        """(seq, attempt, item) of every call out on a worker: not delayed, not held back by a
        pause, not a paused child run, not a core.ask waiting for its answer."""
        held = self._held(state)
        return [(seq, attempt, item) for seq, execution in sorted(state.active.items())
                for item, attempt in self._running(state, seq, execution, held).items()]

    def _call_lost(self, state: WorkflowState, event: CallLost) -> list[Command]:
        """A call no worker holds and whose message is gone is sent again (same attempt)."""
        if (event.seq, event.attempt, event.item) not in self.calls(state):
            return []
        execution = state.active[event.seq]
        step = _Step()
        watch = self._watch(self.graph.nodes[execution.task])
        if watch:
            step.commands.append(CancelTimer(timer_key(watch[0], event.seq, event.attempt, event.item)))
        self._launch_or_fail(state, step, self.graph.nodes[execution.task], execution, event.attempt, event.item)
        self._drain(state, step)
        return step.commands

    def _timer(self, state: WorkflowState, event: TimerFired) -> list[Command]:
        step = _Step()
        if event.key == WORKFLOW_TIMER:
            self._time_out_workflow(state, step)
            self._drain(state, step)
            return step.commands
        kind, seq, attempt, item = parse_timer_key(event.key)
        execution = state.active.get(seq)
        if execution is None:
            return []
        node = self.graph.nodes[execution.task]
        if kind in WATCHES:
            if not self._in_flight(execution, attempt, item):
                return []
            if kind == DEADLINE and seq in state.asks:  # nobody answered in time (an ask has no call)
                del state.asks[seq]
                step.queue.append(("ended", seq, TIMED_OUT, None,
                                   f"no response within {node.spec.timeout:g} s"))
                self._drain(state, step)
                return step.commands
            if event.running is False:  # no trace of the call: its message was lost
                self._launch_or_fail(state, step, node, execution, attempt, item)
            elif kind == LEASE:  # still running, or cannot tell: keep waiting
                step.commands.append(SetTimer(event.key, self.run.lease))
            else:
                return self.apply(state, TaskEnded(seq, attempt, TIMED_OUT, None,
                                                   f"timed out after {node.spec.timeout:g} s "
                                                   f"(no report from the worker)", item))
            self._drain(state, step)
            return step.commands
        if event.key not in execution.waiting:
            return []
        execution.waiting.remove(event.key)
        if execution.items is not None and item is None:
            self._dispatch_items(state, step, node, execution)  # a delayed with_items task begins
        else:
            self._launch_or_fail(state, step, node, execution, attempt, item)
        self._drain(state, step)
        return step.commands or [StateUpdated()]  # e.g. the launch was held back by a pause

    @staticmethod
    def _in_flight(execution: Execution, attempt: int, item: int | None) -> bool:
        if item is None:
            return execution.items is None and execution.attempt == attempt and not execution.waiting
        return execution.in_flight.get(item) == attempt

    def _watch(self, node: TaskNode) -> tuple[str, float] | None:
        """The timer that watches an attempt in flight: its deadline when the task has a timeout,
        else the lease (when the runtime sets one)."""
        if node.spec.timeout:
            return DEADLINE, node.spec.timeout + self.run.timeout_grace
        if self.run.lease:
            return LEASE, self.run.lease
        return None

    def _time_out_workflow(self, state: WorkflowState, step: _Step) -> None:
        """The workflow-level timeout: running calls are revoked and the run fails."""
        for seq, execution in sorted(state.active.items()):
            if execution.items is None:
                if not execution.waiting:
                    step.commands.append(Revoke(seq, execution.attempt))
            else:
                for index, attempt in sorted(execution.in_flight.items()):
                    step.commands.append(Revoke(seq, attempt, index))
            step.commands.append(ExecutionEnded(seq, execution.task, execution.attempt, CANCELED, None,
                                                "canceled: the workflow timed out"))
        state.active.clear()
        state.asks.clear()
        state.deferred = []
        if state.status != RUNNING:
            state.status = RUNNING  # a paused run that times out still ends (failed)
        state.failure = f"workflow timed out after {self.workflow.spec.timeout:g} s"

    # The work loop ----------------------------------------------------------------------------

    def _drain(self, state: WorkflowState, step: _Step) -> None:
        while step.queue:
            kind, *args = step.queue.popleft()
            if kind == "request":
                self._request(state, step, *args)
            else:
                self._ended(state, step, *args)
        if step.changed_vars:
            step.commands.append(VariablesSet(dict(step.changed_vars)))
        self._mark_fan_ins(step)
        self._maybe_finish(state, step)

    def _request(self, state: WorkflowState, step: _Step, target: str, source: str | None) -> None:
        if target == "fail":
            if state.failure is None:
                state.failure = f"workflow failed by the 'fail' command in task '{source}'"
            return
        if target in ("noop", "continue") or state.halted:
            return
        if state.paused:
            state.deferred.append(["request", target, source])
            return
        node = self.graph.nodes[target]
        if node.spec.join is not None and not self._join_ready(state, node, source):
            return
        self._start_task(state, step, node)

    def _join_ready(self, state: WorkflowState, node: TaskNode, source: str | None) -> bool:
        """Record an arrival; True when the join fires. Each inbound task counts once; with
        `join: N`, the arrivals of the branches that did not make the N are absorbed."""
        join = state.joins.setdefault(node.name, {"arrived": [], "late": []})
        if source in join["late"]:
            join["late"].remove(source)
            return False
        if source not in join["arrived"]:
            join["arrived"].append(source)
        needed = len(node.inbound) if node.spec.join == "all" else node.spec.join
        if len(join["arrived"]) < needed:
            return False
        join["late"] = sorted(node.inbound - set(join["arrived"]))
        join["arrived"] = []
        if not join["late"]:
            del state.joins[node.name]
        return True

    def _start_task(self, state: WorkflowState, step: _Step, node: TaskNode) -> None:
        if state.started >= self.run.execution_limit:
            state.failure = (f"task execution limit of {self.run.execution_limit} reached "
                             f"when starting task '{node.name}'")
            return
        seq = state.next_seq
        state.next_seq += 1
        state.started += 1
        spec = node.spec
        execution = Execution(seq, node.name)
        state.active[seq] = execution
        context = self._context(state, node.name)

        def fail_now(field_name: str, exc: ExpressionError) -> None:
            step.commands.append(ExecutionStarted(seq, node.name, 1))
            step.queue.append(("ended", seq, FAILED, None, f"task '{node.name}': {field_name}: {exc}", False))

        if spec.when is not None:
            try:
                go = self.evaluator.truthy(spec.when, context)
            except ExpressionError as exc:
                return fail_now("when", exc)
            if not go:
                step.commands.append(ExecutionStarted(seq, node.name, 1))
                step.queue.append(("ended", seq, SKIPPED, None, None))
                return
        if spec.with_items is None:
            step.commands.append(ExecutionStarted(seq, node.name, 1))
            self._schedule(state, step, node, execution, 1, None, spec.delay)
            return
        try:
            items = self.evaluator.render(spec.with_items, context)
        except ExpressionError as exc:
            return fail_now("with_items", exc)
        if not isinstance(items, list):
            step.commands.append(ExecutionStarted(seq, node.name, 1))
            step.queue.append(("ended", seq, FAILED, None,
                               f"task '{node.name}': with_items must be a list, got {type(items).__name__}", False))
            return
        if spec.batch_size > 1:
            items = [items[i:i + spec.batch_size] for i in range(0, len(items), spec.batch_size)]
        execution.items = len(items)
        step.commands.append(ExecutionStarted(seq, node.name, 1, items=len(items)))
        if items:
            step.commands.append(ItemsCreated(seq, items))
            self._item_values[seq] = items
        if not items:
            step.queue.append(("ended", seq, SUCCEEDED, [], None))
        elif spec.delay:
            key = timer_key(DISPATCH, seq, 1, None)
            execution.waiting.append(key)
            step.commands.append(SetTimer(key, spec.delay))
        else:
            self._dispatch_items(state, step, node, execution)

    def _concurrency(self, state: WorkflowState, node: TaskNode) -> int | None:
        value = node.spec.concurrency
        if value is None:
            return None
        if isinstance(value, str):
            value = self.evaluator.render(value, self._context(state, node.name))
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) or int(value) < 1:
            raise ValueError(f"must be a positive integer, got {value!r}")
        return int(value)

    def _dispatch_items(self, state: WorkflowState, step: _Step, node: TaskNode, execution: Execution) -> None:
        """Fill the window: start items in index order while fewer than `concurrency` are in flight."""
        try:
            limit = self._concurrency(state, node) or execution.items
        except (ExpressionError, TypeError, ValueError, OverflowError) as exc:
            execution.item_error = f"task '{node.name}': concurrency: {exc}"
            execution.item_status = FAILED
            limit = 0
        while len(execution.in_flight) < limit and execution.next_item < execution.items:
            index = execution.next_item
            execution.next_item += 1
            execution.in_flight[index] = 1
            error = self._launch(state, step, node, execution, 1, index)
            if error:
                del execution.in_flight[index]
                execution.item_error = error
                execution.item_status = FAILED
                break
        if not execution.in_flight:
            self._finish_items(step, execution)

    def _item_ended(self, state: WorkflowState, step: _Step, execution: Execution, event: TaskEnded) -> None:
        node = self.graph.nodes[execution.task]
        index = event.item
        attempt = execution.in_flight[index]
        if event.status in TASK_FAILURES and self._should_retry(state, node, attempt, event.error):
            execution.in_flight[index] = attempt + 1
            self._schedule(state, step, node, execution, attempt + 1, index, node.spec.retry.delay_before(attempt))
            return
        del execution.in_flight[index]
        if event.status in TASK_FAILURES:
            self._item_failed(step, execution, index, event.status, event.error)
        else:
            self._record_item(step, execution.seq, index, event.status, event.result)
        if execution.item_error is None:
            self._dispatch_items(state, step, node, execution)
        elif not execution.in_flight:
            self._finish_items(step, execution)

    def _record_item(self, step: _Step, seq: int, index: int, status: str, result: Any) -> None:
        self._item_results.setdefault(seq, {})[index] = result
        step.commands.append(ItemEnded(seq, index, status, result))

    def _item_failed(self, step: _Step, execution: Execution, index: int, status: str, error: str | None) -> None:
        self._record_item(step, execution.seq, index, status, error)
        if execution.item_error is None:
            execution.item_error = f"item {index}: {error}"
            execution.item_status = status

    def _schedule(self, state: WorkflowState, step: _Step, node: TaskNode, execution: Execution, attempt: int,
                  item: int | None, delay: float | None) -> None:
        """Launch an attempt now, or set a durable timer that launches it after `delay` seconds."""
        if delay:
            key = timer_key(DISPATCH, execution.seq, attempt, item)
            execution.waiting.append(key)
            step.commands.append(SetTimer(key, delay))
            return
        self._launch_or_fail(state, step, node, execution, attempt, item)

    def _launch_or_fail(self, state: WorkflowState, step: _Step, node: TaskNode, execution: Execution,
                        attempt: int, item: int | None) -> None:
        error = self._launch(state, step, node, execution, attempt, item)
        if error is None:
            return
        if item is None:
            step.queue.append(("ended", execution.seq, FAILED, None, error, False))
            return
        del execution.in_flight[item]
        self._item_failed(step, execution, item, FAILED, error)
        if not execution.in_flight:
            self._finish_items(step, execution)

    def _launch(self, state: WorkflowState, step: _Step, node: TaskNode, execution: Execution, attempt: int,
                item: int | None) -> str | None:
        """Render the input and dispatch one call (with its deadline timer); the error, if any.
        While the run is pausing or paused the launch is held back until it resumes."""
        if state.paused:
            state.deferred.append(["launch", execution.seq, attempt, item])
            return None
        if item is None:
            context = self._context(state, node.name, attempt=attempt)
        else:
            context = self._context(state, node.name, item=self._item_value(execution.seq, item), index=item,
                                    attempt=attempt)
        try:
            payload = self.evaluator.render(node.spec.input, context)
        except ExpressionError as exc:
            where = "input" if item is None else f"input of item {item}"
            return f"task '{node.name}': {where}: {exc}"
        if self.run.max_input_bytes is not None:
            size = len(json.dumps(payload, default=str))
            if size > self.run.max_input_bytes:
                return (f"task '{node.name}': input is {size} bytes, over the limit of {self.run.max_input_bytes} "
                        f"(pass large data by reference)")
        if node.spec.action == "core.ask" and item is None:
            state.asks[execution.seq] = {"task": node.name, "schema": payload.get("schema"),
                                         "prompt": payload.get("prompt")}
            if node.spec.timeout:
                step.commands.append(SetTimer(timer_key(DEADLINE, execution.seq, attempt, None), node.spec.timeout))
            return None
        step.commands.append(Dispatch(seq=execution.seq, task=node.name, action=node.spec.action, input=payload,
                                      attempt=attempt, item=item, queue=node.spec.queue, timeout=node.spec.timeout))
        watch = self._watch(node)
        if watch:
            step.commands.append(SetTimer(timer_key(watch[0], execution.seq, attempt, item), watch[1]))
        return None

    def _item_value(self, seq: int, index: int) -> Any:
        values = self._item_values.get(seq)
        return values[index] if values is not None else self.items.item(seq, index)

    def _finish_items(self, step: _Step, execution: Execution) -> None:
        done = execution.item_error is None and execution.next_item >= execution.items
        if execution.in_flight or not (done or execution.item_error):
            return
        recorded = {**self.items.results(execution.seq), **self._item_results.get(execution.seq, {})}
        results = [recorded[i] for i in sorted(recorded)]
        if execution.item_error is None:
            step.queue.append(("ended", execution.seq, SUCCEEDED, results, None))
        else:
            step.queue.append(("ended", execution.seq, execution.item_status or FAILED, results, execution.item_error))

    def _ended(self, state: WorkflowState, step: _Step, seq: int, status: str, result: Any, error: str | None,
               retryable: bool = True) -> None:
        """An execution ended. Failures of the action are retried per `retry`; failures of the
        task's own templates (guard, items, input) are not: another attempt would fail the same."""
        execution = state.active.get(seq)
        if execution is None:
            return
        node = self.graph.nodes[execution.task]
        if (retryable and execution.items is None and status in TASK_FAILURES
                and self._should_retry(state, node, execution.attempt, error)):
            step.commands.append(ExecutionEnded(seq, node.name, execution.attempt, status, None, error))
            execution.attempt += 1
            step.commands.append(ExecutionStarted(seq, node.name, execution.attempt))
            self._schedule(state, step, node, execution, execution.attempt, None,
                           node.spec.retry.delay_before(execution.attempt - 1))
            return
        del state.active[seq]
        state.asks.pop(seq, None)
        self._item_values.pop(seq, None)
        self._item_results.pop(seq, None)
        outcome = result if status not in TASK_FAILURES else error
        step.commands.append(ExecutionEnded(seq, node.name, execution.attempt, status,
                                            result if status not in TASK_FAILURES else (result if execution.items is not None else None),
                                            error))
        state.tasks[node.name] = {"status": status, "result": outcome, "error": error,
                                  "attempts": execution.attempt, "seq": seq}
        context = self._context(state, node.name, status=status, result=outcome)
        try:
            fired = [tr for tr in node.transitions if self._fires(tr, status, context)]
        except _TransitionError as exc:
            state.failure = state.failure or str(exc)
            return
        for transition in fired:
            for name, template in transition.publish:
                try:
                    value = self.evaluator.render(template, context)
                except ExpressionError as exc:
                    state.failure = state.failure or f"task '{node.name}': publish {name}: {exc}"
                    return
                state.vars[name] = value
                step.changed_vars[name] = value
            for target in transition.do:
                step.queue.append(("request", target, node.name))
        if status in TASK_FAILURES and not fired and state.failure is None:
            verb = "timed out" if status == TIMED_OUT else "failed"
            state.failure = f"task '{node.name}' {verb}: {error}"

    def _fires(self, transition: Transition, status: str, context: dict[str, Any]) -> bool:
        if transition.on is not None and transition.on != status:
            return False
        try:
            if transition.when is not None and not self.evaluator.truthy(transition.when, context):
                return False
            return not any(self.evaluator.truthy(u, context) for u in transition.unless)
        except ExpressionError as exc:
            raise _TransitionError(f"task '{context['system']['task_name']}': "
                                   f"next[{transition.index}].when: {exc}") from None

    def _should_retry(self, state: WorkflowState, node: TaskNode, attempt: int, error: str | None) -> bool:
        retry = node.spec.retry
        if retry is None or attempt > retry.count:
            return False
        if retry.when is None:
            return True
        context = self._context(state, node.name, status=FAILED, result=error)
        try:
            return self.evaluator.truthy(retry.when, context)
        except ExpressionError:
            return False

    def _maybe_finish(self, state: WorkflowState, step: _Step) -> None:
        if state.status == PAUSING and (state.active or state.deferred) and not self._calls_running(state):
            state.status = PAUSED
            step.commands.append(StatusChanged(PAUSED))
            return
        if state.status not in (RUNNING, PAUSING) or state.active or state.deferred:
            return
        if state.failure is None:
            waiting = {name: join for name, join in state.joins.items() if join["arrived"]}
            for name, join in sorted(waiting.items()):
                missing = sorted(self.graph.nodes[name].inbound - set(join["arrived"]))
                state.failure = (f"join '{name}' can no longer be satisfied: arrived from "
                                 f"{', '.join(join['arrived'])}; never from {', '.join(missing)}")
                break
        status = FAILED if state.failure else SUCCEEDED
        output, error = None, state.failure
        try:
            output = self.evaluator.render(self.workflow.spec.output_map, self._context(state)) \
                if self.workflow.spec.output_map else None
        except ExpressionError as exc:
            status = FAILED
            error = f"{error}; output_map: {exc}" if error else f"output_map: {exc}"
        state.status = status
        state.failure = error
        step.commands.append(RunFinished(status, output, error))

    # Helpers ----------------------------------------------------------------------------------

    def _mark_fan_ins(self, step: _Step) -> None:
        """Calls that went out together and all lead into one place become one fan-in:
        the items of a with_items task dispatched at once, or sibling tasks that go straight
        into the same join."""
        groups: dict[str, list[int]] = {}
        for i, command in enumerate(step.commands):
            if not isinstance(command, Dispatch):
                continue
            node = self.graph.nodes[command.task]
            if node.spec.retry is not None:
                continue
            if command.item is not None:
                groups.setdefault(f"items:{command.seq}", []).append(i)
                continue
            targets = node.targets
            if len(targets) == 1 and all(self.graph.nodes[t].spec.join == "all" for t in targets):
                groups.setdefault(f"join:{next(iter(targets))}", []).append(i)
        for key, indexes in groups.items():
            if len(indexes) < 2:
                continue
            if key.startswith("items:"):
                execution_items = step.commands[indexes[0]]
                total = self._item_total(step, execution_items.seq)
                if total is None or len(indexes) != total:
                    continue
            for i in indexes:
                step.commands[i] = replace(step.commands[i], barrier=key)

    @staticmethod
    def _item_total(step: _Step, seq: int) -> int | None:
        for command in step.commands:
            if isinstance(command, ExecutionStarted) and command.seq == seq:
                return command.items
        return None

    def _context(self, state: WorkflowState, task: str | None = None, *, status: str | None = None,
                 result: Any = None, item: Any = None, index: int | None = None,
                 attempt: int | None = None) -> dict[str, Any]:
        if attempt is None:
            attempt = 1
            if task is not None:
                for execution in state.active.values():
                    if execution.task == task:
                        attempt = execution.attempt
        context = {
            "parameters": self.run.params,
            "workflow": state.vars, "vars": state.vars, "variables": state.vars,
            "task": state.tasks, "tasks": state.tasks,
            "config": self.run.config,
            "system": {"workflow_id": self.run.run_id, "workflow_name": self.graph.name,
                       "workflow_start": self.run.started_at, "task_name": task, "attempt": attempt},
            "succeeded": lambda: status == SUCCEEDED,
            "failed": lambda: status == FAILED,
            "timed_out": lambda: status == TIMED_OUT,
            "result": lambda: result,
        }
        if index is not None:
            context["item"] = item
            context["index"] = index
        return context


class _TransitionError(Exception):
    pass
