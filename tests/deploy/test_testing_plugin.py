"""The pytest plugin for users' workflows (orchestrator.testing): the example project in
examples/testing passes with it, and a wrong expectation fails with the difference named."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.runtime.conftest import ROOT

pytestmark = pytest.mark.timeout(300)  # a pytest run of its own, with an in-process worker


def pytest_in(folder, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=300)


def test_the_example_project_passes_with_the_plugin():
    result = pytest_in(ROOT / "examples" / "testing")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "4 passed" in result.stdout


def test_a_wrong_expectation_fails_naming_the_difference(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["orchestrator.testing"]\n')
    (tmp_path / "flow.yaml").write_text(textwrap.dedent("""
        version: "1.0"
        tasks:
          - name: one
            action: core.echo
            input: {message: hi}
            next: [{when: "{{ succeeded() }}", do: two}]
          - {name: two, action: core.echo, input: {message: there}}
    """))
    (tmp_path / "cases.yaml").write_text(textwrap.dedent("""
        cases:
          - name: wrong order
            workflow: flow.yaml
            expected: {task_sequence: [two, one]}
    """))
    (tmp_path / "test_flow.py").write_text(textwrap.dedent("""
        def test_rehearsed(orchestrator_rehearse):
            run = orchestrator_rehearse("flow.yaml", one=RuntimeError("boom"))
            assert run.status == "failed" and run.sequence == ["one"]

        def test_cases(orchestrator_rehearse):
            orchestrator_rehearse.cases("cases.yaml")
    """))
    result = pytest_in(tmp_path)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "1 failed, 1 passed" in result.stdout
    assert "wrong order: task_sequence" in result.stdout
