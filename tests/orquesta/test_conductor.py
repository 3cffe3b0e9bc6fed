"""The Orquesta conductor's behaviours: waves, splits, joins, failures, items, retries, reruns."""

import json

import pytest

from orchestrator.engine.commands import (
    Dispatch,
    ExecutionEnded,
    ExecutionStarted,
    ItemsCreated,
    RunFinished,
    SetTimer,
    TaskEnded,
    TimerFired,
)
from orchestrator.engine.conductor import RunInfo
from orchestrator.core.errors import ParametersInvalid
from orchestrator.orquesta import OrquestaConductor, OrquestaState, RerunError
from orchestrator.orquesta.rehearse import rehearse_waves

from .helpers import drive, labels, waves, wf

FAN = """
version: 1.0
tasks:
  a:
    action: core.noop
    next:
      - when: <% succeeded() %>
        do: z, b
  b:
    action: core.noop
    next:
      - do: c
  z:
    action: core.noop
  c:
    action: core.noop
"""


def test_waves_hand_out_in_task_name_order():
    run = waves(FAN)
    # b and z are started in name order; c (from b) only after the whole wave completed.
    assert labels(run) == ["a", "b", "z", "c"]
    assert run.status == "succeeded"


def test_every_satisfied_transition_fires_and_missing_do_is_continue():
    run = waves("""
        version: 1.0
        tasks:
          t:
            action: core.noop
            next:
              - when: <% succeeded() %>
                publish: a=1
              - when: <% completed() %>
                do: u
              - when: <% failed() %>
                do: v
          u:
            action: core.noop
          v:
            action: core.noop
        output:
          - a: <% ctx().a %>
        """)
    assert labels(run) == ["t", "continue", "u"]
    assert run.output == {"a": 1}           # the `continue` record is terminal: its context reaches the output


def test_split_runs_once_per_inbound_path_with_routes():
    run = waves("""
        version: 1.0
        tasks:
          t1:
            action: core.noop
            next: [{do: "t2, t3"}]
          t2:
            action: core.noop
            next: [{do: t4}]
          t3:
            action: core.noop
            next: [{do: t4}]
          t4:
            action: core.echo message=<% task_status(t2) %>
            next: [{do: t5}]
          t5:
            action: core.noop
        """)
    assert labels(run) == ["t1", "t2", "t3", "t4__r1", "t4__r2", "continue__r1", "t5__r1", "continue__r2",
                           "t5__r2"] or [n for n, _ in run.sequence].count("t5") == 2
    assert run.state.routes == [[], ["t2__t0"], ["t3__t0"]]
    # task_status() follows a route back to the one it split from
    assert [c.input for c in run.calls if c.task == "t4"] == [{"message": "succeeded"}] * 2


def test_two_transitions_of_one_task_to_the_same_target_split():
    run = waves("""
        version: 1.0
        tasks:
          t1:
            action: core.noop
            next:
              - do: t2
              - when: <% succeeded() %>
                do: t2
          t2:
            action: core.noop
        """)
    assert labels(run) == ["t1", "t2__r1", "t2__r2"]
    assert run.state.routes == [[], ["t1__t0"], ["t1__t1"]]


JOIN = """
version: 1.0
tasks:
  start:
    action: core.noop
    next: [{do: "left, right"}]
  left:
    action: core.echo message="left"
    next:
      - when: <% succeeded() %>
        publish: l=<% result() %>
        do: join
  right:
    action: core.echo message="right"
    next:
      - when: <% succeeded() %>
        publish: r=<% result() %>
        do: mid
  mid:
    action: core.noop
    next:
      - when: <% succeeded() %>
        do: join
  join:
    join: all
    action: core.echo message="<% ctx(l) %>+<% ctx(r) %>"
output:
  - both: <% ctx(l) %>,<% ctx(r) %>
"""


def test_join_all_waits_and_merges_branch_contexts():
    run = waves(JOIN, script=[{"task": "left", "occurrence": 0, "result": "L"},
                              {"task": "right", "occurrence": 0, "result": "R"}])
    assert labels(run) == ["start", "left", "right", "mid", "join"]
    assert [c.input for c in run.calls if c.task == "join"] == [{"message": "L+R"}]
    assert run.output == {"both": "L,R"}


