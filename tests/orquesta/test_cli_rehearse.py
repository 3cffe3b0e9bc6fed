"""`orchestrator rehearse` as users run it: a subprocess, no broker or database."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CASES = Path("/work/shared/conformance/orquesta/cases.json")
EXAMPLES = sorted((ROOT / "examples" / "rehearsals").glob("*.rehearsal.*"))
LAST_LINE = re.compile(r"^(\d+) passed, (\d+) failed$")


def rehearse(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", "rehearse", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not CASES.is_file(), reason=f"the Orquesta conformance file {CASES} is not present")
def test_conformance_file():
    done = rehearse(str(CASES))
    assert done.returncode in (0, 1), done.stderr
    lines = done.stdout.strip().splitlines()
    case_lines = [line for line in lines if line.startswith(("PASS ", "FAIL "))]
    assert len(case_lines) == 68
    match = LAST_LINE.match(lines[-1])
    assert match, lines[-1]
    passed, failed = map(int, match.groups())
    assert passed + failed == 68
    assert done.returncode == (0 if failed == 0 else 1)
    assert lines[-2].startswith("strict: ")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_rehearsals_pass(path):
    done = rehearse(str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert LAST_LINE.match(done.stdout.strip().splitlines()[-1])


def test_there_are_examples_of_both_formats():
    formats = set()
    for path in EXAMPLES:
        report = json.loads(rehearse(str(path), "--json").stdout)
        formats |= {c["format"] for c in report["cases"]}
    assert formats == {"native", "orquesta"}


def test_failures_exit_1_with_a_readable_diff(tmp_path):
    workflow = ROOT / "examples" / "rehearsals" / "workflows" / "orquesta-release.yaml"
    cases = tmp_path / "bad.rehearsal.yaml"
    cases.write_text(f"""
cases:
  - name: wrong order
    workflow: {workflow}
    inputs: {{app: shop}}
    expected:
      task_sequence: [build, test, package, deploy, continue]
      workflow_status: succeeded
""")
    done = rehearse(str(cases))
    assert done.returncode == 1
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("FAIL wrong order: task_sequence: "
                               "first difference at #2: expected test__r0, got package__r0")
    assert lines[-1] == "0 passed, 1 failed"
    assert rehearse(str(cases), "--level", "outcome").returncode == 0      # same executions, another order
    report = json.loads(rehearse(str(cases), "--json").stdout)
    assert report["totals"]["strict"] == {"passed": 0, "failed": 1}
    assert report["cases"][0]["passed"] == {"strict": False, "names": False, "outcome": True}


def test_bad_input_exits_2(tmp_path):
    assert rehearse(str(tmp_path / "missing.yaml")).returncode == 2
    assert rehearse(str(CASES), "--level", "loose").returncode == 2
