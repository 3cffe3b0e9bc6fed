"""Which values can be stored: the one check every boundary uses (action results, run parameters,
rendered inputs, published variables, run outputs; both workflow formats).

Values are kept as JSON in PostgreSQL (jsonb), in Celery messages and in the result backend.
Some Python values have no faithful JSON form or are refused by PostgreSQL: NaN and the
infinities (no JSON number), the NUL character (jsonb and text refuse it), lone UTF-16 surrogates
(not UTF-8), integers longer than Python will turn into text (4,300 digits by default), and
anything that is not data at all. Such a value fails the task (or the run, for parameters and
outputs) at once with an error that names where it sits, instead of failing every retry of the
database write.

Pure: no I/O. The fast path is one strict `json.dumps`, which the callers need anyway for the
size; the value is walked only when that finds something.
"""

from __future__ import annotations

import json
import math
from typing import Any

_LIMIT = "an integer too long to store"


def encode(value: Any) -> tuple[str | None, str | None]:
    """(the JSON text of `value`, None) when it can be stored, else (None, why not: the problem
    and where, e.g. "NaN at $.stats.mean")."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError) as exc:
        return None, _locate(value, "$") or f"not storable as JSON ({exc})"
    if "\\u0000" in text:
        found = _locate(value, "$")
        if found:
            return None, found
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None, _locate(value, "$") or "a lone surrogate character"
    return text, None


def problem(value: Any) -> str | None:
    """Why `value` cannot be stored, or None."""
    return encode(value)[1]


def _locate(value: Any, path: str, depth: int = 0) -> str | None:
    if depth > 200:
        return f"nesting deeper than 200 levels at {path}"
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} (JSON has no NaN or Infinity) at {path}"
    if isinstance(value, int):
        try:
            str(value)
        except ValueError:
            return f"{_LIMIT} ({value.bit_length()} bits) at {path}"
        return None
    if isinstance(value, str):
        return _text_problem(value, path)
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                found = _text_problem(key, f"{path} (a key)")
                if found:
                    return found
            elif not isinstance(key, (int, float, bool)) and key is not None:
                return f"a {type(key).__name__} key at {path}"
            found = _locate(item, f"{path}.{key}", depth + 1)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _locate(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
        return None
    return f"a {type(value).__name__}, which is not JSON data, at {path}"


def _text_problem(text: str, path: str) -> str | None:
    if "\x00" in text:
        return f"a NUL character at {path}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"a lone surrogate character (U+{ord(text[exc.start]):04X}) at {path}"
    return None
