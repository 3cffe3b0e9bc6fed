"""End to end on the distributed runtime: real Redis broker, real PostgreSQL, real worker process."""

from __future__ import annotations

import textwrap
import time
import uuid

import pytest
from sqlalchemy import select

from orchestrator import submit
from orchestrator.core.errors import ParametersInvalid, WorkflowInvalid

pytestmark = pytest.mark.runtime


def yaml(text: str) -> str:
    return textwrap.dedent(text)


def test_example_workflow_runs_with_join_and_output(worker):
    run = submit("hello", {"name": "Ada", "times": 2})
    summary = run.wait(30)
    assert summary["status"] == "succeeded", summary
    assert summary["output"] == {"summary": "HELLO, ADA! / hello, ada!", "repeat": ["Hello, Ada!", "Hello, Ada!"]}
    assert [t["name"] for t in summary["tasks"]] == ["greet", "shout", "whisper", "summarise"]
    assert all(t["status"] == "succeeded" and t["attempts"] == 1 for t in summary["tasks"])
    assert summary["started_at"] and summary["finished_at"]


def test_parameters_vars_publish_and_transitions(worker):
    run = submit(yaml("""
        version: "1.0"
        parameters:
          a: {type: integer, required: true}
          b: {type: integer, default: 5}
        vars: {label: "sum of {{ parameters.a }} and {{ parameters.b }}"}
        tasks:
          - name: add
            action: tests.add
            input: {a: "{{ parameters.a }}", b: "{{ parameters.b }}"}
            next:
              - when: "{{ result() > 10 }}"
                publish: [{size: big}]
                do: report
              - when: "{{ result() <= 10 }}"
                publish: [{size: small}]
                do: report
          - name: report
            action: core.echo
            input: {message: "{{ workflow.label }} is {{ workflow.size }} ({{ task.add.result }})"}
        output_map: {report: "{{ task.report.result }}", size: "{{ workflow.size }}"}
    """), {"a": 7})
    summary = run.wait(30)
    assert summary["status"] == "succeeded", summary
    assert summary["output"] == {"report": "sum of 7 and 5 is big (12)", "size": "big"}


JOIN_OF_THREE = """
version: "1.0"
parameters: {fail_b: {type: boolean, default: false}}
tasks:
  - name: start
    action: core.noop
    next: [{do: [b1, b2, b3]}]
  - {name: b1, action: tests.sleep_then, input: {seconds: 0.2, value: 1}, next: [{when: "{{ succeeded() }}", do: merge}]}
  - name: b2
    action: "{{ 'core.fail' if parameters.fail_b else 'core.echo' }}"
    input: {message: "b2 broke"}
    next: [{when: "{{ succeeded() }}", do: merge}]
  - {name: b3, action: tests.sleep_then, input: {seconds: 0.4, value: 3}, next: [{when: "{{ succeeded() }}", do: merge}]}
  - name: merge
    action: core.echo
    join: all
    input: {message: "{{ task.b1.result + task.b3.result }}"}
output_map: {merged: "{{ task.merge.result }}"}
"""


def test_join_of_three_branches(worker):
    text = JOIN_OF_THREE.replace("\"{{ 'core.fail' if parameters.fail_b else 'core.echo' }}\"", "core.echo")
    summary = submit(text).wait(30)
    assert summary["status"] == "succeeded", summary
    assert summary["output"] == {"merged": 4}
    assert [t["name"] for t in summary["tasks"]][-1] == "merge"


def test_join_of_three_where_one_fails(worker):
    text = JOIN_OF_THREE.replace("\"{{ 'core.fail' if parameters.fail_b else 'core.echo' }}\"", "core.fail")
    summary = submit(text).wait(30)
    assert summary["status"] == "failed"
    assert "task 'b2' failed: b2 broke" in summary["error"]
    statuses = {t["name"]: t["status"] for t in summary["tasks"]}
    # the other branches still finish; the join never runs
    assert statuses == {"start": "succeeded", "b1": "succeeded", "b2": "failed", "b3": "succeeded"}


def test_join_n_and_split(worker):
    summary = submit(yaml("""
        version: "1.0"
        tasks:
          - {name: a, action: core.noop, next: [{do: [b, c, d]}]}
          - {name: b, action: core.noop, next: [{do: [first_two, each]}]}
          - {name: c, action: core.noop, next: [{do: [first_two, each]}]}
          - {name: d, action: tests.sleep_then, input: {seconds: 0.3}, next: [{do: [first_two, each]}]}
          - {name: first_two, action: core.noop, join: 2}
          - {name: each, action: core.noop}
    """)).wait(30)
    assert summary["status"] == "succeeded", summary
    names = [t["name"] for t in summary["tasks"]]
    assert names.count("first_two") == 1
    assert names.count("each") == 3


def test_handled_failure_and_fail_command(worker):
    handled = submit(yaml("""
        version: "1.0"
        tasks:
          - name: risky
            action: core.fail
            input: {message: "nope"}
            next:
              - {when: "{{ failed() }}", publish: [{why: "{{ result() }}"}], do: cleanup}
          - {name: cleanup, action: core.echo, input: {message: "cleaned after {{ workflow.why }}"}}
        output_map: {msg: "{{ task.cleanup.result }}"}
    """)).wait(30)
    assert handled["status"] == "succeeded"
    assert handled["output"] == {"msg": "cleaned after nope"}
    failed = submit(yaml("""
        version: "1.0"
        tasks:
          - {name: check, action: core.echo, input: {message: bad}, next: [{when: "{{ result() == 'bad' }}", do: [alert, fail]}]}
          - {name: alert, action: core.echo, input: {message: alerting}}
    """)).wait(30)
    assert failed["status"] == "failed"
    assert [t["name"] for t in failed["tasks"]] == ["check", "alert"]
    assert "'fail' command" in failed["error"]


