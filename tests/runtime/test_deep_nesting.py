"""Sub-workflows nested deeply: a child's id derives from its parent's and grows with depth, past
the 64 characters the id columns hold; from there it is bounded (a prefix and a hash,
whereabouts.child_run_id), so runs of any depth store, report to their parents and can be
followed through parent_run_id."""

from __future__ import annotations

import pytest

from orchestrator import submit

from .conftest import WorkerProcess, _reset_process

pytestmark = pytest.mark.runtime

NEST = """version: "1.0"
description: Calls itself as a sub-workflow until depth reaches 0; the output counts the levels.
parameters:
  depth: {type: integer}
tasks:
  - name: check
    action: core.noop
    next: [{when: "{{ parameters.depth > 0 }}", do: deeper}]
  - name: deeper
    action: nest
    with_items: [1]
    input: {depth: "{{ parameters.depth - 1 }}"}
output_map:
  levels: "{{ task.deeper.result[0].levels + 1 if parameters.depth > 0 else 1 }}"
"""
DEPTH = 8


@pytest.fixture
def nesting_worker(orchestrator_env, tmp_path, monkeypatch):
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "nest.yaml").write_text(NEST)
    monkeypatch.setenv("ORCHESTRATOR_WORKFLOWS", str(folder))
    _reset_process()
    process = WorkerProcess({**orchestrator_env, "ORCHESTRATOR_WORKFLOWS": str(folder)},
                            tmp_path / "worker.log").wait_ready()
    yield process
    process.stop_in_background()


def test_sub_workflows_nested_eight_deep(nesting_worker):
    from sqlalchemy import text

    from orchestrator.config import settings
    from orchestrator.store.database import database

    run = submit("nest", {"depth": DEPTH})
    summary = run.wait(120)
    assert summary["status"] == "succeeded", (summary, nesting_worker.text()[-3000:])
    assert summary["output"] == {"levels": DEPTH + 1}
    with database(settings().effective_database_url).reading() as conn:
        rows = {r.id: r for r in conn.execute(text("SELECT id, parent_run_id, status FROM workflow_runs"))}
    # one run per level, each linked to its parent, the deepest ids bounded
    chain, current = [], run.id
    while current is not None:
        chain.append(current)
        children = [r.id for r in rows.values() if r.parent_run_id == current]
        assert len(children) <= 1, children
        current = children[0] if children else None
    assert len(chain) == DEPTH + 1 == len(rows), rows
    assert all(rows[i].status == "succeeded" for i in chain)
    assert max(len(i) for i in chain) == 64 and len(set(chain)) == len(chain)
    assert all(i.startswith(run.id) for i in chain)
