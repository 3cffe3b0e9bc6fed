"""Which operator requests a run's status allows, for both formats: the supervisor applies this
under the run's lock before a conductor sees the request, so a request the status forbids is
refused (OperationRefused) instead of being dropped like a stale event."""

from __future__ import annotations

from .errors import OperationRefused
from .control import CONTROL
from .statuses import CANCELED, FAILED, PAUSED, PAUSING, RESUMING, RUNNING, SUCCEEDED

ACTIVE = (RUNNING, RESUMING, PAUSING, PAUSED)
FINISHED = (SUCCEEDED, FAILED, CANCELED)

# pause, resume and cancel: what the run control's status machine takes (one table).
ALLOWED: dict[str, tuple[str, ...]] = {
    **{op: tuple(status for status, moves in CONTROL.items() if op in moves) for op in ("pause", "resume", "cancel")},
    "respond": ACTIVE,
    "rerun": FINISHED,  # the format decides further (ours reruns only failed runs)
}


def check_operation(operation: str, run_id: str, status: str, started: bool = True) -> None:
    """Raise OperationRefused when a run in `status` cannot take `operation`. `started` is False
    for a run whose start was rejected (it has no workflow to go on with)."""
    if operation not in ALLOWED:
        raise ValueError(f"unknown operation {operation!r}")
    if status not in ALLOWED[operation]:
        raise OperationRefused(f"cannot {operation} run {run_id}: it is {status}{_hint(operation, status)}", status)
    if not started:
        raise OperationRefused(f"cannot {operation} run {run_id}: its start was rejected, so there is "
                               f"nothing to go on with (start it again)", status)


def nothing_changed(operation: str, run_id: str, status: str) -> OperationRefused:
    """The refusal for a request the status allowed but the run's state made a no-op."""
    return OperationRefused(f"cannot {operation} run {run_id}: nothing to {operation} while it is {status}", status)


def _hint(operation: str, status: str) -> str:
    if operation == "rerun":
        return " (only a finished run can be rerun)"
    if operation == "resume" and status == "running":
        return " (only a paused run can be resumed)"
    if status in FINISHED:
        return " (it has finished)"
    return ""
