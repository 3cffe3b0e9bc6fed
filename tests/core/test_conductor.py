"""The conductor's behaviour, construct by construct, through in-process rehearsal."""

import pytest

from orchestrator.engine.commands import Dispatch, SetTimer, TaskEnded, TimerFired
from orchestrator.engine.conductor import Conductor, RunInfo
from orchestrator.engine.state import WorkflowState

from .helpers import run, wf

SEQUENTIAL = """
version: "1.0"
parameters:
  who: {type: string, default: world}
vars:
  greeting: "hello {{ parameters.who }}"
tasks:
  - name: a
    action: core.echo
    input: {message: "{{ workflow.greeting }}"}
    next:
      - when: "{{ succeeded() }}"
        publish: [{first: "{{ result().message }}"}, {again: "{{ workflow.first }}!"}]
        do: b
  - name: b
    action: core.echo
    input: {message: "{{ workflow.again }}", n: "{{ 40 + 2 }}"}
output_map:
  out: "{{ task.b.result }}"
  first: "{{ workflow.first }}"
"""


def test_sequence_publish_and_output():
    r = run(SEQUENTIAL, {"who": "bob"})
    assert r.status == "succeeded", r.error
    assert r.sequence == ["a", "b"]
    assert r.output == {"out": {"message": "hello bob!", "n": 42}, "first": "hello bob"}


def test_unhandled_failure_fails_workflow_and_stops_new_tasks():
    r = run(SEQUENTIAL, a=RuntimeError("boom"))
    assert r.status == "failed"
    assert r.sequence == ["a"]
    assert "task 'a' failed: boom" in r.error
    # output_map is rendered best effort on failure; here it cannot be (b never ran)
    assert "output_map" in r.error


HANDLED = """
version: "1.0"
tasks:
  - name: a
    action: core.fail
    next:
      - when: "{{ failed() }}"
        publish: [{why: "{{ result() }}"}]
        do: [recover]
  - name: recover
    action: core.echo
output_map: {why: "{{ workflow.why }}"}
"""


def test_handled_failure_lets_workflow_succeed():
    r = run(HANDLED, a=RuntimeError("disk full"))
    assert r.status == "succeeded"
    assert r.sequence == ["a", "recover"]
    assert r.output == {"why": "disk full"}


def test_several_transitions_fire_in_order():
    r = run("""
    version: "1.0"
    vars: {log: []}
    tasks:
      - name: a
        action: x
        next:
          - publish: {x: 1}
            do: b
          - when: "{{ succeeded() }}"
            publish: {x: "{{ workflow.x + 1 }}"}
            do: c
          - when: "{{ failed() }}"
            do: d
      - {name: b, action: x}
      - {name: c, action: x}
      - {name: d, action: x}
    output_map: {x: "{{ workflow.x }}"}
    """)
    assert r.sequence == ["a", "b", "c"]
    assert r.output == {"x": 2}


def test_when_sees_context_at_end_not_sibling_publish():
    r = run("""
    version: "1.0"
    vars: {flag: false}
    tasks:
      - name: a
        action: x
        next:
          - publish: {flag: true}
          - when: "{{ workflow.flag }}"
            do: b
      - {name: b, action: x}
    """)
    assert r.sequence == ["a"]


PARALLEL_JOIN = """
version: "1.0"
tasks:
  - name: start
    action: x
    next: [{do: [b1, b2, b3]}]
  - {name: b1, action: x, next: [{when: "{{ succeeded() }}", do: join}]}
  - {name: b2, action: x, next: [{when: "{{ succeeded() }}", do: join}]}
  - {name: b3, action: x, next: [{when: "{{ succeeded() }}", do: join}]}
  - name: join
    action: x
    join: all
"""


def test_join_all_runs_once_after_every_branch():
    r = run(PARALLEL_JOIN)
    assert r.status == "succeeded"
    assert r.sequence == ["start", "b1", "b2", "b3", "join"]


def test_join_with_a_failed_branch_fails_naming_the_task():
    r = run(PARALLEL_JOIN, b2=RuntimeError("nope"))
    assert r.status == "failed"
    assert "join" not in r.sequence
    assert "task 'b2' failed: nope" in r.error


