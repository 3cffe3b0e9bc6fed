"""The native format's run status machine, as a table (after Orquesta's ``machines.py``).

``RUN[status][event]`` is the run's next status; a missing entry is an illegal change, refused
by `next_status`. The operators' events (pause, resume, cancel, quiet, drained) are the run
control's table (core/control.py CONTROL), shared with the Orquesta format; the rest are this
format's own: a run finishes (succeeded or failed) once nothing is in flight and nothing was
held back, even while pausing; the workflow timeout ends a paused run too; a failed run can be
rerun. A task execution's status is what its call reported (succeeded, failed, timed_out),
skipped (its `when` was false) or canceled; a retry is a new attempt of the same execution.
"""

from __future__ import annotations

from ..core.control import CONTROL
from ..core.statuses import CANCELED, CANCELING, FAILED, PAUSED, PAUSING, RUNNING, SUCCEEDED

RUN: dict[str, dict[str, str]] = {
    RUNNING: {**CONTROL[RUNNING], "succeeded": SUCCEEDED, "failed": FAILED, "timed_out": RUNNING},
    PAUSING: {**CONTROL[PAUSING], "succeeded": SUCCEEDED, "failed": FAILED, "timed_out": RUNNING},
    PAUSED: {**CONTROL[PAUSED], "timed_out": RUNNING},  # a paused run that times out still ends (failed)
    CANCELING: dict(CONTROL[CANCELING]),
    SUCCEEDED: {},
    FAILED: {"rerun": RUNNING},
    CANCELED: {},
}


def next_status(current: str, event: str) -> str:
    """The run status after `event`; raises ValueError for a change the machine does not allow."""
    try:
        return RUN[current][event]
    except KeyError:
        raise ValueError(f"a {current} run cannot be {event}") from None
