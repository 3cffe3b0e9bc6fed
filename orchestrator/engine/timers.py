"""The conductor's timer keys: what each durable timer watches, named so the shell can tell them apart."""

from __future__ import annotations

WORKFLOW_TIMER = "workflow"
DISPATCH = "dispatch"   # a delayed dispatch (task `delay`, retry backoff) is due
DEADLINE = "deadline"   # an attempt's timeout (plus grace) has passed
LEASE = "lease"         # an attempt without timeout has not reported for a while: is it lost?
WATCHES = (DEADLINE, LEASE)

# While a run is canceling, how often a revoked call is looked for: one that never started
# leaves no trace and would otherwise keep the run canceling until its lease ran out.
CANCEL_CHECK = 2.0


def timer_key(kind: str, seq: int, attempt: int, item: int | None) -> str:
    return f"{kind}:{seq}:{attempt}:{'-' if item is None else item}"


def parse_timer_key(key: str) -> tuple[str, int, int, int | None]:
    kind, seq, attempt, item = key.split(":")
    return kind, int(seq), int(attempt), None if item == "-" else int(item)
