"""Every rule of the run control (core/control.py), for both formats: each scenario is a pair of
equivalent workflows, one native and one in Orquesta's format, driven with the same events and
checked with the same assertions. The state goes through JSON between steps, as the shell
stores it."""

from __future__ import annotations

import json
import textwrap

import pytest

from orchestrator.core.commands import (CallLost, CallPaused, CancelTimer, Control, Dispatch, ExecutionEnded,
                                        Responded, Revoke, RunFinished, SetTimer, StatusChanged, TaskEnded,
                                        TimerFired)
from orchestrator.core.run import RunInfo
from orchestrator.core.timers import CANCEL_CHECK
from orchestrator.formats import conductor_for, load_any, state_from_dict

FORMATS = ("native", "orquesta")

ONE = {
    "native": """
        version: "1.0"
        tasks:
          - {name: a, action: tests.x, input: {v: 1}, next: [{do: b}]}
          - {name: b, action: tests.y}
    """,
    "orquesta": """
        version: 1.0
        tasks:
          a:
            action: tests.x
            input: {v: 1}
            next: [{do: b}]
          b:
            action: tests.y
    """,
}

SINGLE = {
    "native": """
        version: "1.0"
        tasks:
          - {name: a, action: tests.x, input: {v: 1}}
    """,
    "orquesta": """
        version: 1.0
        tasks:
          a:
            action: tests.x
            input: {v: 1}
    """,
}

ITEMS = {
    "native": """
        version: "1.0"
        tasks:
          - {name: each, action: tests.x, with_items: "{{ [1, 2, 3] }}", input: {v: "{{ item }}"}}
    """,
    "orquesta": """
        version: 1.0
        tasks:
          each:
            with: <% list(1, 2, 3) %>
            action: tests.x
            input: {v: <% item() %>}
    """,
}

JOIN = {
    "native": """
        version: "1.0"
        tasks:
          - {name: a, action: tests.x, next: [{do: c}]}
          - {name: b, action: tests.x, next: [{do: c}]}
          - {name: c, action: tests.y, join: all}
    """,
    "orquesta": """
        version: 1.0
        tasks:
          a:
            action: tests.x
            next: [{do: c}]
          b:
            action: tests.x
            next: [{do: c}]
          c:
            join: all
            action: tests.y
    """,
}

ASK = {
    "native": """
        version: "1.0"
        tasks:
          - name: approve
            action: core.ask
            timeout: 5
            input: {schema: SCHEMA}
            next: [{do: ship}]
          - {name: ship, action: tests.y}
    """,
    "orquesta": """
        version: 1.0
        tasks:
          approve:
            action: core.ask
            input: {schema: SCHEMA, timeout: 5}
            next: [{do: ship}]
          ship:
            action: tests.y
    """,
}
GOOD_SCHEMA = "{type: object, required: [ok], properties: {ok: {type: boolean}}}"
# Rendered at run time (a schema written in the file is checked at validation already).
BAD_SCHEMA = {"native": "\"{{ {'type': 12} }}\"", "orquesta": "<% dict(type => 12) %>"}

# The native format calls a task that timed out `timed_out`; Orquesta's status model, `failed`.
TIMED_OUT = {"native": "timed_out", "orquesta": "failed"}


class Run:
    """A conductor and its state, stored as JSON between steps."""

    def __init__(self, fmt: str, texts: dict[str, str], **run: object):
        text = textwrap.dedent(texts[fmt])
        for name, value in run.pop("replace", {}).items():
            text = text.replace(name, value)
        self.conductor = conductor_for(load_any(text, "t.yaml", "t"), RunInfo("r", {}, **run))
        self.state, self.started = self.conductor.start()

    def __call__(self, *events) -> list:
        self.state = state_from_dict(json.loads(json.dumps(self.state.to_dict())), self.state.vars)
        return self.conductor.apply_all(self.state, list(events))

    def calls(self) -> list[tuple[int, int, int | None]]:
        return self.conductor.calls(self.state)


def dispatched(commands: list) -> list[Dispatch]:
    return [c for c in commands if isinstance(c, Dispatch)]


def only(commands: list, kind: type) -> list:
    return [c for c in commands if isinstance(c, kind)]


def done(call: Dispatch, status: str = "succeeded", result: object = None) -> TaskEnded:
    return TaskEnded(call.seq, call.attempt, status, result, None if status == "succeeded" else "boom", call.item)


