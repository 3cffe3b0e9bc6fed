"""The Orquesta conductor: the same interface and commands as the engine's Conductor.

``start()`` renders the inputs and vars (context layer 0), stages the start tasks and hands
them out; ``apply(state, event)`` applies one TaskEnded/TimerFired; ``apply_all(state, events)``
applies several and then hands out once, which is Orquesta's wave: every task that became ready
is handed out in (task name, route) order. ``rerun(state, tasks)`` resumes a finished run.

Handing a task out creates its execution record (ExecutionStarted; its `seq` is its place in
Orquesta's task sequence, counting from 1) and Dispatches its action with the rendered input, or sets a timer first when it has
a `delay` (or a retry delay). A task without an action, and a with-items task with no items, is
completed by the engine at once. Engine commands get records of their own (ExecutionStarted and
ExecutionEnded at once), as in Orquesta's task sequence. RunFinished is emitted once the workflow
status is final and nothing is in flight (a fail-fast failure lets running siblings finish).
Events that match nothing in flight are stale and yield []. The operators' events (Control,
Responded, CallPaused, CallLost) and the watches' timers go to the run control
(core/control.py), which calls back through orquesta/control.py; reruns are Orquesta's own.

A step costs the same at the first task as at the ten-thousandth: the state keeps what
decisions need, not the run's history (state.py), with-items values and results are read from
an ItemStore (items.py), and each call ends with ``state.end_step()``.
"""

from __future__ import annotations

from bisect import insort
from typing import Any

from ..core.commands import (CallPaused, Command, Dispatch, Event, ExecutionEnded, ExecutionStarted, ItemEnded,
                             ItemsCreated, Rerun, SetTimer, StateUpdated, StatusChanged, TaskEnded, TimerFired,
                             VariablesSet)
from ..core.control import Call, RunControl
from ..core.run import RunInfo
from ..core.statuses import (ABENDED, ACTIVE, CANCELED, COMPLETED, DELAYED, FAILED, PAUSED, PAUSING, RESUMING, RETRYING,
                             RUNNING, SUCCEEDED)
from ..core.timers import DISPATCH, parse_timer_key, timer_key
from ..core.errors import ExpressionError
from . import items as item_book
from .control import ASK, OrquestaControl, ask_timeout
from .expressions import Expressions, Scope
from .flow import Flow, Step
from ..core.items import LocalItems
from .output import finish
from .rerun import rerun_requests, request_rerun
from .state import HANDING_OUT, OrquestaState
from .workflow import _EXPRESSIONS, OrquestaWorkflow

STATUS_OF_EVENT = {"succeeded": SUCCEEDED, "failed": FAILED, "timed_out": FAILED, "timeout": FAILED,
                   "expired": FAILED, "abandoned": FAILED, "canceled": CANCELED}


class RerunError(ValueError):
    """A rerun that cannot be done (the run is still active, or a named task never ran)."""