def test_join_that_can_never_be_satisfied_names_missing_branches():
    text = PARALLEL_JOIN.replace('{name: b2, action: x, next: [{when: "{{ succeeded() }}", do: join}]}',
                                 '{name: b2, action: x, next: [{when: "{{ succeeded() }}", do: join}, {when: "{{ failed() }}", do: noop}]}')
    r = run(text, b2=RuntimeError("nope"))
    assert r.status == "failed"
    assert "join 'join' can no longer be satisfied" in r.error
    assert "never from b2" in r.error


def test_join_n_runs_once_when_n_arrived():
    r = run(PARALLEL_JOIN.replace("join: all", "join: 2"))
    assert r.sequence.count("join") == 1
    assert r.status == "succeeded"


def test_split_runs_target_once_per_arrival():
    r = run("""
    version: "1.0"
    tasks:
      - {name: a, action: x, next: [{do: [b, c]}]}
      - {name: b, action: x, next: [{do: d}]}
      - {name: c, action: x, next: [{do: d}]}
      - {name: d, action: x, next: [{do: e}]}
      - {name: e, action: x}
    """)
    assert r.sequence == ["a", "b", "c", "d", "d", "e", "e"]


def test_fail_command_fails_workflow_after_running_siblings():
    r = run("""
    version: "1.0"
    tasks:
      - {name: a, action: x, next: [{do: [log, fail]}]}
      - {name: log, action: x}
    """)
    assert r.status == "failed"
    assert r.sequence == ["a", "log"]
    assert "'fail' command in task 'a'" in r.error


def test_noop_handles_failure():
    r = run("""
    version: "1.0"
    tasks:
      - {name: a, action: x, next: [{when: "{{ failed() }}", do: noop}]}
    """, a=RuntimeError("x"))
    assert r.status == "succeeded"


def test_timeout_is_not_a_failure_for_failed():
    r = run("""
    version: "1.0"
    tasks:
      - name: a
        action: x
        next:
          - {when: "{{ failed() }}", do: f}
          - {when: "{{ timed_out() }}", do: t}
      - {name: f, action: x}
      - {name: t, action: x}
    """, a="timeout")
    assert r.sequence == ["a", "t"]
    assert r.status == "succeeded"


def test_unhandled_timeout_fails_workflow():
    r = run("""
    version: "1.0"
    tasks:
      - {name: a, action: x}
    """, a="timeout")
    assert r.status == "failed" and "timed out" in r.error


def test_legacy_transitions_normalised():
    r = run("""
    version: "1.0"
    tasks:
      - {name: a, action: x, on_success: b, on_failure: "c, d", on_complete: [e]}
      - {name: b, action: x}
      - {name: c, action: x}
      - {name: d, action: x}
      - {name: e, action: x}
    """, a=RuntimeError("x"))
    assert r.sequence == ["a", "c", "d", "e"]


def test_decision_is_first_match_with_default():
    text = """
    version: "1.0"
    parameters: {n: {type: integer}}
    tasks:
      - name: a
        action: x
        decision:
          - {when: "{{ parameters.n > 10 }}", next: big}
          - {when: "{{ parameters.n > 5 }}", next: medium}
          - {default: small}
      - {name: big, action: x}
      - {name: medium, action: x}
      - {name: small, action: x}
    """
    assert run(text, {"n": 20}).sequence == ["a", "big"]
    assert run(text, {"n": 7}).sequence == ["a", "medium"]
    assert run(text, {"n": 1}).sequence == ["a", "small"]


def test_template_error_in_input_fails_task_naming_field_and_expression():
    r = run("""
    version: "1.0"
    tasks:
      - {name: a, action: x, input: {m: "{{ workflow.nope }}"}}
    """)
    assert r.status == "failed"
    assert "task 'a': input:" in r.error and "workflow.nope" in r.error


def test_template_error_in_vars_fails_at_start():
    r = run("""
    version: "1.0"
    vars: {v: "{{ parameters.missing }}"}
    tasks:
      - {name: a, action: x}
    """)
    assert r.status == "failed" and r.sequence == [] and "vars.v" in r.error


def test_cycle_iterates_with_new_executions():
    r = run("""
    version: "1.0"
    vars: {i: 0}
    tasks:
      - name: init
        action: x
        next: [{do: step}]
      - name: step
        action: x
        next:
          - publish: {i: "{{ workflow.i + 1 }}"}
          - when: "{{ workflow.i < 4 }}"
            do: step
    output_map: {i: "{{ workflow.i }}"}
    """)
    # `when` sees the context as the task ended, before this completion's publish
    assert r.sequence == ["init"] + ["step"] * 5
    assert r.output == {"i": 5}


