"""The supervisor: applies completions to a run's durable state and dispatches what is ready.

One step is: lock the run's row, load its compact state, let the conductor decide, write what
changed, commit; only then publish the next calls. A redelivered or duplicated envelope matches
no execution in flight, so the conductor returns nothing and the step writes nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from functools import lru_cache
from typing import Any, Iterable

from .canvas import Canvas
from .config import Settings
from .engine.commands import Dispatch, TaskEnded
from .engine.conductor import Conductor, RunInfo
from .engine.errors import ParametersInvalid, WorkflowInvalid
from .engine.params import resolve_parameters
from .engine.validate import Workflow
from .registry import compile_workflow
from .store import Database, RunStore
from .store.runs import TERMINAL, iso, utcnow

log = logging.getLogger("orchestrator.supervisor")


class Supervisor:
    def __init__(self, db: Database, canvas: Canvas, settings: Settings):
        self.db = db
        self.canvas = canvas
        self.settings = settings
        self.store = RunStore()
        self._workflow_by_definition = lru_cache(maxsize=256)(self._load_definition)

    # Starting -------------------------------------------------------------------------------

    def start(self, workflow: Workflow, params: dict[str, Any] | None, run_id: str,
              parent_run_id: str | None = None, parent_seq: int | None = None) -> str:
        """Create the run and dispatch its entry tasks; a second call with the same id does nothing.
        Raises ParametersInvalid before anything is written."""
        resolved = resolve_parameters(workflow.spec, params, workflow.name)
        now = utcnow()
        with self.db.transaction() as conn:
            definition_id = self.store.save_definition(conn, workflow.name, workflow.text, workflow.source)
            if not self.store.create_run(conn, run_id, workflow.name, definition_id, resolved,
                                         parent_run_id=parent_run_id, parent_seq=parent_seq):
                return run_id
            conductor = Conductor(workflow, self._run_info(run_id, resolved, iso(now)))
            state, commands = conductor.start()
            self.store.write_step(conn, run_id, state, commands, started_at=now)
        self._send(run_id, workflow.name, commands)
        return run_id

    def record_rejected(self, run_id: str, workflow: str, error: str, params: dict[str, Any] | None = None) -> None:
        """A start that cannot run (unknown workflow, bad parameters) still leaves a failed run,
        so whoever holds its id can see why."""
        with self.db.transaction() as conn:
            self.store.create_run(conn, run_id, workflow, None, params or {}, status="failed", error=error)

    # Completions ----------------------------------------------------------------------------

    def complete(self, envelopes: Iterable[dict[str, Any]]) -> None:
        by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for envelope in envelopes:
            if isinstance(envelope, dict) and "run" in envelope:
                by_run[envelope["run"]].append(envelope)
            else:
                log.warning("ignoring malformed completion %r", envelope)
        for run_id, items in by_run.items():
            self._complete_run(run_id, items)

    def _complete_run(self, run_id: str, envelopes: list[dict[str, Any]]) -> None:
        with self.db.transaction() as conn:
            run = self.store.lock_run(conn, run_id)
            if run is None or run.status in TERMINAL or run.definition_id is None:
                return
            workflow = self._workflow_by_definition(run.definition_id)
            state = self.store.load_state(conn, run)
            conductor = Conductor(workflow, self._run_info(run.id, run.params, iso(run.started_at)))
            commands = []
            for envelope in envelopes:
                commands.extend(conductor.apply(state, TaskEnded(
                    seq=envelope["seq"], attempt=envelope["attempt"], status=envelope["status"],
                    result=envelope.get("result"), error=envelope.get("error"), item=envelope.get("item"))))
            if not commands:
                return  # stale or duplicate: nothing changes
            self.store.write_step(conn, run_id, state, commands)
        self._send(run_id, workflow.name, commands)

    # Helpers --------------------------------------------------------------------------------

    def _send(self, run_id: str, workflow: str, commands: list[Any]) -> None:
        calls = [c for c in commands if isinstance(c, Dispatch)]
        if calls:
            self.canvas.send(run_id, workflow, calls)

    def _run_info(self, run_id: str, params: dict[str, Any], started_at: str | None) -> RunInfo:
        return RunInfo(run_id, params, started_at or "", self.settings.config, self.settings.execution_limit)

    def _load_definition(self, definition_id: int) -> Workflow:
        with self.db.reading() as conn:
            row = self.store.definition(conn, definition_id)
        return compile_workflow(row.text, row.source, row.name)


__all__ = ["Supervisor", "ParametersInvalid", "WorkflowInvalid"]
