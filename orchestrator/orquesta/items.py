"""With-items bookkeeping for the Orquesta conductor, kept small whatever the number of items.

A with-items record's ``items`` holds only what decisions need (as the engine's Execution does):

- ``count``, ``concurrency``, ``next`` (the next item to start: items start in index order,
  skipping the ones a rerun carried over), ``flight`` (the items in flight, as sorted ranges
  ``[start, end, attempt]``: a few, whatever the number of items, while they end roughly in the
  order they started), ``done`` (the highest item that ended), ``failed``/``canceled`` (an item
  failed / was canceled), ``error`` (the first item error);
- ``bad``: items started in this attempt that did not succeed and are not in flight;
- ``skip``: ranges ``[start, end)`` of items a rerun carried over (they succeeded before) and
  ``carry``: ``[seq, ranges]`` pairs naming the executions whose item rows hold their results;
- ``own``: results no item row holds (an item whose input could not be rendered; states written
  before this shape), by item index as a string;
- ``values``: only when no item rows hold them (a retry renders the items again, and its rows
  are the first attempt's; states written before this shape).

Item values and results otherwise live in an ItemStore (the shell's with_items rows, fed by the
ItemsCreated and ItemEnded commands); `LocalItems` layers what this conductor recorded on top
of it, and is the whole store when there is none (rehearsals, tests).
"""

from __future__ import annotations

from bisect import bisect_right, insort
from typing import Any

from ..engine.commands import ExecutionEnded
from ..engine.state import ItemStore
from .state import ABENDED, CANCELED, CANCELING, FAILED, RUNNING, SUCCEEDED


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


# Ranges -----------------------------------------------------------------------------------------

def to_ranges(indexes: list[int]) -> list[list[int]]:
    """Sorted distinct indexes as ``[start, end)`` ranges."""
    out: list[list[int]] = []
    for index in indexes:
        if out and out[-1][1] == index:
            out[-1][1] = index + 1
        else:
            out.append([index, index + 1])
    return out


def expand(ranges: list[list[int]]) -> list[int]:
    return [i for start, end in ranges for i in range(start, end)]


def clip(ranges: list[list[int]], count: int) -> list[list[int]]:
    return [[start, min(end, count)] for start, end in ranges if start < count]


def skip_ahead(ranges: list[list[int]], index: int) -> int:
    """The first index from `index` on that is not in `ranges` (sorted, apart)."""
    for start, end in ranges:
        if start <= index < end:
            index = end
    return index


# Items in flight --------------------------------------------------------------------------------

def _flight_at(flight: list[list[int]], index: int) -> int:
    """The position of the range holding `index`, or -1."""
    at = bisect_right(flight, index, key=lambda r: r[0]) - 1
    return at if at >= 0 and index < flight[at][1] else -1


def flight_attempt(items: dict[str, Any], index: int) -> int | None:
    """The attempt of item `index` if it is in flight."""
    flight = items["flight"]
    at = _flight_at(flight, index)
    return None if at < 0 else flight[at][2]


def flight_add(items: dict[str, Any], index: int, attempt: int) -> None:
    """Item `index` (not in flight) is dispatched."""
    flight = items["flight"]
    if flight and flight[-1][1] == index and flight[-1][2] == attempt:
        flight[-1][1] += 1
    elif not flight or flight[-1][1] <= index:
        flight.append([index, index + 1, attempt])
    else:
        flight.insert(bisect_right(flight, index, key=lambda r: r[0]), [index, index + 1, attempt])


def flight_remove(items: dict[str, Any], index: int) -> None:
    """Item `index` (in flight) is no longer."""
    flight = items["flight"]
    at = _flight_at(flight, index)
    start, end, attempt = flight[at]
    flight[at:at + 1] = [piece for piece in ([start, index, attempt], [index + 1, end, attempt])
                         if piece[0] < piece[1]]


def flight_count(items: dict[str, Any]) -> int:
    return sum(end - start for start, end, _ in items["flight"])


def flight_calls(items: dict[str, Any]) -> list[tuple[int, int]]:
    """(item, attempt) of every item in flight, by item."""
    return [(i, attempt) for start, end, attempt in items["flight"] for i in range(start, end)]


def _flight_of(in_flight: dict[Any, int]) -> list[list[int]]:
    items: dict[str, Any] = {"flight": []}
    for index, attempt in sorted((int(k), v) for k, v in in_flight.items()):
        flight_add(items, index, attempt)
    return items["flight"]


# Records ----------------------------------------------------------------------------------------

