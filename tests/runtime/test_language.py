"""The rest of the language end to end on the distributed runtime (Redis, PostgreSQL, prefork worker)."""

from __future__ import annotations

import textwrap
import time
import uuid

import pytest

from orchestrator import submit

pytestmark = pytest.mark.runtime


def flow(text: str) -> str:
    return textwrap.dedent(text)


def test_soft_time_limit_ends_attempt_as_timed_out_and_routes_it(worker):
    started = time.monotonic()
    summary = submit(flow("""
        version: "1.0"
        tasks:
          - name: slow
            action: core.sleep
            input: {seconds: 30}
            timeout: 1
            next:
              - {when: "{{ timed_out() }}", publish: [{why: "{{ result() }}"}], do: fallback}
              - {when: "{{ failed() }}", do: never}
          - {name: fallback, action: core.echo, input: {message: "fell back"}}
          - {name: never, action: core.noop}
        output_map: {why: "{{ workflow.why }}"}
    """)).wait(30)
    assert time.monotonic() - started < 10
    assert summary["status"] == "succeeded", summary
    assert [(t["name"], t["status"]) for t in summary["tasks"]] == [("slow", "timed_out"), ("fallback", "succeeded")]
    assert summary["output"] == {"why": "timed out after 1.0 s"}


def test_retry_with_backoff_after_timeouts(worker):
    summary = submit(flow("""
        version: "1.0"
        tasks:
          - name: slow
            action: core.sleep
            input: {seconds: "{{ 5 if system.attempt < 3 else 0 }}"}
            timeout: 1
            retry: {count: 3, delay: 0.2, backoff: exponential}
    """)).wait(40)
    assert summary["status"] == "succeeded", summary
    assert summary["tasks"][0]["attempts"] == 3


def test_workflow_timeout_fails_run_and_cancels_running_task(worker):
    started = time.monotonic()
    summary = submit(flow("""
        version: "1.0"
        timeout: 2
        tasks:
          - {name: long, action: core.sleep, input: {seconds: 20}, next: [{do: after}]}
          - {name: after, action: core.noop}
    """)).wait(30)
    assert time.monotonic() - started < 10
    assert summary["status"] == "failed"
    assert summary["error"] == "workflow timed out after 2 s"
    assert [(t["name"], t["status"]) for t in summary["tasks"]] == [("long", "canceled")]


def test_delay_before_dispatch(worker):
    started = time.monotonic()
    summary = submit(flow("""
        version: "1.0"
        tasks:
          - {name: later, action: core.echo, input: {message: hi}, delay: 1.5}
    """)).wait(30)
    assert summary["status"] == "succeeded"
    assert time.monotonic() - started >= 1.5


def test_loop_iterates_each_visit_a_new_execution(worker):
    summary = submit(flow("""
        version: "1.0"
        vars: {n: 0}
        tasks:
          - {name: init, action: core.noop, next: [{do: step}]}
          - name: step
            action: core.echo
            input: {message: "{{ workflow.n }}"}
            next:
              - publish: [{n: "{{ workflow.n + 1 }}"}]
              - {when: "{{ workflow.n < 4 }}", do: step}
        output_map: {n: "{{ workflow.n }}", last: "{{ task.step.result }}"}
    """)).wait(30)
    assert summary["status"] == "succeeded"
    assert [t["name"] for t in summary["tasks"]] == ["init"] + ["step"] * 5
    assert summary["output"] == {"n": 5, "last": 4}


def test_loop_hitting_the_execution_limit(orchestrator_env, tmp_path, monkeypatch):
    from tests.runtime.conftest import WorkerProcess, _reset_process

    monkeypatch.setenv("ORCHESTRATOR_EXECUTION_LIMIT", "25")
    _reset_process()
    limited = WorkerProcess({**orchestrator_env, "ORCHESTRATOR_EXECUTION_LIMIT": "25"}, tmp_path / "w.log").wait_ready()
    try:
        summary = submit(flow("""
            version: "1.0"
            tasks:
              - {name: init, action: core.noop, next: [{do: spin}]}
              - {name: spin, action: core.noop, next: [{do: spin}]}
        """)).wait(60)
    finally:
        limited.stop_in_background()
    assert summary["status"] == "failed"
    assert summary["error"] == "task execution limit of 25 reached when starting task 'spin'"
    assert len(summary["tasks"]) == 25


def test_with_items_window_failure_and_retries(worker, test_redis):
    key = uuid.uuid4().hex
    summary = submit(flow(f"""
        version: "1.0"
        tasks:
          - name: each
            action: tests.flaky
            with_items: "{{{{ range(6) | list }}}}"
            concurrency: 2
            retry: {{count: 1}}
            input: {{key: "{key}-{{{{ item }}}}", failures: "{{{{ 1 if item == 3 else 0 }}}}"}}
        output_map: {{out: "{{{{ task.each.result }}}}"}}
    """)).wait(30)
    assert summary["status"] == "succeeded", summary
    assert summary["output"] == {"out": [1, 1, 1, 2, 1, 1]}
    failing = submit(flow("""
        version: "1.0"
        tasks:
          - name: each
            action: core.shell
            with_items: "{{ range(10) | list }}"
            concurrency: 2
            input: {cmd: ["sh", "-c", "test {{ item }} -ne 2"]}
    """)).wait(30)
    assert failing["status"] == "failed"
    assert "item 2: command exited with 1" in failing["error"]
    assert failing["tasks"][0]["items"] == 10