def test_execution_limit_ends_runaway_loop():
    text = """
    version: "1.0"
    tasks:
      - {name: init, action: x, next: [{do: spin}]}
      - {name: spin, action: x, next: [{do: spin}]}
    """
    from orchestrator.engine.rehearsal import rehearse
    r = rehearse(wf(text), {}, execution_limit=50)
    assert r.status == "failed" and "limit of 50" in r.error
    assert len(r.sequence) == 50


def test_with_items_results_in_order_with_concurrency():
    r = run("""
    version: "1.0"
    tasks:
      - name: a
        action: x
        with_items: "{{ [3, 1, 2] }}"
        concurrency: 2
        input: {v: "{{ item * 10 }}", i: "{{ index }}"}
        next: [{publish: {out: "{{ result() }}"}}]
    output_map: {out: "{{ workflow.out }}"}
    """, a=lambda p, attempt, item: p["v"])
    assert r.output == {"out": [30, 10, 20]}
    assert [c.item for c in r.calls] == [0, 1, 2]


def test_with_items_empty_list_succeeds_with_empty_result():
    r = run("""
    version: "1.0"
    tasks:
      - {name: a, action: x, with_items: "{{ [] }}", next: [{publish: {out: "{{ result() }}"}}]}
    output_map: {out: "{{ workflow.out }}"}
    """)
    assert r.status == "succeeded" and r.output == {"out": []}


def test_with_items_failure_stops_new_items():
    r = run("""
    version: "1.0"
    tasks:
      - {name: a, action: x, with_items: "{{ range(10) | list }}", concurrency: 2, input: {i: "{{ item }}"}}
    """, a=lambda p, attempt, item: RuntimeError("bad") if p["i"] == 1 else p["i"])
    assert r.status == "failed"
    assert len(r.calls) == 3  # items 0 and 1 in flight, 2 started when 0 finished, then stop
    assert "item 1: bad" in r.error


def test_retry_counts_attempts_and_backoff():
    r = run("""
    version: "1.0"
    tasks:
      - name: a
        action: x
        retry: {count: 3, delay: 1, backoff: exponential, max_delay: 3}
    """, a=lambda p, attempt, item: RuntimeError("flaky") if attempt < 4 else "ok")
    assert r.status == "succeeded"
    assert [t.seconds for t in r.timers] == [1, 2, 3]
    assert r.clock == 6
    assert [e["status"] for e in r.executions] == ["failed", "failed", "failed", "succeeded"]


def test_stale_and_duplicate_events_change_nothing():
    w = wf(SEQUENTIAL)
    conductor = Conductor(w, RunInfo("r1", {"who": "x"}))
    state, commands = conductor.start()
    call = next(c for c in commands if isinstance(c, Dispatch))
    done = TaskEnded(call.seq, call.attempt, "succeeded", {"message": "m"})
    first = conductor.apply(state, done)
    assert first
    snapshot = state.to_dict(), dict(state.vars)
    assert conductor.apply(state, done) == []
    assert conductor.apply(state, TaskEnded(999, 1, "succeeded")) == []
    assert (state.to_dict(), state.vars) == snapshot


def test_state_round_trips_through_json():
    import json
    w = wf(PARALLEL_JOIN)
    conductor = Conductor(w, RunInfo("r1", {}))
    state, commands = conductor.start()
    calls = [c for c in commands if isinstance(c, Dispatch)]
    more = conductor.apply(state, TaskEnded(calls[0].seq, 1, "succeeded", None))
    branch = [c for c in more if isinstance(c, Dispatch)][0]
    conductor.apply(state, TaskEnded(branch.seq, 1, "succeeded", None))
    restored = WorkflowState.from_dict(json.loads(json.dumps(state.to_dict())), state.vars)
    assert restored == state


def test_static_fan_out_into_join_is_marked_as_one_barrier():
    w = wf(PARALLEL_JOIN)
    conductor = Conductor(w, RunInfo("r1", {}))
    state, commands = conductor.start()
    start = next(c for c in commands if isinstance(c, Dispatch))
    calls = [c for c in conductor.apply(state, TaskEnded(start.seq, 1, "succeeded")) if isinstance(c, Dispatch)]
    assert [c.task for c in calls] == ["b1", "b2", "b3"]
    assert {c.barrier for c in calls} == {"join:join"}


