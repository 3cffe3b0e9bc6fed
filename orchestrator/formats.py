"""The switch between the two workflow formats, for the shell: ours (orchestrator/engine/) and
StackStorm Orquesta's native one (orchestrator/orquesta/). Nothing above this module (store,
supervisor, HTTP, CLI) needs to know which format a workflow or a stored state is in.

- ``detect_orquesta(text)`` / ``load_any(text, source, default_name)``: an OrquestaWorkflow for
  Orquesta's native format (``version: 1.0`` and ``tasks`` as a mapping), else a Workflow.
- ``resolve_params(workflow, params)``: our parameter schema check, or Orquesta's input names.
- ``conductor_for(workflow, run, items)``: the format's conductor; both have ``start()``,
  ``apply(state, event)``, ``apply_all(state, events)`` and ``calls(state)``.
- ``state_from_dict(data, variables)``: a stored state back as the format's state
  (Orquesta's ``to_dict()`` marks it ``"kind": "orquesta"``).
- ``graph_view(workflow)``: the task graph as plain data (for the web view).
"""

from __future__ import annotations

from typing import Any, Callable, Union

import yaml

from .core.items import ItemStore
from .core.run import RunInfo
from .engine.conductor import Conductor
from .engine.params import resolve_parameters
from .engine.state import WorkflowState
from .engine.validate import Workflow, load_workflow
from .orquesta.conductor import OrquestaConductor
from .orquesta.shapes import load_state as load_orquesta_state
from .orquesta.state import OrquestaState
from .orquesta.workflow import OrquestaWorkflow, is_orquesta, load

AnyWorkflow = Union[Workflow, OrquestaWorkflow]
AnyConductor = Union[Conductor, OrquestaConductor]
AnyState = Union[WorkflowState, OrquestaState]


def detect_orquesta(text: str) -> bool:
    """True when the text is Orquesta's native format (unparseable text is left to the loaders)."""
    try:
        return is_orquesta(yaml.safe_load(text))
    except yaml.YAMLError:
        return False


def load_any(text: str, source: str = "<workflow>", default_name: str | None = None,
             action_exists: Callable[[str], bool] | None = None) -> AnyWorkflow:
    """Parse and validate either format; raises WorkflowInvalid listing every problem."""
    if detect_orquesta(text):
        return load(text, source, default_name)
    return load_workflow(text, source, default_name=default_name, action_exists=action_exists)


def resolve_params(workflow: AnyWorkflow, params: dict[str, Any] | None) -> dict[str, Any]:
    if isinstance(workflow, OrquestaWorkflow):
        return workflow.resolve_inputs(params)
    return resolve_parameters(workflow.spec, params, workflow.name)


def conductor_for(workflow: AnyWorkflow, run: RunInfo, items: ItemStore | None = None) -> AnyConductor:
    if isinstance(workflow, OrquestaWorkflow):
        return OrquestaConductor(workflow, run, items=items)
    return Conductor(workflow, run, items=items)


def state_from_dict(data: dict[str, Any] | None, variables: dict[str, Any] | None = None) -> AnyState:
    data = data or {}
    if data.get("kind") == "orquesta":
        return load_orquesta_state(data, variables)
    return WorkflowState.from_dict(data, variables)


# The task graph as data -----------------------------------------------------------------------

def graph_view(workflow: AnyWorkflow) -> dict[str, Any]:
    """{"kind": "graph" | "orquesta", "nodes", "edges", "entry"}: every task (with its action and
    join), every transition (with its condition as a label), and the engine commands (fail,
    noop, ...) that transitions name, as nodes of their own."""
    if isinstance(workflow, OrquestaWorkflow):
        graph = workflow.graph
        nodes = [{"name": name, "action": task.action, "join": _join(task.join), "command": False}
                 for name, task in workflow.spec.tasks.items()]
        edges = [{"source": e.source, "target": e.target, "label": _strip(e.when) or ""}
                 for edges in graph.outbound.values() for e in edges]
        return {"kind": "orquesta", "nodes": _with_commands(nodes, edges), "edges": edges, "entry": list(graph.start)}
    graph = workflow.graph
    nodes = [{"name": n.name, "action": n.spec.action, "join": _join(n.spec.join), "command": False}
             for n in graph.nodes.values()]
    edges = []
    for source, target, index in graph.edges:
        transition = graph.nodes[source].transitions[index]
        label = " & ".join(p for p in (transition.on, _strip(transition.when)) if p)
        edges.append({"source": source, "target": target, "label": label})
    return {"kind": "graph", "nodes": _with_commands(nodes, edges), "edges": edges, "entry": list(graph.entry)}


def _with_commands(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    known = {n["name"] for n in nodes}
    for edge in edges:
        if edge["target"] not in known:
            known.add(edge["target"])
            nodes.append({"name": edge["target"], "action": None, "join": None, "command": True})
    return nodes


def _join(value: Any) -> str | int | None:
    return value if value is None or isinstance(value, (str, int)) else str(value)


def _strip(when: Any) -> str | None:
    if not isinstance(when, str):
        return None
    for opening, closing in (("{{", "}}"), ("<%", "%>")):
        when = when.replace(opening, "").replace(closing, "")
    return when.strip()