def start(count: int, concurrency: int | None, carried: dict[str, Any] | None) -> dict[str, Any]:
    """A with-items record's bookkeeping at the start of an attempt; `carried` is what a rerun
    keeps (see `carry`), or the earlier shape's ``{status, results}`` lists."""
    carried = carried or {}
    if "status" in carried:  # staged by a rerun before this shape
        kept = [i for i, (status, _) in enumerate(zip(carried.get("status", []), carried.get("results", []),
                                                      strict=False)) if status == SUCCEEDED and i < count]
        carried = {"skip": to_ranges(kept), "own": {str(i): carried["results"][i] for i in kept}}
    skip = clip(carried.get("skip", []), count)
    own = {k: v for k, v in carried.get("own", {}).items() if int(k) < count}
    return {"count": count, "concurrency": concurrency, "next": skip_ahead(skip, 0), "flight": [],
            "done": skip[-1][1] - 1 if skip else -1, "failed": False, "canceled": False, "bad": [], "skip": skip,
            "carry": carried.get("carry", []) if skip else [], "own": own}


def progress(items: dict[str, Any]) -> str:
    """The task's status from its items: running while items are in flight or not yet started
    and nothing failed; failed once one failed and none is in flight; succeeded when all
    succeeded (canceled/canceling when one was canceled)."""
    if items["flight"]:
        return CANCELING if items["canceled"] else RUNNING
    if items["canceled"]:
        return CANCELED
    if items["failed"]:
        return FAILED
    if items["next"] < items["count"]:
        return RUNNING
    return SUCCEEDED


def ended(items: dict[str, Any], index: int, status: str) -> None:
    """An item in flight ended with `status`."""
    flight_remove(items, index)
    items["done"] = max(items["done"], index)
    if status != SUCCEEDED:
        insort(items["bad"], index)
        if status in ABENDED:
            items["failed"] = True
        elif status == CANCELED:
            items["canceled"] = True


def unfinished(items: dict[str, Any]) -> bool:
    """Items not started yet and none failed or canceled (a window a pause left unfilled)."""
    return items["next"] < items["count"] and not items["failed"] and not items["canceled"]


def results(items: dict[str, Any], seq: int, store: ItemStore) -> list[Any]:
    """The task's result: every item's result up to the last that ended, in item order."""
    done = items["done"]
    if done < 0:
        return []
    own = items["own"]
    recorded = store.results(seq)
    carried: dict[int, Any] = {}
    skip = items["skip"]
    if skip:
        for source, ranges in items["carry"]:
            rows = store.results(source)
            for index in expand(clip(ranges, done + 1)):
                if index in rows:
                    carried[index] = rows[index]
    skipped = set(expand(clip(skip, done + 1))) if skip else ()
    out = []
    for index in range(done + 1):
        key = str(index)
        if key in own:
            out.append(own[key])
        elif index in skipped:
            out.append(carried.get(index))
        else:
            out.append(recorded.get(index))
    return out


def carry(record: dict[str, Any]) -> dict[str, Any]:
    """What a rerun of this record keeps: the items that succeeded, where their results are."""
    items = record.get("items")
    if not items:
        return {}
    skipped = set(expand(items["skip"]))
    bad = set(items["bad"]) | {i for i, _ in flight_calls(items)}
    ran = [i for i in range(items["next"]) if i not in skipped and i not in bad]
    kept = sorted(skipped.union(ran))
    own = {k: v for k, v in items["own"].items() if int(k) in skipped or int(k) in ran}
    sources = [list(source) for source in items["carry"]] + ([[record["seq"], to_ranges(ran)]] if ran else [])
    return {"skip": to_ranges(kept), "carry": sources, "own": own}


def upgrade(items: dict[str, Any]) -> None:
    """Items written while ``in_flight`` was a mapping (item -> attempt) get ``flight``."""
    if "in_flight" in items:
        items["flight"] = _flight_of(items.pop("in_flight"))


def from_first_shape(old: dict[str, Any]) -> dict[str, Any]:
    """Bookkeeping from the earlier shape's ``{values, status, results, in_flight, ...}``."""
    values, statuses, results_ = old["values"], old["status"], old["results"]
    in_flight = {int(k): v for k, v in old.get("in_flight", {}).items()}
    count = len(values)
    nxt = next((i for i, status in enumerate(statuses) if status is None), count)
    skip = to_ranges([i for i in range(nxt, count) if statuses[i] is not None])
    bad = [i for i in range(nxt) if statuses[i] not in (None, SUCCEEDED) and i not in in_flight]
    items = {"count": count, "concurrency": old.get("concurrency"), "next": nxt, "flight": _flight_of(in_flight),
             "done": old.get("done", -1), "failed": any(s in ABENDED for s in statuses),
             "canceled": CANCELED in statuses, "bad": bad, "skip": skip, "carry": [],
             "own": {str(i): results_[i] for i, status in enumerate(statuses) if status not in (None, RUNNING)},
             "values": values}
    if "error" in old:
        items["error"] = old["error"]
    return items
