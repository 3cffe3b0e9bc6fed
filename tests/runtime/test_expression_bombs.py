"""Expression bombs on the real runtime, with the default budget (5 s, 4 MiB per evaluation).

A bomb fails its task with a clear error within a bound while other runs on the same worker go
on; cancel works while a step is bombing (the run's row lock is held at most one step budget,
within PostgreSQL's 10 s lock timeout); embedded `orchestrator run` returns with the failure.
Bounds are upper bounds, generous for a loaded CI machine.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from orchestrator import submit

from .test_cli import cli

NESTED_FOR = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}x"
YAQL_BOMB = "<% range(0, 100000).select(range(0, 100000).len()).len() %>"
CHAIN = "{% set a='a'*9999999 %}{% set b=a~a~a~a~a~a~a~a~a~a %}{% set c=b~b~b~b~b~b~b~b~b~b %}{{ c|length }}"
BOUND = 90  # seconds: the 5 s budget, a worker's reaction and a loaded machine


def native(bomb: str, key: str, items: int = 0, action: str = "tests.add", delay: int = 0) -> str:
    loop = f"    with_items: {list(range(items))}\n" if items else ""
    loop += f"    delay: {delay}\n" if delay else ""
    return ('version: "1.0"\n'
            "tasks:\n"
            "  - name: first\n"
            "    action: tests.count\n"
            f'    input: {{key: "{key}"}}\n'
            "    next: [{do: bomb}]\n"
            "  - name: bomb\n"
            f"    action: {action}\n"
            + loop
            + (f'    input: {{message: "{bomb}"}}\n' if action == "core.echo" else f'    input: {{a: "{bomb}", b: "x"}}\n'))


def orquesta(bomb: str, key: str, items: int = 0, delay: int = 0) -> str:
    loop = f"    with: <% range(0, {items}) %>\n" if items else ""
    loop += f"    delay: {delay}\n" if delay else ""
    return ("version: 1.0\n"
            "tasks:\n"
            "  first:\n"
            f'    action: tests.count key="{key}"\n'
            "    next:\n"
            "      - do: bomb\n"
            "  bomb:\n"
            "    action: tests.add\n"
            f"{loop}"
            "    input:\n"
            f'      a: "{bomb}"\n'
            "      b: x\n")


def _file(tmp_path: Path, text: str) -> str:
    path = tmp_path / f"bomb-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(text)
    return str(path)


FORMATS = {
    "native": (native, NESTED_FOR),
    "orquesta": (orquesta, YAQL_BOMB),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_time_bomb_fails_its_task_and_other_runs_go_on(worker, tmp_path, fmt):
    make, bomb = FORMATS[fmt]
    started = time.monotonic()
    bombing = submit(_file(tmp_path, make(bomb, f"bomb-{uuid.uuid4().hex}")))
    others = [submit("hello", {"name": "Ada", "times": 1}) for _ in range(2)]
    for other in others:
        assert other.wait(BOUND)["status"] == "succeeded"
    summary = bombing.wait(BOUND)
    assert time.monotonic() - started < BOUND
    assert summary["status"] == "failed", summary
    assert "expression exceeded 5 s" in summary["error"] or any(
        "expression exceeded 5 s" in (t["error"] or "") for t in summary["tasks"]), summary
    # the worker is still healthy: a new run goes through
    assert submit("hello", {"name": "Bo", "times": 1}).wait(BOUND)["status"] == "succeeded"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_size_bomb_fails_at_once(worker, tmp_path, fmt):
    make, _ = FORMATS[fmt]
    summary = submit(_file(tmp_path, make(CHAIN, f"chain-{uuid.uuid4().hex}"))).wait(BOUND)
    assert summary["status"] == "failed", summary
    text = summary["error"] + " ".join(t["error"] or "" for t in summary["tasks"])
    assert f"value larger than {4 << 20} bytes" in text, summary


@pytest.mark.parametrize("fmt", FORMATS)
def test_cancel_works_while_a_step_is_bombing(worker, tmp_path, fmt):
    make, bomb = FORMATS[fmt]
    key = f"cancel-{uuid.uuid4().hex}"
    # three bombing items in one step: without a step budget the row lock would be held 15 s. The
    # step runs when the delay's timer fires, after `first` is recorded (a cancel while a call's
    # inline apply runs: tests/faults/test_liveness.py and tests/runtime/test_late_interrupts.py)
    run = submit(_file(tmp_path, make(bomb, key, items=3, delay=1)))
    deadline = time.monotonic() + BOUND
    # the signal: `first` is recorded as ended; the bombing step comes with the delay's timer
    while not any(t["name"] == "first" and t["status"] == "succeeded" for t in run.summary()["tasks"]):
        assert time.monotonic() < deadline, "the first task never ended"
        time.sleep(0.05)
    started = time.monotonic()
    run.cancel()  # must not fail with "canceling statement due to lock timeout"
    assert time.monotonic() - started < 30
    summary = run.wait(BOUND)
    assert summary["status"] in ("canceled", "failed"), summary


def _orquesta_echo(expression: str) -> str:
    return ("version: 1.0\n"
            "tasks:\n"
            "  first:\n"
            "    action: core.noop\n"
            "    next: [{do: bomb}]\n"
            "  bomb:\n"
            "    action: core.echo\n"
            "    input:\n"
            f"      message: {expression}\n")


EMBEDDED = {
    "native": lambda: native(NESTED_FOR, "embedded", action="core.echo").replace("tests.count", "core.noop")
    .replace('input: {key: "embedded"}', "input: {}"),
    "orquesta": lambda: _orquesta_echo("<% range(0, 100000000).select($ * 2).len() %>"),
}


@pytest.mark.parametrize("fmt", EMBEDDED)
def test_embedded_run_returns_with_the_failure(tmp_path, fmt):
    flow = tmp_path / "bomb.yaml"
    flow.write_text(EMBEDDED[fmt]())
    started = time.monotonic()
    result = cli("run", str(flow), cwd=tmp_path, timeout=BOUND)
    assert time.monotonic() - started < BOUND
    assert result.returncode == 1, result.stdout + result.stderr
    assert "expression exceeded 5 s" in result.stderr and "task 'bomb'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_the_issues_yaql_spelling_is_refused_before_it_runs(tmp_path):
    """`range(0, 1e8)` as issue 11 wrote it: YAQL has no exponent literals, so the file is
    refused at validation, naming the place, instead of running at all."""
    flow = tmp_path / "bomb.yaml"
    flow.write_text(_orquesta_echo("<% range(0, 1e8).select($ * 2).len() %>"))
    result = cli("run", str(flow), cwd=tmp_path, timeout=BOUND)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "bomb.yaml:8:5:" in result.stderr and "task 'bomb': input" in result.stderr and "syntax error" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