def test_noop_command_and_unhandled_failure_of_unknown_action_on_worker(worker):
    summary = submit(yaml("""
        version: "1.0"
        tasks:
          - {name: a, action: core.fail, next: [{when: "{{ failed() }}", do: noop}]}
    """)).wait(30)
    assert summary["status"] == "succeeded"


def test_two_workflows_at_once(worker):
    runs = [submit("hello", {"name": f"n{i}"}) for i in range(2)]
    summaries = [r.wait(30) for r in runs]
    assert [s["status"] for s in summaries] == ["succeeded", "succeeded"]
    assert summaries[0]["output"]["summary"] == "HELLO, N0! / hello, n0!"
    assert summaries[1]["output"]["summary"] == "HELLO, N1! / hello, n1!"
    assert summaries[0]["id"] != summaries[1]["id"]


def test_retry_records_every_attempt(worker):
    key = uuid.uuid4().hex
    summary = submit(yaml(f"""
        version: "1.0"
        tasks:
          - name: wobbly
            action: tests.flaky
            input: {{key: "{key}", failures: 2}}
            retry: {{count: 3, delay: 0.1, backoff: linear}}
    """)).wait(30)
    assert summary["status"] == "succeeded", summary
    assert summary["tasks"][0]["attempts"] == 3
    assert summary["tasks"][0]["result"] == 3


def test_redelivered_completion_changes_nothing(worker, orchestrator_env, test_redis):
    """Send a task's completion envelope again, through the broker, while the run goes on."""
    from orchestrator.runtime import supervisor
    from orchestrator.store.models import TaskExecution
    from workers.app import app

    key = uuid.uuid4().hex
    run = submit(yaml(f"""
        version: "1.0"
        tasks:
          - {{name: first, action: tests.count, input: {{key: "{key}-first"}}, next: [{{do: second}}]}}
          - {{name: second, action: tests.sleep_then, input: {{seconds: 1, value: done}}, next: [{{do: third}}]}}
          - {{name: third, action: tests.count, input: {{key: "{key}-third"}}}}
    """))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        names = [t["name"] for t in run.summary()["tasks"]]
        if "second" in names:
            break
        time.sleep(0.02)
    duplicate = {"run": run.id, "seq": 1, "attempt": 1, "item": None, "task": "first",
                 "status": "succeeded", "result": 1, "error": None}
    for _ in range(3):
        app.signature("orchestrator.supervise", args=(duplicate,),
                      queue=orchestrator_env["ORCHESTRATOR_SUPERVISOR_QUEUE"]).apply_async()
    summary = run.wait(30)
    assert summary["status"] == "succeeded"
    assert [t["name"] for t in summary["tasks"]] == ["first", "second", "third"]
    assert int(test_redis.get(f"count:{key}-first")) == 1
    assert int(test_redis.get(f"count:{key}-third")) == 1
    sup = supervisor()
    with sup.db.reading() as conn:
        rows = conn.execute(select(TaskExecution.__table__.c.seq)).all()
    assert sorted(r.seq for r in rows) == [1, 2, 3]


def test_start_workflow_delay_from_any_producer(worker, orchestrator_env):
    from orchestrator import RunHandle, start_workflow

    result = start_workflow.delay("hello", {"name": "Celery"})
    assert uuid.UUID(result.id).version == 7  # the run id: time-ordered (run_ids.py)
    summary = RunHandle(result.id).wait(30)
    assert summary["status"] == "succeeded"
    assert summary["output"]["summary"] == "HELLO, CELERY! / hello, celery!"
    rejected = start_workflow.delay("hello", {"name": 5})
    summary = RunHandle(rejected.id).wait(30)
    assert summary["status"] == "failed"
    assert "parameter 'name'" in summary["error"]
    named = start_workflow.apply_async(("hello", {"name": "Named"}), task_id="named-run-1")
    assert named.id == "named-run-1" and RunHandle("named-run-1").wait(30)["status"] == "succeeded"


def test_bad_input_writes_nothing(orchestrator_env):
    from orchestrator.runtime import supervisor
    from orchestrator.store.models import WorkflowRun

    with pytest.raises(ParametersInvalid):
        submit("hello", {"name": 3})
    with pytest.raises(WorkflowInvalid) as exc:
        submit("version: '1.0'\ntasks:\n  - {name: a, action: nope.missing}\n")
    assert "unknown action 'nope.missing'" in str(exc.value)
    with supervisor().db.reading() as conn:
        assert conn.execute(select(WorkflowRun.__table__.c.id)).all() == []


def test_template_error_fails_the_task_with_its_place(worker):
    summary = submit(yaml("""
        version: "1.0"
        tasks:
          - {name: a, action: core.echo, input: {message: "{{ parameters.missing.deeper }}"}}
    """)).wait(30)
    assert summary["status"] == "failed"
    assert "task 'a': input:" in summary["error"]
    assert "parameters.missing.deeper" in summary["error"]


def test_with_items_fan_in_as_chord(worker):
    summary = submit(yaml("""
        version: "1.0"
        tasks:
          - name: each
            action: tests.add
            with_items: "{{ range(20) | list }}"
            input: {a: "{{ item }}", b: 100}
            next: [{publish: [{total: "{{ result() | sum }}"}]}]
        output_map: {total: "{{ workflow.total }}", n: "{{ length(task.each.result) }}"}
    """)).wait(30)
    assert summary["status"] == "succeeded", summary
    assert summary["output"] == {"total": sum(range(20)) + 2000, "n": 20}
    assert summary["tasks"][0]["items"] == 20