def test_unreachable_join_fails_the_workflow():
    run = waves(JOIN, script=[{"task": "mid", "occurrence": 0, "status": "failed"}])
    assert run.status == "failed"
    assert labels(run) == ["start", "left", "right", "mid"]
    # mid's failure is unhandled (fail fast); the join never ran
    failure = {"type": "error", "message": "Execution failed. See result for details.", "task_id": "mid"}
    assert failure in run.state.errors


def test_unreachable_join_error_when_a_branch_never_arrives():
    run = waves("""
        version: 1.0
        tasks:
          s:
            action: core.noop
            next: [{do: "a, b"}]
          a:
            action: core.noop
            next: [{when: <% succeeded() %>, do: j}]
          b:
            action: core.noop
            next: [{when: <% failed() %>, do: j}]
          j:
            join: all
            action: core.noop
        """)
    assert run.status == "failed"
    assert run.state.errors[-1]["message"].startswith('UnreachableJoinError: The join task|route "j|0"')


JOIN2 = """
version: 1.0
tasks:
  s:
    action: core.noop
    next: [{do: "a, b, c"}]
  a:
    action: core.noop
    next: [{do: j}]
  b:
    action: core.noop
    next: [{do: j}]
  c:
    action: core.noop
    next: [{do: d}]
  d:
    action: core.noop
    next: [{do: e}]
  e:
    action: core.noop
    next: [{do: j}]
  j:
    join: 2
    action: core.noop
"""


def test_join_n_runs_when_n_inbound_tasks_arrived():
    run = waves(JOIN2)
    # j runs once a and b arrived; the quirk Orquesta has: the late third branch (e, arriving
    # after j finished) runs the join a second time
    assert labels(run) == ["s", "a", "b", "c", "d", "j", "e", "j"]


def test_join_n_absorbs_an_arrival_while_the_join_runs():
    short = JOIN2.replace("next: [{do: e}]", "next: [{do: j}]")
    short = short.replace("  e:\n    action: core.noop\n    next: [{do: j}]\n", "")
    run = waves(short)
    assert labels(run) == ["s", "a", "b", "c", "d", "j"]


def test_fail_fast_lets_siblings_finish_but_starts_nothing_new():
    run = drive("""
        version: 1.0
        tasks:
          s:
            action: core.noop
            next: [{do: "bad, slow"}]
          bad:
            action: core.fail
          slow:
            action: core.noop
            next: [{do: after}]
          after:
            action: core.noop
        """, outcome=lambda call: ("failed", "boom") if call.task == "bad" else ("succeeded", None))
    assert [c.task for c in run.calls] == ["s", "bad", "slow"]          # `after` never starts
    finished = run.of(RunFinished)
    assert len(finished) == 1 and finished[0].status == "failed"
    assert "task 'bad'" in finished[0].error
    # RunFinished comes only once slow (running when bad failed) has ended
    slow_end = next(i for i, c in enumerate(run.commands) if isinstance(c, ExecutionEnded) and c.task == "slow")
    assert run.commands.index(finished[0]) > slow_end


CONTINUE_OR_NOOP = """
version: 1.0
vars:
  - message: null
tasks:
  t1:
    action: core.noop
    next:
      - when: <% failed() %>
        publish: message="handled"
        do: {command}
output:
  - message: <% ctx(message) %>
"""


def test_continue_does_not_remediate_a_failure():
    run = waves(CONTINUE_OR_NOOP.replace("{command}", "continue"),
                script=[{"task": "t1", "occurrence": 0, "status": "failed"}])
    assert run.status == "failed"
    assert labels(run) == ["t1", "continue"]
    assert run.output == {"message": "handled"}      # the publish still applied


def test_noop_remediates_a_failure():
    run = waves(CONTINUE_OR_NOOP.replace("{command}", "noop"),
                script=[{"task": "t1", "occurrence": 0, "status": "failed"}])
    assert run.status == "succeeded"
    assert labels(run) == ["t1", "noop"]


