"""An Orquesta run's state: plain data that round-trips through JSON.

It follows Orquesta's own model, because its semantics depend on it:

- `contexts`: context layers. Layer 0 holds the inputs and vars; every transition that publishes
  adds a layer. A task's input context is its list of layer indexes (later layers win), so
  branches keep their own data and a join merges the layers of its inbound branches.
- `routes`: route 0 is ``[]``; a split task reached through transition ``source__tK`` runs on
  the route extended by that id.
- `sequence`: one record per task execution (and per engine command ``continue``/``fail``/
  ``noop``), in creation order; a record's `seq` is its index + 1. `tasks` maps
  ``"name__route"`` to the latest record of that task on that route.
- `staged`: tasks that an inbound transition reached and that have not been handed out yet
  (a join waits here until it is ready).
- Operations (operations.py): a record waiting for a `core.ask` answer carries `ask` (schema,
  prompt, timeout timer); a record whose delay came due while the run was paused carries
  `held`; `paused_calls` lists sub-workflow calls whose child run is paused; `reason` is set by
  a cancel request.

Unlike the engine's compact state, the sequence grows with the run's history (reruns, routes
and ``task_status()`` need it).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

RUNNING = "running"
RESUMING = "resuming"
PAUSING = "pausing"
PAUSED = "paused"
DELAYED = "delayed"
RETRYING = "retrying"
SUCCEEDED = "succeeded"
FAILED = "failed"
TIMEOUT = "timeout"
ABANDONED = "abandoned"
CANCELING = "canceling"
CANCELED = "canceled"
UNSET = "null"

ACTIVE = frozenset({"requested", "scheduled", DELAYED, RUNNING, RESUMING, PAUSING, CANCELING})
ABENDED = frozenset({FAILED, TIMEOUT, ABANDONED})
COMPLETED = frozenset({SUCCEEDED, FAILED, TIMEOUT, ABANDONED, CANCELED})
HANDING_OUT = frozenset({RUNNING, RESUMING})  # workflow statuses in which staged tasks start


def merge(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    """Deep merge `right` into a copy of `left`: nested mappings merge, other values replace."""
    out = dict(left)
    for key, value in right.items():
        if key in out and isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def key_of(task: str, route: int) -> str:
    return f"{task}__r{route}"


@dataclass
class OrquestaState:
    """Everything the Orquesta conductor decides from (see the module docstring)."""

    status: str = RUNNING
    contexts: list[dict[str, Any]] = field(default_factory=list)
    routes: list[list[str]] = field(default_factory=lambda: [[]])
    sequence: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[str, int] = field(default_factory=dict)
    staged: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    output: Any = None
    reruns: list[list[int]] = field(default_factory=list)
    finished: bool = False
    # Set by a cancel request: the run is canceling until its revoked calls are accounted for.
    reason: str | None = None
    # [seq, attempt, item] of sub-workflow calls whose child run is paused (not running, for a pause).
    paused_calls: list[list[Any]] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)

    # Serialisation ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Everything but `vars` (published values, which the store keeps as rows of their own)."""
        data = copy.deepcopy(asdict(self))
        data.pop("vars")
        data["kind"] = "orquesta"
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], variables: dict[str, Any] | None = None) -> "OrquestaState":
        data = copy.deepcopy(dict(data))
        data.pop("kind", None)
        for record in data.get("sequence", []):
            items = record.get("items")
            if items is not None:
                items["in_flight"] = {int(k): v for k, v in items.get("in_flight", {}).items()}
        return cls(**data, vars=dict(variables or {}))

    # Records ----------------------------------------------------------------------------------

    def record(self, task: str, route: int) -> dict[str, Any] | None:
        index = self.tasks.get(key_of(task, route))
        return None if index is None else self.sequence[index]

    def add_record(self, task: str, route: int, contexts: list[int], prev: dict[str, int]) -> dict[str, Any]:
        record = {"id": task, "route": route, "ctxs": {"in": list(contexts)}, "prev": dict(prev), "next": {},
                  "seq": len(self.sequence) + 1, "attempt": 1}
        self.sequence.append(record)
        self.tasks[key_of(task, route)] = len(self.sequence) - 1
        return record

    def latest_records(self) -> list[dict[str, Any]]:
        return [self.sequence[i] for i in self.tasks.values()]

    def has_active(self) -> bool:
        return any(r.get("status") in ACTIVE for r in self.latest_records())

    def has_status(self, statuses: set[str] | frozenset[str]) -> bool:
        return any(r.get("status") in statuses for r in self.latest_records())

    def terminal(self) -> list[dict[str, Any]]:
        return [r for r in self.sequence if r.get("term")]

    def context(self, indexes: list[int]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for index in indexes:
            merged = merge(merged, self.contexts[index])
        return merged

    def add_context(self, values: dict[str, Any]) -> int:
        self.contexts.append(copy.deepcopy(values))
        return len(self.contexts) - 1

    # Staging ----------------------------------------------------------------------------------

    def staged_entry(self, task: str, route: int) -> dict[str, Any] | None:
        for entry in self.staged:
            if entry["id"] == task and entry["route"] == route:
                return entry
        return None

    def stage(self, task: str, route: int, contexts: list[int], prev: dict[str, int], ready: bool,
              **extra: Any) -> dict[str, Any]:
        entry = {"id": task, "route": route, "ctxs": {"in": list(contexts)}, "prev": dict(prev), "ready": ready}
        entry.update(extra)
        self.staged.append(entry)
        return entry

    def unstage(self, task: str, route: int) -> None:
        entry = self.staged_entry(task, route)
        if entry is not None:
            self.staged.remove(entry)

    def ready_staged(self) -> list[dict[str, Any]]:
        return [e for e in self.staged if e["ready"]]

    # Errors -----------------------------------------------------------------------------------

    def log_error(self, message: str, task: str | None = None, route: int | None = None,
                  transition: str | None = None, result: Any = None) -> None:
        entry: dict[str, Any] = {"type": "error", "message": message}
        if task is not None:
            entry["task_id"] = task
        if route is not None:
            entry["route"] = route
        if transition is not None:
            entry["task_transition_id"] = transition
        if result is not None:
            entry["result"] = result
        if entry not in self.errors:
            self.errors.append(entry)

    # Routes -----------------------------------------------------------------------------------

    def status_of(self, task: str, route: int) -> str:
        """A task's latest status on a route, else on the longest earlier route it extends."""
        record = self.record(task, route)
        if record is None:
            if route > 0:
                current = set(self.routes[route])
                for back, earlier in enumerate(reversed(self.routes[:route])):
                    if set(earlier) <= current:
                        return self.status_of(task, route - back - 1)
            return UNSET
        return record.get("status", UNSET)