@pytest.mark.parametrize("n", [10_000])
def test_long_sequences_are_linear(n):
    import time
    text = """
    version: "1.0"
    vars: {i: 0}
    tasks:
      - {name: init, action: x, next: [{do: step}]}
      - name: step
        action: x
        next:
          - publish: {i: "{{ workflow.i + 1 }}"}
          - {when: "{{ workflow.i < %d }}", do: step}
    """ % (n - 2)
    from orchestrator.engine.rehearsal import rehearse
    t = time.perf_counter()
    r = rehearse(wf(text), {}, execution_limit=n + 5)
    assert r.status == "succeeded" and len(r.sequence) == n
    assert time.perf_counter() - t < 10  # generous: a quadratic engine takes minutes here


def test_every_accepted_item_completion_yields_a_command():
    """The shell writes a step only when the conductor returns commands; an item that finishes
    while others are still in flight must still be recorded."""
    w = wf("""
    version: "1.0"
    tasks:
      - {name: a, action: x, with_items: "{{ [1, 2, 3] }}", concurrency: 2}
    """)
    conductor = Conductor(w, RunInfo("r", {}))
    state, commands = conductor.start()
    first, second = [c for c in commands if isinstance(c, Dispatch)]
    third = [c for c in conductor.apply(state, TaskEnded(second.seq, 1, "succeeded", 2, item=second.item))
             if isinstance(c, Dispatch)]
    assert [c.item for c in third] == [2]
    later = conductor.apply(state, TaskEnded(first.seq, 1, "succeeded", 1, item=first.item))
    assert later and not any(isinstance(c, Dispatch) for c in later)
    assert conductor.apply(state, TaskEnded(first.seq, 1, "succeeded", 1, item=first.item)) == []


def test_delay_is_a_durable_timer_before_dispatch():
    r = run("""
    version: "1.0"
    tasks:
      - {name: a, action: x, delay: 5, next: [{do: b}]}
      - {name: b, action: x}
    """)
    assert r.status == "succeeded" and r.sequence == ["a", "b"]
    assert [(t.key, t.seconds) for t in r.timers] == [("dispatch:1:1:-", 5)]
    assert r.clock == 5


def test_hung_attempt_ends_timed_out_at_its_deadline_and_is_routed():
    r = run("""
    version: "1.0"
    tasks:
      - name: a
        action: x
        timeout: 30
        next:
          - {when: "{{ timed_out() }}", publish: {why: "{{ result() }}"}, do: b}
      - {name: b, action: x}
    output_map: {why: "{{ workflow.why }}"}
    """, a="hang")
    assert r.sequence == ["a", "b"]
    assert r.status == "succeeded"
    assert r.output == {"why": "timed out after 30 s (no report from the worker)"}
    assert r.clock == 30


def test_retry_after_timeout():
    r = run("""
    version: "1.0"
    tasks:
      - {name: a, action: x, timeout: 10, retry: {count: 2, delay: 1}}
    """, a=lambda p, attempt, item: "hang" if attempt < 3 else "ok")
    assert r.status == "succeeded"
    assert [e["status"] for e in r.executions] == ["timed_out", "timed_out", "succeeded"]
    assert r.clock == 10 + 1 + 10 + 1


def test_retry_when_decides():
    text = """
    version: "1.0"
    tasks:
      - name: a
        action: x
        retry: {count: 5, when: "{{ 'transient' in result() }}"}
    """
    r = run(text, a=lambda p, attempt, item: RuntimeError("transient glitch" if attempt < 3 else "fatal"))
    assert r.status == "failed" and len(r.executions) == 3 and "fatal" in r.error


def test_workflow_timeout_fails_run_and_revokes_running_calls():
    from orchestrator.engine.commands import Revoke
    w = wf("""
    version: "1.0"
    timeout: 60
    tasks:
      - {name: a, action: x, next: [{do: b}]}
      - {name: b, action: x}
    """)
    conductor = Conductor(w, RunInfo("r", {}))
    state, commands = conductor.start()
    assert any(getattr(c, "key", None) == "workflow" for c in commands)
    from orchestrator.engine.commands import TimerFired
    result = conductor.apply(state, TimerFired("workflow"))
    assert Revoke(1, 1) in result
    assert state.status == "failed" and state.failure == "workflow timed out after 60 s"
    assert conductor.apply(state, TaskEnded(1, 1, "succeeded")) == []


