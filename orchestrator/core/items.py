"""Where with_items values and item results are read, for both formats: outside the run's state,
so a step costs the same at item 10 and item 10,000."""

from __future__ import annotations

from typing import Any

from .commands import ExecutionEnded


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


class LocalItems(ItemStore):
    """Item values and results recorded by conductors, over the shell's store (if any)."""

    def __init__(self, backing: ItemStore | None = None):
        self.backing = backing
        self._values: dict[int, list[Any]] = {}
        self._results: dict[int, dict[int, Any]] = {}
        self._ended: dict[int, dict[str, Any]] = {}

    def created(self, seq: int, values: list[Any]) -> None:
        self._values[seq] = values

    def ended(self, seq: int, index: int, result: Any) -> None:
        self._results.setdefault(seq, {})[index] = result

    def item(self, seq: int, index: int) -> Any:
        values = self._values.get(seq)
        if values is not None and index < len(values):
            return values[index]
        if self.backing is None:
            raise KeyError(f"item {index} of execution {seq} is not stored")
        return self.backing.item(seq, index)

    def results(self, seq: int) -> dict[int, Any]:
        stored = self.backing.results(seq) if self.backing is not None else {}
        mine = self._results.get(seq)
        return {**stored, **mine} if mine else stored

    def remember(self, commands: list[Any]) -> None:
        """Executions that ended in a step, for task() in later steps of a rehearsal (the
        shell's backing store has them from the database)."""
        for command in commands:
            if isinstance(command, ExecutionEnded):
                self._ended[command.seq] = {"status": command.status, "result": command.result}

    def execution(self, seq: int) -> dict[str, Any] | None:
        mine = self._ended.get(seq)
        if mine is not None:
            return mine
        return self.backing.execution(seq) if self.backing is not None else None

    def forget(self, seq: int) -> None:
        """The execution left the state: what was recorded of it is no longer needed."""
        self._values.pop(seq, None)
        self._results.pop(seq, None)
