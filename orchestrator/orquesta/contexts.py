"""Context layers' algebra: how published values merge into a context, and when two layers can
be replaced by one (the state folds layers with it, so a chain of publishing tasks stays small)."""

from __future__ import annotations

import copy
from typing import Any


def merge(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    """Deep merge `right` into a copy of `left`: nested mappings merge, other values replace."""
    out = dict(left)
    for key, value in right.items():
        if key in out and isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class Uncomposable(Exception):
    """Two layers that no single layer can replace (see compose)."""


def compose(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    """One layer that merges into any context exactly as `left` then `right` do.

    Nested mappings compose; other values replace. A mapping in `right` over a non-mapping in
    `left` cannot be composed (applied in turn, the non-mapping would first replace whatever
    the context holds, so the mapping must not merge into it) and raises Uncomposable. Neither
    argument is modified; unchanged values are shared, not copied."""
    out = dict(left)
    for key, value in right.items():
        if key in out and isinstance(value, dict):
            old = out[key]
            if not isinstance(old, dict):
                raise Uncomposable(key)
            out[key] = compose(old, value)
        else:
            out[key] = value
    return out
