"""Operations on the distributed runtime, driven as a user would (Python handle and CLI), for both
workflow formats: each scenario is a pair of equivalent workflows, one native and one in
Orquesta's format, run with the same steps and the same assertions. Actions that must still be
running when an operation lands hold on a Redis signal (tests.hold), never on a sleep."""

from __future__ import annotations

import json
import textwrap
import time
import uuid

import pytest

from orchestrator import RunHandle, submit

from .test_cli import cli

pytestmark = pytest.mark.runtime

FORMATS = ("native", "orquesta")

# Six items, two at a time, each holding until released; then `after`.
ITEMS = {
    "native": """
        version: "1.0"
        tasks:
          - name: each
            action: tests.hold
            with_items: "{{ range(6) | list }}"
            concurrency: 2
            input: {key: KEY}
            next: [{do: after}]
          - {name: after, action: core.echo, input: {message: done}}
        output_map: {after: "{{ task.after.result }}"}
    """,
    "orquesta": """
        version: 1.0
        tasks:
          each:
            with:
              items: <% list(0, 1, 2, 3, 4, 5) %>
              concurrency: 2
            action: tests.hold
            input: {key: KEY}
            next: [{do: after}]
          after:
            action: core.echo
            input: {message: done}
            next:
              - publish: said=<% result() %>
        output:
          - after: <% ctx(said) %>
    """,
}

# Two entry tasks: `hold` (held) and `side`; `after` follows `hold`.
BRANCHES = {
    "native": """
        version: "1.0"
        tasks:
          - {name: hold, action: tests.hold, input: {key: KEY}, next: [{do: after}]}
          - {name: side, action: core.echo, input: {message: side}}
          - {name: after, action: core.echo, input: {message: done}}
        output_map: {said: "{{ task.after.result }}"}
    """,
    "orquesta": """
        version: 1.0
        tasks:
          hold:
            action: tests.hold
            input: {key: KEY}
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
    """,
}

# A parent whose first task runs ITEMS (registered as `slow_child`) as a sub-workflow.
PARENT = {
    "native": """
        version: "1.0"
        tasks:
          - {name: child, action: slow_child, next: [{do: after}]}
          - {name: after, action: core.echo, input: {message: "{{ task.child.result.after }}"}}
        output_map: {after: "{{ task.after.result }}"}
    """,
    "orquesta": """
        version: 1.0
        tasks:
          child:
            action: slow_child
            next:
              - publish: got=<% result().after %>
                do: after
          after:
            action: core.echo
            input:
              message: <% ctx(got) %>
            next:
              - publish: said=<% result() %>
        output:
          - after: <% ctx(said) %>
    """,
}

# first -> fragile (fails until MARKER exists) -> last.
FRAGILE = {
    "native": """
        version: "1.0"
        tasks:
          - {name: first, action: core.echo, input: {message: one}, next: [{do: fragile}]}
          - {name: fragile, action: core.shell, input: {cmd: ["test", "-e", "MARKER"]}, on_success: last}
          - {name: last, action: core.echo, input: {message: "{{ task.first.result }} then last"}}
        output_map: {last: "{{ task.last.result }}"}
    """,
    "orquesta": """
        version: 1.0
        tasks:
          first:
            action: core.echo
            input: {message: one}
            next:
              - publish: first=<% result() %>
                do: fragile
          fragile:
            action: core.shell
            input:
              cmd: [test, -e, "MARKER"]
            next:
              - when: <% succeeded() %>
                do: last
          last:
            action: core.echo
            input:
              message: <% ctx(first) %> then last
            next:
              - publish: said=<% result() %>
        output:
          - last: <% ctx().get(said) %>
    """,
}

