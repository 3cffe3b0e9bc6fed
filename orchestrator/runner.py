"""Runs one action call on a worker and turns every outcome into a result envelope.

An action never raises into Celery: success, failure, a soft time limit or an unknown action all
come back as data. That keeps chords from wedging on one failed branch and gives the supervisor
one shape to read.
"""

from __future__ import annotations

import json
from typing import Any

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

SUCCEEDED, FAILED, TIMED_OUT = "succeeded", "failed", "timed_out"


def envelope(call: dict[str, Any], status: str, result: Any = None, error: str | None = None) -> dict[str, Any]:
    """What the supervisor receives: the call's identity plus its outcome."""
    return {"run": call["run"], "seq": call["seq"], "attempt": call["attempt"], "item": call.get("item"),
            "task": call.get("task"), "status": status, "result": result, "error": error}


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    if name in ("ActionFailed",) and text:
        return text
    return f"{name}: {text}" if text else name


def run_action(app: Celery, call: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    action = app.tasks.get(call["action"])
    if action is None:
        return envelope(call, FAILED, error=f"unknown action '{call['action']}': no such task is registered "
                                             f"on this worker (check ORCHESTRATOR_ACTIONS)")
    try:
        result = action(**payload)
    except SoftTimeLimitExceeded:
        return envelope(call, TIMED_OUT, error=f"timed out after {call.get('timeout')} s")
    except TypeError as exc:
        return envelope(call, FAILED, error=f"bad input for {call['action']}: {exc}")
    except Exception as exc:  # the action's own failure, reported as data
        return envelope(call, FAILED, error=describe(exc))
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        return envelope(call, FAILED, error=f"result of {call['action']} is not JSON: {exc}")
    return envelope(call, SUCCEEDED, result=result)
