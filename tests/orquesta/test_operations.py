"""Operations on Orquesta runs, driven event by event as the shell does: pause, resume, cancel,
core.ask answers and timeouts, a paused sub-workflow call, reruns by task name."""

import pytest

from orchestrator.engine.commands import (
    CallPaused,
    CancelTimer,
    Control,
    Dispatch,
    ExecutionEnded,
    ItemEnded,
    Rerun,
    Responded,
    Revoke,
    RunFinished,
    SetTimer,
    StateUpdated,
    StatusChanged,
    TaskEnded,
    TimerFired,
)
from orchestrator.engine.conductor import RunInfo
from orchestrator.core.timers import CANCEL_CHECK
from orchestrator.orquesta import OrquestaConductor, RerunError

from .helpers import reloaded, wf

CHAIN = """
version: 1.0
tasks:
  a:
    action: core.echo message='a'
    next:
      - when: <% succeeded() %>
        publish: seen=<% result() %>
        do: b
  b:
    action: core.echo
    input:
      message: <% ctx(seen) %>
output:
  - seen: <% ctx(seen) %>
"""

PARALLEL = """
version: 1.0
tasks:
  a:
    action: core.sleep
    next: [{do: after_a}]
  b:
    action: core.sleep
  w:
    action: core.noop
    delay: 30
  after_a:
    action: core.noop
"""

ITEMS = """
version: 1.0
tasks:
  each:
    with:
      items: <% list(1, 2, 3) %>
      concurrency: 1
    action: core.echo message=<% item() %>
    next: [{do: done}]
  done:
    action: core.noop
output:
  - all: <% task_status(each) %>
"""

ASK = """
version: 1.0
tasks:
  approve:
    action: core.ask
    input:
      prompt: Ship it?
      schema: {type: object, required: [ok], properties: {ok: {type: boolean}}}
      timeout: 5
    next:
      - when: <% succeeded() and result().ok %>
        publish: answer=<% result() %>
        do: ship
      - when: <% failed() %>
        do: give_up
  ship:
    action: core.echo message='shipped'
  give_up:
    action: core.echo message='gave-up'
output:
  - answer: <% ctx().get(answer) %>
"""


class Run:
    """One run and its commands; the state goes through JSON before every step, as stored."""

    def __init__(self, text: str, lease: float | None = None):
        self.conductor = OrquestaConductor(wf(text), RunInfo("r", {}, lease=lease))
        self.state, self.started = self.conductor.start()

    def __call__(self, *events):
        self.state = reloaded(self.state)
        return self.conductor.apply_all(self.state, list(events))

    def ended(self, call: Dispatch, status: str = "succeeded", result=None, error=None):
        return self(TaskEnded(call.seq, call.attempt, status, result, error, call.item))


def calls(commands):
    return [c for c in commands if isinstance(c, Dispatch)]


def only(commands, kind):
    return [c for c in commands if isinstance(c, kind)]


# Pause and resume ----------------------------------------------------------------------------

def test_pause_lets_the_running_task_finish_then_paused_and_resume_starts_the_next():
    run = Run(CHAIN)
    (a,) = calls(run.started)
    assert run(Control("pause")) == [StatusChanged("pausing")]
    done = run.ended(a, result="a")
    assert calls(done) == [] and done[-1] == StatusChanged("paused")
    assert ExecutionEnded(a.seq, "a", 1, "succeeded", "a") in done  # its transitions were applied
    assert run.state.status == "paused"
    resumed = run(Control("resume"))
    assert resumed[0] == StatusChanged("running")
    (b,) = calls(resumed)
    assert (b.task, b.input) == ("b", {"message": "a"})
    finished = run.ended(b)
    assert finished[-1] == RunFinished("succeeded", {"seen": "a"}, None)


def test_pause_and_resume_are_ignored_when_they_change_nothing():
    run = Run(CHAIN)
    assert run(Control("resume")) == []
    run(Control("pause"))
    assert run(Control("pause")) == []
    assert run(Control("bogus")) == []


