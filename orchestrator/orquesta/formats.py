"""Choosing between our workflow format and Orquesta's, for the shell (pure helpers).

- ``load_any(text, source, default_name)``: an OrquestaWorkflow for Orquesta's native format
  (``version: 1.0`` and ``tasks`` as a mapping), else the engine's Workflow.
- ``resolve_params(workflow, params)``: our parameter schema check, or Orquesta's input names.
- ``conductor_for(workflow, run, items)``: OrquestaConductor or the engine's Conductor; both
  have ``start()`` and ``apply(state, event)``; the Orquesta one also ``apply_all`` and ``rerun``.
- ``state_from_dict(data, variables)``: the stored state back as OrquestaState (``to_dict()``
  marks it with ``"kind": "orquesta"``) or the engine's WorkflowState.
"""

from __future__ import annotations

from typing import Any, Callable

from ..engine.conductor import Conductor, RunInfo
from ..engine.loader import parse_bounded
from ..engine.params import resolve_parameters
from ..engine.state import ItemStore, WorkflowState
from ..engine.validate import Workflow, load_workflow
from .conductor import OrquestaConductor
from .state import OrquestaState
from .workflow import OrquestaWorkflow, is_orquesta, load


def detect_orquesta(text: str) -> bool:
    """True when the text is Orquesta's native format (unparseable text is left to the loaders)."""
    return is_orquesta(parse_bounded(text))


def load_any(text: str, source: str = "<workflow>", default_name: str | None = None,
             action_exists: Callable[[str], bool] | None = None) -> Workflow | OrquestaWorkflow:
    """Parse and validate either format; raises WorkflowInvalid listing every problem."""
    if detect_orquesta(text):
        return load(text, source, default_name)
    return load_workflow(text, source, default_name=default_name, action_exists=action_exists)


def resolve_params(workflow: Workflow | OrquestaWorkflow, params: dict[str, Any] | None) -> dict[str, Any]:
    if isinstance(workflow, OrquestaWorkflow):
        return workflow.resolve_inputs(params)
    return resolve_parameters(workflow.spec, params, workflow.name)


def conductor_for(workflow: Workflow | OrquestaWorkflow, run: RunInfo,
                  items: ItemStore | None = None) -> Conductor | OrquestaConductor:
    if isinstance(workflow, OrquestaWorkflow):
        return OrquestaConductor(workflow, run, items=items)
    return Conductor(workflow, run, items=items)


def state_from_dict(data: dict[str, Any] | None, variables: dict[str, Any] | None = None
                    ) -> WorkflowState | OrquestaState:
    data = data or {}
    if data.get("kind") == "orquesta":
        return OrquestaState.from_dict(data, variables)
    return WorkflowState.from_dict(data, variables)
