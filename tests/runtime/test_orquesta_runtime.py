"""Orquesta-format runs on the real distributed runtime (PostgreSQL, Redis, a worker subprocess):
Orquesta's own fixtures (from the shared conformance cases) whose actions all succeed, and the
operations (pause, resume, cancel, core.ask answers, rerun) driven as a user would."""

from __future__ import annotations

import json
import re
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from orchestrator import submit

from .test_cli import cli
from .test_operations import wait_status

pytestmark = pytest.mark.runtime

CASES = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "orquesta" / "cases.json"
ENGINE_COMMANDS = {"continue", "noop", "fail"}


def runnable_cases() -> list[dict]:
    if not CASES.exists():
        return []
    chosen = []
    for case in json.loads(CASES.read_text())["cases"]:
        actions = set(re.findall(r"action:\s*([\w.]+)", case["workflow_yaml"]))
        script_ok = all(step.get("status") == "succeeded" and step.get("result") is None
                        for step in case.get("script") or [])
        if (actions <= {"core.noop"} and script_ok and not case.get("rerun")
                and case["expected"].get("workflow_status") == "succeeded"):
            chosen.append(case)
    return chosen[:8]


CHOSEN = runnable_cases()


@pytest.mark.skipif(not CHOSEN, reason=f"conformance cases not found at {CASES}")
def test_orquesta_fixtures_run_on_workers(worker):
    runs = [(case, submit(case["workflow_yaml"], case.get("inputs") or {})) for case in CHOSEN]
    for case, run in runs:
        summary = run.wait(60)
        expected = case["expected"]
        assert summary["status"] == expected["workflow_status"], (case["name"], summary)
        names = Counter(t["name"] for t in summary["tasks"] if t["name"] not in ENGINE_COMMANDS)
        assert names == Counter(expected["task_sequence_without_engine_commands"]), case["name"]
        if "output" in expected:
            assert summary["output"] == expected["output"], case["name"]
    assert len(CHOSEN) >= 5


HOLD = textwrap.dedent("""
    version: 1.0
    tasks:
      hold:
        action: core.sleep
        input: {seconds: 1.5}
        next: [{do: after}]
      side:
        action: core.echo
        input: {message: side}
      after:
        action: core.echo
        input: {message: done}
        next:
          - publish: said=<% result() %>
    output:
      - said: <% ctx(said) %>
""")


def names(summary: dict) -> list[str]:
    return [t["name"] for t in summary["tasks"] if t["name"] not in ENGINE_COMMANDS]


def wait_running(run, task: str, timeout: float = 10) -> None:
    """Until the task's execution exists (its call is out to the worker)."""
    deadline = time.monotonic() + timeout
    while task not in [t["name"] for t in run.summary()["tasks"]]:
        assert time.monotonic() < deadline, f"{task} never started: {run.summary()}"
        time.sleep(0.05)


def test_orquesta_pause_lets_the_running_task_finish_and_resume_continues(worker, orchestrator_env):
    run = submit(HOLD.replace("seconds: 1.5", "seconds: 2.5"))
    wait_running(run, "hold")
    run.pause()
    assert run.status() == "pausing"  # hold is still sleeping
    wait_status(run, "paused")
    tasks = {t["name"]: t["status"] for t in run.summary()["tasks"]}
    assert tasks == {"hold": "succeeded", "side": "succeeded"}  # hold finished; after was held back
    time.sleep(1.0)
    assert {t["name"] for t in run.summary()["tasks"]} == {"hold", "side"}
    result = cli("resume", run.id, env=orchestrator_env)
    assert result.returncode == 0, result.stderr
    summary = run.wait(30)
    assert summary["status"] == "succeeded" and summary["output"] == {"said": "done"}
    assert names(summary) == ["hold", "side", "after"]


def test_orquesta_cancel_interrupts_the_running_action(worker, orchestrator_env):
    run = submit(HOLD.replace("seconds: 1.5", "seconds: 60"))
    wait_running(run, "hold")
    time.sleep(0.5)  # hold is sleeping in the worker
    began = time.monotonic()
    run.cancel()
    assert run.status() in ("canceling", "canceled")
    summary = run.wait(20)
    assert time.monotonic() - began < 15, "the sleeping action was not interrupted"
    assert summary["status"] == "canceled" and summary["error"] == "canceled by request"
    tasks = {t["name"]: t for t in summary["tasks"]}
    assert tasks["hold"]["status"] == "canceled" and "after" not in tasks
    resumed = cli("resume", run.id, env=orchestrator_env)  # a finished run refuses: exit 2, one line
    assert resumed.returncode == 2 and "it is canceled" in resumed.stderr and run.status() == "canceled"


