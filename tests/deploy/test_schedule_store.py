"""The schedule runner against a real database, on a clock the test holds: each due time is
claimed once however many runners tick, a restarted runner loses nothing, pause and resume."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from orchestrator.beat import ScheduleRunner
from orchestrator.schedules import ScheduleSpec, check, run_id
from orchestrator.store import Database
from orchestrator.store import schedules as rows

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Sent(list):
    def __call__(self, run: str, workflow: str, params: dict) -> None:
        self.append((run, workflow, params))


@pytest.fixture(params=["postgresql", "sqlite"])
def db(request, tmp_path):
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'schedules.db'}")
        database.upgrade()
    else:
        url, _ = request.getfixturevalue("pg_schema")
        database = Database(url)
    yield database
    database.dispose()


def add(db: Database, spec: ScheduleSpec, now: datetime) -> None:
    with db.transaction() as conn:
        rows.add(conn, check(spec), now)


def fires(db: Database) -> list[dict]:
    with db.reading() as conn:
        return rows.fires(conn)


def test_two_runners_on_one_clock_fire_each_due_time_once(db):
    clock, sent = Clock(T0), Sent()
    add(db, ScheduleSpec("every-minute", "hello", {"name": "Ada"}, every=60), T0)
    beats = [ScheduleRunner(db, sent, clock), ScheduleRunner(db, sent, clock)]
    for _ in range(5):
        clock.advance(60)
        for beat in beats:
            beat.tick()
    assert len(sent) == 5
    assert [f["due_at"] for f in fires(db)] == [(T0 + timedelta(seconds=60 * i)).isoformat() for i in range(1, 6)]
    assert sent[0] == (fires(db)[0]["run_id"], "hello", {"name": "Ada"})


def test_a_claim_read_by_two_runners_is_won_by_one(db):
    """Both read the due row before either claims: the conditional UPDATE lets one through."""
    add(db, ScheduleSpec("race", "hello", every=60), T0)
    now = T0 + timedelta(seconds=61)
    with db.reading() as conn:
        first, second = rows.due(conn, now)[0], rows.due(conn, now)[0]
    from orchestrator.schedules import decide

    claimed = []
    for row in (first, second):
        decision = decide(rows.spec_of(row), row.anchor_at, row.next_due_at, now)
        with db.transaction() as conn:
            claimed.append(rows.claim(conn, row, decision, now))
    assert claimed[0][0] and claimed[0][1] is not None and claimed[1] == (False, None)
    assert len(fires(db)) == 1


def test_a_restarted_runner_fires_what_came_due_while_it_was_down_once(db):
    clock, sent = Clock(T0), Sent()
    add(db, ScheduleSpec("restart", "hello", every=60), T0)
    ScheduleRunner(db, sent, clock).tick()
    clock.advance(60 * 5 + 1)  # down for five due times
    ScheduleRunner(db, sent, clock).tick()  # a new process: all it knows is in the database
    assert len(sent) == 1
    fire = fires(db)[0]
    assert fire["due_at"] == (T0 + timedelta(seconds=300)).isoformat() and fire["missed"] == 4
    with db.reading() as conn:
        assert rows.get(conn, "restart")["next_due_at"] == (T0 + timedelta(seconds=360)).isoformat()


def test_paused_schedules_fire_nothing_and_resume_without_catching_up(db):
    clock, sent = Clock(T0), Sent()
    add(db, ScheduleSpec("held", "hello", every=60), T0)
    runner = ScheduleRunner(db, sent, clock)
    with db.transaction() as conn:
        assert rows.set_paused(conn, "held", True, clock())["next_due_at"] is None
    clock.advance(600)
    runner.tick()
    assert sent == []
    with db.transaction() as conn:
        resumed = rows.set_paused(conn, "held", False, clock())
    assert resumed["next_due_at"] == (clock() + timedelta(seconds=60)).isoformat()
    clock.advance(60)
    runner.tick()
    assert len(sent) == 1


def test_a_start_message_lost_is_sent_again_with_the_same_run_id(db):
    clock = Clock(T0)
    lost = Sent()
    add(db, ScheduleSpec("lossy", "hello", every=3600), T0)
    clock.advance(3600)
    ScheduleRunner(db, lost, clock, resend_after=30).tick()  # "sent", but no run ever appears
    again = Sent()
    clock.advance(29)
    ScheduleRunner(db, again, clock, resend_after=30).tick()
    assert again == []
    clock.advance(2)
    ScheduleRunner(db, again, clock, resend_after=30).tick()
    assert [r for r, _, _ in again] == [lost[0][0]]
    clock.advance(31)  # each resend waits twice as long as the one before
    ScheduleRunner(db, again, clock, resend_after=30).tick()
    assert len(again) == 1
    clock.advance(30)
    ScheduleRunner(db, again, clock, resend_after=30).tick()
    assert len(again) == 2
    with db.reading() as conn:
        schedule_id = conn.exec_driver_sql("SELECT id FROM schedules").scalar_one()
    assert lost[0][0] == run_id(schedule_id, T0 + timedelta(seconds=3600))


def test_cron_in_new_york_fires_at_local_nine_across_the_dst_change(db):
    clock, sent = Clock(datetime(2024, 3, 8, 12, 0, tzinfo=timezone.utc)), Sent()
    add(db, ScheduleSpec("morning", "hello", cron="0 9 * * *", timezone="America/New_York"), clock())
    runner = ScheduleRunner(db, sent, clock)
    for _ in range(4 * 24):  # four days, an hour at a time: DST starts on 2024-03-10
        clock.advance(3600)
        runner.tick()
    due = [f["due_at"] for f in fires(db)]
    # 09:00 EST is 14:00 UTC; from 2024-03-10 on, 09:00 EDT is 13:00 UTC.
    assert due == ["2024-03-08T14:00:00+00:00", "2024-03-09T14:00:00+00:00", "2024-03-10T13:00:00+00:00",
                   "2024-03-11T13:00:00+00:00"]


def test_a_name_is_taken_once(db):
    add(db, ScheduleSpec("taken", "hello", every=60), T0)
    with pytest.raises(rows.ScheduleExists):
        add(db, ScheduleSpec("taken", "other", cron="* * * * *"), T0)
    with db.reading() as conn:
        assert [s["workflow"] for s in rows.listing(conn)] == ["hello"]


def test_with_the_defaults_a_lost_start_is_sent_again_after_five_minutes(db):
    """The twin of the test above, on the shipped defaults: the bound a user sees."""
    from orchestrator.beat import RESEND_AFTER

    assert RESEND_AFTER == 300
    clock, lost, again = Clock(T0), Sent(), Sent()
    add(db, ScheduleSpec("lossy", "hello", every=3600), T0)
    clock.advance(3600)
    ScheduleRunner(db, lost, clock).tick()
    clock.advance(RESEND_AFTER - 1)
    ScheduleRunner(db, again, clock).tick()
    assert again == []
    clock.advance(1)
    ScheduleRunner(db, again, clock).tick()
    assert [r for r, _, _ in again] == [lost[0][0]]
