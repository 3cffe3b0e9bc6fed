"""Rehearse an Orquesta workflow in Orquesta's wave model, with scripted action outcomes.

The model (the one Orquesta's own rehearsal tests use): every task handed out is started in
(task name, route) order, then completed in that same order, and only then are the next tasks
asked for; engine commands are recorded inline when the transition that names them fires; a
with-items task starts and completes one item per wave, so once an item fails the items not yet
reached never run (the task's result lists the items up to the failed one, as Orquesta's does). The state is round-tripped through JSON between
waves, as a real shell would store it.

A script entry ``{task, occurrence, item_id?, attempt?, status, result}`` gives the outcome of
the `occurrence`-th execution (0-based, counting executions of that task name started in this
stage, across routes; a retry stays the same execution) or, for a with-items task, of one item.
Anything not scripted succeeds with result null; a scripted status that is not final
(``running``, ``pending``…) never reports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..engine.commands import Dispatch, ExecutionStarted, RunFinished, SetTimer, TaskEnded, TimerFired
from ..core.run import RunInfo
from .conductor import OrquestaConductor
from ..core.items import LocalItems
from .state import OrquestaState
from .workflow import OrquestaWorkflow

FINAL = {"succeeded", "failed", "timed_out", "timeout", "expired", "abandoned", "canceled"}
MAX_WAVES = 100_000


@dataclass
class WaveRun:
    """The outcome of a rehearsal stage: the final state plus what the run emitted. `journal`
    is the whole task sequence (the state keeps only the records decisions need) and `items` the
    item values and results (which a shell keeps as rows); a rerun stage continues from both."""

    state: OrquestaState
    waves: int = 0
    calls: list[Dispatch] = field(default_factory=list)
    finished: Any = None  # the RunFinished command, if any
    journal: list[tuple[str, int]] = field(default_factory=list)
    items: LocalItems = field(default_factory=LocalItems)

    @property
    def sequence(self) -> list[tuple[str, int]]:
        return list(self.journal)

    @property
    def status(self) -> str:
        return self.state.status

    @property
    def output(self) -> Any:
        return self.state.output

    @property
    def error(self) -> str | None:
        return getattr(self.finished, "error", None)


@dataclass
class _Unit:
    seq: int
    task: str
    occurrence: int
    items: bool = False
    in_flight: set[int] = field(default_factory=set)
    waiting: bool = False   # a plain call that has been dispatched and not completed
    stuck: bool = False     # scripted never to report


class Script:
    """Scripted outcomes. An entry that names an `occurrence` describes one completion and is
    used once (list it twice for two failing attempts of a retried task); an entry without one
    applies to every call of its task. `item_id` and `attempt` (1-based) narrow the match."""

    def __init__(self, entries: list[dict[str, Any]] | None):
        self.entries = [dict(e) for e in entries or []]
        self.used: set[int] = set()

    def _matches(self, entry: dict[str, Any], task: str, occurrence: int, attempt: int | None) -> bool:
        if entry.get("task") != task:
            return False
        if entry.get("occurrence") is not None and entry["occurrence"] != occurrence:
            return False
        return attempt is None or entry.get("attempt") is None or entry["attempt"] == attempt

    def take(self, task: str, occurrence: int, item: int | None = None,
             attempt: int | None = None) -> dict[str, Any] | None:
        for i, entry in enumerate(self.entries):
            if i in self.used or not self._matches(entry, task, occurrence, attempt):
                continue
            entry_item = entry.get("item_id", entry.get("item"))
            if entry_item is not None and entry_item != item:
                continue
            if entry.get("occurrence") is not None:
                self.used.add(i)
            return entry
        return None

    def next_item(self, task: str, occurrence: int, in_flight: set[int]) -> int | None:
        """The item the script completes next for this execution, when it is in flight."""
        for i, entry in enumerate(self.entries):
            if i in self.used or not self._matches(entry, task, occurrence, None):
                continue
            entry_item = entry.get("item_id", entry.get("item"))
            if entry_item in in_flight:
                return entry_item
        return None


def rehearse_waves(workflow: OrquestaWorkflow, inputs: dict[str, Any] | None = None,
                   script: list[dict[str, Any]] | None = None, state: OrquestaState | None = None,
                   rerun: list[dict[str, Any]] | None = None, is_rerun: bool = False,
                   previous: WaveRun | None = None) -> WaveRun:
    """Run a workflow (or, with `previous` or `state` and `is_rerun`, rerun a finished one) in
    waves. `previous` is the earlier stage's WaveRun (its state, sequence and item results);
    given only its `state`, the sequence before the rerun lists just the records it kept and a
    with-items task keeps no result of the items it does not run again."""
    if previous is not None:
        state = previous.state
        journal, items = list(previous.journal), previous.items
    else:
        journal, items = _journal_of(state) if state is not None else [], LocalItems()
    conductor = OrquestaConductor(workflow, RunInfo("rehearsal", dict(inputs or {})), items=items, journal=journal,
                                  item_window=1)
    if state is None:
        state, commands = conductor.start()
    else:
        state = _round_trip(state)
        commands = conductor.rerun(state, rerun) if is_rerun else []
    run = WaveRun(state, journal=journal, items=conductor.items)
    outcomes = Script(script)
    units: dict[int, _Unit] = {}
    occurrences: dict[str, int] = {}

    def absorb(cmds: list[Any]) -> None:
        timers = []
        for command in cmds:
            if isinstance(command, ExecutionStarted):
                record = run.state.by_seq(command.seq)
                spec = workflow.graph.tasks.get(command.task)
                if spec is None:
                    continue  # an engine command
                known = units.get(command.seq)
                if known is not None:  # a retry: the same execution, a new attempt
                    known.waiting, known.in_flight, known.stuck = False, set(), False
                    continue
                occurrence = occurrences.get(command.task, 0)
                occurrences[command.task] = occurrence + 1
                units[command.seq] = _Unit(command.seq, command.task, occurrence,
                                           items=(record is not None and "items" in record) or spec.items is not None)
            elif isinstance(command, Dispatch):
                run.calls.append(command)
                unit = units.get(command.seq)
                if unit is None:
                    continue
                if command.item is None:
                    unit.waiting = True
                else:
                    unit.in_flight.add(command.item)
            elif isinstance(command, SetTimer):
                timers.append(command.key)
            elif isinstance(command, RunFinished):
                run.finished = command
        if timers:  # delays: the virtual clock jumps to them at once
            absorb(conductor.apply_all(run.state, [TimerFired(k) for k in timers]))

    absorb(commands)
    while run.waves < MAX_WAVES:
        wave = [u for u in units.values() if not u.stuck and (u.waiting or u.in_flight)]
        if not wave:
            break
        routes = {u.seq: run.journal[u.seq - 1][1] for u in wave}
        wave.sort(key=lambda u: (u.task, routes[u.seq]))
        events = []
        for unit in wave:
            attempt = run.state.by_seq(unit.seq)["attempt"]
            if unit.items:
                item = outcomes.next_item(unit.task, unit.occurrence, unit.in_flight)
                item = min(unit.in_flight) if item is None else item
                entry = outcomes.take(unit.task, unit.occurrence, item, attempt) or {}
                unit.in_flight.discard(item)
            else:
                entry = outcomes.take(unit.task, unit.occurrence, None, attempt) or {}
                unit.waiting = False
                item = None
            status = entry.get("status", "succeeded")
            if status not in FINAL:
                unit.stuck = True
                continue
            events.append(TaskEnded(unit.seq, attempt, status, entry.get("result"), entry.get("error"), item))
        run.waves += 1
        run.state = _round_trip(run.state)
        absorb(conductor.apply_all(run.state, events))
    return run


def _round_trip(state: OrquestaState) -> OrquestaState:
    return OrquestaState.from_dict(json.loads(json.dumps(state.to_dict())), state.vars)


def _journal_of(state: OrquestaState) -> list[tuple[str, int]]:
    """The task sequence as far as the state still knows it (pruned records are blanks)."""
    journal: list[tuple[str, int]] = [("", 0)] * (state.next_seq - 1)
    for seq, record in state.records.items():
        journal[seq - 1] = (record["id"], record["route"])
    for seq, row in state.done.items():
        journal[int(seq) - 1] = (row[0], row[1])
    return journal
