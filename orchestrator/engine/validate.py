"""Semantic checks over a parsed workflow; every problem is reported at once with its place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from jsonschema import Draft202012Validator

from ..core.errors import Problem, WorkflowInvalid
from .expressions import Evaluator
from .graph import WorkflowGraph, build_graph, transitions_of
from .loader import Positions
from ..core.schemas import schema_problem, standard_schema
from .spec import ENGINE_COMMANDS, PartialWorkflow, WorkflowSpec, parse_workflow

RESERVED_NAMES = ENGINE_COMMANDS
ASK_ACTION = "core.ask"


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

    @property
    def actions(self) -> set[str]:
        """The actions the file names."""
        return {task.action for task in self.spec.tasks}


def load_workflow(
    text: str,
    source: str = "<workflow>",
    default_name: str | None = None,
    evaluator: Evaluator | None = None,
    action_exists: Callable[[str], bool] | None = None,
    strict: bool = True,
) -> Workflow:
    """Parse and validate a workflow file's text; raises WorkflowInvalid listing every problem:
    schema problems and whole-workflow ones together, in one report. Not `strict` (a stored
    definition that runs already, see registry.load_stored): the schema only, without the
    whole-workflow checks a newer release may have made stricter."""
    evaluator = evaluator or Evaluator()
    try:
        spec, positions = parse_workflow(text, source, default_name)
    except WorkflowInvalid as exc:
        partial = exc.partial
        if partial is None:
            raise
        graph = build_graph(partial.spec, partial.indexes)
        more = check(graph, partial.positions, evaluator, action_exists, partial)
        raise WorkflowInvalid(source, exc.problems + more) from None
    graph = build_graph(spec)
    problems = check(graph, positions, evaluator, action_exists) if strict else []
    if problems:
        raise WorkflowInvalid(source, problems)
    return Workflow(spec, graph, text, source)


def check(graph: WorkflowGraph, positions: Positions, evaluator: Evaluator,
          action_exists: Callable[[str], bool] | None = None, partial: PartialWorkflow | None = None) -> list[Problem]:
    """Every whole-workflow problem. For a file that failed the schema (`partial`), the tasks are
    checked without their invalid keys, and the checks that need the whole graph (reachability,
    join inbound counts) run only when no task lost a transition."""
    spec = graph.spec
    problems: list[Problem] = []
    at = positions.problem
    indexes = partial.indexes if partial is not None else list(range(len(spec.tasks)))
    dropped = partial.dropped if partial is not None else {}
    unreadable = partial.unreadable if partial is not None else set()
    complete = partial is None or partial.complete
    seen: dict[str, int] = {}
    for i, task in zip(indexes, spec.tasks):
        if task.name in seen:
            problems.append(at(("tasks", i, "name"), f"duplicate task name '{task.name}' (first at tasks[{seen[task.name]}])"))
        else:
            seen[task.name] = i
        if task.name in RESERVED_NAMES:
            problems.append(at(("tasks", i, "name"), f"task name '{task.name}' is reserved for an engine command"))
        if "action" not in dropped.get(i, ()):
            problems += check_action(task.name, task.action, task.input, ("tasks", i), positions,
                                     action_exists, lambda value: bool(evaluator.templates_in(value)))

    for i, task in zip(indexes, spec.tasks):  # every task, duplicates included (graph.nodes keeps one)
        for tr in transitions_of(task, i):
            for target in tr.do:
                if target not in seen and target not in ENGINE_COMMANDS and target not in unreadable:
                    problems.append(at(tr.path, f"task '{task.name}': transition to unknown task '{target}'"))

    if complete:
        for node in graph.nodes.values():
            join = node.spec.join
            base = ("tasks", node.position, "join")
            if join is not None and len(node.inbound) < 2:
                problems.append(at(base, f"task '{node.name}': join needs at least two inbound tasks, it has {len(node.inbound)}"))
            elif isinstance(join, int) and join > len(node.inbound):
                problems.append(at(base, f"task '{node.name}': join {join} exceeds its {len(node.inbound)} inbound tasks"))
        if not graph.entry:
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


def check_action(task: str, action: str, task_input: Any, path: tuple[Any, ...], positions: Positions,
                 action_exists: Callable[[str], bool] | None, templated: Callable[[Any], bool]) -> list[Problem]:
    """The action checks both formats share: an action no worker has (with `action_exists`), and a
    `core.ask` schema written in the file (no templates) that is not a valid JSON Schema. `path`
    is the task's; `templated(value)` says whether a value holds expressions."""
    problems: list[Problem] = []
    if action_exists is not None and not action_exists(action):
        problems.append(positions.problem(path + ("action",), f"task '{task}': unknown action '{action}'"))
    schema = task_input.get("schema") if action == ASK_ACTION and isinstance(task_input, dict) else None
    if schema is not None and not templated(schema):
        reason = schema_problem(standard_schema(schema)) if isinstance(schema, dict) else "it must be a mapping"
        if reason:
            place = path + ("input", "schema") if positions.marks.get(path + ("input",)) else path + ("action",)
            problems.append(positions.problem(place, f"task '{task}': core.ask schema is not a valid JSON Schema: "
                                                     f"{reason}"))
    return problems


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
