"""Every workflow in examples/ runs through the CLI on the embedded default, as a user runs it,
and ends with exactly the status and output documented here (and in docs/language.md).

A new example must get an entry in EXPECTED (or, when it cannot pass yet, in EXCLUDED with the
reason): an example in neither table fails the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FILES = sorted(p.name for p in EXAMPLES.glob("*.yaml"))

# file name -> (CLI parameters, expected run status, expected output)
EXPECTED: dict[str, tuple[list[str], str, object]] = {
    "hello.yaml": (
        ["-p", "name=Ada"], "succeeded",
        {"summary": "HELLO, ADA! / hello, ada!", "repeat": ["Hello, Ada!", "Hello, Ada!"]}),
    "parameters.yaml": (
        ["-p", "name=Ada", "-p", "mode=careful"], "succeeded",
        {"message": "Ada x2 (careful)", "count": 2, "ratio": 1.0, "tags": "alpha,beta", "dry_run": False,
         "extra": {}, "has_note": False}),
    "branches-and-join.yaml": (
        [], "succeeded",
        {"report": ["lint build-42: clean", "tests build-42: 12 passed", "package succeeded"]}),
    "join-n.yaml": (
        [], "succeeded",
        {"verify_runs": 1, "verified": "verified", "slow_mirror": "succeeded"}),
    "split.yaml": (
        [], "succeeded",
        {"audits": ["audit", "audit"]}),
    "transitions.yaml": (
        [], "succeeded",
        {"size": 3, "double": 6, "seen_stage": "fetched", "ran": ["big", "fetch", "small"], "big": "big (6)"}),
    "failure-handling.yaml": (
        [], "succeeded",
        {"error": "disk full", "upload_status": "failed", "upload_task_error": "disk full",
         "cleanup": "cleaned up after: disk full", "announced": False}),
    "unhandled-failure.yaml": (
        [], "failed",
        {"check": "failed", "slow": "succeeded", "after_slow_ran": False}),
    "fail-command.yaml": (
        [], "failed",
        {"reason": "only 3 GB free", "recorded": "refused: only 3 GB free"}),
    "legacy-transitions.yaml": (
        [], "succeeded",
        {"deploy": "failed: region down", "notify_chat": "skipped",
         "ran": ["archive", "build", "deploy", "log_build", "notify_chat", "page", "rollback"]}),
    "decision.yaml": (
        [], "succeeded",
        {"ran": ["big", "measure"]}),
    "loop.yaml": (
        [], "succeeded",
        {"counter": 4, "seen": [1, 2, 3, 4], "done": "looped 4 times"}),
    "with-items.yaml": (
        [], "succeeded",
        {"deployed": ["0:EU-WEST", "1:US-EAST", "2:AP-SOUTH", "3:SA-EAST"], "sums": [6, 15, 7], "nothing": [],
         "check_error": "item 2: command exited with 1"}),
    "retry.yaml": (
        [], "succeeded",
        {"flaky_attempts": 3, "fatal_attempts": 1, "fatal_error": "fatal: bad credentials"}),
    "timeout.yaml": (
        [], "succeeded",
        # the embedded runtime ends the attempt itself, exactly at the timeout
        {"slow": "timed_out", "why": "timed out after 0.5 s (no report from the worker)",
         "fallback": "used the cached copy", "failed_branch_ran": False}),
    "workflow-timeout.yaml": (
        [], "failed",
        {"quick": "done", "long_finished": False}),
    "delay.yaml": (
        [], "succeeded",
        {"announce": "starting soon", "later": "one second later"}),
    "greet-child.yaml": (
        ["-p", "name=Ada"], "succeeded",
        {"greeting": "Hello, Ada!", "length": 11}),
    "subworkflow.yaml": (
        [], "succeeded",
        {"first": "Hello, Linus?", "all": ["Hello, Ada!", "Hello, Grace!"]}),
    "expressions.yaml": (
        [], "succeeded",
        {"inspected": {"typed": [1, 2, 3], "number": 6, "text": "total 6",
                       "staging_url": "https://staging.example.com", "task_name": "inspect", "attempt": 1,
                       "statement": "relaxed"},
         "summary": "shop-staging / 3 / succeeded", "attempts": 1, "error": None,
         "limits": {"cpu": 2, "memory": 1024}, "upper": "SHOP-STAGING", "names": "B+A", "region": "local",
         "workflow_name": "expressions", "has_run_id": True, "has_start_time": True}),
}

# The run's error, for the examples that end failed.
EXPECTED_ERRORS = {
    "unhandled-failure.yaml": "task 'check' failed: checksum mismatch",
    "fail-command.yaml": "workflow failed by the 'fail' command in task 'check_space'",
    "workflow-timeout.yaml": "workflow timed out after 1 s",
}

# file name -> why it is not run (e.g. it shows an engine bug still open). Keep this empty.
EXCLUDED: dict[str, str] = {}


def env() -> dict[str, str]:
    """The environment of a user on the embedded default: no ORCHESTRATOR_* setting but the
    folder where sub-workflows are found by name."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    base["ORCHESTRATOR_WORKFLOWS"] = str(EXAMPLES)
    base["PYTHONPATH"] = str(ROOT)
    return base


def cli(*args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=env(), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def test_examples_exist():
    assert "hello.yaml" in FILES and len(FILES) > 1


def test_every_table_entry_names_an_example():
    stale = (set(EXPECTED) | set(EXPECTED_ERRORS) | set(EXCLUDED)) - set(FILES)
    assert not stale, f"entries for examples that no longer exist: {sorted(stale)}"


@pytest.mark.parametrize("name", FILES)
def test_example_runs_as_documented(name, tmp_path):
    if name in EXCLUDED:
        pytest.skip(EXCLUDED[name])
    assert name in EXPECTED, (f"examples/{name} has no entry in EXPECTED in {Path(__file__).name}: "
                              f"add its parameters, status and exact output")
    params, status, output = EXPECTED[name]
    result = cli("run", str(EXAMPLES / name), "--json", "--timeout", "60", *params, cwd=tmp_path)
    assert result.stdout.strip(), f"no summary on stdout (exit {result.returncode}): {result.stderr}"
    summary = json.loads(result.stdout)
    assert (summary["status"], summary["error"] if status == "failed" else None) == \
        (status, EXPECTED_ERRORS.get(name)), summary
    if status == "succeeded":
        assert summary["error"] is None, summary
    assert summary["output"] == output
    assert result.returncode == (0 if status == "succeeded" else 1), result.stderr
    assert "Traceback" not in result.stderr


def test_examples_validate(tmp_path):
    result = cli("validate", *[str(EXAMPLES / name) for name in FILES], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{EXAMPLES / name}: ok" for name in FILES]


def test_bad_parameters_are_all_reported_before_the_run(tmp_path):
    result = cli("run", str(EXAMPLES / "parameters.yaml"), "--json", "-p", "count=x", "-p", "mode=turbo",
                 "-p", "tags=[1]", "-p", "colour=red", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "error: invalid parameters for workflow 'parameters': "
        "unknown parameter 'colour' (known: count, dry_run, extra, mode, name, note, ratio, tags); "
        "missing required parameter 'name'; "
        "parameter 'count': 'x' is not of type 'integer'; "
        "parameter 'mode': 'turbo' is not one of ['fast', 'careful']; "
        "parameter 'tags[0]': 1 is not of type 'string'")
