"""Runs in progress survive an upgrade that made validation stricter: a run carries on with the
definition stored when it started, loaded without the static checks that came later, while a
new start of the same file is refused with the full report.

The run is made as an older release made it: its definition stored and its first step taken by
the Supervisor directly, without today's validation of the file."""

from __future__ import annotations

import uuid

import pytest

from orchestrator import submit
from orchestrator.api import RunHandle
from orchestrator.engine.errors import WorkflowInvalid
from orchestrator.registry import load_stored

from .test_cli import cli

pytestmark = pytest.mark.runtime

# Orquesta's inspection (issue 12) refuses `never_set`: no input, var or publish sets it on every
# path. At run time the branch that reads it is never taken, so the run succeeds.
INSPECTED_LATER = """version: 1.0
input:
  - who: ada
tasks:
  greet:
    action: core.echo
    input:
      message: <% ctx(who) %>
    next:
      - when: <% succeeded() %>
        publish:
          - said: <% result() %>
        do: again
      - when: <% failed() %>
        publish:
          - said: <% ctx().never_set %>
  again:
    action: core.echo
    input:
      message: <% ctx(said) %>!
output:
  - said: <% ctx(said) %>
"""


def test_a_run_whose_stored_definition_no_longer_validates_carries_on(worker, orchestrator_env, tmp_path):
    from orchestrator.runtime import supervisor

    path = tmp_path / "inspected-later.yaml"
    path.write_text(INSPECTED_LATER)
    run_id = str(uuid.uuid4())
    supervisor().start(load_stored(INSPECTED_LATER, str(path), "inspected-later"), {}, run_id)
    summary = RunHandle(run_id).wait(60)
    assert summary["status"] == "succeeded", summary
    assert summary["output"] == {"said": "ada"}
    assert [t["name"] for t in summary["tasks"]] == ["greet", "again"]

    # a new start of the same file is refused, naming the place
    with pytest.raises(WorkflowInvalid) as refused:
        submit(str(path))
    assert "variable 'never_set' is referenced before assignment" in str(refused.value)
    result = cli("start", str(path), env=orchestrator_env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "inspected-later.yaml:16:13: task 'greet': next[1].publish.said: variable 'never_set'" in result.stderr
    assert "Traceback" not in result.stderr
