"""Retention, the pure part: durations as people write them, which statuses may be pruned, and
what the daily job does next. The rows are store/prune.py's; the shell is pruning.py."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

PRUNABLE = ("succeeded", "failed", "canceled")  # finished runs only: never one in progress
DAY = timedelta(days=1)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `12h`, `30d`, `2w` (or plain seconds) as a timedelta; ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text or ""))
    if not match:
        raise ValueError(f"{text!r} is not a duration (e.g. 90s, 12h, 30d)")
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be more than zero")
    return timedelta(seconds=seconds)


def check_statuses(statuses: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The statuses asked for (all finished ones when none), ValueError for any other."""
    if not statuses:
        return PRUNABLE
    wrong = [s for s in statuses if s not in PRUNABLE]
    if wrong:
        raise ValueError(f"--status {wrong[0]!r}: only finished runs are pruned ({', '.join(PRUNABLE)})")
    return tuple(dict.fromkeys(statuses))


@dataclass(frozen=True)
class PruneReport:
    runs: int = 0          # runs deleted, with every row they own
    batches: int = 0
    done: bool = True      # False when the batch budget ran out with more left to prune

    def as_dict(self) -> dict[str, object]:
        return {"runs": self.runs, "batches": self.batches, "done": self.done}


def next_daily(now: datetime, report: PruneReport) -> datetime:
    """When the daily prune is due again: tomorrow, or at once when it stopped with work left
    (each pass is bounded, so a first prune of a large backlog spreads over several passes)."""
    return now + DAY if report.done else now
