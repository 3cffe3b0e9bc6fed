"""Flower shows every action of a run under a readable name (`<workflow>.<task>:<action>`) with
the run id in its kwargs, from the task events the worker sends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from orchestrator import submit

from .conftest import free_port

pytestmark = pytest.mark.runtime

ROOT = Path(__file__).resolve().parents[2]
ACTIONS = {"greet": "core.echo", "shout": "core.echo", "whisper": "core.shell", "summarise": "core.echo"}


@pytest.fixture
def flower(orchestrator_env, tmp_path):
    port = free_port()
    log = tmp_path / "flower.log"
    env = {**os.environ, **orchestrator_env, "FLOWER_UNAUTHENTICATED_API": "true"}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "flower", f"--port={port}",
                                 "--address=127.0.0.1"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"flower exited:\n{log.read_text()[-2000:]}"
            try:
                if httpx.get(f"{base}/healthcheck", timeout=1).text == "OK":
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"flower not up after 30 s:\n{log.read_text()[-2000:]}"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def tasks_of(base: str, run_id: str) -> list[dict]:
    tasks = httpx.get(f"{base}/api/tasks", params={"limit": 1000}, timeout=5).json()
    return [t for t in tasks.values() if run_id in (t.get("kwargs") or "")]


def wait_for_tasks(base: str, run_id: str, count: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = [t for t in tasks_of(base, run_id) if t.get("name") and t.get("state") == "SUCCESS"]
        if len(found) >= count or time.monotonic() >= deadline:
            return found
        time.sleep(0.3)


def test_flower_lists_each_action_with_its_name_and_run_id(worker, flower):
    # Flower's event receiver connects shortly after its web server: warm up until it sees tasks.
    for _ in range(6):
        warmup = submit('version: "1.0"\ntasks:\n  - {name: ping, action: core.noop}\n')
        assert warmup.wait(30)["status"] == "succeeded"
        if wait_for_tasks(flower, warmup.id, 1, timeout=5):
            break
    else:
        pytest.fail("flower never received task events from the worker")

    run = submit("hello", {"name": "Ada"})
    assert run.wait(30)["status"] == "succeeded"
    found = wait_for_tasks(flower, run.id, len(ACTIONS), timeout=15)
    by_name = {t["name"]: t for t in found}
    expected = {f"hello.{task}:{action}" for task, action in ACTIONS.items()}
    assert expected <= set(by_name), [{k: t.get(k) for k in ("name", "kwargs", "sent", "received", "started")}
                                      for t in found]
    for name in expected:
        assert f"'workflow_id': '{run.id}'" in by_name[name]["kwargs"], by_name[name]
    # Its task and its host: Flower's worker column is the host the run recorded for the task.
    hosts = {task["name"]: task["worker"] for task in run.summary()["tasks"]}
    for task, action in ACTIONS.items():
        shown = by_name[f"hello.{task}:{action}"]
        assert f"'task': '{task}'" in shown["kwargs"], shown
        assert shown.get("worker") and shown["worker"] == hosts[task], (shown.get("worker"), hosts)
