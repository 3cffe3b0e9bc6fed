"""Loading an Orquesta native workflow: text -> OrquestaWorkflow (spec + composed graph)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..core.errors import ParametersInvalid, Problem, WorkflowInvalid
from ..engine.loader import Positions, load_yaml
from ..engine.validate import check_action
from .expressions import Expressions
from .graph import OrquestaGraph, check_graph
from .spec import OrquestaSpec, collect_spec, is_native
from .variables import check_variables, texts

_EXPRESSIONS = Expressions()


@dataclass(frozen=True)
class OrquestaWorkflow:
    """A validated Orquesta workflow: spec, graph, source text and where it came from."""

    spec: OrquestaSpec
    graph: OrquestaGraph
    text: str
    source: str
    default_name: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name or self.default_name or _stem(self.source)

    @property
    def actions(self) -> set[str]:
        """The actions the file names (not those chosen by an expression at run time)."""
        return {t.action for t in self.spec.tasks.values()
                if t.action is not None and not Expressions.has_expressions(t.action)}

    def resolve_inputs(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """Run inputs checked against the declared `input` names (Orquesta renders defaults
        itself, at start); raises ParametersInvalid naming every unknown input."""
        params = dict(params or {})
        declared = {i.name for i in self.spec.input}
        unknown = sorted(set(params) - declared)
        if unknown:
            allowed = ", ".join(sorted(declared)) or "none"
            raise ParametersInvalid(self.name, [f"unknown input '{n}' (declared: {allowed})" for n in unknown])
        return params


def is_orquesta(data: Any) -> bool:
    """True for Orquesta's native format: `version` 1.0 and `tasks` as a mapping."""
    return is_native(data)


def load(text: str, source: str = "<workflow>", default_name: str | None = None,
         expressions: Expressions | None = None,
         action_exists: Callable[[str], bool] | None = None, strict: bool = True) -> OrquestaWorkflow:
    """Parse and validate; raises WorkflowInvalid listing every problem with its place. With
    `action_exists`, an action no worker has is one of them. Not `strict` (a stored definition
    that runs already, see registry.load_stored): only what the conductor needs, the spec and the
    graph; the static inspection (variables, actions) that a newer release may have made stricter
    is left out."""
    data, positions = load_yaml(text, source)
    if not is_native(data):
        raise WorkflowInvalid(source, [Problem("not an Orquesta workflow: needs version 1.0 and tasks as a mapping")])
    spec, problems = collect_spec(data, positions, expressions or _EXPRESSIONS)
    if spec is None:
        raise WorkflowInvalid(source, problems)
    graph = OrquestaGraph(spec)
    problems += check_graph(graph, positions)
    if strict:
        problems += check_variables(spec, graph, positions)
        problems += _check_actions(spec, positions, action_exists)
    if problems:
        raise WorkflowInvalid(source, problems)
    return OrquestaWorkflow(spec, graph, text, source, default_name)


def _check_actions(spec: OrquestaSpec, positions: Positions,
                   action_exists: Callable[[str], bool] | None) -> list[Problem]:
    problems: list[Problem] = []
    for name, task in spec.tasks.items():
        if task.action is None or Expressions.has_expressions(task.action):
            continue  # a pass-through task, or an action chosen at run time
        problems += check_action(name, task.action, task.input, ("tasks", name), positions, action_exists,
                                 lambda value: any(Expressions.has_expressions(t) for t in texts(value)))
    return problems


def _stem(source: str) -> str:
    name = source.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".workflow.yaml", ".workflow.yml", ".yaml", ".yml"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name or "workflow"
