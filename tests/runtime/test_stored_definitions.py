"""Runs in progress survive an upgrade that made validation stricter: a run carries on with the
definition stored when it started, loaded without the static checks that came later, while a
new start of the same file is refused with the full report.

The run is made as an older release made it: its definition stored and its first step taken by
the Supervisor directly, without today's validation of the file."""

from __future__ import annotations

import time
import uuid

import pytest

from orchestrator import submit
from orchestrator.api import RunHandle
from orchestrator.core.errors import WorkflowInvalid
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


# Refused by a whole-workflow check of our format (b and c only reach each other); only `a` runs.
UNREACHABLE = """version: "1.0"
tasks:
  - name: a
    action: core.echo
    input: {message: ada}
  - name: b
    action: core.noop
    next: [{do: c}]
  - name: c
    action: core.noop
    next: [{do: b}]
output_map: {said: "{{ task.a.result }}"}
"""

CASES = {  # format -> (text, tasks that run, where and what the refusal says)
    "orquesta": (INSPECTED_LATER, ["greet", "again"],
                 "16:13: task 'greet': next[1].publish.said: variable 'never_set' is referenced before assignment"),
    "native": (UNREACHABLE, ["a"], "6:5: task 'b' is unreachable from the entry tasks"),
}


@pytest.mark.parametrize("fmt", CASES)
def test_a_run_whose_stored_definition_no_longer_validates_carries_on(worker, orchestrator_env, tmp_path, fmt):
    from orchestrator.runtime import supervisor

    text, tasks, refusal = CASES[fmt]
    path = tmp_path / "checked-later.yaml"
    path.write_text(text)
    run_id = str(uuid.uuid4())
    supervisor().start(load_stored(text, str(path), "checked-later"), {}, run_id)
    summary = RunHandle(run_id).wait(60)
    assert summary["status"] == "succeeded", summary
    assert summary["output"] == {"said": "ada"}
    assert [t["name"] for t in summary["tasks"]] == tasks

    # a new start of the same file is refused, naming the place
    with pytest.raises(WorkflowInvalid) as refused:
        submit(str(path))
    assert refusal.split(": ", 1)[1] in str(refused.value)
    result = cli("start", str(path), env=orchestrator_env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"checked-later.yaml:{refusal}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_whose_stored_definition_cannot_be_read_at_all_fails_saying_so(orchestrator_env, tmp_path):
    """A stored definition that does not even parse (written by hand, or a format a release
    dropped): the run's next step fails it with the reason instead of leaving it `running`."""
    from sqlalchemy import text as sql

    from orchestrator.config import settings
    from orchestrator.store.database import database

    from .conftest import WorkerProcess

    gate = tmp_path / "gate"
    path = tmp_path / "held.yaml"
    path.write_text('version: "1.0"\n'
                    "parameters: {gate: {type: string}}\n"
                    "tasks:\n"
                    '  - {name: held, action: tests.effect, input: {value: 1, gate: "{{ parameters.gate }}"}}\n')
    env = {**orchestrator_env, "ORCHESTRATOR_TEST_EFFECTS": str(tmp_path / "effects.log")}
    worker = WorkerProcess(env, tmp_path / "worker.log").wait_ready()
    try:
        run = submit(str(path), {"gate": str(gate)})
        waiting = tmp_path / "effects.log.waiting"
        deadline = time.monotonic() + 60
        while not waiting.exists():  # the call runs, held at its gate; nothing has loaded the definition
            assert time.monotonic() < deadline, worker.text()[-2000:]
            time.sleep(0.05)
        with database(settings().effective_database_url).transaction() as conn:
            conn.execute(sql("UPDATE workflow_definitions SET text = :t WHERE id = "
                             "(SELECT definition_id FROM workflow_runs WHERE id = :id)"),
                         {"t": 'version: "1.0"\ntasks: [', "id": run.id})
        gate.touch()
        summary = run.wait(60)
        assert summary["status"] == "failed", summary
        assert summary["error"].startswith("the run's stored definition cannot be loaded: "), summary["error"]
        assert "Traceback" not in summary["error"]
    finally:
        gate.touch()
        worker.stop_in_background()
