"""What every `orchestrator` command module shares: the consoles, the usage error and `-p`
parsing (cli.py maps Usage to one line and exit code 2)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

out = Console(soft_wrap=True)  # lines are never folded at the width (80 when piped): scripts read them
err = Console(stderr=True, soft_wrap=True)


class Usage(Exception):
    """Bad input from the user: printed as is, exit code 2."""


def parse_params(pairs: list[str], params_json: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if params_json:
        try:
            loaded = json.loads(params_json)
        except json.JSONDecodeError as exc:
            raise Usage(f"--params-json: not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise Usage("--params-json: must be a JSON object")
        params.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise Usage(f"-p {pair!r}: expected key=value")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params