def test_subworkflow_output_is_the_result_and_failure_the_failure(worker, orchestrator_env, tmp_path):
    import os

    child = tmp_path / "child.yaml"
    child.write_text(flow("""
        version: "1.0"
        parameters: {x: {type: integer, required: true}}
        tasks:
          - {name: double, action: tests.add, input: {a: "{{ parameters.x }}", b: "{{ parameters.x }}"}}
          - {name: check, action: core.noop, when: "{{ parameters.x > 100 }}"}
        output_map: {doubled: "{{ task.double.result }}"}
    """))
    bad_child = tmp_path / "bad_child.yaml"
    bad_child.write_text(flow("""
        version: "1.0"
        tasks:
          - {name: boom, action: core.fail, input: {message: child broke}}
    """))
    os.environ["ORCHESTRATOR_WORKFLOWS"] = f"{tmp_path}{os.pathsep}{orchestrator_env['ORCHESTRATOR_WORKFLOWS']}"
    from tests.runtime.conftest import WorkerProcess, _reset_process

    _reset_process()
    env = {**orchestrator_env, "ORCHESTRATOR_WORKFLOWS": os.environ["ORCHESTRATOR_WORKFLOWS"]}
    worker.stop()
    second = WorkerProcess(env, tmp_path / "w2.log").wait_ready()
    try:
        summary = submit(flow("""
            version: "1.0"
            tasks:
              - name: call
                action: child
                input: {x: 21}
                next: [{when: "{{ succeeded() }}", publish: [{got: "{{ result().doubled }}"}], do: each}]
              - name: each
                action: child
                with_items: "{{ [1, 2, 3] }}"
                input: {x: "{{ item }}"}
              - name: broken
                action: bad_child
                next: [{when: "{{ failed() }}", publish: [{why: "{{ result() }}"}]}]
            output_map: {got: "{{ workflow.got }}", each: "{{ task.each.result }}", why: "{{ workflow.why }}"}
        """)).wait(60)
    finally:
        second.stop_in_background()
    assert summary["status"] == "succeeded", summary
    assert summary["output"]["got"] == 42
    assert summary["output"]["each"] == [{"doubled": 2}, {"doubled": 4}, {"doubled": 6}]
    assert "sub-workflow 'bad_child'" in summary["output"]["why"] and "child broke" in summary["output"]["why"]


def test_queue_routing(orchestrator_env, tmp_path):
    from tests.runtime.conftest import WorkerProcess

    special = f"{orchestrator_env['ORCHESTRATOR_DEFAULT_QUEUE']}.special"
    queues = f"{orchestrator_env['ORCHESTRATOR_DEFAULT_QUEUE']},{orchestrator_env['ORCHESTRATOR_SUPERVISOR_QUEUE']}"
    general = WorkerProcess(orchestrator_env, tmp_path / "general.log", extra=["-Q", queues], name="general")
    dedicated = WorkerProcess(orchestrator_env, tmp_path / "special.log", extra=["-Q", special], name="special")
    try:
        general.wait_ready()
        dedicated.wait_ready()
        summary = submit(flow(f"""
            version: "1.0"
            tasks:
              - {{name: routed, action: core.shell, queue: "{special}", input: {{cmd: [hostname]}}}}
        """)).wait(30)
    finally:
        general.stop()
        dedicated.stop()
    assert summary["status"] == "succeeded"
    assert "routed" in dedicated.text() and "routed" not in general.text().split("ready.", 1)[-1]


def test_timeout_inside_a_sub_workflow_fails_the_calling_task(worker):
    """examples/workflow-timeout.yaml times out after 1 s; as a child its failure is the task's."""
    summary = submit(flow("""
        version: "1.0"
        tasks:
          - name: child
            action: workflow-timeout
            next: [{when: "{{ failed() }}", publish: [{why: "{{ result() }}"}]}]
        output_map: {why: "{{ workflow.why }}"}
    """)).wait(30)
    assert summary["status"] == "succeeded", summary
    assert summary["tasks"][0]["status"] == "failed"
    assert "sub-workflow 'workflow-timeout'" in summary["output"]["why"]
    assert "workflow timed out after 1 s" in summary["output"]["why"]


def test_secrets_from_config_are_masked_in_what_is_stored(orchestrator_env, tmp_path, monkeypatch):
    from tests.runtime.conftest import WorkerProcess, _reset_process

    config = '{"secrets": {"token": "tok-9f8e7d6c"}, "region": "eu"}'
    monkeypatch.setenv("ORCHESTRATOR_CONFIG", config)
    _reset_process()
    process = WorkerProcess({**orchestrator_env, "ORCHESTRATOR_CONFIG": config}, tmp_path / "w.log").wait_ready()
    try:
        summary = submit(flow("""
            version: "1.0"
            tasks:
              - name: call
                action: core.echo
                input: {message: "Bearer {{ config.secrets.token }} in {{ config.region }}"}
                next:
                  - when: "{{ result() == 'Bearer ' ~ config.secrets.token ~ ' in eu' }}"
                    publish: [{header: "{{ result() }}"}]
                    do: use
              - {name: use, action: core.echo, input: {message: "{{ workflow.header }}"}}
            output_map: {header: "{{ workflow.header }}"}
        """)).wait(30)
    finally:
        process.stop()
    assert summary["status"] == "succeeded"  # the workflow saw the real value
    assert [t["result"] for t in summary["tasks"]] == ["Bearer *** in eu", "Bearer *** in eu"]
    assert summary["output"] == {"header": "Bearer *** in eu"}
    assert "tok-9f8e7d6c" not in process.text()
