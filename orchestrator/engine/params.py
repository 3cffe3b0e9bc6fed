"""Validate run parameters against a workflow's flat parameter schema (via JSON Schema)."""

from __future__ import annotations

import copy
from typing import Any, Mapping

from jsonschema import Draft202012Validator

from ..core.errors import ParametersInvalid
from .spec import WorkflowSpec


def resolve_parameters(spec: WorkflowSpec, given: Mapping[str, Any] | None, workflow: str | None = None) -> dict[str, Any]:
    """Given values plus defaults, checked; raises ParametersInvalid listing every problem."""
    given = dict(given or {})
    problems: list[str] = []
    resolved: dict[str, Any] = {}
    for name in given:
        if name not in spec.parameters:
            known = ", ".join(sorted(spec.parameters)) or "none"
            problems.append(f"unknown parameter '{name}' (known: {known})")
    for name, param in spec.parameters.items():
        if name in given:
            value = given[name]
        elif param.default is not None or "default" in param.model_fields_set:
            value = copy.deepcopy(param.default)
        elif param.required:
            problems.append(f"missing required parameter '{name}'")
            continue
        else:
            continue
        try:
            for error in Draft202012Validator(param.json_schema()).iter_errors(value):
                where = "".join(f"[{p}]" for p in error.absolute_path)
                problems.append(f"parameter '{name}{where}': {error.message}")
        except Exception as exc:  # an unusable schema (validation normally refuses it first)
            problems.append(f"parameter '{name}': its schema cannot be checked: {str(exc).splitlines()[0]}")
        resolved[name] = value
    if problems:
        raise ParametersInvalid(workflow or spec.name or "workflow", problems)
    return resolved
