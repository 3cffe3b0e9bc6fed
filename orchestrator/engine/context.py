"""What a native expression sees: parameters, variables, tasks' outcomes, config, the run's
system facts and, inside a task, its status, result, item and attempt."""

from __future__ import annotations

from typing import Any

from ..core.run import RunInfo
from ..core.statuses import FAILED, SUCCEEDED, TIMED_OUT
from .state import WorkflowState


def expression_context(run: RunInfo, workflow_name: str, state: WorkflowState, task: str | None = None, *,
                       status: str | None = None, result: Any = None, item: Any = None, index: int | None = None,
                       attempt: int | None = None) -> dict[str, Any]:
    if attempt is None:
        attempt = 1
        if task is not None:
            for execution in state.active.values():
                if execution.task == task:
                    attempt = execution.attempt
    context = {
        "parameters": run.params,
        "workflow": state.vars, "vars": state.vars, "variables": state.vars,
        "task": state.tasks, "tasks": state.tasks,
        "config": run.config,
        "system": {"workflow_id": run.run_id, "workflow_name": workflow_name,
                   "workflow_start": run.started_at, "task_name": task, "attempt": attempt},
        "succeeded": lambda: status == SUCCEEDED,
        "failed": lambda: status == FAILED,
        "timed_out": lambda: status == TIMED_OUT,
        "result": lambda: result,
    }
    if index is not None:
        context["item"] = item
        context["index"] = index
    return context