def test_fail_command_still_runs_the_tasks_beside_it():
    run = drive("""
        version: 1.0
        tasks:
          t1:
            action: core.noop
            next:
              - when: <% failed() %>
                publish: error=<% result() %>
                do: log, fail
          log:
            action: core.echo message=<% ctx(error) %>
        """, outcome=lambda call: ("failed", "bad") if call.task == "t1" else ("succeeded", call.input["message"]))
    assert [c.task for c in run.of(ExecutionStarted)] == ["t1", "log"]  # a command is not a task execution
    assert [task for task, _ in run.sequence] == ["t1", "fail", "log"]
    assert run.calls[-1].input == {"message": "bad"}
    assert run.finished.status == "failed"


ITEMS = """
version: 1.0
input:
  - xs: [a, b, c, d, e]
  - limit: 2
tasks:
  t:
    with:
      items: x in <% ctx(xs) %>
      concurrency: <% ctx(limit) %>
    action: core.echo message=<% item(x) %>
    next:
      - when: <% succeeded() %>
        publish: out=<% result() %>
output:
  - out: <% ctx().get(out) %>
"""


def test_with_items_window_and_results_in_item_order():
    events = []

    def outcome(call):
        events.append(call.item)
        return "succeeded", call.input["message"].upper()

    run = drive(ITEMS, outcome=outcome)
    assert run.of(ItemsCreated)[0].values == [{"x": v} for v in "abcde"]
    assert [c.item for c in run.calls] == [0, 1, 2, 3, 4]
    # at most two dispatched before the first completion
    first_end = next(i for i, c in enumerate(run.commands) if type(c).__name__ == "ItemEnded")
    assert sum(isinstance(c, Dispatch) for c in run.commands[:first_end]) == 2
    assert run.finished.output == {"out": ["A", "B", "C", "D", "E"]}
    assert [task for task, _ in run.sequence] == ["t", "continue"]


def test_with_items_failure_stops_new_items_and_fails_the_task():
    run = drive(ITEMS, outcome=lambda call: ("failed", "nope") if call.item == 1 else ("succeeded", "ok"))
    assert [c.item for c in run.calls] == [0, 1, 2]       # item 2 was in flight; 3 and 4 never start
    ended = [c for c in run.of(ExecutionEnded) if c.task == "t"][0]
    assert ended.status == "failed" and ended.error == "item 1: nope"
    assert run.finished.status == "failed"


def test_with_items_empty_list_completes_with_an_empty_result():
    run = drive(ITEMS, {"xs": []})
    assert run.calls == []
    assert run.finished.status == "succeeded" and run.finished.output == {"out": []}


def test_with_items_zip_keys():
    run = waves("""
        version: 1.0
        tasks:
          t:
            with: a, b in <% zip(list(1, 2), list(x, y)) %>
            action: core.echo message="<% item(a) %><% item(b) %>"
        """)
    assert [c.input for c in run.calls] == [{"message": "1x"}, {"message": "2y"}]


RETRY = """
version: 1.0
tasks:
  t:
    action: core.echo message="hi"
    retry:
      count: 2
      delay: 3
    next:
      - when: <% succeeded() %>
        do: u
      - when: <% failed() %>
        do: noop
  u:
    action: core.noop
"""


def test_retry_reuses_the_record_with_a_delay():
    attempts = []

    def outcome(call):
        if call.task == "t":
            attempts.append(call.attempt)
            return ("failed", "flaky") if call.attempt < 3 else ("succeeded", "ok")
        return "succeeded", None

    run = drive(RETRY, outcome=outcome)
    assert attempts == [1, 2, 3]
    assert run.timers == ["dispatch:1:2:-", "dispatch:1:3:-"]
    assert [c.seconds for c in run.of(SetTimer)] == [3.0, 3.0]
    assert [(c.task, c.attempt) for c in run.of(ExecutionStarted)] == [("t", 1), ("t", 2), ("t", 3), ("u", 1)]
    assert [task for task, _ in run.sequence] == ["t", "u"]
    assert run.finished.status == "succeeded"


