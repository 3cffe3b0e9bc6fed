"""Timer keys: what each durable timer watches, in one format for both workflow formats.

A key is ``kind:seq:attempt:item`` (item ``-`` for a call that is not a with_items item), or
``workflow`` for the run's own timeout. Keys written before this format by Orquesta-format runs
(``dispatch:seq:attempt``, ``ask:seq:attempt``) still parse: runs in progress keep their timers.
"""

from __future__ import annotations

WORKFLOW_TIMER = "workflow"
DISPATCH = "dispatch"   # a delayed dispatch (task delay, retry backoff) is due
DEADLINE = "deadline"   # an attempt's timeout (plus grace) has passed
LEASE = "lease"         # an attempt without timeout has not reported for a while: is it lost?
ASK = "ask"             # a core.ask nobody answered in time
WATCHES = (DEADLINE, LEASE)

# While a run is canceling, how often a revoked call is looked for: one that never started
# leaves no trace and would otherwise keep the run canceling until its lease ran out.
CANCEL_CHECK = 2.0


def timer_key(kind: str, seq: int, attempt: int, item: int | None = None) -> str:
    return f"{kind}:{seq}:{attempt}:{'-' if item is None else item}"


def parse_timer_key(key: str) -> tuple[str, int, int, int | None]:
    """(kind, seq, attempt, item); raises ValueError for a key that names no call."""
    parts = key.split(":")
    if len(parts) == 3:  # the earlier Orquesta-format shape
        parts.append("-")
    kind, seq, attempt, item = parts
    return kind, int(seq), int(attempt), None if item == "-" else int(item)


def timer_kind(key: str) -> str:
    return key.split(":", 1)[0]
