"""What happens to a run (events, fed to a conductor) and what must be done (commands it returns).

Both are small immutable records, shared by both workflow formats, so what crosses the boundary
between the pure core and the shell is obvious and easy to serialise.
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


@dataclass(frozen=True)
class TimerFired:
    """A timer the conductor set (SetTimer) came due: a delayed dispatch, an attempt's deadline or
    the workflow's timeout."""

    key: str
    # For an attempt's deadline or lease: whether the shell found the call running (True), found
    # no trace of it (False: its message was lost, so it is dispatched again), or cannot tell.
    running: bool | None = None


@dataclass(frozen=True)
class Control:
    """An operator's request: pause, resume or cancel the run."""

    action: str


@dataclass(frozen=True)
class Rerun:
    """Run a failed workflow again from its failed tasks (or the named ones), keeping the rest."""

    tasks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Responded:
    """Someone answered a `core.ask` task."""

    task: str
    data: Any = None


@dataclass(frozen=True)
class CallPaused:
    """A sub-workflow call's child run is paused: for pausing, it no longer counts as running."""

    seq: int
    attempt: int
    item: int | None = None


@dataclass(frozen=True)
class CallLost:
    """The shell found that a call in flight is held by no live worker and its message is gone
    (a broker that lost its queues, a host that died): send it again. Stale (the call is no longer
    in flight, or is held back by a pause) changes nothing; while canceling it ends the call."""

    seq: int
    attempt: int
    item: int | None = None
    reason: str = "its message was lost"


Event = TaskEnded | TimerFired | Control | Rerun | Responded | CallPaused | CallLost


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
class ItemsCreated:
    """A with_items execution's rendered list (after batching): one stored value per call."""

    seq: int
    values: list[Any]


@dataclass(frozen=True)
class ItemEnded:
    """One item of a with_items execution finished (its last attempt) with this result or error."""

    seq: int
    item: int
    status: str
    result: Any = None


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
    barrier: str | None = None


@dataclass(frozen=True)
class SetTimer:
    """Deliver TimerFired(key) after `seconds`; durable (the shell stores it with the step)."""

    key: str
    seconds: float


@dataclass(frozen=True)
class CancelTimer:
    key: str


@dataclass(frozen=True)
class Revoke:
    """Stop an action call that is no longer wanted (best effort: its late report is ignored).
    With `terminate`, a call already running is interrupted too (cancel), not only one not started."""

    seq: int
    attempt: int
    item: int | None = None
    terminate: bool = False


@dataclass(frozen=True)
class VariablesSet:
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusChanged:
    """The run's status changed without finishing (pausing, paused, canceling, running again)."""

    status: str


@dataclass(frozen=True)
class StateUpdated:
    """Only the run's state changed (a paused call noted, a due launch held back): write it.
    Keeps the rule that an accepted event yields at least one command."""


@dataclass(frozen=True)
class RunFinished:
    status: str
    output: Any = None
    error: str | None = None


Command = (ExecutionStarted | ExecutionEnded | ItemsCreated | ItemEnded | Dispatch | SetTimer | CancelTimer | Revoke | VariablesSet
           | StatusChanged | StateUpdated | RunFinished)


_COMMAND_TYPES = {cls.__name__: cls for cls in (ExecutionStarted, ExecutionEnded, ItemsCreated, ItemEnded, Dispatch,
                                                 SetTimer, CancelTimer, Revoke, VariablesSet, StatusChanged,
                                                 StateUpdated, RunFinished)}


def to_data(command: Command) -> dict[str, Any]:
    """A command as plain JSON data (for the shell's outbox)."""
    from dataclasses import asdict

    return {"type": type(command).__name__, **asdict(command)}


def from_data(data: dict[str, Any]) -> Command:
    fields = dict(data)
    return _COMMAND_TYPES[fields.pop("type")](**fields)


__all__ = ["TaskEnded", "TimerFired", "Control", "Rerun", "Responded", "CallPaused", "CallLost", "Event",
           "ExecutionStarted", "ExecutionEnded", "ItemsCreated", "ItemEnded", "Dispatch", "SetTimer", "CancelTimer",
           "Revoke", "VariablesSet", "StatusChanged", "StateUpdated", "RunFinished", "Command", "to_data", "from_data"]
