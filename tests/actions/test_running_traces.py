"""The "running" trace of a call is written only when the call outlives `trace_after`, and says
when it was written (a trace left by a dead worker ages)."""

from __future__ import annotations

import time
from types import SimpleNamespace

from orchestrator.runner import RUNNING, _RunningTraces, read_trace, trace_key


class Backend:
    def __init__(self):
        self.values: dict[str, str] = {}

    def set(self, key, value):
        self.values[key] = value

    def get(self, key):
        return self.values.get(key)


def running_for(app, task_id: str) -> float:
    """How long ago the call's "running" trace was written (fails if there is none)."""
    found = read_trace(app, task_id)
    assert isinstance(found, tuple) and found[0] == RUNNING, found
    return found[1]


def call(seq: int, trace_after: float) -> dict:
    return {"run": "r", "seq": seq, "attempt": 1, "item": None, "task": "t", "trace_after": trace_after}


def test_short_calls_leave_no_running_trace_and_long_ones_do():
    app = SimpleNamespace(backend=Backend())
    traces = _RunningTraces()
    short = traces.begin(app, call(1, 0.3))
    traces.end(short)
    long = traces.begin(app, call(2, 0.3))
    time.sleep(0.6)
    assert list(app.backend.values) == [trace_key("r-2-1")]
    assert 0 <= running_for(app, "r-2-1") < 5
    traces.end(long)
    time.sleep(0.5)
    assert trace_key("r-1-1") not in app.backend.values  # ended before its time: never written


def test_calls_with_a_deadline_are_traced_at_once():
    app = SimpleNamespace(backend=Backend())
    _RunningTraces().begin(app, call(3, 0))
    assert list(app.backend.values) == [trace_key("r-3-1")]
    assert 0 <= running_for(app, "r-3-1") < 5
