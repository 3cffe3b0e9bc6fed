"""Helpers for driving the Orquesta conductor in tests, the way a shell would."""

from __future__ import annotations

import json
import textwrap
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from orchestrator.engine.commands import Dispatch, ItemEnded, ItemsCreated, RunFinished, SetTimer, TaskEnded, TimerFired
from orchestrator.engine.conductor import RunInfo
from orchestrator.core.items import ItemStore
from orchestrator.orquesta import OrquestaConductor, OrquestaState, load
from orchestrator.orquesta.rehearse import rehearse_waves


def wf(text: str):
    return load(textwrap.dedent(text), "test.yaml")


def waves(text: str, inputs: dict | None = None, script: list | None = None):
    """Rehearse in Orquesta's wave model; returns the WaveRun."""
    return rehearse_waves(wf(text), inputs or {}, script)


def labels(run) -> list[str]:
    """The sequence as Orquesta writes it: `name`, or `name__rN` off route 0."""
    return [name if route == 0 else f"{name}__r{route}" for name, route in run.sequence]


def reloaded(state: OrquestaState) -> OrquestaState:
    """The state as the next step loads it (through JSON), after checking that the indexes the
    state keeps up to date equal the ones rebuilt from what it stores."""
    text = json.dumps(state.to_dict())
    again = OrquestaState.from_dict(json.loads(text), state.vars)
    rebuilt = OrquestaState.from_dict(json.loads(text))
    rebuilt.reindex()
    for other in (again, rebuilt):
        assert sorted(state.active) == sorted(other.active), (state.active, other.active)
        assert +state.counts == +other.counts, (state.counts, other.counts)
    assert set(state.tasks.values()) <= set(state.records) | {int(seq) for seq in state.done}
    return again


@dataclass
class Driven:
    state: OrquestaState
    commands: list = field(default_factory=list)
    calls: list = field(default_factory=list)
    timers: list = field(default_factory=list)
    journal: list = field(default_factory=list)

    @property
    def sequence(self) -> list[tuple[str, int]]:
        """(task, route) of every execution record, in seq order."""
        return list(self.journal)

    @property
    def finished(self) -> RunFinished | None:
        found = [c for c in self.commands if isinstance(c, RunFinished)]
        return found[-1] if found else None

    def of(self, kind):
        return [c for c in self.commands if isinstance(c, kind)]


class Rows(ItemStore):
    """The shell's with_items rows: values from ItemsCreated, results from ItemEnded."""

    def __init__(self):
        self.values: dict[int, list] = {}
        self.ended: dict[int, dict[int, Any]] = {}

    def absorb(self, commands) -> None:
        for command in commands:
            if isinstance(command, ItemsCreated):
                self.values[command.seq] = list(command.values)
            elif isinstance(command, ItemEnded):
                self.ended.setdefault(command.seq, {})[command.item] = command.result

    def item(self, seq: int, index: int) -> Any:
        return self.values[seq][index]

    def results(self, seq: int) -> dict[int, Any]:
        return dict(self.ended.get(seq, {}))


def drive(text: str, inputs: dict | None = None,
          outcome: Callable[[Dispatch], tuple[str, Any]] = lambda call: ("succeeded", None),
          watch: Callable[[OrquestaState], None] | None = None) -> Driven:
    """Event by event, like the shell: each completion (in dispatch order) is one apply() by a
    conductor built for that step over the item rows the earlier steps left; the state is
    round-tripped through JSON before every step (`watch` sees it after each); timers fire when
    idle."""
    journal: list = []
    rows = Rows()
    workflow, info = wf(text), RunInfo("test", inputs or {})

    def conductor() -> OrquestaConductor:
        return OrquestaConductor(workflow, info, items=rows, journal=journal)

    state, commands = conductor().start()
    rows.absorb(commands)
    run = Driven(state, list(commands), journal=journal)
    pending = deque(c for c in commands if isinstance(c, Dispatch))
    timers = deque(c.key for c in commands if isinstance(c, SetTimer))
    run.calls.extend(pending)
    run.timers.extend(timers)
    while pending or timers:
        run.state = reloaded(run.state)
        if pending:
            call = pending.popleft()
            status, value = outcome(call)
            failed = status != "succeeded"
            new = conductor().apply(run.state, TaskEnded(call.seq, call.attempt, status, None if failed else value,
                                                         str(value) if failed else None, call.item))
        else:
            new = conductor().apply(run.state, TimerFired(timers.popleft()))
        rows.absorb(new)
        if watch is not None:
            watch(run.state)
        run.commands.extend(new)
        for command in new:
            if isinstance(command, Dispatch):
                pending.append(command)
                run.calls.append(command)
            elif isinstance(command, SetTimer):
                timers.append(command.key)
                run.timers.append(command.key)
    return run
