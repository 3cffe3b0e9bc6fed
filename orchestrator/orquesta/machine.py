"""The workflow and with-items status machines, as tables (after Orquesta's ``machines.py``).

A task event is named by what happened to the task and the workflow around it, e.g.
``succeeded_dormant_completed`` (the task succeeded, nothing else is active, nothing is left to
run) or ``failed_active`` (a failure nothing handles, while other tasks still run: fail fast).
``WORKFLOW[status][event]`` is the workflow's next status; a missing entry changes nothing.
(A with-items task's status from its items is ``items.progress``.)
"""

from __future__ import annotations

from ..core.statuses import ABENDED, CANCELED, CANCELING, FAILED, PAUSED, PAUSING, RESUMING, RUNNING, SUCCEEDED


def _settled(active: str) -> dict[str, str]:
    """Entries shared by running and resuming workflows."""
    table = {}
    for kind in ("succeeded", "remediated"):
        table.update({
            f"{kind}_active_incomplete": RUNNING,
            f"{kind}_active_completed": RUNNING,
            f"{kind}_active_canceled": CANCELING,
            f"{kind}_dormant_incomplete": RUNNING,
            f"{kind}_dormant_completed": SUCCEEDED,
            f"{kind}_dormant_canceled": CANCELED,
        })
    table.update({"failed_active": FAILED, "failed_dormant": FAILED,
                  "canceled_active": CANCELING, "canceled_dormant": CANCELED, "running": active})
    return table


def _halted(held: str) -> dict[str, str]:
    """Entries for a pausing or paused workflow: completions leave it `held` (the conductor turns
    pausing into paused once no call runs, which is when Orquesta's "dormant" events pause it);
    a failure nothing handles still fails it at once, and a canceled task cancels it. Orquesta's
    PAUSED table has no task events; ours fails on an unhandled failure rather than forget it."""
    table = {f"{kind}_{where}_{rest}": held for kind in ("succeeded", "remediated")
             for where in ("active", "dormant") for rest in ("incomplete", "completed", "canceled")}
    table.update({"failed_active": FAILED, "failed_dormant": FAILED,
                  "canceled_active": CANCELING, "canceled_dormant": CANCELED})
    return table


WORKFLOW: dict[str, dict[str, str]] = {
    RUNNING: _settled(RUNNING),
    RESUMING: _settled(RUNNING),
    PAUSING: _halted(PAUSING),
    PAUSED: _halted(PAUSED),
    CANCELING: {
        **{f"{kind}_active_{rest}": CANCELING for kind in ("succeeded", "remediated")
           for rest in ("incomplete", "completed", "canceled")},
        **{f"{kind}_dormant_{rest}": CANCELED for kind in ("succeeded", "remediated")
           for rest in ("incomplete", "completed", "canceled")},
        "failed_active": CANCELING, "failed_dormant": CANCELED,
        "canceled_active": CANCELING, "canceled_dormant": CANCELED,
    },
    SUCCEEDED: {},
    FAILED: {},
    CANCELED: {},
}


def task_event(status: str, remediated: bool, active: bool, canceled: bool, incomplete: bool) -> str:
    """The name of a task's completion event in its workflow's context."""
    if status in ABENDED:
        kind = "remediated" if remediated else "failed"
    elif status == CANCELED:
        kind = "canceled"
    else:
        kind = "succeeded"
    where = "active" if active else "dormant"
    if kind in ("failed", "canceled"):
        return f"{kind}_{where}"
    if canceled:
        return f"{kind}_{where}_canceled"
    return f"{kind}_{where}_{'incomplete' if incomplete else 'completed'}"


def next_status(current: str, event: str) -> str | None:
    """The workflow status after `event`, or None when the event changes nothing."""
    return WORKFLOW.get(current, {}).get(event)

