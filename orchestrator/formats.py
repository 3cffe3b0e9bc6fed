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

from .core.items import ItemStore
from .core.run import RunInfo
from .engine.conductor import Conductor
from .engine.loader import parse_bounded
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
    return is_orquesta(parse_bounded(text))


def load_any(text: str, source: str = "<workflow>", default_name: str | None = None,
             action_exists: Callable[[str], bool] | None = None, strict: bool = True) -> AnyWorkflow:
    """Parse and validate either format; raises WorkflowInvalid listing every problem. Not
    `strict`: a stored definition, without the static checks (see registry.load_stored)."""
    if detect_orquesta(text):
        return load(text, source, default_name, action_exists=action_exists, strict=strict)
    return load_workflow(text, source, default_name=default_name, action_exists=action_exists, strict=strict)


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
    """{"kind": "graph" | "orquesta", "nodes", "edges", "entry"}: the format's graph view
    (engine/graphview.py, one description for both formats) as plain data for the web view."""
    kind = "orquesta" if isinstance(workflow, OrquestaWorkflow) else "graph"
    return {"kind": kind, **workflow.graph.view(workflow.name).to_dict()}