def test_a_run_whose_last_task_ends_while_pausing_is_paused_and_resume_completes_it():
    run = Run(CHAIN)
    (b,) = calls(run.ended(calls(run.started)[0], result="a"))
    run(Control("pause"))
    done = run.ended(b)
    assert done[-1] == StatusChanged("paused") and not only(done, RunFinished)  # as in Orquesta
    assert run(Control("resume")) == [StatusChanged("running"), RunFinished("succeeded", {"seen": "a"}, None)]


def test_pause_with_nothing_running_is_paused_at_once_and_a_due_delay_is_held():
    run = Run("""
    version: 1.0
    tasks:
      w:
        action: core.noop
        delay: 30
    """)
    assert run.started[-1] == SetTimer("dispatch:1:1:-", 30.0)
    assert run(Control("pause")) == [StatusChanged("pausing"), StatusChanged("paused")]
    assert run(TimerFired("dispatch:1:1:-")) == [StateUpdated()]  # held; the step is written
    assert run(TimerFired("dispatch:1:1:-")) == []
    resumed = run(Control("resume"))
    assert [c.task for c in calls(resumed)] == ["w"]
    assert run.ended(calls(resumed)[0])[-1] == RunFinished("succeeded", None, None)


def test_pause_holds_a_with_items_window_and_resume_refills_it():
    run = Run(ITEMS)
    (first,) = calls(run.started)
    run(Control("pause"))
    done = run.ended(first, result=1)
    assert ItemEnded(first.seq, 0, "succeeded", 1) in done and calls(done) == []
    assert done[-1] == StatusChanged("paused")
    resumed = run(Control("resume"))
    assert [(c.task, c.item, c.input) for c in calls(resumed)] == [("each", 1, {"message": 2})]
    (third,) = calls(run.ended(calls(resumed)[0], result=2))
    assert third.item == 2
    (done_task,) = calls(run.ended(third, result=3))
    assert run.ended(done_task)[-1] == RunFinished("succeeded", {"all": "succeeded"}, None)


def test_a_failure_while_pausing_still_fails_the_run():
    run = Run(PARALLEL)
    a, b = calls(run.started)
    run(Control("pause"))
    failed = run.ended(b, "failed", error="boom")  # b has no transition: nothing handles it
    assert calls(failed) == [] and run.state.status == "failed"
    assert calls(run.ended(a)) == []  # its transition to after_a is not handed out
    (w,) = calls(run(TimerFired("dispatch:3:1:-")))  # a delayed task was already handed out
    finished = run.ended(w)
    assert finished[-1].status == "failed" and "boom" in finished[-1].error


def test_a_retry_due_while_pausing_waits_for_resume():
    run = Run("""
    version: 1.0
    tasks:
      flaky:
        action: core.echo
        retry: {count: 1}
    """)
    (first,) = calls(run.started)
    run(Control("pause"))
    failed = run.ended(first, "failed", error="transient")
    assert calls(failed) == [] and failed[-1] == StatusChanged("paused")
    (again,) = calls(run(Control("resume")))
    assert (again.seq, again.attempt) == (first.seq, 2)
    assert run.ended(again)[-1] == RunFinished("succeeded", None, None)


def test_a_delay_held_by_a_pause_ends_canceled_on_cancel():
    run = Run(PARALLEL)
    run(Control("pause"))
    run(TimerFired("dispatch:3:1:-"))
    assert run.state.by_seq(3).get("held")
    canceled = run(Control("cancel"))
    assert ExecutionEnded(3, "w", 1, "canceled", None, "canceled by request") in canceled
    assert only(canceled, CancelTimer) == []  # its timer already fired


def test_a_paused_child_run_does_not_count_as_running():
    run = Run(CHAIN)
    (a,) = calls(run.started)
    assert run(CallPaused(a.seq, a.attempt)) == []  # only while pausing
    run(Control("pause"))
    assert run(CallPaused(a.seq, 9)) == []  # not a call in flight
    assert run(CallPaused(a.seq, a.attempt)) == [StatusChanged("paused")]
    assert run(CallPaused(a.seq, a.attempt)) == []
    resumed = run(Control("resume"))
    assert resumed == [StatusChanged("running")] and run.state.paused_calls == []
    run(Control("pause"))
    assert run.state.status == "pausing"  # after resume the child's call counts as running again


