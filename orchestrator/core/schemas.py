"""JSON Schemas written in workflows (parameter `items`, `core.ask` schemas): whether one can be
used, and StackStorm's dialect read as standard JSON Schema. Pure."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator


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


def standard_schema(schema: Any) -> Any:
    """StackStorm's schema dialect in standard JSON Schema: StackStorm (draft 4 with draft 3's
    `required`) lets a property say `required: true`; that becomes its name in the parent's
    `required` list. Anything else is returned as it is."""
    if isinstance(schema, list):
        return [standard_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    properties = out.get("properties")
    if isinstance(properties, dict):
        required = list(out["required"]) if isinstance(out.get("required"), list) else []
        flagged = False
        kept = {}
        for name, prop in properties.items():
            if isinstance(prop, dict) and isinstance(prop.get("required"), bool):
                flagged = True
                if prop["required"] and name not in required:
                    required.append(name)
                prop = {key: value for key, value in prop.items() if key != "required"}
            kept[name] = prop
        out["properties"] = kept
        if flagged:
            out["required"] = required
    return {key: standard_schema(value) for key, value in out.items()}


def _local_refs_only(value: Any) -> bool:
    if isinstance(value, dict):
        ref = value.get("$ref")
        if ref is not None and not (isinstance(ref, str) and ref.startswith("#")):
            return False
        return all(_local_refs_only(v) for v in value.values())
    if isinstance(value, list):
        return all(_local_refs_only(v) for v in value)
    return True