# A core.ask answered (or not) by an operator; `deploy` runs on a yes, `escalate` on no answer.
ASK = {
    "native": """
        version: "1.0"
        tasks:
          - name: approve
            action: core.ask
            input: {prompt: "Deploy?", schema: {type: object, required: [ok], properties: {ok: {type: boolean}}}}
            timeout: SECONDS
            next:
              - {when: "{{ succeeded() and result().ok }}", do: deploy}
              - {when: "{{ not succeeded() }}", do: escalate}
          - {name: deploy, action: core.echo, input: {message: deployed}}
          - {name: escalate, action: core.echo, input: {message: nobody answered}}
        output_map: {deploy: "{{ task.get('deploy', {}).get('result') }}",
                     escalated: "{{ task.get('escalate', {}).get('result') }}"}
    """,
    "orquesta": """
        version: 1.0
        tasks:
          approve:
            action: core.ask
            input:
              prompt: Deploy?
              schema: {type: object, required: [ok], properties: {ok: {type: boolean}}}
              timeout: SECONDS
            next:
              - when: <% succeeded() and result().ok %>
                do: deploy
              - when: <% not succeeded() %>
                do: escalate
          deploy:
            action: core.echo
            input: {message: deployed}
            next:
              - publish: deployed=<% result() %>
          escalate:
            action: core.echo
            input: {message: nobody answered}
            next:
              - publish: escalated=<% result() %>
        output:
          - deploy: <% ctx().get(deployed) %>
          - escalated: <% ctx().get(escalated) %>
    """,
}

# A task that times out is `timed_out` natively; Orquesta's status model calls it `failed`.
TIMED_OUT = {"native": "timed_out", "orquesta": "failed"}

ECHO = {
    "native": """
        version: "1.0"
        tasks:
          - {name: say, action: core.echo, input: {message: hello}}
        output_map: {said: "{{ task.say.result }}"}
    """,
    "orquesta": """
        version: 1.0
        tasks:
          say:
            action: core.echo
            input: {message: hello}
            next:
              - publish: said=<% result() %>
        output:
          - said: <% ctx(said) %>
    """,
}


def workflow(texts: dict[str, str], fmt: str, **values: object) -> str:
    text = textwrap.dedent(texts[fmt])
    for name, value in values.items():
        text = text.replace(name, str(value))
    return text


