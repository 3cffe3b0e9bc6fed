"""Helpers for driving the Orquesta conductor in tests, the way a shell would."""

from __future__ import annotations

import json
import textwrap
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from orchestrator.engine.commands import Dispatch, RunFinished, SetTimer, TaskEnded, TimerFired
from orchestrator.engine.conductor import RunInfo
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


@dataclass
class Driven:
    state: OrquestaState
    commands: list = field(default_factory=list)
    calls: list = field(default_factory=list)
    timers: list = field(default_factory=list)

    @property
    def finished(self) -> RunFinished | None:
        found = [c for c in self.commands if isinstance(c, RunFinished)]
        return found[-1] if found else None

    def of(self, kind):
        return [c for c in self.commands if isinstance(c, kind)]


def drive(text: str, inputs: dict | None = None,
          outcome: Callable[[Dispatch], tuple[str, Any]] = lambda call: ("succeeded", None)) -> Driven:
    """Event by event, like the shell: each completion (in dispatch order) is one apply();
    the state is round-tripped through JSON before every step; timers fire when idle."""
    conductor = OrquestaConductor(wf(text), RunInfo("test", inputs or {}))
    state, commands = conductor.start()
    run = Driven(state, list(commands))
    pending = deque(c for c in commands if isinstance(c, Dispatch))
    timers = deque(c.key for c in commands if isinstance(c, SetTimer))
    run.calls.extend(pending)
    run.timers.extend(timers)
    while pending or timers:
        run.state = OrquestaState.from_dict(json.loads(json.dumps(run.state.to_dict())))
        if pending:
            call = pending.popleft()
            status, value = outcome(call)
            failed = status != "succeeded"
            new = conductor.apply(run.state, TaskEnded(call.seq, call.attempt, status, None if failed else value,
                                                       str(value) if failed else None, call.item))
        else:
            new = conductor.apply(run.state, TimerFired(timers.popleft()))
        run.commands.extend(new)
        for command in new:
            if isinstance(command, Dispatch):
                pending.append(command)
                run.calls.append(command)
            elif isinstance(command, SetTimer):
                timers.append(command.key)
                run.timers.append(command.key)
    return run
