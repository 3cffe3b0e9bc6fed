"""Orquesta's own fixtures (from the shared conformance cases) on the real distributed runtime,
with real core.* actions: those whose actions all succeed with no scripted failures."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from orchestrator import submit

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
