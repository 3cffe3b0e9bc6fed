"""Keeping secrets out of what people see: stored results, run outputs, errors, summaries, logs.

Secrets are the values under `secrets` in the deployment configuration (ORCHESTRATOR_CONFIG /
ORCHESTRATOR_CONFIG_FILE), used in templates as `{{ config.secrets.name }}`. Workflows still get
the real values (variables keep them, actions receive them); every text that is stored for
display or logged has each secret value replaced by `***`.
"""

from __future__ import annotations

import json
from typing import Any

MASK = "***"


class Redactor:
    def __init__(self, config: dict[str, Any]):
        found: list[str] = []
        _collect(config.get("secrets") if isinstance(config, dict) else None, found)
        # Longest first, so a secret that contains another is masked whole; short values would
        # mask ordinary text, so they are not treated as secrets.
        self.values = sorted({v for v in found if len(v) >= 4}, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self.values)

    def text(self, value: str | None) -> str | None:
        if value is None or not self.values:
            return value
        for secret in self.values:
            value = value.replace(secret, MASK)
        return value

    def data(self, value: Any) -> Any:
        """Any JSON value with every secret masked (strings inside it included)."""
        if not self.mentions(value):
            return value
        return _mask(value, self)

    def mentions(self, value: Any) -> bool:
        """Whether any secret appears in the JSON value."""
        return bool(self.values) and self.mentioned_in(json.dumps(value))

    def mentioned_in(self, text: str) -> bool:
        """Whether any secret appears in `text`, a JSON text (as itself or JSON-escaped)."""
        return any(secret in text or json.dumps(secret)[1:-1] in text for secret in self.values)


def _mask(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor.text(value)
    if isinstance(value, dict):
        return {redactor.text(k) if isinstance(k, str) else k: _mask(v, redactor) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, redactor) for v in value]
    return value


def _collect(value: Any, found: list[str]) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _collect(item, found)
    elif isinstance(value, list):
        for item in value:
            _collect(item, found)
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        found.append(str(value))
