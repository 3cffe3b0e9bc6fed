"""New run ids: time-ordered UUIDs (the version 7 layout of RFC 9562).

A run's id leads the keys of every table a start and a step write (the run row, its task
executions, its events, its variables, its with_items rows). A random id (version 4) lands each
new run on a random leaf page of each of those indexes: at 10^6 runs that is a page no recent
write touched, so each start dirtied about six pages of its own and, the first time each was
changed after a checkpoint, wrote a full image of it to the WAL (42 KB of WAL a start against
3.7 KB on a small database; docs/performance.md, "Flat at a million runs"). Ids that begin with
the time put the runs started close together next to each other in those indexes, whatever the
database holds.

    48 bits   milliseconds since the Unix epoch
     4 bits   version (7)
    12 bits   random
     2 bits   variant (10)
    62 bits   random

Ids given by the caller (`submit(..., run_id=...)`, `start_workflow.apply_async(task_id=...)`,
`app.send_task`'s own task id) are kept as given; a schedule's runs keep their derived ids
(schedules.run_id: a due time starts one run)."""

from __future__ import annotations

import os
import time
import uuid


def new_run_id() -> str:
    return str(time_ordered_uuid(time.time_ns() // 1_000_000, os.urandom(10)))


def time_ordered_uuid(milliseconds: int, random: bytes) -> uuid.UUID:
    """The UUID of that moment with those 10 random bytes (74 of their bits are used)."""
    if len(random) != 10:
        raise ValueError("10 random bytes are needed")
    tail = int.from_bytes(random, "big")
    value = (milliseconds & (1 << 48) - 1) << 80
    value |= 0x7 << 76 | (tail >> 62 & 0xFFF) << 64  # version, rand_a
    value |= 0b10 << 62 | tail & (1 << 62) - 1        # variant, rand_b
    return uuid.UUID(int=value)
