"""What happens to a run (events, fed to the conductor) and what must be done (commands it returns).

Both are small immutable records, so what crosses the boundary between the pure engine and the
shell is obvious and easy to serialise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


# Events ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskEnded:
    """An action attempt (or one with_items item) reported its outcome."""

    seq: int
    attempt: int
    status: str
    result: Any = None
    error: str | None = None
    item: int | None = None


# Commands ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExecutionStarted:
    seq: int
    task: str
    attempt: int
    items: int | None = None


@dataclass(frozen=True)
class ExecutionEnded:
    seq: int
    task: str
    attempt: int
    status: str
    result: Any = None
    error: str | None = None


@dataclass(frozen=True)
class ItemEnded:
    """One item of a with_items execution finished (its last attempt)."""

    seq: int
    item: int
    status: str


@dataclass(frozen=True)
class Dispatch:
    """Send one action call. `barrier` groups calls that go out together into one fan-in
    (a chord whose callback is the supervisor); None means a single signature."""

    seq: int
    task: str
    action: str
    input: dict[str, Any]
    attempt: int = 1
    item: int | None = None
    queue: str | None = None
    timeout: float | None = None
    countdown: float | None = None
    barrier: str | None = None


@dataclass(frozen=True)
class VariablesSet:
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunFinished:
    status: str
    output: Any = None
    error: str | None = None


Command = ExecutionStarted | ExecutionEnded | ItemEnded | Dispatch | VariablesSet | RunFinished
