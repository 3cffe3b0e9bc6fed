"""The pure part of schedules: due times (interval and cron, across DST) and what a tick decides,
on a clock the test holds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from orchestrator.schedules import ScheduleInvalid, ScheduleSpec, check, decide, latest_due, next_due, run_id

UTC = timezone.utc
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


def every(seconds: float, missed: str = "coalesce") -> ScheduleSpec:
    return check(ScheduleSpec("s", "wf", every=seconds, missed=missed))


def cron(expr: str, tz: str = "UTC", missed: str = "coalesce") -> ScheduleSpec:
    return check(ScheduleSpec("s", "wf", cron=expr, timezone=tz, missed=missed))


def test_interval_due_times_count_from_the_anchor():
    spec = every(60)
    assert next_due(spec, T0, T0) == T0 + timedelta(seconds=60)
    assert next_due(spec, T0, T0 + timedelta(seconds=59.9)) == T0 + timedelta(seconds=60)
    assert next_due(spec, T0, T0 + timedelta(seconds=60)) == T0 + timedelta(seconds=120)
    assert latest_due(spec, T0, T0 + timedelta(seconds=179)) == T0 + timedelta(seconds=120)


def test_one_due_time_passed_fires_it_and_moves_on():
    spec = every(60)
    due = T0 + timedelta(seconds=60)
    assert decide(spec, T0, due, due - timedelta(seconds=1)) is None
    decision = decide(spec, T0, due, due + timedelta(seconds=0.5))
    assert (decision.fire, decision.next, decision.missed) == (due, due + timedelta(seconds=60), 0)


def test_downtime_is_coalesced_into_one_run_for_the_latest_due_time():
    spec = every(60)
    due = T0 + timedelta(seconds=60)
    now = T0 + timedelta(seconds=60 * 10 + 5)  # beat was down for nine more due times
    decision = decide(spec, T0, due, now)
    assert decision.fire == T0 + timedelta(seconds=600)
    assert decision.next == T0 + timedelta(seconds=660)
    assert decision.missed == 9


def test_downtime_with_missed_skip_fires_nothing_and_waits_for_the_next():
    spec = every(60, missed="skip")
    decision = decide(spec, T0, T0 + timedelta(seconds=60), T0 + timedelta(seconds=185))
    assert decision.fire is None and decision.next == T0 + timedelta(seconds=240)
    on_time = decide(spec, T0, T0 + timedelta(seconds=60), T0 + timedelta(seconds=61))
    assert on_time.fire == T0 + timedelta(seconds=60)


def test_cron_in_paris_fires_at_local_wall_time_in_winter_and_summer():
    spec = cron("0 3 * * *", "Europe/Paris")
    winter = next_due(spec, T0, datetime(2024, 1, 15, 0, 0, tzinfo=UTC))
    summer = next_due(spec, T0, datetime(2024, 7, 15, 0, 0, tzinfo=UTC))
    assert winter == datetime(2024, 1, 15, 2, 0, tzinfo=UTC)   # 03:00 CET = 02:00 UTC
    assert summer == datetime(2024, 7, 15, 1, 0, tzinfo=UTC)   # 03:00 CEST = 01:00 UTC
    assert winter.astimezone(PARIS).hour == summer.astimezone(PARIS).hour == 3


def test_cron_across_the_spring_gap_fires_once_at_the_jump():
    spec = cron("30 2 * * *", "Europe/Paris")  # 02:30 does not exist on 2024-03-31
    times, moment = [], datetime(2024, 3, 30, 0, 0, tzinfo=UTC)
    for _ in range(3):
        moment = next_due(spec, T0, moment)
        times.append(moment.astimezone(PARIS).isoformat())
    assert times == ["2024-03-30T02:30:00+01:00", "2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00"]


def test_cron_across_the_autumn_repeat_fires_a_daily_job_once():
    spec = cron("30 2 * * *", "Europe/Paris")  # 02:30 happens twice on 2024-10-27
    moment, times = datetime(2024, 10, 26, 12, 0, tzinfo=UTC), []
    for _ in range(2):
        moment = next_due(spec, T0, moment)
        times.append(moment.astimezone(PARIS).isoformat())
    assert times == ["2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"]


def test_cron_decide_after_a_night_down_coalesces_hourly_fires():
    spec = cron("0 * * * *", "Europe/Paris")
    anchor = datetime(2024, 10, 26, 20, 0, tzinfo=UTC)
    first = next_due(spec, anchor, anchor)
    # 21:00 to 04:00 UTC: 8 hourly due times (local 02:00 counts twice), 7 coalesced into the last
    now = datetime(2024, 10, 27, 4, 30, tzinfo=UTC)
    decision = decide(spec, anchor, first, now)
    assert decision.fire == datetime(2024, 10, 27, 4, 0, tzinfo=UTC)
    assert decision.next == datetime(2024, 10, 27, 5, 0, tzinfo=UTC)
    assert decision.missed == 7


def test_run_ids_are_derived_from_schedule_and_due_time():
    assert run_id(1, T0) == run_id(1, T0.astimezone(PARIS))
    assert run_id(1, T0) != run_id(2, T0) != run_id(1, T0 + timedelta(seconds=1))


@pytest.mark.parametrize("kwargs, field", [
    (dict(name="bad name"), "name"),
    (dict(every=None, cron=None), "every"),
    (dict(every=0.5), "every"),
    (dict(every=None, cron="61 * * * *"), "cron"),
    (dict(every=None, cron="* * *"), "cron"),
    (dict(timezone="Mars/Olympus"), "timezone"),
    (dict(missed="all"), "missed"),
    (dict(workflow=" "), "workflow"),
])
def test_bad_specs_name_their_field(kwargs, field):
    values = dict(name="ok", workflow="wf", every=60.0) | kwargs
    with pytest.raises(ScheduleInvalid) as caught:
        check(ScheduleSpec(**values))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
