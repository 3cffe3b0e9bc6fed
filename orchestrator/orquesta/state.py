"""An Orquesta run's state: plain data that round-trips through JSON.

It follows Orquesta's own model, because its semantics depend on it:

- `contexts`: context layers. Layer 0 holds the inputs and vars; a transition that publishes
  gives its target a layer with the published values. A task's input context is its list of
  layer indexes (later layers win, nested mappings merge), so branches keep their own data and
  a join merges the layers of its inbound branches.
- `routes`: route 0 is ``[]``; a split task reached through transition ``source__tK`` runs on
  the route extended by that id.
- `records`: task executions (and engine commands ``continue``/``fail``/``noop``) by `seq`,
  numbered in creation order (Orquesta's task sequence index + 1). `tasks` maps
  ``"name__rN"`` to the `seq` of the latest record of that task on that route. A latest record
  that finished without being terminal (and without items) is kept in `done` instead, as a
  row ``[id, route, status, attempt, contexts, prev, satisfied transitions]`` by seq (a
  string): ``by_seq``/``record`` read either.
- `staged`: tasks that an inbound transition reached and that have not been handed out yet
  (a join waits here until it is ready). A staged entry's (and a record's) `prev` maps the
  inbound transition (``source__tK``) to the key of the source record. What a rerun's
  downstream walk follows is the `prev` of the records kept plus `links`: for each key, the
  keys of records that were staged from it and have left the state since.
- Operations (operations.py): a record waiting for a `core.ask` answer carries `ask` (schema,
  prompt, timeout timer); a record whose delay came due while the run was paused carries
  `held`; `paused_calls` lists sub-workflow calls whose child run is paused; `reason` is set by
  a cancel request.

What keeps a step's cost independent of the run's length:

- Only the records decisions can still need are kept: the latest of every task on every route
  (``task_status()``, joins, reruns by name) and the terminal ones (the output, reruns of failed
  tasks). An execution superseded by a later one of the same task and route leaves the state,
  so a loop keeps one record however many times it went round.
- Layers are folded as they are added: a context list is the root layer plus, in the usual
  case, one layer that composes everything published since (``compose`` is exact: it refuses
  the one case that cannot be folded, a mapping published over a non-mapping, and the layers
  then stay apart). Such a composite remembers what it was made of (`derived`: the layer it
  extends and the published one); once no record in flight and no staged task uses it, it is
  stored as that alone (its entry in `contexts` becomes null) and rebuilt when read, so a
  chain of tasks that each publish stores each value once. Layers nothing refers to any more
  are dropped now and then (``compact``).
- The records in flight (`active`) and the statuses of the latest records (`counts`) are
  indexed, and stored with the state (`index`), so loading it does not go through every
  record (``reindex`` rebuilds them from the records).
- With-items values and results live outside the state (items.py), as in the engine.

Earlier stored shapes (a `sequence` list holding every execution; items in flight as a mapping)
are read by shapes.py.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..core.statuses import ACTIVE, COMPLETED, RESUMING, RUNNING, UNSET
from .contexts import Uncomposable, compose, merge


HANDING_OUT = frozenset({RUNNING, RESUMING})  # workflow statuses in which staged tasks start

SHAPE = 3  # `version` of the stored shape written by to_dict (the first one had none)


def key_of(task: str, route: int) -> str:
    return f"{task}__r{route}"


def split_key(key: str) -> tuple[str, int]:
    task, _, route = key.rpartition("__r")
    return task, int(route)


def record_key(record: dict[str, Any]) -> str:
    return key_of(record["id"], record["route"])


@dataclass
class OrquestaState:
    """Everything the Orquesta conductor decides from (see the module docstring)."""

    status: str = RUNNING
    contexts: list[dict[str, Any]] = field(default_factory=list)
    routes: list[list[str]] = field(default_factory=lambda: [[]])
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
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
    next_seq: int = 1
    links: dict[str, list[str]] = field(default_factory=dict)
    done: dict[str, list[Any]] = field(default_factory=dict)
    derived: dict[str, list[int]] = field(default_factory=dict)  # composite layer -> [base, published]
    vars: dict[str, Any] = field(default_factory=dict)
    # Indexes, rebuilt by from_dict, never stored: the latest records whose status is active (by
    # seq), and how many latest records have each status.
    active: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False, compare=False)
    counts: Counter = field(default_factory=Counter, repr=False, compare=False)
    # (task, route) of every record created, in seq order, when someone keeps it (rehearsals).
    journal: list[tuple[str, int]] | None = field(default=None, repr=False, compare=False)
    _compact_at: int = field(default=16, repr=False, compare=False)
    _finished: set[int] = field(default_factory=set, repr=False, compare=False)  # to settle
    _rebuilt: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False, compare=False)

    # Serialisation ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Everything but `vars` (published values, which the store keeps as rows of their own).
        Not a copy: the caller serialises it before the state changes again."""
        index = {"active": list(self.active), "counts": [[s, n] for s, n in self.counts.items() if n],
                 "compact_at": self._compact_at}
        return {"kind": "orquesta", "version": SHAPE, "status": self.status, "contexts": self.contexts,
                "routes": self.routes, "records": list(self.records.values()), "tasks": self.tasks,
                "staged": self.staged, "errors": self.errors, "output": self.output, "reruns": self.reruns,
                "finished": self.finished, "reason": self.reason, "paused_calls": self.paused_calls,
                "next_seq": self.next_seq, "links": self.links, "done": self.done, "derived": self.derived,
                "index": index}

    @classmethod
    def from_dict(cls, data: dict[str, Any], variables: dict[str, Any] | None = None) -> "OrquestaState":
        """The state `to_dict` wrote (the current shape: shapes.load_state reads earlier ones).
        Takes ownership of `data`'s contents, which must not be shared (a freshly decoded JSON
        document is what the shell passes)."""
        records = {record["seq"]: record for record in data.get("records", [])}
        index = data.get("index")
        state = cls(status=data.get("status", RUNNING), contexts=data.get("contexts", []),
                    routes=data.get("routes", [[]]), records=records, tasks=data.get("tasks", {}),
                    staged=data.get("staged", []), errors=data.get("errors", []), output=data.get("output"),
                    reruns=data.get("reruns", []), finished=data.get("finished", False),
                    reason=data.get("reason"), paused_calls=data.get("paused_calls", []),
                    next_seq=data.get("next_seq", max(records, default=0) + 1), links=data.get("links", {}),
                    done=data.get("done", {}), derived=data.get("derived", {}), vars=dict(variables or {}))
        if index is None:
            state.reindex()
        else:
            state.active = {seq: records[seq] for seq in index["active"]}
            state.counts = Counter({status: n for status, n in index["counts"]})
            state._compact_at = index["compact_at"]
        return state

    def reindex(self) -> None:
        """Rebuild `active` and `counts` from the latest records; set when to compact next."""
        self.active = {}
        self.counts = Counter()
        for seq in self.tasks.values():
            record = self.by_seq(seq)
            status = record.get("status")
            self.counts[status] += 1
            if status in ACTIVE:
                self.active[seq] = record
        self.active = dict(sorted(self.active.items()))
        self._set_compaction_mark(len(self._live_layers()))

    # Records ----------------------------------------------------------------------------------

    def record(self, task: str, route: int) -> dict[str, Any] | None:
        seq = self.tasks.get(key_of(task, route))
        return None if seq is None else self.by_seq(seq)

    def by_seq(self, seq: int) -> dict[str, Any] | None:
        """The record; for one in `done`, a copy to read (changing it changes nothing)."""
        record = self.records.get(seq)
        if record is None:
            row = self.done.get(str(seq))
            if row is not None:
                return _inflate(seq, row)
        return record

    def add_record(self, task: str, route: int, contexts: list[int], prev: dict[str, str]) -> dict[str, Any]:
        """A new execution record, now the latest of its task and route; the one it supersedes
        leaves the state unless it is terminal."""
        key = key_of(task, route)
        old_seq = self.tasks.get(key)
        if old_seq is not None:
            old = self.by_seq(old_seq)
            self._count(old.get("status"), -1, old)
            if str(old_seq) in self.done:
                del self.done[str(old_seq)]
                link(self.links, old)
            elif not old.get("term"):
                self._drop(old)
        seq = self.next_seq
        self.next_seq += 1
        record = {"id": task, "route": route, "ctxs": {"in": list(contexts)}, "prev": dict(prev), "next": {},
                  "seq": seq, "attempt": 1}
        self.records[seq] = record
        self.tasks[key] = seq
        self._count(None, 1, record)
        if self.journal is not None:
            self.journal.append((task, route))
        return record

    def set_status(self, record: dict[str, Any], status: str) -> None:
        """Every status change of a record goes through here (it keeps the indexes)."""
        old = record.get("status")
        record["status"] = status
        if self.tasks.get(record_key(record)) == record["seq"]:
            self._count(old, -1, record)
            self._count(status, 1, record)
            if status in COMPLETED:
                self._finished.add(record["seq"])

    def _hot_layers(self) -> set[int]:
        """The layers records in flight and staged tasks use (read at every step: kept whole)."""
        hot: set[int] = {0}
        for holder in [*self.active.values(), *self.staged]:
            hot.update(holder["ctxs"]["in"])
        return hot

    def settle(self) -> None:
        """At the end of a step: the latest records that finished in it, unless terminal (or
        with items, or waiting for something), move to `done`; the composite layers only
        finished records use are stored as what they were made of, the ones records in flight
        or staged tasks use are whole."""
        hot = self._hot_layers()
        for index in hot:
            if index < len(self.contexts) and self.contexts[index] is None:
                self.contexts[index] = self.layer(index)
        for seq in self._finished:
            record = self.records.get(seq)
            if record is None:
                continue
            for index in record["ctxs"]["in"]:
                if index not in hot and str(index) in self.derived:
                    self.contexts[index] = None
            if (self.tasks.get(record_key(record)) != seq or record.get("status") not in COMPLETED
                    or record.get("term") or any(k in record for k in ("items", "ask", "held", "waiting"))):
                continue
            del self.records[seq]
            self.done[str(seq)] = [record["id"], record["route"], record["status"], record["attempt"],
                                   record["ctxs"]["in"], record["prev"], [e for e, ok in record["next"].items() if ok]]
        self._finished.clear()
        self._rebuilt.clear()

    def _count(self, status: str | None, delta: int, record: dict[str, Any]) -> None:
        self.counts[status] += delta
        if status in ACTIVE:
            if delta > 0:
                self.active[record["seq"]] = record
            else:
                self.active.pop(record["seq"], None)

    def latest_records(self) -> list[dict[str, Any]]:
        return [self.by_seq(seq) for seq in self.tasks.values()]

    def active_records(self) -> list[dict[str, Any]]:
        """The latest records whose status is active, in seq order."""
        return [self.active[seq] for seq in sorted(self.active)]

    def has_active(self) -> bool:
        return bool(self.active)

    def has_status(self, statuses: set[str] | frozenset[str]) -> bool:
        return any(self.counts.get(status, 0) > 0 for status in statuses)

    def terminal(self) -> list[dict[str, Any]]:
        return [r for r in self.records.values() if r.get("term")]

    def prune(self) -> None:
        """Drop records that are neither the latest of their task and route nor terminal."""
        latest = set(self.tasks.values())
        for record in [r for s, r in self.records.items() if s not in latest and not r.get("term")]:
            self._drop(record)

    def _drop(self, record: dict[str, Any]) -> None:
        """A record leaves the state; its inbound links stay in `links`."""
        del self.records[record["seq"]]
        link(self.links, record)

    def downstream(self) -> dict[str, set[str]]:
        """For each key, the keys of records (kept or gone) that were staged from it."""
        graph = {source: set(targets) for source, targets in self.links.items()}
        kept = [(record_key(r), r["prev"]) for r in self.records.values()]
        kept += [(key_of(row[0], row[1]), row[5]) for row in self.done.values()]
        for key, prev in kept:
            for source in prev.values():
                graph.setdefault(source, set()).add(key)
        return graph

    # Contexts ---------------------------------------------------------------------------------

    def context(self, indexes: list[int]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for index in indexes:
            merged = merge(merged, self.layer(index))
        return merged

    def layer(self, index: int) -> dict[str, Any]:
        """A layer; one stored as what it was made of is rebuilt (and kept for this step)."""
        value = self.contexts[index]
        if value is not None:
            return value
        if index in self._rebuilt:
            return self._rebuilt[index]
        chain = []
        at = index
        while self.contexts[at] is None and at not in self._rebuilt:
            chain.append(at)
            at = self.derived[str(at)][0]
        value = self.contexts[at] if self.contexts[at] is not None else self._rebuilt[at]
        for at in reversed(chain):
            value = compose(value, self.contexts[self.derived[str(at)][1]])
        self._rebuilt[index] = value
        return value

    def derive(self, indexes: list[int], published: dict[str, Any]) -> list[int]:
        """The context list of a transition's target: `indexes` then a layer of `published`
        values, folded into the last layer after the root when that is exact."""
        out = list(indexes)
        if not published:
            return out
        layer = copy.deepcopy(published)
        self.contexts.append(layer)
        raw = len(self.contexts) - 1
        if len(out) >= 2 and out[0] == 0:
            base = out[-1]
            try:
                combined = compose(self.layer(base), layer)
            except Uncomposable:
                pass
            else:
                self.contexts.append(combined)
                out[-1] = len(self.contexts) - 1
                self.derived[str(out[-1])] = [base, raw]
                return out
        out.append(raw)
        return out

    def fold(self, indexes: list[int]) -> list[int]:
        """The same context in as few layers as exact: the root, then consecutive layers composed
        into one (a join's list is its branches' lists one after the other)."""
        if len(indexes) <= 2:
            return list(indexes)
        head = 1 if indexes[0] == 0 else 0
        out = list(indexes[:head])
        current: int | None = None   # index of the layer being built on
        built: dict[str, Any] | None = None   # its composition with the next ones, if any
        for index in indexes[head:]:
            if current is None:
                current = index
                continue
            try:
                built = compose(self.layer(current) if built is None else built, self.layer(index))
            except Uncomposable:
                out.append(self._keep(current, built))
                current, built = index, None
        if current is not None:
            out.append(self._keep(current, built))
        return out

    def _keep(self, index: int, built: dict[str, Any] | None) -> int:
        if built is None:
            return index
        self.contexts.append(built)
        return len(self.contexts) - 1

    def _live_layers(self, thin: bool = False) -> set[int]:
        """The layers records, rows and staged tasks use, and what the ones stored as their
        parts are made of. `thin`: first store that way every composite no record in flight
        and no staged task uses, whose base is used anyway."""
        used = {0} if self.contexts else set()
        for record in self.records.values():
            used.update(record["ctxs"]["in"])
        for row in self.done.values():
            used.update(row[4])
        for entry in self.staged:
            used.update(entry["ctxs"]["in"])
        if thin:
            hot = self._hot_layers()
            for index in used - hot:
                parts = self.derived.get(str(index))
                if parts is not None and parts[0] in used:
                    self.contexts[index] = None
        stored = [i for i in used if self.contexts[i] is None]  # and what those are made of
        while stored:
            for part in self.derived[str(stored.pop())]:
                if part not in used:
                    used.add(part)
                    if self.contexts[part] is None:
                        stored.append(part)
        return used

    def _set_compaction_mark(self, live: int) -> None:
        # compacting costs a pass over the records and staged entries: do it once that many
        # layers (and at least as many as are live) have been added since
        self._compact_at = live + max(live, len(self.records) + len(self.done) + len(self.staged), 16)

    def end_step(self) -> None:
        """What the conductor calls once a step's events are applied: settle, compact if due."""
        self.settle()
        if len(self.contexts) > self._compact_at:
            self.compact()

    def compact(self) -> None:
        """Drop the layers nothing refers to and renumber the others (layer 0 stays 0)."""
        used = sorted(self._live_layers(thin=True))
        if len(used) < len(self.contexts):
            renumber = {old: new for new, old in enumerate(used)}
            self.contexts = [self.contexts[i] for i in used]
            for holder in [*self.records.values(), *self.staged]:
                holder["ctxs"]["in"] = [renumber[i] for i in holder["ctxs"]["in"]]
            for row in self.done.values():
                row[4] = [renumber[i] for i in row[4]]
            # a whole layer whose parts are gone can no longer be stored as them
            self.derived = {str(renumber[int(k)]): [renumber[base], renumber[raw]]
                            for k, (base, raw) in self.derived.items()
                            if int(k) in renumber and base in renumber and raw in renumber}
            self._rebuilt.clear()
        self._set_compaction_mark(len(used))

    # Staging ----------------------------------------------------------------------------------

    def staged_entry(self, task: str, route: int) -> dict[str, Any] | None:
        for entry in self.staged:
            if entry["id"] == task and entry["route"] == route:
                return entry
        return None

    def stage(self, task: str, route: int, contexts: list[int], prev: dict[str, str], ready: bool,
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


def _inflate(seq: int, row: list[Any]) -> dict[str, Any]:
    task, route, status, attempt, contexts, prev, satisfied = row
    return {"id": task, "route": route, "ctxs": {"in": list(contexts)}, "prev": dict(prev),
            "next": {edge: True for edge in satisfied}, "seq": seq, "attempt": attempt, "status": status}


def link(links: dict[str, list[str]], record: dict[str, Any]) -> None:
    """Remember that `record` was staged from each of its `prev` records."""
    key = record_key(record)
    for source in record["prev"].values():
        targets = links.setdefault(source, [])
        if key not in targets:
            targets.append(key)