# Watches ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_every_dispatch_is_watched_by_the_lease_and_a_report_removes_the_watch(fmt):
    run = Run(fmt, ONE, lease=600)
    (a,) = dispatched(run.started)
    assert run.started[run.started.index(a) + 1] == SetTimer(f"lease:{a.seq}:1:-", 600)
    ended = run(done(a))
    assert ended[0] == CancelTimer(f"lease:{a.seq}:1:-")
    (b,) = dispatched(ended)
    assert SetTimer(f"lease:{b.seq}:1:-", 600) in ended
    assert not only(Run(fmt, ONE).started, SetTimer)  # no lease, no watch (rehearsals)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_report_that_names_no_call_out_changes_nothing(fmt):
    run = Run(fmt, ITEMS, lease=600)
    items = dispatched(run.started)
    assert run(done(items[0]))
    assert run(done(items[0])) == []  # redelivered
    assert run(TaskEnded(items[1].seq, 2, "succeeded", None, None, 1)) == []  # another attempt
    assert run(TaskEnded(99, 1, "succeeded")) == []  # another execution
    assert run.calls() == [(items[1].seq, 1, 1), (items[2].seq, 1, 2)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_lease_that_finds_the_call_running_waits_again_and_one_that_finds_no_trace_sends_it_again(fmt):
    run = Run(fmt, ONE, lease=600)
    (a,) = dispatched(run.started)
    key = f"lease:{a.seq}:1:-"
    assert run(TimerFired(key, running=True)) == [SetTimer(key, 600)]
    again = run(TimerFired(key, running=False))
    assert dispatched(again) == [a] and SetTimer(key, 600) in again  # the same call, watched again
    assert run(TimerFired(f"lease:{a.seq}:7:-", running=False)) == []  # not a call that is out


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_lost_call_is_sent_again_and_calls_lists_what_is_out(fmt):
    run = Run(fmt, ITEMS, lease=600)
    items = dispatched(run.started)
    assert [c.item for c in items] == [0, 1, 2]
    assert run.calls() == [(items[0].seq, 1, 0), (items[0].seq, 1, 1), (items[0].seq, 1, 2)]
    resent = run(CallLost(items[1].seq, 1, 1))
    assert resent[0] == CancelTimer(f"lease:{items[1].seq}:1:1")
    assert [(c.item, c.input) for c in dispatched(resent)] == [(1, items[1].input)]
    run(done(items[1]))
    assert run(CallLost(items[1].seq, 1, 1)) == []  # no longer out: stale
    assert run.calls() == [(items[0].seq, 1, 0), (items[0].seq, 1, 2)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_input_over_the_limit_fails_the_run_and_nothing_is_sent(fmt):
    run = Run(fmt, SINGLE, max_input_bytes=100, replace={"{v: 1}": "{v: " + "x" * 200 + "}"})
    assert dispatched(run.started) == []
    (finished,) = only(run.started, RunFinished)
    assert finished.status == "failed"
    assert "task 'a': input is 209 bytes, over the limit of 100 (pass large data by reference)" in finished.error
    assert dispatched(Run(fmt, SINGLE, max_input_bytes=100).started)  # under the limit: sent


# Fan-ins ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_items_dispatched_together_and_siblings_into_a_join_are_one_fan_in(fmt):
    items = dispatched(Run(fmt, ITEMS).started)
    assert {c.barrier for c in items} == {f"items:{items[0].seq}"}
    siblings = dispatched(Run(fmt, JOIN).started)
    assert [c.task for c in siblings] == ["a", "b"] and {c.barrier for c in siblings} == {"join:c"}
    assert {c.barrier for c in dispatched(Run(fmt, ONE).started)} == {None}


# Pause and resume ------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_pause_lets_the_running_call_finish_holds_what_follows_and_resume_starts_it(fmt):
    run = Run(fmt, ONE)
    (a,) = dispatched(run.started)
    assert run(Control("pause")) == [StatusChanged("pausing")]
    assert run(Control("pause")) == []  # already pausing
    ended = run(done(a))
    assert dispatched(ended) == [] and StatusChanged("paused") in ended and run.state.status == "paused"
    resumed = run(Control("resume"))
    assert resumed[0] == StatusChanged("running") and [c.task for c in dispatched(resumed)] == ["b"]
    assert run(Control("resume")) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_paused_child_run_no_longer_counts_as_running(fmt):
    run = Run(fmt, ONE)
    (a,) = dispatched(run.started)
    assert run(CallPaused(a.seq, a.attempt)) == []  # only while pausing
    run(Control("pause"))
    assert run(CallPaused(a.seq, 9)) == []  # not a call that is out
    assert StatusChanged("paused") in run(CallPaused(a.seq, a.attempt))
    assert run.calls() == []


# Cancel ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_cancel_revokes_running_calls_and_is_canceling_until_they_report(fmt):
    run = Run(fmt, ITEMS, lease=600)
    items = dispatched(run.started)
    canceled = run(Control("cancel"))
    seq = items[0].seq
    assert only(canceled, Revoke) == [Revoke(seq, 1, i, terminate=True) for i in range(3)]
    assert [SetTimer(f"lease:{seq}:1:{i}", CANCEL_CHECK) for i in range(3)] == \
        [c for c in only(canceled, SetTimer) if c.seconds == CANCEL_CHECK]
    assert canceled[-1] == StatusChanged("canceling") and run.state.status == "canceling"
    assert run(Control("pause")) == [] and run(Control("cancel")) == []
    first = run(done(items[0]))
    assert first[:2] == [CancelTimer(f"lease:{seq}:1:0"), CancelTimer(f"deadline:{seq}:1:0")]
    assert dispatched(first) == []
    # one was interrupted (reported failed), one never started (its check timer finds no trace)
    run(done(items[1], "failed"))
    last = run(TimerFired(f"lease:{seq}:1:2", running=False))
    (ended,) = only(last, ExecutionEnded)
    assert ended.status == "canceled" and ended.error == "canceled by request"
    assert last[-1] == RunFinished("canceled", last[-1].output, "canceled by request")
    assert run.state.status == "canceled" and run(done(items[2])) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_call_still_running_while_canceling_is_looked_for_again(fmt):
    run = Run(fmt, ONE, lease=600)
    (a,) = dispatched(run.started)
    run(Control("cancel"))
    key = f"lease:{a.seq}:1:-"
    assert run(TimerFired(key, running=True)) == [SetTimer(key, CANCEL_CHECK)]
    lost = run(CallLost(a.seq, 1, None, reason="its worker died"))
    (ended,) = only(lost, ExecutionEnded)
    assert ended.status == "canceled" and ended.error == "canceled by request (its worker died)"
    assert run.state.status == "canceled"


# core.ask --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_an_ask_is_answered_with_data_matching_its_schema(fmt):
    run = Run(fmt, ASK, replace={"SCHEMA": GOOD_SCHEMA})
    assert dispatched(run.started) == [] and SetTimer(f"ask:{1}:1:-", 5.0) in run.started
    assert run.calls() == []
    with pytest.raises(ValueError, match="does not match its schema"):
        run(Responded("approve", {"ok": "sure"}))
    with pytest.raises(ValueError, match="'ship' is not waiting"):
        run(Responded("ship", {"ok": True}))
    answered = run(Responded("approve", {"ok": True}))
    assert answered[0] == CancelTimer("ask:1:1:-")
    assert ExecutionEnded(1, "approve", 1, "succeeded", {"ok": True}, None) in answered
    assert [c.task for c in dispatched(answered)] == ["ship"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_ask_with_a_bad_schema_fails_its_task_at_once(fmt):
    run = Run(fmt, ASK, replace={"SCHEMA": BAD_SCHEMA[fmt]})
    (failed,) = only(run.started, ExecutionEnded)
    assert failed.task == "approve" and failed.status == "failed"
    assert "core.ask schema is not a valid JSON Schema: 12 is not valid" in failed.error
    assert [c.task for c in dispatched(run.started)] == ["ship"]  # it failed as a task does: its transition fires
    with pytest.raises(ValueError, match="'approve' is not waiting"):
        run(Responded("approve", {"ok": True}))


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_unanswered_ask_times_out_and_is_not_a_running_call_for_pause(fmt):
    run = Run(fmt, ASK, replace={"SCHEMA": GOOD_SCHEMA})
    assert run(Control("pause")) == [StatusChanged("pausing"), StatusChanged("paused")]
    run(Control("resume"))
    expired = run(TimerFired("ask:1:1:-"))
    (ended,) = [c for c in only(expired, ExecutionEnded) if c.task == "approve"]
    assert ended.status == TIMED_OUT[fmt] and ended.error == "no response within 5 s"
    assert run(TimerFired("ask:1:1:-")) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_cancel_ends_a_pending_ask_and_its_timer_at_once(fmt):
    run = Run(fmt, ASK, replace={"SCHEMA": GOOD_SCHEMA}, lease=600)
    canceled = run(Control("cancel"))
    assert only(canceled, Revoke) == [] and CancelTimer("ask:1:1:-") in canceled
    assert [c.status for c in only(canceled, ExecutionEnded)] == ["canceled"]
    assert only(canceled, RunFinished)[0].status == "canceled" and run.state.status == "canceled"
