"""Every run and task status name, for both formats, in one place.

The status machines that move between them are tables of their own: engine/machine.py for the
native format, orquesta/machine.py for Orquesta's, and the operators' part both share in
core/control.py (CONTROL).
"""

from __future__ import annotations

# Run statuses (both formats; `resuming` is Orquesta's between a resume or rerun and the next
# task handed out).
REQUESTED = "requested"
RUNNING = "running"
RESUMING = "resuming"
PAUSING = "pausing"
PAUSED = "paused"
CANCELING = "canceling"
CANCELED = "canceled"
SUCCEEDED = "succeeded"
FAILED = "failed"

# Task statuses besides the ones above. Native: skipped, timed_out. Orquesta: scheduled, delayed,
# retrying, timeout, abandoned, and "null" for a task that never ran on a route.
SKIPPED = "skipped"
TIMED_OUT = "timed_out"
SCHEDULED = "scheduled"
DELAYED = "delayed"
RETRYING = "retrying"
TIMEOUT = "timeout"
ABANDONED = "abandoned"
UNSET = "null"

RUN_TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELED})
TASK_FAILURES = frozenset({FAILED, TIMED_OUT})          # native: the task did not succeed
ABENDED = frozenset({FAILED, TIMEOUT, ABANDONED})       # Orquesta's failures
COMPLETED = frozenset({SUCCEEDED, FAILED, TIMEOUT, ABANDONED, CANCELED})
ACTIVE = frozenset({REQUESTED, SCHEDULED, DELAYED, RUNNING, RESUMING, PAUSING, CANCELING})
