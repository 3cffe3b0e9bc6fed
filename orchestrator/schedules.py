"""Schedules, the pure part: what a schedule is, when it is due, and what a tick decides.

No database, no clock, no Celery: every function takes the time it works on. The shell
(store/schedules.py for the rows, beat.py for Celery beat) reads the clock and writes.

A schedule fires at its due times: `every` seconds from its anchor (when it was added or last
resumed), or at the times of a 5-field cron expression read in its timezone (cronsim: a time that
a DST jump skips fires at the jump, an hour that repeats fires once per matching wall time).
After downtime, when more than one due time has passed, `missed` decides: `coalesce` (default)
starts one run for the latest of them, `skip` starts none and waits for the next.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MISSED_POLICIES = ("coalesce", "skip")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
MIN_EVERY = 1.0
MAX_EVERY = 366 * 24 * 3600.0
_RUN_IDS = uuid.UUID("4f1b6f0e-2c51-4c36-9d0a-5b1f3c1e7a10")


class ScheduleInvalid(ValueError):
    """A schedule that cannot be stored; names the field at fault."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(f"{field_name}: {message}")


@dataclass(frozen=True)
class ScheduleSpec:
    """What a user asks for. Exactly one of `every` (seconds) and `cron` is set."""

    name: str
    workflow: str
    params: dict[str, Any] = field(default_factory=dict)
    every: float | None = None
    cron: str | None = None
    timezone: str = "UTC"
    missed: str = "coalesce"

    @property
    def when(self) -> str:
        """How it is due, for people: `every 60s` or `cron 0 3 * * * (Europe/Paris)`."""
        if self.every is not None:
            return f"every {self.every:g}s"
        return f"cron {self.cron} ({self.timezone})"


def check(spec: ScheduleSpec) -> ScheduleSpec:
    """The spec, normalised; ScheduleInvalid naming the field otherwise."""
    if not NAME.match(spec.name or ""):
        raise ScheduleInvalid("name", f"{spec.name!r} is not a schedule name (letters, digits, _ . : -; "
                                      f"at most 100 characters, starting with a letter or digit)")
    if not spec.workflow or not spec.workflow.strip():
        raise ScheduleInvalid("workflow", "a workflow name or file is required")
    if not isinstance(spec.params, dict):
        raise ScheduleInvalid("params", "must be a mapping")
    if (spec.every is None) == (spec.cron is None):
        raise ScheduleInvalid("every", "give exactly one of --every SECONDS and --cron EXPRESSION")
    if spec.missed not in MISSED_POLICIES:
        raise ScheduleInvalid("missed", f"must be one of {', '.join(MISSED_POLICIES)}, not {spec.missed!r}")
    zone = _zone(spec.timezone)
    if spec.every is not None:
        try:
            every = float(spec.every)
        except (TypeError, ValueError):
            raise ScheduleInvalid("every", f"{spec.every!r} is not a number of seconds") from None
        if not MIN_EVERY <= every <= MAX_EVERY:
            raise ScheduleInvalid("every", f"must be between {MIN_EVERY:g} and {MAX_EVERY:g} seconds, not {every:g}")
        return ScheduleSpec(spec.name, spec.workflow.strip(), dict(spec.params), every, None, spec.timezone,
                            spec.missed)
    cron = " ".join(str(spec.cron).split())
    if len(cron.split(" ")) != 5:
        raise ScheduleInvalid("cron", f"{spec.cron!r}: expected 5 fields (minute hour day-of-month month "
                                      f"day-of-week)")
    try:
        next(CronSim(cron, datetime(2000, 1, 1, tzinfo=zone)))
    except (CronSimError, StopIteration) as exc:
        raise ScheduleInvalid("cron", f"{spec.cron!r}: {exc or 'never due'}") from None
    return ScheduleSpec(spec.name, spec.workflow.strip(), dict(spec.params), None, cron, spec.timezone, spec.missed)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleInvalid("timezone", f"{name!r} is not an IANA time zone (e.g. UTC, Europe/Paris)") from None


def as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:  # SQLite hands back naive datetimes; they were stored as UTC
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def next_due(spec: ScheduleSpec, anchor: datetime, after: datetime) -> datetime:
    """The first due time strictly after `after` (UTC)."""
    after = as_utc(after)
    if spec.every is not None:
        anchor = as_utc(anchor)
        step = timedelta(seconds=spec.every)
        if after < anchor:
            return anchor
        periods = int((after - anchor) / step) + 1
        return anchor + periods * step
    local = after.astimezone(_zone(spec.timezone)).replace(microsecond=0)
    return as_utc(next(CronSim(spec.cron, local)))


def latest_due(spec: ScheduleSpec, anchor: datetime, now: datetime) -> datetime | None:
    """The last due time at or before `now`, or None when there is none since `anchor`."""
    now = as_utc(now)
    if spec.every is not None:
        anchor = as_utc(anchor)
        if now < anchor:
            return None
        step = timedelta(seconds=spec.every)
        return anchor + int((now - anchor) / step) * step
    # CronSim(reverse) yields times strictly before its start: start one second past `now`.
    start = (now.replace(microsecond=0) + timedelta(seconds=1)).astimezone(_zone(spec.timezone))
    found = as_utc(next(CronSim(spec.cron, start, reverse=True)))
    return found if found >= as_utc(anchor) else None


@dataclass(frozen=True)
class Decision:
    """What a tick does with one schedule: fire `fire` (a due time) or nothing, and store `next`."""

    fire: datetime | None
    next: datetime
    missed: int = 0  # due times passed over (coalesced into `fire`, or skipped)


def decide(spec: ScheduleSpec, anchor: datetime, next_due_at: datetime, now: datetime) -> Decision | None:
    """None while `next_due_at` is in the future; else which due time fires and the next one.

    One due time passed: it fires. More than one (beat was down): `coalesce` fires the latest,
    `skip` fires none. Either way the next due time is the first one after `now`."""
    next_due_at, now = as_utc(next_due_at), as_utc(now)
    if next_due_at > now:
        return None
    latest = latest_due(spec, anchor, now) or next_due_at
    latest = max(latest, next_due_at)
    following = next_due(spec, anchor, now)
    missed = _count_between(spec, anchor, next_due_at, latest)
    if missed == 0:
        return Decision(latest, following)
    if spec.missed == "skip":
        return Decision(None, following, missed + 1)
    return Decision(latest, following, missed)


def _count_between(spec: ScheduleSpec, anchor: datetime, first: datetime, last: datetime, cap: int = 100_000) -> int:
    """How many due times lie in [first, last) (the ones `last` stands in for); capped."""
    if last <= first:
        return 0
    if spec.every is not None:
        return min(cap, round((last - first) / timedelta(seconds=spec.every)))
    count, moment = 0, first
    while moment < last and count < cap:
        count += 1
        moment = next_due(spec, anchor, moment)
    return count


def run_id(schedule_id: int, due: datetime) -> str:
    """The id of the run a schedule's due time starts: derived, so a due time can start only one."""
    return str(uuid.uuid5(_RUN_IDS, f"{schedule_id}/{as_utc(due).isoformat()}"))

