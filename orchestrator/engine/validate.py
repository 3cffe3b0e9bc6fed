"""Semantic checks over a parsed workflow; every problem is reported at once with its place."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from jsonschema import Draft202012Validator

from .errors import Problem, WorkflowInvalid
from .expressions import Evaluator
from .graph import WorkflowGraph, build_graph
from .loader import Positions
from .spec import ENGINE_COMMANDS, WorkflowSpec, parse_workflow

RESERVED_NAMES = ENGINE_COMMANDS


@dataclass(frozen=True)
class Workflow:
    """A validated workflow: its spec, its graph and its source text (stored with each run)."""

    spec: WorkflowSpec
    graph: WorkflowGraph
    text: str
    source: str

    @property
    def name(self) -> str:
        return self.graph.name


def load_workflow(
    text: str,
    source: str = "<workflow>",
    default_name: str | None = None,
    evaluator: Evaluator | None = None,
    action_exists: Callable[[str], bool] | None = None,
) -> Workflow:
    """Parse and validate a workflow file's text; raises WorkflowInvalid listing every problem."""
    evaluator = evaluator or Evaluator()
    try:
        spec, positions = parse_workflow(text, source, default_name)
    except WorkflowInvalid as exc:
        partial = exc.partial
        if partial is None:
            raise
        # Report the whole-workflow problems of the tasks that did parse, all in one go.
        graph = build_graph(partial.spec, partial.indexes)
        more = check(graph, partial.positions, evaluator, action_exists, partial.indexes, partial.invalid_names)
        raise WorkflowInvalid(source, exc.problems + more) from None
    graph = build_graph(spec)
    problems = check(graph, positions, evaluator, action_exists)
    if problems:
        raise WorkflowInvalid(source, problems)
    return Workflow(spec, graph, text, source)


def check(graph: WorkflowGraph, positions: Positions, evaluator: Evaluator,
          action_exists: Callable[[str], bool] | None = None, indexes: list[int] | None = None,
          invalid_names: set[str] | None = None) -> list[Problem]:
    """Every whole-workflow problem. With `invalid_names` (tasks that failed the schema) the
    checks that need the complete graph (reachability, join inbound counts) are skipped."""
    spec = graph.spec
    problems: list[Problem] = []
    at = positions.problem
    indexes = indexes if indexes is not None else list(range(len(spec.tasks)))
    complete = not invalid_names
    invalid_names = invalid_names or set()
    seen: dict[str, int] = {}
    for i, task in zip(indexes, spec.tasks):
        if task.name in seen:
            problems.append(at(("tasks", i, "name"), f"duplicate task name '{task.name}' (first at tasks[{seen[task.name]}])"))
        else:
            seen[task.name] = i
        if task.name in RESERVED_NAMES:
            problems.append(at(("tasks", i, "name"), f"task name '{task.name}' is reserved for an engine command"))
        if action_exists is not None and not action_exists(task.action):
            problems.append(at(("tasks", i, "action"), f"task '{task.name}': unknown action '{task.action}'"))

    for node in graph.nodes.values():
        for tr in node.transitions:
            for target in tr.do:
                if target not in graph.nodes and target not in ENGINE_COMMANDS and target not in invalid_names:
                    problems.append(at(tr.path, f"task '{node.name}': transition to unknown task '{target}'"))
        join = node.spec.join
        base = ("tasks", node.position, "join")
        if not complete:
            continue
        if join is not None and len(node.inbound) < 2:
            problems.append(at(base, f"task '{node.name}': join needs at least two inbound tasks, it has {len(node.inbound)}"))
        elif isinstance(join, int) and join > len(node.inbound):
            problems.append(at(base, f"task '{node.name}': join {join} exceeds its {len(node.inbound)} inbound tasks"))

    if not complete:
        pass
    elif not graph.entry:
        problems.append(at(("tasks",), "no entry task: every task is the target of a transition"))
    else:
        reachable = graph.reachable()
        for node in graph.nodes.values():
            if node.name not in reachable:
                problems.append(at(("tasks", node.position, "name"), f"task '{node.name}' is unreachable from the entry tasks"))

    for path, value in _template_fields(spec, indexes):
        for template in evaluator.templates_in(value):
            reason = evaluator.check_syntax(template)
            if reason:
                problems.append(at(path, f"{_label(path)}: bad template {template!r}: {reason}"))

    for name, param in spec.parameters.items():
        path = ("parameters", name)
        if param.items is not None:
            reason = schema_problem({"type": "array", "items": param.items})
            if reason:
                problems.append(at(path + ("items",), f"parameter '{name}': bad items schema: {reason}"))
                continue
        if param.default is not None:
            for error in Draft202012Validator(param.json_schema()).iter_errors(param.default):
                problems.append(at(path + ("default",), f"parameter '{name}': default {error.message}"))
    return problems


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why a JSON schema cannot be used (bad shape, unknown type, bad pattern, a $ref that
    leads nowhere), or None. Only local `#/...` references are allowed: nothing is fetched."""
    try:
        Draft202012Validator.check_schema(schema)
        if '"$ref"' in json.dumps(schema) and not _local_refs_only(schema):
            return "only local $ref ('#/...') is allowed"
        validator = Draft202012Validator(schema, format_checker=None)
        for probe in ([], [None], [""], [0], [{}]):
            list(validator.iter_errors(probe))
    except Exception as exc:  # jsonschema and re raise many kinds; all mean "unusable"
        return str(getattr(exc, "message", exc)).splitlines()[0]
    return None


def _local_refs_only(value: Any) -> bool:
    if isinstance(value, dict):
        ref = value.get("$ref")
        if ref is not None and not (isinstance(ref, str) and ref.startswith("#")):
            return False
        return all(_local_refs_only(v) for v in value.values())
    if isinstance(value, list):
        return all(_local_refs_only(v) for v in value)
    return True


def _template_fields(spec: WorkflowSpec, indexes: list[int]) -> list[tuple[tuple[Any, ...], Any]]:
    fields: list[tuple[tuple[Any, ...], Any]] = []
    for name, value in spec.vars.items():
        fields.append((("vars", name), value))
    for name, value in spec.output_map.items():
        fields.append((("output_map", name), value))
    for i, task in zip(indexes, spec.tasks):
        base = ("tasks", i)
        for key in ("input", "with_items", "concurrency", "when"):
            fields.append((base + (key,), getattr(task, key)))
        if task.retry is not None:
            fields.append((base + ("retry", "when"), task.retry.when))
        for j, entry in enumerate(task.next):
            fields.append((base + ("next", j, "when"), entry.when))
            for k, (_, value) in enumerate(entry.publish):
                fields.append((base + ("next", j, "publish", k), value))
        for j, decision in enumerate(task.decision or []):
            fields.append((base + ("decision", j, "when"), decision.when))
    return fields


def _label(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
