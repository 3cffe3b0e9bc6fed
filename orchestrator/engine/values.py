"""Values a run can keep: JSON that both stores (PostgreSQL's jsonb, SQLite's JSON text) hold
exactly as given. Used where values enter from outside (run parameters, answers to core.ask) to
refuse, before anything is written, what a store would reject or change."""

from __future__ import annotations

import json
import math
from typing import Any

MAX_INT_BITS = 14_000   # ~4,200 digits: below Python's int<->str limit (4,300), so JSON can carry it
MAX_DEPTH = 128         # json.dumps and PostgreSQL's JSON parser recurse once per level
MAX_PROBLEMS = 10       # a value with thousands of bad strings is told about a few of them


def unstorable(value: Any, where: str) -> list[str]:
    """What keeps `value` from being stored exactly, each naming its place (`params.a[2]`);
    [] when nothing does. Walks the value without recursion."""
    problems: list[str] = []
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack and len(problems) < MAX_PROBLEMS:
        item, place, depth = stack.pop()
        if isinstance(item, str):
            why = _bad_text(item)
            if why:
                problems.append(f"{place}: {why}")
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if item.bit_length() > MAX_INT_BITS:
                problems.append(f"{place}: an integer of more than {MAX_INT_BITS} bits cannot be stored")
        elif isinstance(item, float):
            if not math.isfinite(item):
                problems.append(f"{place}: {item} is not a JSON number (NaN and infinities cannot be stored)")
        elif isinstance(item, (dict, list, tuple)):
            if depth >= MAX_DEPTH:
                problems.append(f"{place}: nests deeper than {MAX_DEPTH} levels")
                continue
            if isinstance(item, dict):
                for key, child in reversed(list(item.items())):
                    if not isinstance(key, str):
                        problems.append(f"{place}: the key {key!r} is not a string (JSON keys are strings)")
                        continue
                    why = _bad_text(key)
                    if why:
                        problems.append(f"{place}: a key {why}")
                        continue
                    stack.append((child, f"{place}.{key}" if key.isidentifier() else f"{place}[{key!r}]", depth + 1))
            else:
                stack.extend((child, f"{place}[{i}]", depth + 1) for i, child in reversed(list(enumerate(item))))
        else:
            problems.append(f"{place}: a {type(item).__name__} is not a JSON value")
    return problems


def json_size(value: Any) -> int:
    """The size of a (storable) value as the limits count it: its JSON text, ASCII-escaped."""
    return len(json.dumps(value, default=str))


def _bad_text(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (U+0000), which PostgreSQL cannot store"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone surrogate (U+{ord(text[exc.start]):04X}), which is not valid Unicode"
    return None
