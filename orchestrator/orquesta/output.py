"""The end of an Orquesta run: its output, rendered from the contexts of the tasks where its
branches stopped (the terminal records), and its error in words, from Orquesta's error list."""

from __future__ import annotations

from typing import Any

from ..core.commands import RunFinished
from ..core.statuses import CANCELED, FAILED, SUCCEEDED
from ..core.errors import ExpressionError
from .contexts import merge
from .expressions import Expressions, Scope
from .flow import Flow
from .state import OrquestaState
from .workflow import OrquestaWorkflow


def finish(state: OrquestaState, workflow: OrquestaWorkflow, expressions: Expressions, flow: Flow) -> None:
    """Render the output from the terminal tasks' contexts and emit RunFinished (`flow` answers
    task() for the output's expressions)."""
    terminal = state.terminal()
    context: dict[str, Any] = {}
    for i, record in enumerate(terminal):
        indexes = list(record["ctxs"]["in"])
        if i > 0 and 0 in indexes:
            indexes.remove(0)
        context = merge(context, state.context(indexes))
    outputs: dict[str, Any] = {}
    for name, expression in workflow.spec.output:
        try:
            outputs[name] = expressions.evaluate(expression, Scope(dict(context, **outputs),
                                                                   status_of=state.status_of, tasks=flow))
        except ExpressionError as exc:
            state.log_error(f"output {name}: {exc}")
            if state.status != CANCELED:
                state.status = FAILED
    state.output = outputs or None
    state.finished = True
    error = None
    if state.status == CANCELED and state.reason:
        error = state.reason
    elif state.status != SUCCEEDED:
        error = "; ".join(_describe(e) for e in state.errors) or f"workflow {state.status}"
    flow.step.commands.append(RunFinished(state.status, state.output, error))


def _describe(error: dict[str, Any]) -> str:
    """One error entry of the state as a readable phrase for RunFinished.error."""
    task = error.get("task_id")
    if error["message"] == "Execution failed. See result for details.":
        if task == "fail":
            return "failed by the 'fail' command"
        result = error.get("result")
        return f"task '{task}' failed" + (f": {result}" if result is not None else "")
    return f"task '{task}': {error['message']}" if task else error["message"]
