"""Orquesta-format runs on the real distributed runtime (PostgreSQL, Redis, a worker subprocess):
Orquesta's own fixtures (from the shared conformance cases) whose actions all succeed, and what
users see of engine commands. The operations run for both formats in test_operations.py."""

from __future__ import annotations

import json
import re
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from orchestrator import submit

from .test_cli import cli

pytestmark = pytest.mark.runtime

# shared/ sits beside the checkout (a worktree is one folder further down)
CASES = next((folder / "shared" / "conformance" / "orquesta" / "cases.json"
              for folder in Path(__file__).resolve().parents[3:5]
              if (folder / "shared" / "conformance" / "orquesta" / "cases.json").exists()),
             Path(__file__).resolve().parents[3] / "shared" / "conformance" / "orquesta" / "cases.json")


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
        names = Counter(t["name"] for t in summary["tasks"])  # engine commands are not tasks
        assert names == Counter(expected["task_sequence_without_engine_commands"]), case["name"]
        if "output" in expected:
            assert summary["output"] == expected["output"], case["name"]
    assert len(CHOSEN) >= 5


def test_engine_commands_are_not_listed_as_tasks(worker, orchestrator_env):
    """A transition without `do` ends in Orquesta's `continue` command: what ended the transition,
    not a task execution, so status --json and the status table list the task only."""
    run = submit(textwrap.dedent("""
        version: 1.0
        tasks:
          only:
            action: core.echo
            input: {message: hi}
            next:
              - publish: said=<% result() %>
        output:
          - said: <% ctx(said) %>
    """))
    summary = run.wait(30)
    assert summary["status"] == "succeeded" and summary["output"] == {"said": "hi"}
    assert [t["name"] for t in summary["tasks"]] == ["only"]
    shown = cli("status", run.id, "--json", env=orchestrator_env)
    assert shown.returncode == 0, shown.stderr
    assert [t["name"] for t in json.loads(shown.stdout)["tasks"]] == ["only"]
    table = cli("status", run.id, env=orchestrator_env)
    assert table.returncode == 0 and "only" in table.stdout and "continue" not in table.stdout


def test_orquesta_with_items_and_a_join_go_out_as_fan_ins(worker):
    """All items dispatched at once, and siblings into a `join: all`, are one chord each (the
    run control marks them for both formats); the batch is applied as one wave."""
    summary = submit(textwrap.dedent("""
        version: 1.0
        tasks:
          each:
            with: <% range(0, 20) %>
            action: tests.add
            input: {a: <% item() %>, b: 100}
            next:
              - publish: total=<% result().sum() %>
                do: left, right
          left:
            action: tests.add
            input: {a: 1, b: 2}
            next: [{do: joined}]
          right:
            action: tests.add
            input: {a: 3, b: 4}
            next: [{do: joined}]
          joined:
            join: all
            action: core.echo
            input: {message: joined}
        output:
          - total: <% ctx(total) %>
    """)).wait(60)
    assert summary["status"] == "succeeded", (summary["error"], summary["tasks"])
    assert summary["output"] == {"total": sum(range(20)) + 2000}
    assert [(t["name"], t["items"]) for t in summary["tasks"]] == [("each", 20), ("left", None), ("right", None),
                                                                   ("joined", None)]