def test_orquesta_core_ask_answered_through_the_api_and_the_cli(worker, orchestrator_env):
    run = submit(textwrap.dedent("""
        version: 1.0
        tasks:
          approve:
            action: core.ask
            input:
              prompt: Deploy?
              schema: {type: object, required: [ok], properties: {ok: {type: boolean}}}
              timeout: 60
            next:
              - when: <% result().ok %>
                publish: answer=<% result() %>
                do: deploy
          deploy:
            action: core.echo
            input: {message: deployed}
        output:
          - answer: <% ctx(answer) %>
    """))
    wait_running(run, "approve")
    time.sleep(0.3)
    assert run.status() == "running"
    with pytest.raises(ValueError, match="does not match its schema"):
        run.respond("approve", {"ok": "sure"})
    with pytest.raises(ValueError, match="'deploy' is not waiting"):
        run.respond("deploy", {"ok": True})
    good = cli("respond", run.id, "approve", "--data", json.dumps({"ok": True}), env=orchestrator_env)
    assert good.returncode == 0, good.stderr
    summary = run.wait(30)
    assert summary["status"] == "succeeded" and summary["output"] == {"answer": {"ok": True}}
    assert [(t["name"], t["result"]) for t in summary["tasks"]] == [("approve", {"ok": True}),
                                                                    ("deploy", "deployed")]


def test_orquesta_core_ask_timeout_fails_the_task(worker, orchestrator_env):
    run = submit(textwrap.dedent("""
        version: 1.0
        tasks:
          approve:
            action: core.ask
            input: {timeout: 1}
            next:
              - when: <% failed() %>
                do: fallback
          fallback:
            action: core.echo
            input: {message: nobody answered}
    """))
    summary = run.wait(30)
    assert summary["status"] == "succeeded", summary
    tasks = {t["name"]: t for t in summary["tasks"]}
    assert tasks["approve"]["status"] == "failed" and tasks["approve"]["error"] == "no response within 1 s"
    assert tasks["fallback"]["result"] == "nobody answered"


def test_orquesta_pause_and_resume_cascade_into_an_orquesta_sub_workflow(worker, orchestrator_env):
    from orchestrator import register

    register(textwrap.dedent("""
        version: 1.0
        name: orq_slow_child
        tasks:
          each:
            with:
              items: <% list(1, 2, 3, 4) %>
              concurrency: 1
            action: core.sleep
            input: {seconds: 0.5}
    """))
    run = submit(textwrap.dedent("""
        version: 1.0
        tasks:
          child:
            action: orq_slow_child
            next: [{do: after}]
          after:
            action: core.noop
    """))
    wait_running(run, "child")
    run.pause()
    wait_status(run, "paused")  # only once the child run reported that it is paused
    from orchestrator.runtime import supervisor
    from orchestrator.store.models import WorkflowRun
    from sqlalchemy import select

    runs = WorkflowRun.__table__
    with supervisor().db.reading() as conn:
        children = conn.execute(select(runs.c.status).where(runs.c.parent_run_id == run.id)).scalars().all()
    assert children == ["paused"]
    run.resume()
    summary = run.wait(30)
    assert summary["status"] == "succeeded", summary
    assert names(summary) == ["child", "after"]


def test_orquesta_rerun_from_the_cli_after_fixing_the_failing_action(worker, orchestrator_env, tmp_path):
    marker = tmp_path / "fixed"
    run = submit(textwrap.dedent(f"""
        version: 1.0
        tasks:
          fragile:
            action: core.shell
            input: {{cmd: [test, -e, "{marker}"]}}
            next:
              - when: <% succeeded() %>
                do: last
          last:
            action: core.echo
            input: {{message: fixed}}
            next:
              - publish: said=<% result() %>
        output:
          - said: <% ctx().get(said) %>
    """))
    failed = run.wait(30)
    assert failed["status"] == "failed", failed
    marker.touch()  # the fix
    result = cli("rerun", run.id, env=orchestrator_env)
    assert result.returncode == 0, result.stderr
    summary = run.wait(30)
    assert summary["status"] == "succeeded" and summary["output"] == {"said": "fixed"}, summary
    assert names(summary) == ["fragile", "fragile", "last"]
    again = cli("rerun", run.id, "--from", "nope", env=orchestrator_env)
    assert again.returncode == 2 and "did not run" in again.stderr