def test_exhausted_retries_then_transitions_apply():
    run = drive(RETRY, outcome=lambda call: ("failed", "down") if call.task == "t" else ("succeeded", None))
    assert [c.attempt for c in run.calls] == [1, 2, 3]
    assert [task for task, _ in run.sequence] == ["t", "noop"]
    assert run.finished.status == "succeeded"


def test_retry_when_decides_from_the_result():
    run = drive(RETRY.replace("delay: 3", "when: <% result() = 'transient' %>"),
                outcome=lambda call: ("failed", "fatal") if call.task == "t" else ("succeeded", None))
    assert [c.attempt for c in run.calls] == [1]


def test_do_retry_retries_even_successful_runs_three_times():
    run = waves("version: 1.0\ntasks:\n  t:\n    action: core.noop\n    next:\n      - do: retry\n")
    assert [c.attempt for c in run.calls] == [1, 2, 3, 4]
    assert labels(run) == ["t"] and run.status == "succeeded"


def test_delay_and_pass_through_task():
    run = drive("""
        version: 1.0
        tasks:
          gate:
            next: [{do: later}]
          later:
            action: core.noop
            delay: 7
        """)
    assert [c.task for c in run.of(ExecutionStarted)] == ["gate", "later"]
    assert run.of(SetTimer)[0].seconds == 7.0
    assert [c.task for c in run.calls] == ["later"]       # the pass-through task needs no action call
    assert run.finished.status == "succeeded"


def test_inputs_vars_and_output():
    run = waves("""
        version: 1.0
        input:
          - a: 1
          - b: <% ctx(a) + 1 %>
          - c
        vars:
          - d: <% ctx(b) * 10 %>
        tasks:
          t:
            action: core.noop
        output:
          - sum: <% ctx(a) + ctx(b) + ctx(d) %>
          - again: <% ctx(sum) %>
          - c: <% ctx(c) %>
        """, {"a": "<% 5 %>"})
    assert run.output == {"sum": 5 + 6 + 60, "again": 71, "c": None}


# These three read a variable through a computed name, which validation cannot see (a plain
# `ctx(missing)` is rejected before the run starts), so the error happens at run time.
def test_input_error_fails_before_any_task():
    run = waves("version: 1.0\nvars:\n  - x: <% ctx('miss' + 'ing') %>\ntasks:\n  t:\n    action: core.noop\n")
    assert run.status == "failed" and run.calls == [] and run.sequence == []
    assert "vars x" in run.state.errors[0]["message"]


def test_output_error_fails_the_workflow():
    run = waves("version: 1.0\ntasks:\n  t:\n    action: core.noop\noutput:\n  - x: <% ctx('miss' + 'ing') %>\n")
    assert run.status == "failed"


def test_render_error_fails_and_starts_nothing():
    run = waves("""
        version: 1.0
        tasks:
          s:
            action: core.noop
            next: [{do: "a, b"}]
          a:
            action: core.echo message=<% ctx('miss' + 'ing') %>
          b:
            action: core.noop
        """)
    assert run.status == "failed" and labels(run) == ["s"]


def test_resolve_inputs_rejects_unknown_names():
    workflow = wf("version: 1.0\ninput:\n  - a\ntasks:\n  t:\n    action: core.noop\n")
    assert workflow.resolve_inputs({"a": 1}) == {"a": 1}
    with pytest.raises(ParametersInvalid, match="unknown input 'b'"):
        workflow.resolve_inputs({"b": 2})


