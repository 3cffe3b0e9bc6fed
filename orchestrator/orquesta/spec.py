"""Orquesta's native workflow format (``version: 1.0``, ``tasks`` as a mapping) as typed data.

``parse_spec`` checks the shape of every key and reports every problem at once, each at its
``file:line:column``: unknown keys, wrong types, reserved or malformed task names, inline
parameters that cannot be read, bad ``with`` items, expressions that do not parse, and mixed
YAQL/Jinja strings. Whole-graph checks (unknown targets, start tasks) live in ``graph.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import Problem, WorkflowInvalid
from ..engine.loader import Positions
from .expressions import Expressions
from .inline import InlineError, parse_pairs, split_action

ENGINE_COMMANDS = ("continue", "fail", "noop")
RESERVED = ENGINE_COMMANDS + ("retry",)
NAME = re.compile(r"^\w+$")  # task names
# Variable names (input, vars, publish, output): any non-empty text without surrounding blanks, as
# Orquesta accepts; dotted ones (`vars.key.with.periods`) are read with ctx()["vars.key.with.periods"].
VARIABLE = re.compile(r"^\S(.*\S)?$", re.DOTALL)
META_KEYS = {"version", "description", "name", "tags"}
WORKFLOW_KEYS = META_KEYS | {"input", "vars", "output", "tasks"}
TASK_KEYS = {"action", "input", "next", "join", "with", "retry", "delay"}
TRANSITION_KEYS = {"when", "publish", "do"}
ITEMS_KEYS = {"items", "concurrency"}
RETRY_KEYS = {"when", "count", "delay"}
_WHOLE_EXPRESSION = re.compile(r"^\s*(<%.*%>|{{.*}})\s*$", re.DOTALL)
_ITEMS = re.compile(r"^\s*(?:(?P<keys>\w+(?:\s*,\s*\w+)*)\s+in\s+)?(?P<expr>(<%.*%>|{{.*}}))\s*$", re.DOTALL)

Path = tuple[Any, ...]


@dataclass(frozen=True)
class TransitionSpec:
    """One entry of a task's `next`: targets in `do` (default ``continue``)."""

    index: int
    when: str | None
    publish: tuple[tuple[str, Any], ...]
    do: tuple[str, ...]


@dataclass(frozen=True)
class ItemsSpec:
    """`with`: the items expression, the optional names (``a, b in …``) and the concurrency."""

    expression: str
    keys: tuple[str, ...] | None
    concurrency: int | str | None


@dataclass(frozen=True)
class RetrySpec:
    count: int | str
    when: str | None = None
    delay: int | str | None = None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    action: str | None
    input: Any
    next: tuple[TransitionSpec, ...]
    join: str | int | None
    items: ItemsSpec | None
    retry: RetrySpec | None
    delay: int | str | None


@dataclass(frozen=True)
class InputSpec:
    name: str
    default: Any = None
    has_default: bool = False


@dataclass(frozen=True)
class OrquestaSpec:
    """A parsed workflow; `tasks` keeps the file's order."""

    version: str
    description: str | None
    name: str | None
    input: tuple[InputSpec, ...]
    vars: tuple[tuple[str, Any], ...]
    output: tuple[tuple[str, Any], ...]
    tasks: dict[str, TaskSpec] = field(default_factory=dict)


def is_native(data: Any) -> bool:
    """Orquesta's native format: `version` 1.0 and `tasks` as a mapping."""
    return (isinstance(data, dict) and isinstance(data.get("tasks"), dict)
            and str(data.get("version")).strip() in ("1.0", "1"))


