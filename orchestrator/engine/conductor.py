"""The conductor: applies one event to a run's state and returns the commands to carry out.

It is pure: no broker, database or clock. The shell loads the state, calls ``start`` or
``apply``, writes what changed and carries out the commands, all in one transaction. Events that
do not match an execution in flight (a redelivered or stale completion) change nothing.

Work inside one event is processed from a queue rather than by recursion, so a long chain of
tasks that end at once (skips, template errors, empty with_items) cannot exhaust the stack.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..core.commands import (Command, Dispatch, Event, ExecutionEnded, ExecutionStarted, ItemEnded, ItemsCreated, Rerun, Revoke,
                             RunFinished, SetTimer, StateUpdated, StatusChanged, TaskEnded, TimerFired, VariablesSet)
from ..core.control import RunControl
from ..core.items import ItemStore, LocalItems
from ..core.run import RunInfo
from ..core.statuses import (CANCELED, CANCELING, FAILED, PAUSED, PAUSING, RUNNING, SKIPPED, SUCCEEDED,
                             TASK_FAILURES, TIMED_OUT)
from ..core.timers import DISPATCH, WORKFLOW_TIMER, parse_timer_key, timer_key
from .control import NativeControl
from ..core.errors import ExpressionError
from .expressions import Evaluator, shared_evaluator
from .graph import TaskNode, Transition
from .context import expression_context
from .machine import next_status
from .state import Execution, WorkflowState
from .validate import Workflow


@dataclass
class _Step:
    """Work and output of one conductor call."""

    commands: list[Command] = field(default_factory=list)
    queue: deque = field(default_factory=deque)
    changed_vars: dict[str, Any] = field(default_factory=dict)


class Conductor:
    """Conducts one run of a native Workflow. `items` is where with_items values and results are
    read (the shell's rows). The run control (core/control.py) does pause, resume, cancel,
    core.ask, call watches, input limits and fan-in marking; this class the flow of tasks."""

    def __init__(self, workflow: Workflow, run: RunInfo, evaluator: Evaluator | None = None,
                 items: ItemStore | None = None):
        self.workflow = workflow
        self.graph = workflow.graph
        self.run = run
        self.evaluator = evaluator or shared_evaluator()
        # with_items values and results: the shell's rows, under what this conductor recorded
        self.items = items if isinstance(items, LocalItems) else LocalItems(items)
        self.control = RunControl(NativeControl(self), run)

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
        self.drain(state, step)
        return state, step.commands

    def apply(self, state: WorkflowState, event: Event) -> list[Command]:
        """Apply one event to `state` (mutated in place). Every accepted event yields at least
        one command; [] means the event changed nothing (stale or duplicate). Responded raises
        ValueError for a response nobody waits for or that does not match; Rerun for a run that
        cannot be rerun."""
        if isinstance(event, Rerun):
            return self._rerun(state, event.tasks)
        if state.status not in (RUNNING, PAUSING, PAUSED, CANCELING):
            return []
        step = _Step()
        accepted = self.control.route(state, step, event)
        if accepted is None and isinstance(event, TimerFired):
            accepted = self._timer(state, step, event)
        if not accepted:
            return []
        self.drain(state, step)
        return step.commands or [StateUpdated()]

    def apply_all(self, state: WorkflowState, events: list[Event]) -> list[Command]:
        """Apply events in order (a fan-in's batch): the native format decides after each one."""
        commands: list[Command] = []
        for event in events:
            commands.extend(self.apply(state, event))
        return commands

    def calls(self, state: WorkflowState) -> list[tuple[int, int, int | None]]:
        """(seq, attempt, item) of every call out on a worker: not delayed, not held back by a
        pause, not a paused child run, not a core.ask waiting for its answer."""
        return self.control.calls(state)

    def _rerun(self, state: WorkflowState, tasks: tuple[str, ...]) -> list[Command]:
        """A failed run goes on from its failed tasks (or the named ones); what succeeded stays."""
        if state.status != FAILED:
            raise ValueError(f"only a failed run can be rerun (this one is {state.status})")
        names = list(tasks) or sorted(name for name, info in state.tasks.items() if info["status"] in TASK_FAILURES)
        unknown = [n for n in names if n not in self.graph.nodes]
        if unknown or not names:
            raise ValueError(f"cannot rerun {', '.join(unknown) or 'nothing'}: "
                             f"{'no such task' if unknown else 'no task failed'}")
        state.status = next_status(state.status, "rerun")
        state.failure = None
        state.joins = {}
        step = _Step()
        step.commands.append(StatusChanged(RUNNING))
        for name in names:
            self._start_task(state, step, self.graph.nodes[name])
        self.drain(state, step)
        return step.commands

    def _timer(self, state: WorkflowState, step: _Step, event: TimerFired) -> bool:
        """The format's own timers: the workflow timeout and delayed dispatches."""
        if event.key == WORKFLOW_TIMER:
            self._time_out_workflow(state, step)
            return True
        kind, seq, attempt, item = parse_timer_key(event.key)
        execution = state.active.get(seq)
        if kind != DISPATCH or execution is None or event.key not in execution.waiting:
            return False
        execution.waiting.remove(event.key)
        node = self.graph.nodes[execution.task]
        if execution.items is not None and item is None:
            self.dispatch_items(state, step, node, execution)  # a delayed with_items task begins
        else:
            self.launch_or_fail(state, step, node, execution, attempt, item)
        return True

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
        state.status = next_status(state.status, "timed_out")  # a paused run that times out still ends
        state.failure = f"workflow timed out after {self.workflow.spec.timeout:g} s"

    # The work loop ----------------------------------------------------------------------------

    def drain(self, state: WorkflowState, step: _Step) -> None:
        """Work off the step's queue, then record changed variables, watch and mark the calls
        dispatched, and pause or finish the run when it is due."""
        while step.queue:
            kind, *args = step.queue.popleft()
            if kind == "request":
                self._request(state, step, *args)
            else:
                self._ended(state, step, *args)
        if step.changed_vars:
            step.commands.append(VariablesSet(dict(step.changed_vars)))
        self.control.finish_step(step.commands)
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
            self.items.created(seq, items)
        if not items:
            step.queue.append(("ended", seq, SUCCEEDED, [], None))
        elif spec.delay:
            key = timer_key(DISPATCH, seq, 1, None)
            execution.waiting.append(key)
            step.commands.append(SetTimer(key, spec.delay))
        else:
            self.dispatch_items(state, step, node, execution)

    def _concurrency(self, state: WorkflowState, node: TaskNode) -> int | None:
        value = node.spec.concurrency
        if value is None:
            return None
        if isinstance(value, str):
            value = self.evaluator.render(value, self._context(state, node.name))
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) or int(value) < 1:
            raise ValueError(f"must be a positive integer, got {value!r}")
        return int(value)

    def dispatch_items(self, state: WorkflowState, step: _Step, node: TaskNode, execution: Execution) -> None:
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
            self.finish_items(step, execution)

    def item_ended(self, state: WorkflowState, step: _Step, execution: Execution, event: TaskEnded) -> None:
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
            self.dispatch_items(state, step, node, execution)
        elif not execution.in_flight:
            self.finish_items(step, execution)

    def _record_item(self, step: _Step, seq: int, index: int, status: str, result: Any) -> None:
        self.items.ended(seq, index, result)
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
        self.launch_or_fail(state, step, node, execution, attempt, item)

    def launch_or_fail(self, state: WorkflowState, step: _Step, node: TaskNode, execution: Execution,
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
            self.finish_items(step, execution)

    def _launch(self, state: WorkflowState, step: _Step, node: TaskNode, execution: Execution, attempt: int,
                item: int | None) -> str | None:
        """Render the input and dispatch one call (the run control sets its watch); the error, if any.
        While the run is pausing or paused the launch is held back until it resumes."""
        if state.paused:
            state.deferred.append(["launch", execution.seq, attempt, item])
            return None
        if item is None:
            context = self._context(state, node.name, attempt=attempt)
        else:
            context = self._context(state, node.name, item=self.items.item(execution.seq, item), index=item,
                                    attempt=attempt)
        try:
            payload = self.evaluator.render(node.spec.input, context)
        except ExpressionError as exc:
            where = "input" if item is None else f"input of item {item}"
            return f"task '{node.name}': {where}: {exc}"
        error = self.control.check_input(node.name, payload, item)
        if error is not None:
            return error
        if node.spec.action == "core.ask" and item is None:
            try:
                state.asks[execution.seq] = self.control.ask(step, node.name, execution.seq, attempt, payload,
                                                             node.spec.timeout)
            except ValueError as exc:
                return f"task '{node.name}': {exc}"
            return None
        step.commands.append(Dispatch(seq=execution.seq, task=node.name, action=node.spec.action, input=payload,
                                      attempt=attempt, item=item, queue=node.spec.queue, timeout=node.spec.timeout))
        return None

    def forget(self, seq: int) -> None:
        """An execution left the state: drop what this conductor recorded of its items."""
        self.items.forget(seq)

    def finish_items(self, step: _Step, execution: Execution) -> None:
        done = execution.item_error is None and execution.next_item >= execution.items
        if execution.in_flight or not (done or execution.item_error):
            return
        recorded = self.items.results(execution.seq)
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
        self.forget(seq)
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
        if state.status == PAUSING and (state.active or state.deferred):
            self.control.maybe_paused(state, step)
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
        state.status = next_status(state.status, status)
        state.failure = error
        step.commands.append(RunFinished(status, output, error))

    # Helpers ----------------------------------------------------------------------------------

    def _context(self, state: WorkflowState, task: str | None = None, **facts: Any) -> dict[str, Any]:
        return expression_context(self.run, self.graph.name, state, task, **facts)


class _TransitionError(Exception):
    pass
