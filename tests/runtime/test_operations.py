"""Operations on the distributed runtime, driven as a user would: Python handle and CLI."""

from __future__ import annotations

import json
import textwrap
import time

import pytest

from orchestrator import submit

from .test_cli import cli

pytestmark = pytest.mark.runtime

SLOW_ITEMS = textwrap.dedent("""
    version: "1.0"
    tasks:
      - name: each
        action: core.sleep
        with_items: "{{ range(6) | list }}"
        concurrency: 2
        input: {seconds: 0.6}
        next: [{do: after}]
      - {name: after, action: core.echo, input: {message: done}}
    output_map: {after: "{{ task.after.result }}"}
""")


def wait_status(run, wanted: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while run.status() != wanted:
        assert time.monotonic() < deadline, f"still {run.status()}, wanted {wanted}"
        time.sleep(0.05)


def test_pause_and_resume_during_with_items(worker, orchestrator_env):
    run = submit(SLOW_ITEMS)
    time.sleep(0.3)
    result = cli("pause", run.id, env=orchestrator_env)
    assert result.returncode == 0, result.stderr
    assert run.status() in ("pausing", "paused")
    wait_status(run, "paused")
    frozen = run.summary()
    time.sleep(1.5)
    assert run.summary()["tasks"] == frozen["tasks"]  # nothing new started while paused
    assert cli("resume", run.id, env=orchestrator_env).returncode == 0
    summary = run.wait(30)
    assert summary["status"] == "succeeded" and summary["output"] == {"after": "done"}


def test_cancel_interrupts_running_actions_canceling_then_canceled(worker, orchestrator_env):
    run = submit(SLOW_ITEMS.replace("seconds: 0.6", "seconds: 60"))
    deadline = time.monotonic() + 10
    while not run.summary()["tasks"] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the two items in the window are sleeping in the worker
    began = time.monotonic()
    result = cli("cancel", run.id, env=orchestrator_env)
    assert result.returncode == 0, result.stderr
    assert run.status() in ("canceling", "canceled")
    summary = run.wait(20)
    assert time.monotonic() - began < 15, "the sleeping actions were not interrupted"
    assert summary["status"] == "canceled" and summary["error"] == "canceled by request"
    assert summary["tasks"][0]["status"] == "canceled"
    assert "after" not in [t["name"] for t in summary["tasks"]]
    from orchestrator.runtime import supervisor
    from orchestrator.store.models import TaskItem
    from sqlalchemy import select

    items = TaskItem.__table__
    with supervisor().db.reading() as conn:
        ended = conn.execute(select(items.c.idx, items.c.status).where(items.c.run_id == run.id)
                             .where(items.c.status.is_not(None)).order_by(items.c.idx)).all()
    assert [tuple(row) for row in ended] == [(0, "canceled"), (1, "canceled")]


def submit_parent_of_slow_child():
    """A run whose first task is a sub-workflow run of SLOW_ITEMS, started half a second ago."""
    from orchestrator import register

    register(SLOW_ITEMS.replace('version: "1.0"', 'version: "1.0"\nname: slow-child', 1))
    run = submit(textwrap.dedent("""
        version: "1.0"
        tasks:
          - {name: child, action: slow-child, next: [{do: after}]}
          - {name: after, action: core.echo, input: {message: "{{ task.child.result.after }}"}}
        output_map: {after: "{{ task.after.result }}"}
    """))
    time.sleep(0.5)
    return run


def test_pause_and_cancel_cascade_into_a_sub_workflow(worker, orchestrator_env):
    run = submit_parent_of_slow_child()
    run.pause()
    wait_status(run, "paused")
    from orchestrator.runtime import supervisor
    from orchestrator.store.models import WorkflowRun
    from sqlalchemy import select

    with supervisor().db.reading() as conn:
        children = conn.execute(select(WorkflowRun.__table__.c.status).where(
            WorkflowRun.__table__.c.parent_run_id == run.id)).scalars().all()
    assert children and all(s in ("pausing", "paused") for s in children)
    run.cancel()
    assert run.wait(10)["status"] == "canceled"
    time.sleep(0.5)
    with supervisor().db.reading() as conn:
        children = conn.execute(select(WorkflowRun.__table__.c.status).where(
            WorkflowRun.__table__.c.parent_run_id == run.id)).scalars().all()
    assert children == ["canceled"]


def test_pause_and_resume_cascade_into_a_sub_workflow(worker, orchestrator_env):
    run = submit_parent_of_slow_child()
    assert cli("pause", run.id, env=orchestrator_env).returncode == 0
    wait_status(run, "paused")
    child = f"{run.id}.1.1"
    from orchestrator import RunHandle

    assert RunHandle(child).status() == "paused"
    frozen = RunHandle(child).summary()["tasks"]
    time.sleep(1.0)
    assert RunHandle(child).summary()["tasks"] == frozen  # the child's window is held too
    assert cli("resume", run.id, env=orchestrator_env).returncode == 0
    summary = run.wait(30)
    assert summary["status"] == "succeeded" and summary["output"] == {"after": "done"}
    assert RunHandle(child).status() == "succeeded"
    kinds = [e["kind"] for e in RunHandle(child).events() if e["kind"].startswith("workflow.")]
    assert kinds == ["workflow.started", "workflow.pausing", "workflow.paused", "workflow.running",
                     "workflow.succeeded"]


def test_rerun_after_fixing_the_failing_action(worker, orchestrator_env, tmp_path):
    marker = tmp_path / "fixed"
    run = submit(textwrap.dedent(f"""
        version: "1.0"
        tasks:
          - {{name: first, action: core.echo, input: {{message: one}}, next: [{{do: fragile}}]}}
          - {{name: fragile, action: core.shell, input: {{cmd: ["test", "-e", "{marker}"]}}, on_success: last}}
          - {{name: last, action: core.echo, input: {{message: "{{{{ task.first.result }}}} then last"}}}}
        output_map: {{last: "{{{{ task.last.result }}}}"}}
    """))
    failed = run.wait(30)
    assert failed["status"] == "failed", failed
    marker.touch()  # the fix
    result = cli("rerun", run.id, env=orchestrator_env)
    assert result.returncode == 0, result.stderr
    summary = run.wait(30)
    assert summary["status"] == "succeeded", summary
    assert [t["name"] for t in summary["tasks"]] == ["first", "fragile", "fragile", "last"]
    assert summary["output"] == {"last": "one then last"}
    again = cli("rerun", run.id, env=orchestrator_env)
    assert again.returncode == 2 and "only a failed run can be rerun" in again.stderr


def test_core_ask_answered_from_the_cli(worker, orchestrator_env):
    run = submit(textwrap.dedent("""
        version: "1.0"
        tasks:
          - name: approve
            action: core.ask
            input: {prompt: "Deploy?", schema: {type: object, required: [ok], properties: {ok: {type: boolean}}}}
            timeout: 60
            next: [{when: "{{ result().ok }}", do: deploy}]
          - {name: deploy, action: core.echo, input: {message: deployed}}
        output_map: {deploy: "{{ task.deploy.result }}"}
    """))
    time.sleep(0.5)
    assert run.status() == "running"
    bad = cli("respond", run.id, "approve", "--data", json.dumps({"ok": "sure"}), env=orchestrator_env)
    assert bad.returncode == 2 and "does not match its schema" in bad.stderr
    good = cli("respond", run.id, "approve", "--data", json.dumps({"ok": True}), env=orchestrator_env)
    assert good.returncode == 0, good.stderr
    summary = run.wait(30)
    assert summary["status"] == "succeeded" and summary["output"] == {"deploy": "deployed"}
    assert summary["tasks"][0]["result"] == {"ok": True}


def test_an_unanswered_core_ask_times_out(worker, orchestrator_env):
    run = submit(textwrap.dedent("""
        version: "1.0"
        tasks:
          - name: approve
            action: core.ask
            timeout: 1
            input: {prompt: "ship it?", schema: {type: object}}
            next: [{when: "{{ timed_out() }}", do: escalate}]
          - {name: escalate, action: core.echo, input: {message: "nobody answered"}}
        output_map: {escalated: "{{ task.escalate.result }}"}
    """))
    summary = run.wait(20)
    assert summary["status"] == "succeeded", summary
    assert summary["tasks"][0]["status"] == "timed_out"
    assert summary["tasks"][0]["error"] == "no response within 1 s"
    assert summary["output"] == {"escalated": "nobody answered"}
