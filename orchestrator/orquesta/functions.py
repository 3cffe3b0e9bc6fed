"""The functions Orquesta workflows call, in YAQL and Jinja alike, and the Scope they read.

``ctx()``, ``item()``, ``result()``, ``succeeded()``, ``failed()``, ``completed()``,
``task_status(name)``, ``zip()`` and ``json()`` are Orquesta's own; ``task(name, route)`` is
StackStorm's (orquesta_functions.runtime.task in st2): the latest execution of a task on a route
as ``{task_execution_id, workflow_execution_id, task_name, task_id, route, result, status,
start_timestamp, end_timestamp}``, a with-items task's result being ``{"items": [{status,
result}, ...]}`` as st2 stores it. ``random()`` is pseudo-random and pure: derived from the run
id and the expression, so evaluating a step again gives the same value (see docs/conformance.md).
All functions are pure: what they read comes with the Scope.
"""

from __future__ import annotations

import collections.abc
import hashlib
import json
import random
from dataclasses import dataclass, field, replace
from itertools import zip_longest
from typing import Any, Callable

from ..engine.commands import ExecutionEnded

COMPLETED = frozenset({"succeeded", "failed", "timeout", "abandoned", "canceled"})
UNSET = "null"
NO_ITEM = object()


@dataclass
class Scope:
    """What an expression can see.

    `variables` is the merged context (``ctx()``); `task`/`route`/`result` describe the current
    task (``result()``, ``succeeded()``…); `item` is the current with-items item; `status_of`
    answers ``task_status(name)`` for a task on a route (following routes back through splits).
    `tasks` is the run's task view for ``task(name)``: an object with `state` (``record(task,
    route)``, ``routes``) and `step` (``commands`` of the step so far), i.e. the conductor's Flow.
    `executions` reads executions that ended in earlier steps (``execution(seq)``, the shell's
    store); `run_id` names the run.
    """

    variables: dict[str, Any] = field(default_factory=dict)
    task: str | None = None
    route: int = 0
    result: Any = None
    item: Any = NO_ITEM
    status_of: Callable[[str, int], str] | None = None
    tasks: Any = None
    executions: Any = None
    run_id: str = ""

    def with_item(self, item: Any) -> "Scope":
        return replace(self, item=item)


class VariableUndefined(Exception):
    def __init__(self, name: str):
        super().__init__(f'The variable "{name}" is undefined.')


class FunctionError(ValueError):
    """A workflow function used where it cannot answer (the message says why)."""


def ctx(scope: Scope, key: Any = None) -> Any:
    if key:
        if key not in scope.variables:
            raise VariableUndefined(key)
        if str(key).startswith("__"):
            raise VariableUndefined(key)
        return scope.variables[key]
    return {k: v for k, v in scope.variables.items() if not str(k).startswith("__")}


def _current(scope: Scope) -> str:
    if scope.task is None:
        raise FunctionError("The current task is not set in the context.")
    return scope.task


def task_status(scope: Scope, name: str) -> str:
    if scope.status_of is None:
        return UNSET
    return scope.status_of(name, scope.route)


def succeeded(scope: Scope) -> bool:
    return task_status(scope, _current(scope)) == "succeeded"


def failed(scope: Scope) -> bool:
    return task_status(scope, _current(scope)) == "failed"


def completed(scope: Scope) -> bool:
    return task_status(scope, _current(scope)) in COMPLETED


def result(scope: Scope) -> Any:
    _current(scope)
    return scope.result


def item(scope: Scope, key: Any = None) -> Any:
    if scope.item is NO_ITEM:
        raise FunctionError("There is no current item (item() is only defined in with-items tasks).")
    if not key:
        return scope.item
    if not isinstance(scope.item, collections.abc.Mapping):
        raise FunctionError("Item is not type of collections.abc.Mapping.")
    if key not in scope.item:
        raise FunctionError(f'Item does not have key "{key}".')
    return scope.item[key]


def task(scope: Scope, name: Any = None, route: Any = None) -> dict[str, Any]:
    """StackStorm's task(): the latest execution of `name` (default: the current task) on
    `route` (default: the current route), looking back through the routes a split extends."""
    if name is None:
        if scope.task is None:
            raise FunctionError("task() without a name is only defined in a task's transitions.")
        name = scope.task
    route = scope.route if route is None else route
    view = scope.tasks
    record = _record(view.state, str(name), int(route)) if view is not None else None
    if record is None:
        raise FunctionError(f'Unable to find task execution for "{name}".')
    seq, status, found_route = record["seq"], record.get("status", UNSET), record["route"]
    execution: dict[str, Any] | None = None
    if scope.task == name and scope.route == found_route and scope.result is not None:
        execution = {"result": scope.result}
    else:
        execution = _ended_in_step(view, seq) or (
            scope.executions.execution(seq) if scope.executions is not None else None)
    execution = execution or {}
    value = execution.get("result")
    items = execution.get("items")
    if items is not None or ("items" in record and isinstance(value, list)):
        value = {"items": items if items is not None else [
            {"status": status, "result": each} for each in (value or [])]}
    return {
        "task_execution_id": f"{scope.run_id}:{seq}", "workflow_execution_id": scope.run_id,
        "task_name": name, "task_id": name, "route": found_route, "result": value, "status": status,
        "start_timestamp": execution.get("started_at"), "end_timestamp": execution.get("finished_at"),
    }


def _record(state: Any, name: str, route: int) -> dict[str, Any] | None:
    record = state.record(name, route)
    if record is None and route > 0 and route < len(state.routes):
        current = set(state.routes[route])
        for back, earlier in enumerate(reversed(state.routes[:route])):
            if set(earlier) <= current:
                return _record(state, name, route - back - 1)
    return record


def _ended_in_step(view: Any, seq: int) -> dict[str, Any] | None:
    step = getattr(view, "step", None)
    for command in reversed(getattr(step, "commands", None) or []):
        if isinstance(command, ExecutionEnded) and command.seq == seq:
            return {"result": command.result}
    return None


def make_random(scope: Scope, expression: str) -> Callable[..., Any]:
    """``random()`` in [0, 1) and ``random(from, to)`` (both ends included), the same for the
    same run, expression and call order: pure, so a step evaluated again decides the same."""
    calls = [0]

    def draw(*bounds: Any) -> Any:
        calls[0] += 1
        seed = hashlib.sha256(f"{scope.run_id}\x00{expression}\x00{calls[0]}".encode()).digest()
        generator = random.Random(seed)
        if not bounds:
            return generator.random()
        if len(bounds) != 2:
            raise FunctionError("random() takes no arguments or two (from, to)")
        return generator.randint(int(bounds[0]), int(bounds[1]))
    return draw


def now(*_: Any) -> Any:
    raise FunctionError("now() is not available: expressions are evaluated again when a step is "
                        "retried, so they must not read the clock; take the time from an action's "
                        "result (e.g. core.local cmd=\"date -u +%FT%TZ\") or a run input")


def zip_(*args: Any, pad: Any = None) -> list:
    lists = [[] if arg is None else list(arg) for arg in args]
    if len(lists) == 1:
        return lists[0]
    return [list(t) for t in zip_longest(*lists, fillvalue=pad)]


def json_(value: Any) -> Any:
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        raise TypeError("Given object is not typeof string.")
    return json.loads(value)


SCOPED_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "ctx": ctx, "item": item, "result": result, "succeeded": succeeded, "failed": failed,
    "completed": completed, "task_status": task_status, "task": task,
}
PLAIN_FUNCTIONS: dict[str, Callable[..., Any]] = {"zip": zip_, "json": json_}