class Signal:
    """The Redis side of tests.hold: how many calls are holding, and letting them go."""

    def __init__(self, test_redis):
        self.redis = test_redis
        self.key = f"k{uuid.uuid4().hex[:12]}"

    def held(self) -> int:
        return self.redis.llen(f"held:{self.key}")

    def wait_held(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.held() < count:
            assert time.monotonic() < deadline, f"{self.held()} calls holding, wanted {count}"
            time.sleep(0.05)

    def release(self) -> None:
        self.redis.set(f"release:{self.key}", 1, ex=600)


@pytest.fixture
def signal(test_redis):
    return Signal(test_redis)


def wait_status(run, wanted: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while run.status() != wanted:
        assert time.monotonic() < deadline, f"still {run.status()}, wanted {wanted}"
        time.sleep(0.05)


def wait_task(run, task: str, timeout: float = 30) -> None:
    """Until the task's execution exists."""
    deadline = time.monotonic() + timeout
    while task not in [t["name"] for t in run.summary()["tasks"]]:
        assert time.monotonic() < deadline, f"{task} never started: {run.summary()}"
        time.sleep(0.05)


def child_statuses(run) -> list[str]:
    from sqlalchemy import select

    from orchestrator.runtime import supervisor
    from orchestrator.store.models import WorkflowRun

    runs = WorkflowRun.__table__
    with supervisor().db.reading() as conn:
        return conn.execute(select(runs.c.status).where(runs.c.parent_run_id == run.id)).scalars().all()


@pytest.mark.parametrize("fmt", FORMATS)
def test_pause_and_resume_during_with_items(fmt, worker, orchestrator_env, signal):
    run = submit(workflow(ITEMS, fmt, KEY=signal.key))
    signal.wait_held(2)  # the window is full and both calls are running
    result = cli("pause", run.id, env=orchestrator_env)
    assert result.returncode == 0, result.stderr
    assert run.status() == "pausing"  # the two calls still run
    signal.release()
    wait_status(run, "paused")
    frozen = run.summary()["tasks"]
    time.sleep(1.0)
    assert signal.held() == 2 and run.summary()["tasks"] == frozen  # nothing new started while paused
    assert cli("resume", run.id, env=orchestrator_env).returncode == 0
    summary = run.wait(30)
    assert summary["status"] == "succeeded" and summary["output"] == {"after": "done"}
    assert signal.held() == 6 and [t["name"] for t in summary["tasks"]] == ["each", "after"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_pause_lets_the_running_call_finish_and_resume_continues(fmt, worker, orchestrator_env, signal):
    run = submit(workflow(BRANCHES, fmt, KEY=signal.key))
    signal.wait_held(1)
    run.pause()
    assert run.status() == "pausing"  # hold is still running
    signal.release()
    wait_status(run, "paused")
    assert {t["name"]: t["status"] for t in run.summary()["tasks"]} == {"hold": "succeeded", "side": "succeeded"}
    assert cli("resume", run.id, env=orchestrator_env).returncode == 0
    summary = run.wait(30)
    assert summary["status"] == "succeeded" and summary["output"] == {"said": "done"}
    assert [t["name"] for t in summary["tasks"]] == ["hold", "side", "after"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_cancel_interrupts_running_actions_canceling_then_canceled(fmt, worker, orchestrator_env, signal):
    from sqlalchemy import select

    from orchestrator.runtime import supervisor
    from orchestrator.store.models import TaskItem

    run = submit(workflow(ITEMS, fmt, KEY=signal.key))
    signal.wait_held(2)  # never released: only the revoke ends them
    began = time.monotonic()
    result = cli("cancel", run.id, env=orchestrator_env)
    assert result.returncode == 0, result.stderr
    assert run.status() in ("canceling", "canceled")
    summary = run.wait(30)
    assert time.monotonic() - began < 20, "the holding actions were not interrupted"
    assert summary["status"] == "canceled" and summary["error"] == "canceled by request"
    assert [(t["name"], t["status"]) for t in summary["tasks"]] == [("each", "canceled")]
    items = TaskItem.__table__
    with supervisor().db.reading() as conn:
        ended = conn.execute(select(items.c.idx, items.c.status).where(items.c.run_id == run.id)
                             .where(items.c.status.is_not(None)).order_by(items.c.idx)).all()
    assert [tuple(row) for row in ended] == [(0, "canceled"), (1, "canceled")]


def start_parent(fmt: str, key: str):
    """A parent run whose child run (ITEMS) has both its first calls holding."""
    from orchestrator import register

    register(workflow(ITEMS, fmt, KEY=key).replace("tasks:", "name: slow_child\ntasks:", 1))
    return submit(workflow(PARENT, fmt))


@pytest.mark.parametrize("fmt", FORMATS)
def test_pause_and_resume_cascade_into_a_sub_workflow(fmt, worker, orchestrator_env, signal):
    run = start_parent(fmt, signal.key)
    signal.wait_held(2)
    assert cli("pause", run.id, env=orchestrator_env).returncode == 0
    signal.release()
    wait_status(run, "paused")  # only once its child run is paused
    child = RunHandle(f"{run.id}.1.1")
    assert child.status() == "paused"
    frozen = child.summary()["tasks"]
    time.sleep(1.0)
    assert child.summary()["tasks"] == frozen and signal.held() == 2  # the child's window is held too
    assert cli("resume", run.id, env=orchestrator_env).returncode == 0
    summary = run.wait(30)
    assert summary["status"] == "succeeded" and summary["output"] == {"after": "done"}
    assert child.status() == "succeeded"
    kinds = [e["kind"] for e in child.events() if e["kind"].startswith("workflow.")]
    assert kinds == ["workflow.started", "workflow.pausing", "workflow.paused", "workflow.running",
                     "workflow.succeeded"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_pause_and_cancel_cascade_into_a_sub_workflow(fmt, worker, orchestrator_env, signal):
    run = start_parent(fmt, signal.key)
    signal.wait_held(2)
    run.pause()
    signal.release()
    wait_status(run, "paused")
    assert child_statuses(run) == ["paused"]
    run.cancel()
    assert run.wait(20)["status"] == "canceled"
    deadline = time.monotonic() + 20
    while child_statuses(run) != ["canceled"]:
        assert time.monotonic() < deadline, child_statuses(run)
        time.sleep(0.05)


@pytest.mark.parametrize("fmt", FORMATS)
def test_rerun_after_fixing_the_failing_action(fmt, worker, orchestrator_env, tmp_path):
    marker = tmp_path / "fixed"
    run = submit(workflow(FRAGILE, fmt, MARKER=marker))
    failed = run.wait(30)
    assert failed["status"] == "failed", failed
    marker.touch()  # the fix
    result = cli("rerun", run.id, env=orchestrator_env)
    assert result.returncode == 0, result.stderr
    summary = run.wait(30)
    assert summary["status"] == "succeeded", summary
    assert [t["name"] for t in summary["tasks"]] == ["first", "fragile", "fragile", "last"]
    assert summary["output"] == {"last": "one then last"}
    again = cli("rerun", run.id, "--from", "nope", env=orchestrator_env)
    assert again.returncode == 2 and again.stderr.startswith("error:")


@pytest.mark.parametrize("fmt", FORMATS)
def test_core_ask_answered_from_the_cli(fmt, worker, orchestrator_env):
    run = submit(workflow(ASK, fmt, SECONDS=60))
    wait_task(run, "approve")
    assert run.status() == "running"
    bad = cli("respond", run.id, "approve", "--data", json.dumps({"ok": "sure"}), env=orchestrator_env)
    assert bad.returncode == 2 and "does not match its schema" in bad.stderr
    with pytest.raises(ValueError, match="'deploy' is not waiting"):
        run.respond("deploy", {"ok": True})
    good = cli("respond", run.id, "approve", "--data", json.dumps({"ok": True}), env=orchestrator_env)
    assert good.returncode == 0, good.stderr
    summary = run.wait(30)
    assert summary["status"] == "succeeded" and summary["output"] == {"deploy": "deployed", "escalated": None}
    assert [(t["name"], t["result"]) for t in summary["tasks"]] == [("approve", {"ok": True}),
                                                                    ("deploy", "deployed")]


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_unanswered_core_ask_times_out(fmt, worker, orchestrator_env):
    run = submit(workflow(ASK, fmt, SECONDS=1))
    summary = run.wait(30)
    assert summary["status"] == "succeeded", summary
    approve = summary["tasks"][0]
    assert approve["status"] == TIMED_OUT[fmt] and approve["error"] == "no response within 1 s"
    assert summary["output"] == {"deploy": None, "escalated": "nobody answered"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_lost_call_is_sent_again(fmt, orchestrator_env, monkeypatch, tmp_path, test_redis):
    """The call's message is lost before any worker takes it (as when a broker loses its queues):
    its lease finds no trace of it and sends it again. A lease of 2 s proves the mechanism; the
    fault suite holds the default-settings bound."""
    import redis

    from .conftest import BROKER_URL, WorkerProcess, _reset_process

    tuned = {"ORCHESTRATOR_LEASE": "2", "ORCHESTRATOR_OUTBOX_GRACE": "600"}  # only the lease can resend it
    for name, value in tuned.items():
        monkeypatch.setenv(name, value)
    env = {**orchestrator_env, **tuned}
    _reset_process()
    run = submit(workflow(ECHO, fmt))  # no worker yet: the call waits in the action queue
    broker = redis.Redis.from_url(BROKER_URL)
    queue = orchestrator_env["ORCHESTRATOR_DEFAULT_QUEUE"]
    deadline = time.monotonic() + 10
    while broker.llen(queue) == 0:
        assert time.monotonic() < deadline, "the call never reached its queue"
        time.sleep(0.05)
    assert broker.delete(queue) == 1  # the message is gone
    worker = WorkerProcess(env, tmp_path / "worker.log").wait_ready()
    try:
        summary = run.wait(30)
    finally:
        worker.stop_in_background()
    assert summary["status"] == "succeeded" and summary["output"] == {"said": "hello"}, summary
    assert [(t["name"], t["attempts"]) for t in summary["tasks"]] == [("say", 1)]  # the same attempt, sent again