# Cancel --------------------------------------------------------------------------------------

def test_cancel_revokes_running_calls_and_is_canceling_until_they_report():
    run = Run(PARALLEL)
    a, b = calls(run.started)
    canceled = run(Control("cancel"))
    assert canceled[:2] == [Revoke(a.seq, 1, None, terminate=True), Revoke(b.seq, 1, None, terminate=True)]
    assert CancelTimer("dispatch:3:1:-") in canceled  # the delayed task had nothing running: ends now
    assert ExecutionEnded(3, "w", 1, "canceled", None, "canceled by request") in canceled
    assert canceled[-1] == StatusChanged("canceling") and run.state.status == "canceling"
    assert run(Control("cancel")) == [] and run(Control("pause")) == [] and run(TimerFired("dispatch:3:1:-")) == []
    # a finished before the revoke reached it: the result is kept, nothing follows it
    done_a = run.ended(a, result="a-out")
    assert done_a == [CancelTimer("lease:1:1:-"), CancelTimer("deadline:1:1:-"),
                      ExecutionEnded(a.seq, "a", 1, "succeeded", "a-out", None)]
    assert run.ended(a) == []  # a duplicate report
    # b was interrupted
    done_b = run.ended(b, "failed", error="interrupted")
    assert ExecutionEnded(b.seq, "b", 1, "canceled", None, "canceled by request (interrupted)") in done_b
    assert done_b[-1] == RunFinished("canceled", None, "canceled by request")
    assert run.state.status == "canceled" and run(TaskEnded(b.seq, 1, "succeeded")) == []


def test_cancel_with_items_revokes_the_items_in_flight():
    run = Run(ITEMS.replace("concurrency: 1", "concurrency: 2"))
    first, second = calls(run.started)
    canceled = run(Control("cancel"))
    assert only(canceled, Revoke) == [Revoke(1, 1, 0, terminate=True), Revoke(1, 1, 1, terminate=True)]
    done = run.ended(first, result=1)
    assert done == [CancelTimer("lease:1:1:0"), CancelTimer("deadline:1:1:0"), ItemEnded(1, 0, "succeeded", 1)]
    last = run.ended(second, "failed", error="interrupted")
    assert ItemEnded(1, 1, "canceled", "canceled by request (interrupted)") in last
    assert ExecutionEnded(1, "each", 1, "canceled", None, "canceled by request") in last
    assert last[-1].status == "canceled" and calls(last) == []


def test_a_revoked_call_that_never_started_is_found_by_its_check_timer():
    run = Run(CHAIN, lease=600)
    canceled = run(Control("cancel"))
    assert SetTimer("lease:1:1:-", CANCEL_CHECK) in canceled
    assert run(TimerFired("lease:1:1:-", running=True)) == [SetTimer("lease:1:1:-", CANCEL_CHECK)]
    assert run(TimerFired("lease:1:1:-", running=None)) == [SetTimer("lease:1:1:-", CANCEL_CHECK)]
    gone = run(TimerFired("lease:1:1:-", running=False))
    assert ExecutionEnded(1, "a", 1, "canceled", None, "canceled by request (it never started)") in gone
    assert gone[-1] == RunFinished("canceled", None, "canceled by request")


def test_cancel_of_a_paused_run_ends_at_once():
    run = Run(CHAIN)
    run(Control("pause"))
    run.ended(calls(run.started)[0], result="a")
    result = run(Control("cancel"))
    assert only(result, Revoke) == []
    assert result[-2:] == [StatusChanged("canceling"), RunFinished("canceled", None, "canceled by request")]