def test_item_retries_and_batches_with_short_last_chunk():
    r = run("""
    version: "1.0"
    tasks:
      - name: a
        action: x
        with_items: "{{ range(7) | list }}"
        batch_size: 3
        concurrency: 1
        retry: {count: 1}
        input: {chunk: "{{ item }}"}
        next: [{publish: {out: "{{ result() }}"}}]
    output_map: {out: "{{ workflow.out }}"}
    """, a=lambda p, attempt, item: RuntimeError("once") if item == 1 and attempt == 1 else sum(p["chunk"]))
    assert r.status == "succeeded"
    assert [c.input["chunk"] for c in r.calls] == [[0, 1, 2], [3, 4, 5], [3, 4, 5], [6]]
    assert r.output == {"out": [3, 12, 6]}


def test_with_items_delay_starts_all_items_after_the_delay():
    r = run("""
    version: "1.0"
    tasks:
      - {name: a, action: x, delay: 2, with_items: "{{ [1, 2] }}"}
    """)
    assert r.status == "succeeded" and r.clock == 2 and len(r.calls) == 2


def test_legacy_task_when_skips():
    r = run("""
    version: "1.0"
    parameters: {go: {type: boolean, default: false}}
    tasks:
      - {name: a, action: x, when: "{{ parameters.go }}", on_complete: [b], on_success: [c]}
      - {name: b, action: x}
      - {name: c, action: x}
    """)
    assert r.sequence == ["a", "b"]
    assert r.executions[0]["status"] == "skipped"
    assert [c.task for c in r.calls] == ["b"]


def _leased(text, lease=60):
    w = wf(text)
    conductor = Conductor(w, RunInfo("r", {}, lease=lease))
    state, commands = conductor.start()
    return conductor, state, commands


def test_lease_redrives_a_lost_call_and_extends_a_running_one():
    from orchestrator.engine.commands import SetTimer, TimerFired
    conductor, state, commands = _leased("""
    version: "1.0"
    tasks:
      - {name: a, action: x, input: {v: 1}}
    """)
    assert SetTimer("lease:1:1:-", 60) in commands
    extended = conductor.apply(state, TimerFired("lease:1:1:-", running=True))
    assert extended == [SetTimer("lease:1:1:-", 60)]
    redriven = conductor.apply(state, TimerFired("lease:1:1:-", running=False))
    assert [type(c).__name__ for c in redriven] == ["Dispatch", "SetTimer"]
    assert redriven[0].attempt == 1 and redriven[0].input == {"v": 1}
    done = conductor.apply(state, TaskEnded(1, 1, "succeeded", "ok"))
    assert any(type(c).__name__ == "CancelTimer" and c.key == "lease:1:1:-" for c in done)
    assert state.status == "succeeded"
    assert conductor.apply(state, TimerFired("lease:1:1:-", running=False)) == []


def test_deadline_of_a_call_that_never_started_redrives_instead_of_timing_out():
    from orchestrator.engine.commands import TimerFired
    conductor, state, commands = _leased("""
    version: "1.0"
    tasks:
      - {name: a, action: x, timeout: 5, with_items: "{{ [1, 2] }}"}
    """)
    keys = [c.key for c in commands if type(c).__name__ == "SetTimer"]
    assert keys == ["deadline:1:1:0", "deadline:1:1:1"]  # a timeout's deadline doubles as the lease
    again = conductor.apply(state, TimerFired("deadline:1:1:0", running=False))
    assert [(type(c).__name__, getattr(c, "item", None)) for c in again][0] == ("Dispatch", 0)
    timed_out = conductor.apply(state, TimerFired("deadline:1:1:1", running=True))
    assert any(type(c).__name__ == "ItemEnded" and c.status == "timed_out" for c in timed_out)


