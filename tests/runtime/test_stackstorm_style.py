"""StackStorm-style Orquesta workflows that use `core.local`, run unchanged: on the distributed
runtime (PostgreSQL, Redis, a worker subprocess) and embedded (no servers)."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from orchestrator import submit

from .test_cli import cli

# Written the way StackStorm's examples are: inline parameters, result().stdout, a failure
# handled by reading result().stderr and result().return_code, a join, JSON read from stdout.
STACKSTORM_STYLE = textwrap.dedent("""\
    version: 1.0
    description: A StackStorm-style workflow that uses only core.local.
    input:
      - who
      - timeout
    tasks:
      greet:
        action: core.local cmd="echo Hello, <% ctx(who) %>" timeout=<% ctx(timeout) %>
        next:
          - when: <% succeeded() %>
            publish:
              - greeting: <% result().stdout %>
            do: count, broken
      count:
        action: core.local
        input:
          cmd: printf '{"n":%s}' "$N"
          env:
            N: <% len(ctx(greeting)) %>
        next:
          - when: <% succeeded() %>
            publish: n=<% result().stdout.n %>
            do: report
      broken:
        action: core.local cmd="echo half; echo 'no such thing' >&2; exit 4"
        next:
          - when: <% failed() %>
            publish:
              - problem: <% result().stderr %>
              - code: <% result().return_code %>
            do: report
      report:
        join: all
        action: core.local
        input:
          cmd: echo "<% ctx(greeting) %> / <% ctx(n) %> / <% ctx(problem) %> (<% ctx(code) %>)"
        next:
          - publish: line=<% result().stdout %>
    output:
      - line: <% ctx(line) %>
      - code: <% ctx(code) %>
    """)


def check(summary: dict) -> None:
    assert summary["status"] == "succeeded", summary
    assert summary["output"] == {"line": "Hello, Ada / 10 / no such thing (4)", "code": 4}
    tasks = {t["name"]: t for t in summary["tasks"]}
    assert tasks["greet"]["result"] == {"stdout": "Hello, Ada", "stderr": "", "return_code": 0,
                                        "succeeded": True, "failed": False}
    assert tasks["count"]["result"]["stdout"] == {"n": 10}
    assert tasks["broken"]["status"] == "failed"
    assert tasks["broken"]["error"] == "command exited with 4: no such thing"


@pytest.mark.runtime
def test_stackstorm_style_workflow_runs_on_workers(worker):
    check(submit(STACKSTORM_STYLE, {"who": "Ada"}).wait(60))


@pytest.mark.runtime
def test_cancel_while_core_local_runs(worker, tmp_path):
    """As StackStorm's orquesta-test-cancel: task1 holds while a file exists; cancel it there."""
    hold, started = tmp_path / "hold", tmp_path / "started"
    hold.touch()
    run = submit(textwrap.dedent("""\
        version: 1.0
        input:
          - tempfile
          - started
        tasks:
          task1:
            action: core.local
            input:
              cmd: "touch '<% ctx().started %>'; while [ -e '<% ctx().tempfile %>' ]; do sleep 0.1; done"
              timeout: 300
            next:
              - when: <% succeeded() %>
                do: task2
          task2:
            action: core.local cmd="echo never"
        """), {"tempfile": str(hold), "started": str(started)})
    deadline = time.monotonic() + 30
    while not started.exists():  # the command is running on the worker
        assert time.monotonic() < deadline, run.summary()
        time.sleep(0.05)
    run.cancel()
    summary = run.wait(30)
    assert summary["status"] == "canceled"
    assert "task2" not in [t["name"] for t in summary["tasks"]]
    hold.unlink()


def test_stackstorm_style_workflow_runs_embedded(tmp_path: Path):
    path = tmp_path / "stackstorm-style.yaml"
    path.write_text(STACKSTORM_STYLE)
    result = cli("run", str(path), "-p", "who=Ada", "--json", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    check(json.loads(result.stdout))