def test_cancel_of_a_paused_child_call_ends_it_without_a_revoke():
    run = Run(CHAIN)
    (a,) = calls(run.started)
    run(Control("pause"))
    run(CallPaused(a.seq, a.attempt))
    result = run(Control("cancel"))
    assert only(result, Revoke) == [] and result[-1].status == "canceled"
    assert ExecutionEnded(a.seq, "a", 1, "canceled", None, "canceled by request") in result


# core.ask ------------------------------------------------------------------------------------

def test_core_ask_waits_for_a_response_that_matches_its_schema():
    run = Run(ASK)
    assert calls(run.started) == [] and SetTimer("ask:1:1:-", 5.0) in run.started
    with pytest.raises(ValueError, match="does not match its schema"):
        run(Responded("approve", {"ok": "yes"}))
    with pytest.raises(ValueError, match="'ship' is not waiting"):
        run(Responded("ship", {}))
    answered = run(Responded("approve", {"ok": True}))
    assert answered[:2] == [CancelTimer("ask:1:1:-"), ExecutionEnded(1, "approve", 1, "succeeded", {"ok": True})]
    assert [c.input for c in calls(answered)] == [{"message": "shipped"}]
    with pytest.raises(ValueError, match="not waiting"):
        run(Responded("approve", {"ok": True}))
    assert run(TimerFired("ask:1:1:-")) == []  # the timeout no longer applies
    assert run.ended(calls(answered)[0])[-1] == RunFinished("succeeded", {"answer": {"ok": True}}, None)


def test_core_ask_timeout_fails_the_task():
    run = Run(ASK)
    expired = run(TimerFired("ask:1:1:-"))
    assert ExecutionEnded(1, "approve", 1, "failed", None, "no response within 5 s") in expired
    assert [c.task for c in calls(expired)] == ["give_up"]  # handled by its `failed()` transition
    with pytest.raises(ValueError, match="not waiting"):
        run(Responded("approve", {"ok": True}))
    unhandled = Run("""
    version: 1.0
    tasks:
      approve:
        action: core.ask
        input: {timeout: 5}
    """)
    out = unhandled(TimerFired("ask:1:1:-"))
    assert out[-1].status == "failed" and "approve' failed: no response within 5 s" in out[-1].error


def test_core_ask_ttl_is_in_minutes_and_a_bad_timeout_fails_the_task():
    run = Run(ASK.replace("timeout: 5", "ttl: 2"))
    assert SetTimer("ask:1:1:-", 120.0) in run.started
    run = Run(ASK.replace("timeout: 5", "timeout: soon"))
    failed = [c for c in run.started if isinstance(c, ExecutionEnded)]
    assert failed[0].status == "failed" and "timeout must be a positive number" in failed[0].error
    no_timeout = Run(ASK.replace("      timeout: 5\n", ""))
    assert only(no_timeout.started, SetTimer) == [] and no_timeout.state.by_seq(1)["ask"]["schema"]


def test_an_ask_is_not_a_running_call_for_pause_and_is_canceled_at_once():
    run = Run(ASK)
    assert run(Control("pause")) == [StatusChanged("pausing"), StatusChanged("paused")]
    answered = run(Responded("approve", {"ok": True}))  # answered while paused: ship is held back
    assert calls(answered) == [] and run.state.status == "paused"
    assert [c.task for c in calls(run(Control("resume")))] == ["ship"]
    run = Run(ASK)
    canceled = run(Control("cancel"))
    assert CancelTimer("ask:1:1:-") in canceled and only(canceled, Revoke) == []
    assert canceled[-1] == RunFinished("canceled", {"answer": None}, "canceled by request")
    assert run(Responded("approve", {"ok": True})) == []


def test_a_failed_run_still_takes_the_answer_it_waits_for_and_then_ends():
    run = Run("""
    version: 1.0
    tasks:
      approve:
        action: core.ask
        next: [{do: after}]
      breaks:
        action: core.fail
      after:
        action: core.noop
    """)
    (breaks,) = calls(run.started)
    assert not only(run.ended(breaks, "failed", error="boom"), RunFinished)  # the ask is still pending
    answered = run(Responded("approve", "yes"))
    assert calls(answered) == [] and answered[-1].status == "failed" and "boom" in answered[-1].error