class _Parser:
    def __init__(self, positions: Positions, expressions: Expressions):
        self.positions = positions
        self.expressions = expressions
        self.problems: list[Problem] = []

    def problem(self, path: Path, message: str) -> None:
        self.problems.append(self.positions.problem(path, message))

    def unknown(self, data: dict, allowed: set[str], path: Path, what: str) -> None:
        for key in data:
            if key not in allowed:
                self.problem(path + (key,), f"{what}: unknown key '{key}' (allowed: {', '.join(sorted(allowed))})")

    def expression(self, value: Any, path: Path, label: str) -> None:
        for expr, reason in self.expressions.check(value):
            self.problem(path, f"{label}: bad expression {expr!r}: {reason}")

    def string(self, value: Any, path: Path, label: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(path, f"{label}: must be a non-empty string")
            return None
        self.expression(value, path, label)
        return value

    def int_or_expression(self, value: Any, path: Path, label: str) -> int | str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, int) and value < 0):
            self.problem(path, f"{label}: must be a non-negative integer or an expression")
            return None
        if isinstance(value, str):
            if not self.expressions.has_expressions(value):
                self.problem(path, f"{label}: must be a non-negative integer or an expression")
                return None
            self.expression(value, path, label)
        return value

    def one_key_list(self, value: Any, path: Path, label: str) -> tuple[tuple[str, Any], ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(path, f"{label}: must be a list of one-key mappings")
            return ()
        out: list[tuple[str, Any]] = []
        seen: set[str] = set()
        for i, entry in enumerate(value):
            if not isinstance(entry, dict) or len(entry) != 1:
                self.problem(path + (i,), f"{label}[{i}]: must be a mapping with exactly one key")
                continue
            (name, default), = entry.items()
            if not isinstance(name, str) or not VARIABLE.match(name):
                self.problem(path + (i,), f"{label}[{i}]: name {name!r} must be non-empty text without "
                                          f"leading or trailing blanks")
                continue
            if name in seen:
                self.problem(path + (i,), f"{label}: duplicate name '{name}'")
            seen.add(name)
            self.expression(default, path + (i, name), f"{label}.{name}")
            out.append((name, default))
        return tuple(out)

    # Workflow ---------------------------------------------------------------------------------

    def workflow(self, data: Any) -> OrquestaSpec | None:
        if not isinstance(data, dict):
            self.problem((), "an Orquesta workflow must be a mapping")
            return None
        self.unknown(data, WORKFLOW_KEYS, (), "workflow")
        version = str(data.get("version", "")).strip()
        if version not in ("1.0", "1"):
            self.problem(("version",), f"version must be 1.0, not {data.get('version')!r}")
        inputs = self.inputs(data.get("input"))
        variables = self.one_key_list(data.get("vars"), ("vars",), "vars")
        output = self.one_key_list(data.get("output"), ("output",), "output")
        tasks: dict[str, TaskSpec] = {}
        raw_tasks = data.get("tasks")
        if not isinstance(raw_tasks, dict) or not raw_tasks:
            self.problem(("tasks",), "tasks: must be a non-empty mapping of task names to tasks")
        else:
            for name, body in raw_tasks.items():
                task = self.task(name, body)
                if task is not None:
                    tasks[name] = task
        description = data.get("description")
        return OrquestaSpec("1.0", description if isinstance(description, str) else None,
                            data.get("name") if isinstance(data.get("name"), str) else None,
                            inputs, variables, output, tasks)

    def inputs(self, value: Any) -> tuple[InputSpec, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(("input",), "input: must be a list of names or one-key mappings {name: default}")
            return ()
        out: list[InputSpec] = []
        seen: set[str] = set()
        for i, entry in enumerate(value):
            if isinstance(entry, str):
                spec = InputSpec(entry)
            elif isinstance(entry, dict) and len(entry) == 1:
                (name, default), = entry.items()
                spec = InputSpec(str(name), default, True)
                self.expression(default, ("input", i, name), f"input.{name}")
            else:
                self.problem(("input", i), f"input[{i}]: must be a name or a mapping with exactly one key")
                continue
            if not VARIABLE.match(spec.name):
                self.problem(("input", i), f"input[{i}]: name {spec.name!r} must be non-empty text without "
                                           f"leading or trailing blanks")
            if spec.name in seen:
                self.problem(("input", i), f"input: duplicate name '{spec.name}'")
            seen.add(spec.name)
            out.append(spec)
        return tuple(out)

    # Tasks ------------------------------------------------------------------------------------

    def task(self, name: Any, body: Any) -> TaskSpec | None:
        path: Path = ("tasks", name)
        label = f"task '{name}'"
        if not isinstance(name, str) or not NAME.match(name):
            self.problem(path, f"task name {name!r} must be letters, digits and _")
            return None
        if name in RESERVED:
            self.problem(path, f"task name '{name}' is reserved for an engine command")
        if not isinstance(body, dict):
            self.problem(path, f"{label}: must be a mapping")
            return None
        self.unknown(body, TASK_KEYS, path, label)
        action = self.string(body.get("action"), path + ("action",), f"{label}: action")
        task_input = body.get("input")
        if task_input is not None:
            if isinstance(task_input, str):
                self.string(task_input, path + ("input",), f"{label}: input")
            elif not isinstance(task_input, dict) or not task_input:
                self.problem(path + ("input",), f"{label}: input must be a non-empty mapping or an expression")
                task_input = None
            else:
                self.expression(task_input, path + ("input",), f"{label}: input")
        if action is not None and not _WHOLE_EXPRESSION.match(action):  # an action chosen at run time
            try:
                action, inline = split_action(action)
            except InlineError as exc:
                self.problem(path + ("action",), f"{label}: action: {exc}")
                inline = None
            if inline:
                task_input = inline
        join = body.get("join")
        if join is not None and join != "all" and (isinstance(join, bool) or not isinstance(join, int) or join < 0):
            self.problem(path + ("join",), f"{label}: join must be 'all' or a number of inbound tasks")
            join = None
        items = self.items(body.get("with"), path + ("with",), label)
        if items is not None and action is None:
            self.problem(path + ("with",), f"{label}: the action property is required for a with-items task")
        return TaskSpec(name, action, task_input, self.transitions(body.get("next"), path + ("next",), label),
                        join, items, self.retry(body.get("retry"), path + ("retry",), label),
                        self.int_or_expression(body.get("delay"), path + ("delay",), f"{label}: delay"))

    def items(self, value: Any, path: Path, label: str) -> ItemsSpec | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = {"items": value}
        if not isinstance(value, dict):
            self.problem(path, f"{label}: with must be an expression or a mapping with items and concurrency")
            return None
        self.unknown(value, ITEMS_KEYS, path, f"{label}: with")
        raw = value.get("items")
        match = _ITEMS.match(raw) if isinstance(raw, str) else None
        if match is None:
            self.problem(path + ("items",), f"{label}: with.items must be an expression or 'x, y in <expression>'")
            return None
        expr = match.group("expr")
        self.expression(expr, path + ("items",), f"{label}: with.items")
        keys = tuple(k.strip() for k in match.group("keys").split(",")) if match.group("keys") else None
        concurrency = self.int_or_expression(value.get("concurrency"), path + ("concurrency",),
                                             f"{label}: with.concurrency")
        return ItemsSpec(expr, keys, concurrency)

    def retry(self, value: Any, path: Path, label: str) -> RetrySpec | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem(path, f"{label}: retry must be a mapping with count, when and delay")
            return None
        self.unknown(value, RETRY_KEYS, path, f"{label}: retry")
        if "count" not in value:
            self.problem(path, f"{label}: retry needs a count")
            return None
        count = self.int_or_expression(value["count"], path + ("count",), f"{label}: retry.count")
        when = self.string(value.get("when"), path + ("when",), f"{label}: retry.when")
        delay = self.int_or_expression(value.get("delay"), path + ("delay",), f"{label}: retry.delay")
        return None if count is None else RetrySpec(count, when, delay)

    def transitions(self, value: Any, path: Path, label: str) -> tuple[TransitionSpec, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(path, f"{label}: next must be a list of transitions")
            return ()
        out: list[TransitionSpec] = []
        for i, entry in enumerate(value):
            where = path + (i,)
            what = f"{label}: next[{i}]"
            if not isinstance(entry, dict):
                self.problem(where, f"{what}: must be a mapping with when, publish and do")
                continue
            self.unknown(entry, TRANSITION_KEYS, where, what)
            when = self.string(entry.get("when"), where + ("when",), f"{what}.when")
            publish = self.publish(entry.get("publish"), where + ("publish",), what)
            out.append(TransitionSpec(i, when, publish, self.do(entry.get("do"), where + ("do",), what)))
        return tuple(out)

    def publish(self, value: Any, path: Path, what: str) -> tuple[tuple[str, Any], ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            try:
                pairs = parse_pairs(value)
            except InlineError as exc:
                self.problem(path, f"{what}.publish: {exc}")
                return ()
            self.expression([v for _, v in pairs], path, f"{what}.publish")
            return tuple(pairs)
        return self.one_key_list(value, path, f"{what}.publish")

    def do(self, value: Any, path: Path, what: str) -> tuple[str, ...]:
        if value is None or value == "" or value == []:
            return ("continue",)
        if isinstance(value, str):
            names = [n.strip() for n in value.split(",")]
        elif isinstance(value, list) and all(isinstance(n, str) for n in value):
            names = [n.strip() for n in value]
        else:
            self.problem(path, f"{what}.do: must be a task name, a comma-separated string or a list of names")
            return ()
        if len(set(names)) != len(names):
            self.problem(path, f"{what}.do: names must be unique")
        for name in names:
            if not NAME.match(name):
                self.problem(path, f"{what}.do: {name!r} is not a task name")
        return tuple(n for n in names if NAME.match(n))


def collect_spec(data: Any, positions: Positions,
                 expressions: Expressions | None = None) -> tuple[OrquestaSpec | None, list[Problem]]:
    """Typed spec (of whatever could be read) and every problem found."""
    parser = _Parser(positions, expressions or Expressions())
    spec = parser.workflow(data)
    return spec, parser.problems


def parse_spec(data: Any, positions: Positions, source: str, expressions: Expressions | None = None) -> OrquestaSpec:
    """Typed spec from loaded YAML; raises WorkflowInvalid listing every problem."""
    spec, problems = collect_spec(data, positions, expressions)
    if problems or spec is None:
        raise WorkflowInvalid(source, problems)
    return spec