class OrquestaConductor:
    """Conducts one run of an OrquestaWorkflow. `items` is where with-items values and results
    are read (the shell's rows); what this conductor records itself is layered on top of it
    (items.LocalItems; pass one to share it between conductors of the same run). `journal`,
    when given, receives (task, route) of every record created (rehearsals list the whole task
    sequence from it; the state keeps only the records decisions need); `item_window` caps
    the items of one execution out at once (rehearsals). The run control
    (core/control.py, given orquesta/control.py) does pause, resume, cancel, core.ask, call
    watches, input limits and fan-in marking; this class Orquesta's flow of tasks."""

    def __init__(self, workflow: OrquestaWorkflow, run: RunInfo, evaluator: Expressions | None = None,
                 items: Any = None, journal: list[tuple[str, int]] | None = None, item_window: int | None = None):
        self.workflow = workflow
        self.graph = workflow.graph
        self.run = run
        self.items = items if isinstance(items, LocalItems) else LocalItems(items)
        # bound to this run: task() reads executions that ended in earlier steps from the items store
        self.expressions = (evaluator or _EXPRESSIONS).bound(run.run_id, self.items)
        self.journal = journal
        # The most items of a with-items execution out at once, whatever its concurrency: a
        # rehearsal in Orquesta's wave model sets 1 (Orquesta's rehearsal starts an item only
        # when its wave reaches it, so items after a failed one never run).
        self.item_window = item_window
        self.control = RunControl(OrquestaControl(self), run)

    # Public API -----------------------------------------------------------------------------

    def start(self) -> tuple[OrquestaState, list[Command]]:
        """A new run: inputs then vars (each in order, seeing the earlier ones), then the start tasks."""
        state = OrquestaState(journal=self.journal)
        step = Step()
        context: dict[str, Any] = {}
        failed = False
        params = self.run.params or {}
        for spec in self.workflow.spec.input:
            value = params.get(spec.name, spec.default)
            try:
                context[spec.name] = self.expressions.evaluate(value, Scope(dict(context)))
            except ExpressionError as exc:
                state.log_error(f"input {spec.name}: {exc}")
                failed = True
        for name, value in self.workflow.spec.vars:
            try:
                context[name] = self.expressions.evaluate(value, Scope(dict(context)))
            except ExpressionError as exc:
                state.log_error(f"vars {name}: {exc}")
                failed = True
        if failed:
            state.status = FAILED
        else:
            state.contexts.append(context)
            state.vars.update(context)
            if context:
                step.commands.append(VariablesSet(dict(context)))
            for name in self.graph.start:
                state.stage(name, 0, [0], {}, True)
        self._advance(state, step)
        state.end_step()
        self.control.finish_step(step.commands)
        return state, step.commands

    def apply(self, state: OrquestaState, event: Event) -> list[Command]:
        """Apply one event (mutates `state`); [] when it is stale or a duplicate."""
        return self.apply_all(state, [event])

    def apply_all(self, state: OrquestaState, events: list[Event]) -> list[Command]:
        """Apply events in order, then hand out every task that became ready (one wave).
        Besides completions and timers: Control, Responded (raises ValueError for a response
        nobody waits for or that does not match), CallPaused and Rerun (raises RerunError)."""
        reruns = [e for e in events if isinstance(e, Rerun)]
        if reruns:
            commands = self.rerun(state, rerun_requests(state, reruns[0].tasks))
            return [StatusChanged(RUNNING), *commands]  # the shell reopens the finished run
        if state.finished:
            return []
        if self.journal is not None:
            state.journal = self.journal
        step = Step()
        flow = Flow(self.graph, self.expressions, state, step)
        accepted = persist = False
        for event in events:
            done = self.control.route(state, step, event)
            if done is None and isinstance(event, TimerFired):
                done = self._timer(state, flow, event.key)
            accepted = accepted or bool(done)
            persist = persist or (bool(done) and isinstance(event, CallPaused))
        if not accepted:
            return []
        self._advance(state, step)
        state.end_step()
        if persist and not step.commands:  # the state changed: give the shell something to write
            step.commands.append(StatusChanged(state.status))
        self.control.finish_step(step.commands)
        self.items.remember(step.commands)  # for task() in a rehearsal's later steps
        return step.commands

    def rerun(self, state: OrquestaState, tasks: list[dict[str, Any]] | None = None) -> list[Command]:
        """Resume a finished run: rerun the named tasks ({task_id, route, reset_items}), or every
        terminal task that failed. Returns the commands that start them."""
        if state.status not in COMPLETED or state.has_active():
            raise RerunError("only a completed workflow can be rerun")
        if self.journal is not None:
            state.journal = self.journal
        step = Step()
        try:
            request_rerun(state, self.graph, tasks)
        except ValueError as exc:
            raise RerunError(str(exc)) from None
        state.finished = False
        state.output = None
        state.reason = None
        state.paused_calls = []
        state.status = RESUMING
        self._advance(state, step)
        state.end_step()
        self.control.finish_step(step.commands)
        return step.commands

    # Events ---------------------------------------------------------------------------------

    def task_ended(self, state: OrquestaState, flow: Flow, event: TaskEnded) -> bool:
        """A call that is out (the run control checked) reported; False for a status that is
        not an end."""
        record = state.by_seq(event.seq)
        status = STATUS_OF_EVENT.get(event.status)
        if status is None:
            return False
        result = event.result if event.result is not None else event.error
        if event.status == "failed":
            state.log_error("Execution failed. See result for details.", record["id"], result=result)
        if event.item is None:
            if "items" in record:
                return False
            flow.step.commands.append(ExecutionEnded(record["seq"], record["id"], record["attempt"], status,
                                                     None if status in ABENDED else event.result,
                                                     self._error(event, status)))
            flow.complete(record, status, result)
            return True
        items = record["items"]
        item_book.ended(items, event.item, status)
        self.items.ended(record["seq"], event.item, result)
        if status in ABENDED or status == CANCELED:
            items.setdefault("error", f"item {event.item}: {self._error(event, status)}")
        flow.step.commands.append(ItemEnded(record["seq"], event.item, event.status, result))
        task_status = item_book.progress(items)
        if task_status == RUNNING:
            if not items["failed"] and not items["canceled"]:
                self.dispatch_items(state, flow, record)
            return True
        if task_status == record["status"]:
            return True
        results = item_book.results(items, record["seq"], self.items)
        flow.step.commands.append(ExecutionEnded(record["seq"], record["id"], record["attempt"], task_status, results,
                                                 None if task_status == SUCCEEDED else items.get("error")))
        flow.complete(record, task_status, results)
        return True

    def calls(self, state: OrquestaState) -> list[Call]:
        """(seq, attempt, item) of every call out on a worker: not delayed, not held back by a
        pause, not a paused child run, not a core.ask waiting for its answer."""
        return self.control.calls(state)

    def resend(self, state: OrquestaState, flow: Flow, call: Call) -> None:
        """Dispatch a call that is out again (same attempt): its message was lost."""
        seq, attempt, item = call
        record = state.active[seq]
        if item is None:
            self._dispatch(state, flow, record)
            return
        spec = self.graph.tasks[record["id"]]
        items = record["items"]
        try:
            value = items["values"][item] if "values" in items else self.items.item(seq, item)
            action, payload = self._render(spec, flow.scope(record).with_item(value), item)
        except (ExpressionError, TypeError, ValueError) as exc:  # rendered before; only a changed store could fail it
            state.log_error(str(exc), record["id"], record["route"])
            self.task_ended(state, flow, TaskEnded(seq, attempt, "failed", None, str(exc), item))
            return
        flow.step.commands.append(Dispatch(seq, record["id"], action, payload, attempt, item))

    @staticmethod
    def _error(event: TaskEnded, status: str) -> str | None:
        if status not in ABENDED and status != CANCELED:
            return None
        if event.error:
            return event.error
        return str(event.result) if event.result is not None else event.status

    def _timer(self, state: OrquestaState, flow: Flow, key: str) -> bool:
        """A delay came due (the run control has the watches and asks' timeouts)."""
        try:
            kind, seq, _, _ = parse_timer_key(key)
        except ValueError:
            return False
        record = state.active.get(seq) if kind == DISPATCH else None
        if record is None or record.get("waiting") != key:
            return False
        del record["waiting"]
        if state.status in (PAUSING, PAUSED):  # held until resume
            record["held"] = True
            flow.step.commands.append(StateUpdated())  # the state changed: the step is written
        else:
            self.release(state, flow, record)
        return True

    def release(self, state: OrquestaState, flow: Flow, record: dict[str, Any]) -> None:
        """A delayed task whose delay is over: dispatch it (or its items)."""
        state.set_status(record, RUNNING)
        if "items" in record:
            self.dispatch_items(state, flow, record)
        else:
            self._dispatch(state, flow, record)

    # Handing out ----------------------------------------------------------------------------

    def _advance(self, state: OrquestaState, step: Step) -> None:
        """Hand out every ready task (repeating while the engine completes some at once), then
        finish the run when its status is final and nothing is in flight."""
        flow = Flow(self.graph, self.expressions, state, step)
        handed = True
        while handed and not state.finished:
            handed = self._hand_out(state, flow)
        step.flush_variables()
        if state.finished:
            return
        self.control.maybe_paused(state, step)
        if state.status in HANDING_OUT and not state.has_active():
            flow.fail("the workflow cannot make progress: nothing is running and nothing can start")
        if state.status in COMPLETED and not state.has_active():
            finish(state, self.workflow, self.expressions, flow)

    def _hand_out(self, state: OrquestaState, flow: Flow) -> bool:
        staged = state.ready_staged()
        if state.status == FAILED:
            staged = [s for s in staged if s.get("run_on_fail")]
        elif state.status not in HANDING_OUT:
            return False
        staged = [s for s in staged if self._startable(state, s)]
        if not staged:
            return False
        if state.next_seq - 1 + len(staged) > self.run.execution_limit:
            flow.fail(f"task execution limit of {self.run.execution_limit} reached when starting "
                      f"{', '.join(sorted({s['id'] for s in staged}))}")
            return False
        prepared = []
        for entry in sorted(staged, key=lambda s: (s["id"], s["route"])):
            try:
                prepared.append((entry, self._prepare(state, flow, entry)))
            except (ExpressionError, TypeError, ValueError) as exc:
                flow.fail(str(exc), entry["id"], entry["route"])
        if len(prepared) < len(staged):
            return False  # as Orquesta: a task that cannot be rendered fails the run, none starts
        if state.status == RESUMING:
            state.status = RUNNING
        for entry, task in prepared:
            self._start(state, flow, entry, task)
        return True

    @staticmethod
    def _startable(state: OrquestaState, entry: dict[str, Any]) -> bool:
        """A staged task whose previous execution on its route is still running waits for it."""
        record = state.record(entry["id"], entry["route"])
        return record is None or record.get("status") not in ACTIVE

    def _prepare(self, state: OrquestaState, flow: Flow, entry: dict[str, Any]) -> dict[str, Any]:
        """Render what starting the task needs (Orquesta's get_task): delay, items, concurrency."""
        spec = self.graph.tasks[entry["id"]]
        scope = flow.scope(entry)
        task: dict[str, Any] = {"delay": None, "items": None, "concurrency": None}
        if spec.delay is not None:
            task["delay"] = self._integer(self.expressions.evaluate(spec.delay, scope), "delay")
        if "retry" in entry:
            task["delay"] = entry["retry"].get("delay") or 0
        if spec.items is not None:
            values = self.expressions.evaluate(spec.items.expression, scope)
            if not isinstance(values, list):
                raise TypeError(f'The value of "{spec.items.expression}" is not type of list.')
            if spec.items.keys:
                values = [_named(spec.items.keys, v) for v in values]
            task["items"] = values
            if spec.items.concurrency is not None:
                task["concurrency"] = self._integer(self.expressions.evaluate(spec.items.concurrency, scope),
                                                    "concurrency")
        else:
            self._render(spec, scope)  # render errors surface now, before anything starts
        return task

    @staticmethod
    def _integer(value: Any, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"The value of task {what} is not type of integer.")
        return value

    def _render(self, spec: Any, scope: Scope, item: int | None = None) -> tuple[str | None, dict[str, Any]]:
        """The action and input of one call; ValueError when the input is over the size limit."""
        action = self.expressions.evaluate(spec.action, scope) if spec.action else None
        payload = self.expressions.evaluate(spec.input, scope) if spec.input is not None else {}
        if not isinstance(payload, dict):
            raise TypeError(f"task '{spec.name}': input must render to a mapping, got {type(payload).__name__}")
        error = self.control.check_input(spec.name, payload, item)
        if error is not None:
            raise ValueError(error)
        return action, payload

    def _start(self, state: OrquestaState, flow: Flow, entry: dict[str, Any], task: dict[str, Any]) -> None:
        record = state.record(entry["id"], entry["route"])
        if entry.get("retry") and record is not None and record.get("status") == RETRYING:
            record["attempt"] += 1
        elif record is None or record.get("status") is not None:
            record = state.add_record(entry["id"], entry["route"], entry["ctxs"]["in"], entry["prev"])
            self._setup_retry(flow, record)
        state.unstage(entry["id"], entry["route"])
        spec = self.graph.tasks[record["id"]]
        commands = flow.step.commands
        if task["items"] is not None:
            values = task["items"]
            record["items"] = item_book.start(len(values), task["concurrency"], entry.get("carry"))
            commands.append(ExecutionStarted(record["seq"], record["id"], record["attempt"], len(values)))
            if values:
                self.items.created(record["seq"], values)
                if record["attempt"] == 1:
                    commands.append(ItemsCreated(record["seq"], list(values)))
                else:  # a retry renders its items again; the stored item rows are the first attempt's
                    record["items"]["values"] = values
        else:
            commands.append(ExecutionStarted(record["seq"], record["id"], record["attempt"]))
        state.set_status(record, RUNNING)
        if (spec.action is None and task["items"] is None) or task["items"] == []:
            result = [] if task["items"] == [] else None
            commands.append(ExecutionEnded(record["seq"], record["id"], record["attempt"], SUCCEEDED, result))
            flow.complete(record, SUCCEEDED, result)
            return
        if task["delay"]:
            state.set_status(record, DELAYED)
            record["waiting"] = timer_key(DISPATCH, record["seq"], record["attempt"])
            commands.append(SetTimer(record["waiting"], float(task["delay"])))
        elif "items" in record:
            self.dispatch_items(state, flow, record)
        else:
            self._dispatch(state, flow, record)

    def _setup_retry(self, flow: Flow, record: dict[str, Any]) -> None:
        retry = self.graph.retry.get(record["id"])
        if retry is None:
            return
        scope = flow.scope(record)
        values = {"when": retry.when, "count": retry.count, "delay": retry.delay, "tally": 0}
        for name in ("count", "delay"):
            if isinstance(values[name], str):
                try:
                    values[name] = self._integer(self.expressions.evaluate(values[name], scope), f"retry {name}")
                except (ExpressionError, TypeError) as exc:
                    flow.fail(f"retry {name}: {exc}", record["id"], record["route"])
                    values[name] = 0
        record["retry"] = values

    def _dispatch(self, state: OrquestaState, flow: Flow, record: dict[str, Any]) -> None:
        spec = self.graph.tasks[record["id"]]
        try:
            action, payload = self._render(spec, flow.scope(record))
            if action == ASK:  # answered by an operator, never dispatched
                record["ask"] = self.control.ask(flow.step, record["id"], record["seq"], record["attempt"], payload,
                                                 ask_timeout(payload))
                return
        except (ExpressionError, TypeError, ValueError) as exc:
            flow.step.commands.append(ExecutionEnded(record["seq"], record["id"], record["attempt"], FAILED, None,
                                                     str(exc)))
            state.log_error(str(exc), record["id"], record["route"])
            flow.complete(record, FAILED, str(exc))
            return
        flow.step.commands.append(Dispatch(record["seq"], record["id"], action, payload, record["attempt"]))

    def dispatch_items(self, state: OrquestaState, flow: Flow, record: dict[str, Any]) -> None:
        """Fill the window: start not-yet-run items in index order up to the concurrency."""
        items = record["items"]
        limit = items["concurrency"]
        limit = items["count"] if limit is None else max(1, limit)
        if self.item_window is not None:
            limit = min(limit, self.item_window)
        if state.status in (PAUSING, PAUSED):
            limit = 0  # no new item while paused; resume refills the window
        spec = self.graph.tasks[record["id"]]
        flying = item_book.flight_count(items)
        base = None
        while flying < limit and items["next"] < items["count"]:
            index = items["next"]
            items["next"] = item_book.skip_ahead(items["skip"], index + 1)
            if base is None:
                base = flow.scope(record)
            try:
                value = items["values"][index] if "values" in items else self.items.item(record["seq"], index)
                action, payload = self._render(spec, base.with_item(value), index)
            except (ExpressionError, TypeError, ValueError) as exc:
                items["own"][str(index)] = str(exc)
                insort(items["bad"], index)
                items["failed"] = True
                items["done"] = max(items["done"], index)
                items.setdefault("error", f"item {index}: {exc}")
                state.log_error(str(exc), record["id"], record["route"])
                break
            item_book.flight_add(items, index, record["attempt"])
            flying += 1
            flow.step.commands.append(Dispatch(record["seq"], record["id"], action, payload, record["attempt"], index))
        if not items["flight"]:
            status = item_book.progress(items)
            if status != RUNNING:
                results = item_book.results(items, record["seq"], self.items)
                flow.step.commands.append(ExecutionEnded(record["seq"], record["id"], record["attempt"], status,
                                                         results, None if status == SUCCEEDED else items.get("error")))
                flow.complete(record, status, results)


def _named(keys: tuple[str, ...], value: Any) -> Any:
    """An item under `a, b in …`: a list/tuple is zipped to the names; one name wraps the value."""
    if isinstance(value, (list, tuple)):
        return dict(zip(keys, value, strict=False))
    return {keys[0]: value} if len(keys) == 1 else value