def test_oversized_input_fails_the_task_clearly():
    w = wf("""
    version: "1.0"
    tasks:
      - {name: a, action: x, input: {blob: "{{ 'x' * 5000 }}"}}
    """)
    from orchestrator.engine.rehearsal import rehearse
    conductor_run = RunInfo("r", {}, max_input_bytes=1000)
    conductor = Conductor(w, conductor_run)
    state, commands = conductor.start()
    assert state.status == "failed"
    assert "task 'a': input is 5012 bytes, over the limit of 1000" in state.failure
    assert rehearse(w).status == "succeeded"


def test_item_attempt_is_visible_to_templates():
    r = run("""
    version: "1.0"
    tasks:
      - name: a
        action: x
        with_items: "{{ ['p', 'q'] }}"
        retry: {count: 2}
        input: {attempt: "{{ system.attempt }}"}
    """, a=lambda p, attempt, item: RuntimeError("again") if p["attempt"] < 2 else p["attempt"])
    assert r.status == "succeeded"
    assert sorted(c.input["attempt"] for c in r.calls) == [1, 1, 2, 2]


def test_template_failures_are_not_retried():
    r = run("""
    version: "1.0"
    tasks:
      - {name: a, action: x, when: "{{ workflow.missing }}", retry: {count: 3}}
    """)
    assert r.status == "failed" and "task 'a': when:" in r.error
    assert r.calls == [] and len(r.executions) == 1
    r = run("""
    version: "1.0"
    tasks:
      - {name: a, action: x, input: {v: "{{ workflow.missing }}"}, retry: {count: 3}}
    """)
    assert r.status == "failed" and r.calls == [] and len(r.executions) == 1


OPS = """
version: "1.0"
tasks:
  - {name: a, action: x, next: [{do: [b, c]}]}
  - {name: b, action: x, with_items: "{{ [1, 2, 3] }}", concurrency: 1}
  - {name: c, action: x}
"""


def _calls(commands):
    return [c for c in commands if isinstance(c, Dispatch)]


def test_pause_lets_running_calls_finish_and_starts_nothing_until_resume():
    from orchestrator.engine.commands import Control, StatusChanged
    conductor = Conductor(wf(OPS), RunInfo("r", {}))
    state, commands = conductor.start()
    assert conductor.apply(state, Control("pause")) == [StatusChanged("pausing")]
    done_a = conductor.apply(state, TaskEnded(1, 1, "succeeded"))
    assert _calls(done_a) == [] and StatusChanged("paused") in done_a
    assert state.status == "paused"
    resumed = conductor.apply(state, Control("resume"))
    assert [c.task for c in _calls(resumed)] == ["b", "c"]
    assert state.status == "running"


def test_pause_during_with_items_holds_the_window():
    from orchestrator.engine.commands import Control
    conductor = Conductor(wf(OPS), RunInfo("r", {}))
    state, _ = conductor.start()
    started = conductor.apply(state, TaskEnded(1, 1, "succeeded"))
    b_item0 = next(c for c in _calls(started) if c.task == "b")
    conductor.apply(state, Control("pause"))
    after_item = conductor.apply(state, TaskEnded(b_item0.seq, 1, "succeeded", 1, item=0))
    assert _calls(after_item) == []
    conductor.apply(state, TaskEnded(3, 1, "succeeded"))  # c finishes: nothing runs now
    assert state.status == "paused"
    resumed = _calls(conductor.apply(state, Control("resume")))
    assert [(c.task, c.item) for c in resumed] == [("b", 1)]


def test_cancel_is_canceling_until_the_revoked_calls_report():
    from orchestrator.engine.commands import Control, ExecutionEnded, ItemEnded, Revoke, RunFinished, StatusChanged
    conductor = Conductor(wf(OPS), RunInfo("r", {}))
    state, _ = conductor.start()
    conductor.apply(state, TaskEnded(1, 1, "succeeded"))
    result = conductor.apply(state, Control("cancel"))
    assert Revoke(2, 1, 0, terminate=True) in result and Revoke(3, 1, terminate=True) in result
    assert result[-1] == StatusChanged("canceling") and state.status == "canceling"
    assert conductor.apply(state, Control("pause")) == [] and conductor.apply(state, Control("cancel")) == []
    # c completed before the revoke reached it: its result is kept, nothing follows it
    done_c = conductor.apply(state, TaskEnded(3, 1, "succeeded", "c-out"))
    assert ExecutionEnded(3, "c", 1, "succeeded", "c-out", None) in done_c and not _calls(done_c)
    assert state.status == "canceling"
    # b's running item was interrupted: the item and the execution end canceled, and so does the run
    done_b = conductor.apply(state, TaskEnded(2, 1, "failed", error="interrupted (the call was revoked)", item=0))
    assert ItemEnded(2, 0, "canceled", "canceled by request (interrupted (the call was revoked))") in done_b
    assert ExecutionEnded(2, "b", 1, "canceled", None, "canceled by request") in done_b
    assert done_b[-1] == RunFinished("canceled", None, "canceled by request") and state.status == "canceled"
    assert conductor.apply(state, TaskEnded(2, 1, "succeeded", item=1)) == []