def test_stale_and_duplicate_events_change_nothing():
    conductor = OrquestaConductor(wf(FAN), RunInfo("r", {}))
    state, commands = conductor.start()
    call = next(c for c in commands if isinstance(c, Dispatch))
    before = json.dumps(state.to_dict(), sort_keys=True)
    assert conductor.apply(state, TaskEnded(99, 1, "succeeded")) == []
    assert conductor.apply(state, TaskEnded(call.seq, 2, "succeeded")) == []
    assert conductor.apply(state, TaskEnded(call.seq, 1, "running")) == []
    assert conductor.apply(state, TimerFired("dispatch:9:9:-")) == []
    assert json.dumps(state.to_dict(), sort_keys=True) == before
    assert conductor.apply(state, TaskEnded(call.seq, 1, "succeeded"))     # accepted: at least one command
    assert conductor.apply(state, TaskEnded(call.seq, 1, "succeeded")) == []


def test_state_round_trips_through_json():
    run = waves(ITEMS)
    data = json.loads(json.dumps(run.state.to_dict()))
    assert data["kind"] == "orquesta"
    again = OrquestaState.from_dict(data, {"v": 1})
    assert again.to_dict() == run.state.to_dict() and again.vars == {"v": 1}


def test_nothing_happens_after_the_run_finished():
    conductor = OrquestaConductor(wf("version: 1.0\ntasks:\n  t:\n    action: core.noop\n"), RunInfo("r", {}))
    state, commands = conductor.start()
    assert conductor.apply(state, TaskEnded(1, 1, "succeeded"))[-1] == RunFinished("succeeded", None, None)
    assert conductor.apply(state, TaskEnded(1, 1, "succeeded")) == []


PARALLEL = """
version: 1.0
tasks:
  a1:
    action: core.noop
    next: [{when: <% succeeded() %>, do: a2}]
  a2:
    action: core.noop
  b1:
    action: core.noop
    next: [{when: <% succeeded() %>, do: b2}]
  b2:
    action: core.noop
"""


def test_rerun_failed_terminal_tasks_resumes_other_branches():
    first = waves(PARALLEL, script=[{"task": "a1", "occurrence": 0, "status": "failed"}])
    assert first.status == "failed" and labels(first) == ["a1", "b1"]
    second = rehearse_waves(wf(PARALLEL), {}, [], previous=first, is_rerun=True)
    # the rerun record is created at the rerun request; b2 was staged before the failure
    assert labels(second) == ["a1", "b1", "a1", "b2", "a2"]
    assert second.status == "succeeded"
    # given only the state, the sequence before the rerun is what the state kept (here: all of it)
    assert labels(rehearse_waves(wf(PARALLEL), {}, [], state=first.state, is_rerun=True)) == labels(second)


def test_rerun_named_task_and_refusals():
    first = waves(PARALLEL)
    conductor = OrquestaConductor(wf(PARALLEL), RunInfo("r", {}))
    state = OrquestaState.from_dict(first.state.to_dict())
    with pytest.raises(RerunError, match="did not run"):
        conductor.rerun(state, [{"task_id": "nope"}])
    commands = conductor.rerun(state, [{"task_id": "b1"}])
    assert [c.task for c in commands if isinstance(c, Dispatch)] == ["b1"]
    with pytest.raises(RerunError, match="completed"):
        conductor.rerun(state)


def test_rerun_with_items_keeps_succeeded_items():
    first = waves(ITEMS, script=[{"task": "t", "occurrence": 0, "item_id": 1, "status": "failed"}])
    assert first.status == "failed"
    second = rehearse_waves(wf(ITEMS), {}, [], previous=first, is_rerun=True)
    assert second.status == "succeeded"
    reran = [c.item for c in second.calls]
    assert 0 not in reran and 1 in reran
    # given only the state, the rerun still knows which items succeeded (not their results)
    third = rehearse_waves(wf(ITEMS), {}, [], state=first.state, is_rerun=True)
    assert [c.item for c in third.calls] == reran and third.status == "succeeded"
    assert labels(third)[:len(first.sequence)] == labels(first)  # the records the state kept


def test_a_runaway_loop_hits_the_execution_limit():
    loop = """
        version: 1.0
        tasks:
          init:
            action: core.noop
            next: [{do: spin}]
          spin:
            action: core.noop
            next: [{do: spin}]
        """
    conductor = OrquestaConductor(wf(loop), RunInfo("r", {}, execution_limit=20))
    state, commands = conductor.start()
    while True:
        calls = [c for c in commands if isinstance(c, Dispatch)]
        if not calls:
            break
        commands = conductor.apply(state, TaskEnded(calls[0].seq, calls[0].attempt, "succeeded"))
    assert commands[-1].status == "failed" and "execution limit of 20" in commands[-1].error


