"""Orquesta's inline parameters: ``core.echo message="hi" count=2`` and ``publish: a=<% x %> b=1``.

Each ``key=value`` pair's value is one of: ``[...]``, ``"..."``, ``'...'``, a number, ``true``/
``false``, ``null``, a YAQL ``<% … %>`` or a Jinja ``{{ … }}`` expression. Unquoted values are read
as JSON when they parse; quoted ones stay strings (a quoted ``{…}`` is read as JSON). Unlike
Orquesta, text that is not such a pair is reported instead of silently dropped.
"""

from __future__ import annotations

import json
import re
from typing import Any

_VALUE = "|".join([
    r"\[.*\]\s*",
    r"\"[^\"]*\"\s*",
    r"'[^']*'\s*",
    r"[-]?\d*\.\d+",
    r"[-]?\d+",
    r"(?i:true)",
    r"(?i:false)",
    r"null",
    r"<%.*?%>",
    r"{{.*?}}",
])
PAIR = re.compile(r"([\w]+)=(%s)" % _VALUE)
_QUOTED = re.compile(r"\"[^\"]*\"\s*|'[^']*'\s*")


class InlineError(ValueError):
    """Text in an inline parameter string that is not a key=value pair."""


def _value(raw: str) -> Any:
    value = raw.strip()
    quoted = bool(_QUOTED.findall(value))
    value = re.sub('^"', "", value)
    value = re.sub('"$', "", value)
    value = re.sub("^'", "", value)
    value = re.sub("'$", "", value)
    quoted_string = False
    if value != "":
        quoted_string = quoted and not (value[0] == "{" and value[-1] == "}")
    if value.lower() in ("true", "false"):
        value = value.lower()
    if not quoted_string:
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def parse_pairs(text: str) -> list[tuple[str, Any]]:
    """The key=value pairs of an inline string, in order; raises InlineError on leftovers."""
    pairs: list[tuple[str, Any]] = []
    leftover: list[str] = []
    position = 0
    for match in PAIR.finditer(text):
        gap = text[position:match.start()].strip()
        if gap:
            leftover.append(gap)
        pairs.append((match.group(1), _value(match.group(2))))
        position = match.end()
    tail = text[position:].strip()
    if tail:
        leftover.append(tail)
    if leftover:
        raise InlineError(f"cannot read {' '.join(leftover)!r} as key=value (quote string values)")
    return pairs


def split_action(text: str) -> tuple[str, dict[str, Any] | None]:
    """``"core.echo message=hi"`` -> ``("core.echo", {...})``; no parameters -> (text, None)."""
    text = text.strip()
    name, _, rest = text.partition(" ")
    if not rest.strip():
        return name, None
    return name, dict(parse_pairs(rest))
