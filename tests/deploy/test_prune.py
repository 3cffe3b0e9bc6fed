"""Retention on real workers and PostgreSQL: finished runs older than the cut go with every row
they own; runs in progress, paused runs, parents of runs in progress and newer runs stay as they
were."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import text

from orchestrator import prune, submit
from orchestrator.pruning import prune_if_due
from orchestrator.runtime import supervisor
from orchestrator.store.runs import utcnow
from tests.runtime.test_cli import cli

from .conftest import wait_status

pytestmark = [pytest.mark.runtime, pytest.mark.timeout(300)]  # real processes on a loaded CI machine
OWNED = ("task_executions", "workflow_variables", "timers", "task_items", "run_events", "outbox", "schedule_fires")


def rows_of(run_ids: list[str]) -> dict[str, int]:
    with supervisor().db.reading() as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t} WHERE run_id = ANY(:ids)"), {"ids": run_ids}).scalar()
                  for t in OWNED}
        counts["workflow_runs"] = conn.execute(text("SELECT count(*) FROM workflow_runs WHERE id = ANY(:ids)"),
                                               {"ids": run_ids}).scalar()
    return counts


def all_run_ids() -> set[str]:
    with supervisor().db.reading() as conn:
        return set(conn.execute(text("SELECT id FROM workflow_runs")).scalars())


def test_prune_deletes_old_finished_runs_with_all_they_own_and_nothing_else(deploy_worker, deploy_env):
    old = [submit("hello", {"name": "Ada"}), submit("with-items"), submit("subworkflow"), submit("unhandled-failure")]
    for run in old:
        assert run.wait(60)["status"] in ("succeeded", "failed")
    running = submit("ask-parent")           # a parent whose child is in progress
    paused = submit("ask-child")
    wait_status(running, "running")
    wait_status(paused, "running")
    paused.pause()
    wait_status(paused, "paused")
    children = sorted(all_run_ids() - {r.id for r in old} - {running.id, paused.id} - {
        c for c in all_run_ids() if c.startswith(tuple(r.id for r in old))})
    assert len(children) == 1 and children[0].startswith(running.id)  # ask-parent's child, in progress
    old_ids = sorted(c for c in all_run_ids() if c.startswith(tuple(r.id for r in old)))  # with sub-workflow runs
    assert len(old_ids) > len(old)
    time.sleep(0.01)
    cut = utcnow()
    newer = submit("hello", {"name": "Grace"})
    newer.wait(60)
    kept = [running.id, paused.id, children[0], newer.id]
    before = {run_id: RunSummary(run_id) for run_id in kept}
    kept_rows = rows_of(kept)
    assert rows_of(old_ids)["task_items"] > 0 and rows_of(old_ids)["run_events"] > 0

    report = prune(timedelta(hours=1), now=cut + timedelta(hours=1), batch=2)  # small batches: several rounds

    assert report.runs == len(old_ids) and report.done and report.batches > 2
    assert rows_of(old_ids) == {t: 0 for t in (*OWNED, "workflow_runs")}
    assert rows_of(kept) == kept_rows
    assert {run_id: RunSummary(run_id) for run_id in kept} == before


def RunSummary(run_id: str) -> dict:
    from orchestrator.api import RunHandle

    return RunHandle(run_id).summary()


def test_status_filter_and_the_command_line(deploy_worker, deploy_env):
    ok, bad = submit("hello", {"name": "Ada"}), submit("unhandled-failure")
    ok.wait(60), bad.wait(60)
    wrong = cli("prune", "--older-than", "3 fortnights", env=deploy_env)
    assert wrong.returncode == 2 and "--older-than" in wrong.stderr and "Traceback" not in wrong.stderr
    in_progress = cli("prune", "--older-than", "1s", "--status", "running", env=deploy_env)
    assert in_progress.returncode == 2 and "only finished runs are pruned" in in_progress.stderr
    nothing = cli("prune", "--older-than", "30d", "--json", env=deploy_env)
    assert nothing.returncode == 0 and '"runs": 0' in nothing.stdout
    time.sleep(1.1)
    failed_only = cli("prune", "--older-than", "1s", "--status", "failed", env=deploy_env)
    assert failed_only.returncode == 0 and "pruned 1 " in failed_only.stdout, failed_only.stderr
    assert all_run_ids() == {ok.id}


def test_the_daily_prune_runs_once_a_day_for_the_whole_deployment(deploy_worker, deploy_env):
    run = submit("hello", {"name": "Ada"})
    run.wait(60)
    later = utcnow() + timedelta(days=31)
    first = prune_if_due(timedelta(days=30), now=later, force_check=True)
    assert first is not None and first.runs == 1
    assert prune_if_due(timedelta(days=30), now=later + timedelta(hours=23), force_check=True) is None
    again = prune_if_due(timedelta(days=30), now=later + timedelta(hours=24, seconds=1), force_check=True)
    assert again is not None and again.runs == 0


def test_orchestrator_retention_makes_the_workers_prune_on_their_own(deploy_env, tmp_path):
    """ORCHESTRATOR_RETENTION on the workers: their periodic tick claims the day's prune."""
    from tests.runtime.conftest import WorkerProcess

    from .conftest import wait_for

    first = WorkerProcess(deploy_env, tmp_path / "first.log").wait_ready()
    try:
        run = submit("hello", {"name": "Ada"})
        run.wait(60)
    finally:
        first.stop()
    finished = utcnow()
    wait_for(lambda: utcnow() > finished + timedelta(seconds=1.5), 10, "the run older than the retention")
    pruning = WorkerProcess(dict(deploy_env, ORCHESTRATOR_RETENTION="1s"), tmp_path / "pruning.log").wait_ready()
    try:
        wait_for(lambda: run.id not in all_run_ids(), 60, "the worker's daily prune")
    finally:
        pruning.stop()
    with supervisor().db.reading() as conn:
        job = conn.execute(text("SELECT next_at, value FROM housekeeping WHERE duty = 'prune'")).one()
    assert job.value == {"runs": 1, "batches": 1, "done": True}
    assert timedelta(hours=23) < job.next_at - utcnow() <= timedelta(days=1)
