"""Schedules fired by real `orchestrator beat` processes onto a real worker: two beats at once
fire each due time once, a restarted beat loses nothing (missed due times coalesce into one run),
and each scheduled run records its schedule and due time."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from orchestrator import add_schedule, resume_schedule
from orchestrator.api import RunHandle
from orchestrator.scheduling import schedule_fires
from orchestrator.store.runs import utcnow
from tests.runtime.test_cli import cli

from .conftest import BeatProcess, all_started, quiesce, wait_for

pytestmark = [pytest.mark.runtime, pytest.mark.timeout(300)]  # real processes on a loaded CI machine


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def assert_due_times_accounted(fires: list[dict], every: float) -> None:
    """Due times are distinct and each gap is one period, or a coalesced run's missed ones."""
    due = [when(f["due_at"]) for f in fires]
    assert due == sorted(set(due))
    for before, fire in zip(due, fires[1:]):
        assert when(fire["due_at"]) - before == timedelta(seconds=every * (fire["missed"] + 1)), fires


def test_two_beats_at_once_start_one_run_per_due_time(deploy_worker, deploy_env, tmp_path):
    add_schedule("twice", "hello", every=1, params={"name": "beat"})
    beats = [BeatProcess(deploy_env, tmp_path / f"beat{i}.log", tmp_path / f"home{i}") for i in (1, 2)]
    try:
        (tmp_path / "home1").mkdir(), (tmp_path / "home2").mkdir()
        wait_for(lambda: len(schedule_fires("twice")) >= 6, 90, "six fires")
        quiesce("twice")
    finally:
        for beat in beats:
            beat.stop()
    fires = schedule_fires("twice")
    assert_due_times_accounted(fires, 1.0)
    started = [line for beat in beats for line in beat.text().splitlines() if "starts run" in line]
    assert len(started) == len(fires)  # each due time sent by exactly one of the two beats
    for fire in fires:
        summary = RunHandle(fire["run_id"]).wait(60)
        assert summary["status"] == "succeeded"
        assert summary["schedule"] == {"name": "twice", "due_at": fire["due_at"]}


def test_a_restarted_beat_fires_the_missed_due_times_once(deploy_worker, deploy_env, tmp_path):
    add_schedule("restart", "hello", every=2, params={"name": "again"})
    (tmp_path / "home").mkdir()
    first = BeatProcess(deploy_env, tmp_path / "beat1.log", tmp_path / "home")
    try:
        wait_for(lambda: all_started("restart"), 60, "a first fire")
    finally:
        first.stop()
    stopped = utcnow()
    # Down for at least three due times: wait on the clock itself, the thing under test.
    wait_for(lambda: utcnow() >= stopped + timedelta(seconds=6.5), 30, "downtime")
    second = BeatProcess(deploy_env, tmp_path / "beat2.log", tmp_path / "home")
    try:
        before = len(schedule_fires("restart"))
        wait_for(lambda: len(schedule_fires("restart")) > before, 60, "a fire after restart")
        quiesce("restart")
    finally:
        second.stop()
    fires = schedule_fires("restart")
    assert_due_times_accounted(fires, 2.0)
    assert any(f["missed"] >= 2 for f in fires), fires  # the downtime's due times, coalesced into one run
    summary = RunHandle(fires[-1]["run_id"]).wait(60)
    assert summary["schedule"]["name"] == "restart"
    shown = cli("status", fires[-1]["run_id"], env=deploy_env)
    assert f"schedule: restart (due {fires[-1]['due_at']})" in shown.stdout


def test_pause_and_resume_a_schedule_from_the_command_line(deploy_worker, deploy_env, tmp_path):
    added = cli("schedule", "add", "held", "hello", "--every", "1", "-p", "name=held", env=deploy_env)
    assert added.returncode == 0, added.stderr
    assert cli("schedule", "pause", "held", env=deploy_env).returncode == 0
    listed = cli("schedule", "list", "--json", env=deploy_env)

    [held] = json.loads(listed.stdout)
    assert held["paused"] is True and held["next_due_at"] is None
    (tmp_path / "home").mkdir()
    beat = BeatProcess(deploy_env, tmp_path / "beat.log", tmp_path / "home")
    try:
        # Beat is up and has looked at the schedules (its log says so) while "held" is paused...
        wait_for(lambda: "beat: Starting" in beat.text(), 60, "beat started")
        wait_for(lambda: when(json.loads(cli("schedule", "list", "--json", env=deploy_env).stdout)[0]["created_at"])
                 < utcnow() - timedelta(seconds=3), 30, "three periods")
        assert schedule_fires("held") == []
        assert cli("schedule", "resume", "held", env=deploy_env).returncode == 0
        wait_for(lambda: len(schedule_fires("held")) >= 2, 60, "fires after resume")
        assert cli("schedule", "pause", "held", env=deploy_env).returncode == 0
        paused_at = len(schedule_fires("held"))
        later = utcnow() + timedelta(seconds=3)
        wait_for(lambda: utcnow() >= later, 30, "three more periods")
    finally:
        beat.stop()
    assert len(schedule_fires("held")) == paused_at  # a claim needs the schedule active in the same UPDATE
    assert resume_schedule("held")["paused"] is False