def test_cancel_with_nothing_running_ends_at_once():
    from orchestrator.engine.commands import Control, ExecutionEnded, RunFinished, StatusChanged
    conductor = Conductor(wf(OPS), RunInfo("r", {}))
    state, _ = conductor.start()
    conductor.apply(state, Control("pause"))
    conductor.apply(state, TaskEnded(1, 1, "succeeded"))  # paused: b and c are held back, a is done
    assert state.status == "paused"
    result = conductor.apply(state, Control("cancel"))
    assert not [c for c in result if type(c).__name__ == "Revoke"]
    assert result[-2:] == [StatusChanged("canceling"), RunFinished("canceled", None, "canceled by request")]


def test_a_revoked_call_that_never_started_is_found_by_its_check_timer():
    from orchestrator.engine.commands import Control, ExecutionEnded, RunFinished, SetTimer, TimerFired
    from orchestrator.core.timers import CANCEL_CHECK
    conductor = Conductor(wf("""
    version: "1.0"
    tasks:
      - {name: a, action: x}
    """), RunInfo("r", {}, lease=600))
    state, _ = conductor.start()
    canceled = conductor.apply(state, Control("cancel"))
    assert SetTimer("lease:1:1:-", CANCEL_CHECK) in canceled
    # still running: look again later
    assert conductor.apply(state, TimerFired("lease:1:1:-", running=True)) == [SetTimer("lease:1:1:-", CANCEL_CHECK)]
    gone = conductor.apply(state, TimerFired("lease:1:1:-", running=False))
    assert ExecutionEnded(1, "a", 1, "canceled", None, "canceled by request (it never started)") in gone
    assert gone[-1] == RunFinished("canceled", None, "canceled by request")


def test_rerun_from_failed_tasks_keeps_what_succeeded():
    from orchestrator.engine.commands import Rerun
    conductor = Conductor(wf(OPS), RunInfo("r", {}))
    state, _ = conductor.start()
    conductor.apply(state, TaskEnded(1, 1, "succeeded"))
    conductor.apply(state, TaskEnded(3, 1, "failed", error="c broke"))
    for i in range(3):
        conductor.apply(state, TaskEnded(2, 1, "succeeded", i, item=i))
    assert state.status == "failed"
    again = conductor.apply(state, Rerun())
    assert [c.task for c in _calls(again)] == ["c"]
    conductor.apply(state, TaskEnded(_calls(again)[0].seq, 1, "succeeded"))
    assert state.status == "succeeded"
    with pytest.raises(ValueError):
        conductor.apply(state, Rerun())


def test_core_ask_waits_for_a_valid_response():
    from orchestrator.engine.commands import Responded
    conductor = Conductor(wf("""
    version: "1.0"
    tasks:
      - name: approve
        action: core.ask
        input: {prompt: "ship it?", schema: {type: object, required: [ok], properties: {ok: {type: boolean}}}}
        next: [{when: "{{ result().ok }}", do: ship}]
      - {name: ship, action: x}
    """), RunInfo("r", {}))
    state, commands = conductor.start()
    assert _calls(commands) == [] and state.asks
    with pytest.raises(ValueError, match="does not match its schema"):
        conductor.apply(state, Responded("approve", {"ok": "yes"}))
    shipped = conductor.apply(state, Responded("approve", {"ok": True}))
    assert [c.task for c in _calls(shipped)] == ["ship"]


