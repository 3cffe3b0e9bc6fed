"""A run as the step that last wrote it left it, carried in the message of the one call that step
sent, so that the step applying that call's outcome needs no read (docs/performance.md, "A step
in one round trip").

The worker that ran the call decides from the snapshot without the run row's lock, and writes
only if the row is still the version the snapshot names (its `xmin` and `updated_at`: steps.py
makes every CTE of the write wait on that conditional update). Any write to the run since, by a
step, an operator or a sweep, changes the row's version: the conditional write then writes
nothing and the step is done again the usual way (lock, read, decide, write). A snapshot is an
optimisation only: a call without one, or with a stale or malformed one, is stepped from the
stored state. SQLite has no row versions: the embedded runtime sends none.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, NamedTuple

from ..secrets import Redactor
from .steps import StepRows, Written

# A snapshot larger than this (the state's and variables' JSON) is not sent: each message of a
# call would carry it, and reading the row is then cheaper than moving it through the broker.
LIMIT = 32 * 1024


class RunSnapshot(NamedTuple):
    """The fields of a run row a step decides from (as store.runs.lock_run returns them, with
    the run's variables), and the version they were written as."""

    id: str
    definition_id: int
    status: str
    params: dict[str, Any]
    started_at: datetime | None
    parent_run_id: str | None
    parent_seq: int | None
    parent_attempt: int | None
    parent_item: int | None
    state: dict[str, Any]
    variables: dict[str, Any]
    version: str
    updated_at: datetime

    @property
    def expect(self) -> tuple[str, datetime]:
        """What a write decided from this snapshot must find (steps.StepRows.expect)."""
        return self.version, self.updated_at


def take(run: Any, rows: StepRows, written: Written, variables: dict[str, Any],
         redact: Redactor) -> dict[str, Any] | None:
    """The snapshot of the run after a step's write, as message data; None when the write left
    no version (SQLite, a conditional write that did not apply), the run ended, it is larger
    than LIMIT, or it holds one of the deployment's secrets (those reach the broker only in the
    inputs of the calls that use them). `run` is the run row the step read (lock_run),
    `variables` the run's variables after the step."""
    if written.version is None or rows.finished or rows.state_json is None:
        return None
    texts = [rows.state_json, json.dumps(variables) if variables else "", json.dumps(run.params) if run.params else ""]
    if sum(map(len, texts)) > LIMIT or any(map(redact.mentioned_in, texts)):
        return None
    started_at = rows.run.get("started_at", run.started_at)
    return {"v": written.version, "at": rows.now.isoformat(), "definition": run.definition_id,
            "status": rows.run.get("status", run.status), "params": run.params,
            "started_at": started_at.isoformat() if started_at else None,
            "parent": [run.parent_run_id, run.parent_seq, run.parent_attempt, run.parent_item],
            "state": rows.run["state"], "variables": variables}


def read(run_id: str, data: Any) -> RunSnapshot | None:
    """The snapshot a message carried, or None if it is not one (a message from another release,
    or tampered with: the step then reads the row)."""
    try:
        parent = data["parent"]
        snapshot = RunSnapshot(
            id=run_id, definition_id=data["definition"], status=data["status"], params=data["params"],
            started_at=datetime.fromisoformat(data["started_at"]) if data["started_at"] else None,
            parent_run_id=parent[0], parent_seq=parent[1], parent_attempt=parent[2], parent_item=parent[3],
            state=data["state"], variables=data["variables"], version=data["v"],
            updated_at=datetime.fromisoformat(data["at"]))
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    if not (isinstance(snapshot.definition_id, int) and isinstance(snapshot.status, str)
            and isinstance(snapshot.params, dict) and isinstance(snapshot.state, dict)
            and isinstance(snapshot.variables, dict) and isinstance(snapshot.version, str)
            and snapshot.updated_at.tzinfo is not None):
        return None
    return snapshot