# Rerun by task names -------------------------------------------------------------------------

def test_rerun_event_reopens_a_failed_run_from_the_named_or_failed_tasks():
    run = Run(CHAIN)
    (a,) = calls(run.started)
    with pytest.raises(RerunError, match="completed"):
        run(Rerun(("a",)))
    failed = run.ended(a, "failed", error="boom")
    assert failed[-1].status == "failed"
    reopened = run(Rerun())
    assert reopened[0] == StatusChanged("running") and [c.task for c in calls(reopened)] == ["a"]
    (b,) = calls(run.ended(calls(reopened)[0], result="again"))
    assert run.ended(b)[-1] == RunFinished("succeeded", {"seen": "again"}, None)
    with pytest.raises(RerunError, match="did not run"):
        run(Rerun(("nope",)))
    again = run(Rerun(("b__r0",)))
    assert [c.input for c in calls(again)] == [{"message": "again"}]


def test_a_run_ended_by_the_fail_command_reruns_its_tasks_not_the_command():
    run = Run("""
version: 1.0
tasks:
  task1:
    action: core.noop
    next:
      - when: <% failed() %>
        do: log
  log:
    action: core.echo
    next:
      - when: <% succeeded() %>
        do: fail
""")
    (task1,) = calls(run.started)
    (log,) = calls(run.ended(task1, "failed", error="boom"))
    assert run.ended(log)[-1].status == "failed"
    with pytest.raises(RerunError, match="engine commands: fail"):
        run(Rerun(("fail",)))
    with pytest.raises(RerunError, match="nothing to rerun"):
        run(Rerun())  # the only terminal failure is the command itself
    again = run(Rerun(("task1",)))
    assert [c.task for c in calls(again)] == ["task1"]


# Lost calls ------------------------------------------------------------------------------------

def test_a_lost_call_is_sent_again_and_calls_lists_what_is_out():
    from orchestrator.engine.commands import CallLost

    run = Run(CHAIN)
    (a,) = calls(run.started)
    assert run.conductor.calls(run.state) == [(a.seq, 1, None)]
    again = run(CallLost(a.seq, 1))
    assert [(c.task, c.input) for c in calls(again)] == [("a", {"message": "a"})]
    assert run(CallLost(a.seq, 2)) == []
    (b,) = calls(run.ended(a, result="a"))
    assert run(CallLost(a.seq, 1)) == []  # stale
    run(Control("cancel"))
    ended = run(CallLost(b.seq, 1, reason="its worker was lost"))
    assert ended[-1].status == "canceled"
    assert any(isinstance(c, ExecutionEnded) and "its worker was lost" in (c.error or "") for c in ended)


def test_lost_items_are_sent_again_one_by_one():
    from orchestrator.engine.commands import CallLost

    run = Run(ITEMS.replace("concurrency: 1", "concurrency: 2"))
    assert run.conductor.calls(run.state) == [(1, 1, 0), (1, 1, 1)]
    again = calls(run(CallLost(1, 1, 1)))
    assert [(c.item, c.input) for c in again] == [(1, {"message": 2})]


# Timers stored by runs in progress before timer keys had one format --------------------------

def test_a_delay_and_an_ask_timeout_stored_under_the_earlier_keys_still_fire():
    delayed = Run("""
version: 1.0
tasks:
  later:
    action: core.noop
    delay: 30
""")
    assert SetTimer("dispatch:1:1:-", 30.0) in delayed.started
    delayed.state.by_seq(1)["waiting"] = "dispatch:1:1"  # as the earlier version stored it
    assert [c.task for c in calls(delayed(TimerFired("dispatch:1:1")))] == ["later"]
    asked = Run(ASK)
    asked.state.by_seq(1)["ask"]["timer"] = "ask:1:1"
    expired = asked(TimerFired("ask:1:1"))
    assert ExecutionEnded(1, "approve", 1, "failed", None, "no response within 5 s") in expired