def test_an_unanswered_ask_times_out_whatever_the_shell_finds_of_its_call():
    from orchestrator.engine.commands import ExecutionEnded
    conductor = Conductor(wf("""
    version: "1.0"
    tasks:
      - {name: approve, action: core.ask, timeout: 5, input: {schema: {type: object}}}
    """), RunInfo("r", {}, lease=600))
    state, commands = conductor.start()
    assert SetTimer("ask:1:1:-", 5) in commands
    # an ask is never dispatched: its timer is not a watch, the shell hands it back as it is
    ended = conductor.apply(state, TimerFired("ask:1:1:-"))
    assert ExecutionEnded(1, "approve", 1, "timed_out", None, "no response within 5 s") in ended
    assert state.status == "failed" and not state.asks


def test_an_ask_stored_with_a_deadline_timer_still_times_out():
    """An ask written before asks had timers of their own was watched by its deadline key."""
    from orchestrator.engine.commands import ExecutionEnded
    from orchestrator.engine.state import WorkflowState
    conductor = Conductor(wf("""
    version: "1.0"
    tasks:
      - {name: approve, action: core.ask, timeout: 5, input: {schema: {type: object}}}
    """), RunInfo("r", {}, lease=600))
    stored = {"status": "running", "next_seq": 2, "started": 1,
              "active": {"1": {"seq": 1, "task": "approve", "attempt": 1, "items": None, "next_item": 0,
                               "in_flight": {}, "item_error": None, "item_status": None, "waiting": []}},
              "tasks": {}, "joins": {}, "failure": None, "deferred": [],
              "asks": {"1": {"task": "approve", "schema": {"type": "object"}, "prompt": None}}, "paused_calls": []}
    state = WorkflowState.from_dict(stored)
    ended = conductor.apply(state, TimerFired("deadline:1:1:-", running=False))
    assert ExecutionEnded(1, "approve", 1, "timed_out", None, "no response within 5 s") in ended
    assert state.status == "failed" and not state.asks


def test_a_delay_that_comes_due_while_paused_is_kept_and_starts_on_resume():
    from orchestrator.engine.commands import Control, StateUpdated
    conductor = Conductor(wf("""
    version: "1.0"
    tasks:
      - {name: later, action: x, delay: 30}
    """), RunInfo("r", {}))
    state, commands = conductor.start()
    assert not _calls(commands)
    conductor.apply(state, Control("pause"))
    assert state.status == "paused"
    # the shell deleted the timer row: the held launch must be written, so something is returned
    assert conductor.apply(state, TimerFired("dispatch:1:1:-")) == [StateUpdated()]
    assert [c.task for c in _calls(conductor.apply(state, Control("resume")))] == ["later"]


def test_a_lost_call_is_sent_again_and_calls_lists_what_is_out():
    from orchestrator.engine.commands import CallLost, CancelTimer, Control

    conductor, state, commands = _leased("""
        version: "1.0"
        tasks:
          - {name: a, action: core.noop, next: [{when: "{{ succeeded() }}", do: b}]}
          - {name: b, action: core.noop}
    """)
    assert conductor.calls(state) == [(1, 1, None)]
    again = conductor.apply(state, CallLost(1, 1))
    assert CancelTimer("lease:1:1:-") in again and SetTimer("lease:1:1:-", 60) in again
    assert [(c.seq, c.attempt, c.task) for c in again if isinstance(c, Dispatch)] == [(1, 1, "a")]
    assert conductor.apply(state, CallLost(1, 2)) == []  # not a call in flight
    conductor.apply(state, TaskEnded(1, 1, "succeeded"))
    assert conductor.calls(state) == [(2, 1, None)]
    assert conductor.apply(state, CallLost(1, 1)) == []  # stale
    conductor.apply(state, Control("cancel"))
    ended = conductor.apply(state, CallLost(2, 1, reason="its worker was lost"))
    assert ended[-1].status == "canceled"
    assert any(type(c).__name__ == "ExecutionEnded" and "its worker was lost" in c.error for c in ended)
    assert conductor.calls(state) == []


def test_lost_items_are_sent_again_one_by_one():
    from orchestrator.engine.commands import CallLost

    conductor, state, commands = _leased("""
        version: "1.0"
        tasks:
          - {name: each, action: core.echo, with_items: "{{ [1, 2, 3] }}", concurrency: 2,
             input: {message: "{{ item }}"}}
    """)
    assert conductor.calls(state) == [(1, 1, 0), (1, 1, 1)]
    again = [c for c in conductor.apply(state, CallLost(1, 1, 1)) if isinstance(c, Dispatch)]
    assert [(c.item, c.input) for c in again] == [(1, {"message": 2})]