def test_a_retried_with_items_task_runs_its_items_again():
    run = drive("""
        version: 1.0
        tasks:
          t:
            with:
              items: <% list(1, 2) %>
              concurrency: 1
            action: core.echo message=<% item() %>
            retry:
              count: <% 1 + 1 %>
        """, outcome=lambda call: ("failed", "x") if call.attempt < 3 else ("succeeded", call.input["message"]))
    assert [(c.attempt, c.item) for c in run.calls] == [(1, 0), (2, 0), (3, 0), (3, 1)]
    assert len(run.of(ItemsCreated)) == 1
    assert run.finished.status == "succeeded"


def test_a_canceled_task_cancels_the_workflow_once_siblings_end():
    run = drive("""
        version: 1.0
        tasks:
          s:
            action: core.noop
            next: [{do: "a, b"}]
          a:
            action: core.noop
          b:
            action: core.noop
        """, outcome=lambda call: ("canceled", None) if call.task == "a" else ("succeeded", None))
    assert run.finished.status == "canceled"
    assert [c.task for c in run.of(ExecutionEnded)][-1] == "b"


def test_format_helpers_pick_the_right_machinery():
    from orchestrator.engine.conductor import Conductor
    from orchestrator.engine.state import WorkflowState
    from orchestrator.formats import conductor_for, load_any, resolve_params, state_from_dict

    orquesta = load_any("version: 1.0\ninput: [a]\ntasks:\n  t:\n    action: core.noop\n", "o.yaml")
    native = load_any("version: '1.0'\ntasks:\n  - name: t\n    action: core.noop\n", "n.yaml", "n")
    assert isinstance(conductor_for(orquesta, RunInfo("r", {})), OrquestaConductor)
    assert isinstance(conductor_for(native, RunInfo("r", {})), Conductor)
    assert resolve_params(orquesta, {"a": 1}) == {"a": 1}
    state, _ = conductor_for(orquesta, RunInfo("r", {})).start()
    assert isinstance(state_from_dict(json.loads(json.dumps(state.to_dict()))), OrquestaState)
    native_state, _ = conductor_for(native, RunInfo("r", {})).start()
    assert isinstance(state_from_dict(native_state.to_dict()), WorkflowState)


def test_the_orquesta_package_is_pure():
    import subprocess
    import sys

    code = ("import sys, orchestrator.core.control, orchestrator.orquesta, orchestrator.cases, "
            "orchestrator.engine.conductor, orchestrator.engine.rehearsal; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'celery', 'sqlalchemy', 'kombu', 'redis'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_with_items_remediation_lists_the_items_up_to_the_failed_one_as_orquesta_does():
    """Orquesta's test_items_list_with_error_and_remediation: in the wave model an item starts
    when its wave reaches it, so once item 2 fails item 3 never runs and the result has 3 entries."""
    run = waves("""
        version: 1.0
        vars:
          - xs: [fee, fi, fo, fum]
        tasks:
          task1:
            with: <% ctx(xs) %>
            action: core.echo message=<% item() %>
            next:
              - when: <% failed() %>
                publish: items=<% result() %>
                do: task2
          task2:
            action: core.noop
        output:
          - items: <% ctx(items) %>
        """, script=[{"task": "task1", "occurrence": 0, "item_id": 0, "result": "fee"},
                     {"task": "task1", "occurrence": 0, "item_id": 1, "result": "fi"},
                     {"task": "task1", "occurrence": 0, "item_id": 2, "status": "failed", "result": None}])
    assert labels(run) == ["task1", "task2"]
    assert run.status == "succeeded" and run.output == {"items": ["fee", "fi", None]}
    assert [c.item for c in run.calls if c.task == "task1"] == [0, 1, 2]  # item 3 never went out
