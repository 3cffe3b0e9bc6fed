"""What a conductor is given besides the workflow: facts about the run (the core has no clock or
ids of its own); and what the shell stores of a run's state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

DEFAULT_EXECUTION_LIMIT = 10_000


@dataclass(frozen=True)
class RunInfo:
    """Facts about the run that the shell supplies."""

    run_id: str
    params: dict[str, Any]
    started_at: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    execution_limit: int = DEFAULT_EXECUTION_LIMIT
    # Seconds past an attempt's `timeout` before the run control itself ends it as timed_out: the
    # worker's own time limit normally reports first; this catches vanished workers and pools
    # without time limits (the embedded runtime sets 0).
    timeout_grace: float = 15.0
    # Seconds after which a call without `timeout` that has not reported is checked; a call the
    # shell finds no trace of is dispatched again. None: no lease (rehearsals).
    lease: float | None = None
    max_input_bytes: int | None = None


class StateData(Protocol):
    """A run's state as the shell stores it, whatever its format: plain JSON data (without the
    variables, which are rows of their own)."""

    vars: dict[str, Any]

    def to_dict(self) -> dict[str, Any]: ...
