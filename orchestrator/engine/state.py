"""A run's state as the conductor sees it: plain data that round-trips through JSON.

The state holds only what decisions need: the executions in flight, the latest outcome of each
task, join arrivals, counters and workflow variables. Finished executions leave it, so its size
does not grow with a run's history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RUNNING = "running"
PAUSING = "pausing"
PAUSED = "paused"
SUCCEEDED = "succeeded"
FAILED = "failed"
TIMED_OUT = "timed_out"
SKIPPED = "skipped"
CANCELING = "canceling"
CANCELED = "canceled"

TASK_FAILURES = frozenset({FAILED, TIMED_OUT})
RUN_TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELED})


@dataclass
class Execution:
    """One task execution in flight. A with_items execution tracks its items' progress."""

    seq: int
    task: str
    attempt: int = 1
    items: int | None = None  # with_items: how many calls; their values and results live in an ItemStore
    next_item: int = 0
    in_flight: dict[int, int] = field(default_factory=dict)  # item index -> attempt
    item_error: str | None = None
    item_status: str | None = None
    waiting: list[str] = field(default_factory=list)  # timer keys of delayed dispatches

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "task": self.task, "attempt": self.attempt, "items": self.items,
                "next_item": self.next_item, "in_flight": self.in_flight, "item_error": self.item_error,
                "item_status": self.item_status, "waiting": self.waiting}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Execution":
        data = dict(data)
        data["in_flight"] = {int(k): v for k, v in data.get("in_flight", {}).items()}
        return cls(**data)


class ItemStore:
    """Where with_items values and item results live, outside the run's state, so a step costs the
    same at item 10 and item 10,000. The shell reads them from the database; this in-memory base
    (used by rehearsals) holds nothing beyond what the conductor recorded itself."""

    def item(self, seq: int, index: int) -> Any:
        raise KeyError(f"item {index} of execution {seq} is not stored")

    def results(self, seq: int) -> dict[int, Any]:
        return {}

    def execution(self, seq: int) -> dict[str, Any] | None:
        """The latest attempt of an execution that ended in an earlier step: {result, status,
        started_at, finished_at, items (with-items: [{status, result}])}, or None."""
        return None


@dataclass
class WorkflowState:
    status: str = RUNNING
    next_seq: int = 1
    started: int = 0
    active: dict[int, Execution] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    joins: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    failure: str | None = None
    # Work held back while pausing/paused, replayed on resume: ["request", target, source] or
    # ["launch", seq, attempt, item].
    deferred: list[list[Any]] = field(default_factory=list)
    asks: dict[int, dict[str, Any]] = field(default_factory=dict)  # core.ask executions awaiting a response
    paused_calls: list[list[Any]] = field(default_factory=list)  # [seq, attempt, item] of paused child runs
    vars: dict[str, Any] = field(default_factory=dict)

    @property
    def halted(self) -> bool:
        """No new task may start: the run failed, or is ending."""
        return self.failure is not None or self.status not in (RUNNING, PAUSING, PAUSED)

    @property
    def paused(self) -> bool:
        return self.status in (PAUSING, PAUSED)

    def to_dict(self) -> dict[str, Any]:
        """Everything but `vars`, which the store keeps as rows of their own. Written by hand:
        dataclasses.asdict deep-copies every value and dominated a supervisor step's CPU."""
        return {"status": self.status, "next_seq": self.next_seq, "started": self.started,
                "active": {seq: execution.to_dict() for seq, execution in self.active.items()},
                "tasks": self.tasks, "joins": self.joins, "failure": self.failure, "deferred": self.deferred,
                "asks": self.asks, "paused_calls": self.paused_calls}

    @classmethod
    def from_dict(cls, data: dict[str, Any], variables: dict[str, Any] | None = None) -> "WorkflowState":
        data = dict(data)
        data["active"] = {int(k): Execution.from_dict(v) for k, v in data.get("active", {}).items()}
        data["asks"] = {int(k): v for k, v in data.get("asks", {}).items()}
        return cls(**data, vars=dict(variables or {}))
