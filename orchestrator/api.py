"""The Python API: start workflows and follow them.

    from orchestrator import submit
    run = submit("deploy", {"app": "shop"})   # a registered name, a file path or YAML text
    run.wait(timeout=60)                      # the run summary (interfaces.md)
"""

from __future__ import annotations

import json

import time
from pathlib import Path
from typing import Any

from .config import settings
# OperationRefused is imported to be exported: `from orchestrator import OperationRefused`.
from .core.errors import InputInvalid, OperationRefused, ParametersInvalid, WorkflowInvalid, one_line  # noqa: F401
from .engine.validate import Workflow
from .engine import storable
from .registry import (WorkflowNotFound, compile_workflow, default_name, file_in_folders, find_in_folders, is_file,
                       load_file, looks_like_yaml)
from .run_ids import new_run_id
from .runtime import action_exists, ensure_embedded_worker, supervisor
from .store.runs import RUN_FINISHED, TERMINAL


def resolve(ref: str | Path | Workflow, check_actions: bool = True, confined: bool = False) -> Workflow:
    """The workflow a reference names; raises WorkflowNotFound or WorkflowInvalid. `confined`
    (the HTTP API) reads no file outside the ORCHESTRATOR_WORKFLOWS folders: a path is taken
    relative to them, and any other file is "not found" without being opened."""
    exists = action_exists if check_actions else None
    if not isinstance(ref, (str, Path)):
        return ref  # already a workflow (either format)
    ref_text = str(ref)
    if looks_like_yaml(ref_text):
        return compile_workflow(ref_text, "<string>", None, exists)
    if "\x00" in ref_text:
        raise WorkflowNotFound("no such workflow: the reference contains a NUL character")
    path = Path(ref_text)
    looks_like_path = path.suffix in (".yaml", ".yml") or "/" in ref_text
    if confined:
        found = file_in_folders(ref_text, settings().workflows_path) if looks_like_path else None
        if found is not None:
            return load_file(found, exists)
        if looks_like_path:
            raise WorkflowNotFound(f"no workflow file {_shown(ref_text)} in the ORCHESTRATOR_WORKFLOWS folders "
                                   f"(the API reads no other files)")
    elif is_file(path):
        return load_file(path, exists)
    elif looks_like_path:
        raise WorkflowNotFound(f"no such workflow file: {ref_text}")  # the user's own file system
    found = find_in_folders(ref_text, settings().workflows_path)
    if found is not None:
        return load_file(found, exists)
    sup = supervisor()
    with sup.db.reading() as conn:
        row = sup.store.registered_definition(conn, ref_text)
    if row is not None:
        return compile_workflow(row.text, row.source, row.name, exists)
    raise WorkflowNotFound(f"unknown workflow {_shown(ref_text)}: not a file, not in ORCHESTRATOR_WORKFLOWS "
                           f"and not registered")


def _shown(ref: str, limit: int = 200) -> str:
    """A reference quoted for a message, cut short when it is long."""
    return repr(ref if len(ref) <= limit else ref[:limit] + "…")


def register(ref: str | Path) -> str:
    """Store a workflow definition under its name so `start_workflow.delay(name)` finds it."""
    workflow = resolve(ref)
    sup = supervisor()
    with sup.db.transaction() as conn:
        sup.store.save_definition(conn, workflow.name, workflow.text, workflow.source, registered=True)
    return workflow.name


def start_run(ref: str | Path | Workflow, params: dict[str, Any] | None = None, run_id: str | None = None,
              record_rejection: bool = False) -> str:
    """Start a run and return its id. Invalid input raises (or, with `record_rejection`, leaves a
    failed run carrying the error, for callers that only hold an id)."""
    run_id = run_id or new_run_id()
    check_run_id(run_id)
    try:
        check_input("params", params if params is not None else {}, settings().max_input_bytes)
        workflow = resolve(ref)
        supervisor().start(workflow, params or {}, run_id)
    except (WorkflowNotFound, WorkflowInvalid, ParametersInvalid, InputInvalid) as exc:
        if not record_rejection:
            raise
        if not isinstance(ref, (str, Path)):
            name = ref.name
        else:
            name = "<string>" if looks_like_yaml(str(ref)) else one_line(default_name(Path(str(ref))))[:200]
        supervisor().record_rejected(run_id, name, str(exc), None if isinstance(exc, InputInvalid) else params)
    return run_id


def check_input(field: str, value: Any, limit: int | None = None) -> None:
    """Raise InputInvalid when `value` cannot be stored exactly (a NUL character, NaN, a lone
    surrogate, ...) or its JSON is over `limit` bytes: refused before anything is written."""
    if field == "params" and not isinstance(value, dict):
        raise InputInvalid(field, [f"params: must be an object (a mapping of names to values), not {type(value).__name__}"])
    text, why = storable.encode(value, field)  # the one check the steps use too
    if why:
        raise InputInvalid(field, [f"{field}: cannot be stored: {why}"])
    size = len(json.dumps(value))  # counted as the run control counts a task's input (ASCII-escaped JSON)
    if limit is not None and size > limit:
        raise InputInvalid(field, [f"{field}: {size} bytes of JSON, over the limit of {limit} (ORCHESTRATOR_MAX_INPUT_BYTES)"])


def check_run_id(run_id: str) -> None:
    """A run id is 1 to 64 printable characters (it names a database row and a Celery task)."""
    if not isinstance(run_id, str) or not 0 < len(run_id) <= 64 or not run_id.isprintable():
        raise InputInvalid("run_id", [f"run_id: must be 1 to 64 printable characters, got {one_line(repr(run_id))[:80]}"])


def submit(ref: str | Path | Workflow, params: dict[str, Any] | None = None, *, run_id: str | None = None) -> "RunHandle":
    """Start a workflow from this process and return a handle to it."""
    ensure_embedded_worker()
    return RunHandle(start_run(ref, params, run_id))


class RunHandle:
    """A started run. `id` is stable; every other call reads the durable state."""

    def __init__(self, run_id: str):
        self.id = run_id

    def __repr__(self) -> str:
        return f"RunHandle({self.id!r})"

    def summary(self) -> dict[str, Any]:
        sup = supervisor()
        with sup.db.reading() as conn:
            summary = sup.store.summary(conn, self.id)
        if summary is None:
            raise LookupError(f"no run with id {self.id}")
        return summary

    def status(self) -> str:
        sup = supervisor()
        with sup.db.reading() as conn:
            status = sup.store.status(conn, self.id)
        if status is None:
            raise LookupError(f"no run with id {self.id}")
        return status

    # The operations raise LookupError for an unknown run and OperationRefused (a ValueError
    # carrying the run's `status`) when the run's state does not allow them.

    def pause(self) -> None:
        """Running tasks finish, nothing new starts: `pausing`, then `paused` (cascades to
        sub-workflows). Only a running run can be paused."""
        supervisor().control(self.id, "pause")

    def resume(self) -> None:
        """Go on with a pausing or paused run."""
        supervisor().control(self.id, "resume")

    def cancel(self) -> None:
        """Interrupt running actions: `canceling` until they have stopped, then `canceled`
        (cascades to sub-workflows). Refused once the run is canceling or finished."""
        supervisor().control(self.id, "cancel")

    def rerun(self, from_tasks: list[str] | None = None) -> None:
        """Run a failed run again from its failed tasks (or `from_tasks`, each once), keeping what
        succeeded. Raises ValueError when the run did not fail or a task is unknown."""
        supervisor().rerun(self.id, from_tasks)

    def respond(self, task: str, data: Any) -> None:
        """Answer a `core.ask` task; ValueError when it is not waiting or the data does not fit
        its schema, InputInvalid when the data cannot be stored (a NUL character, NaN, ...)."""
        check_input("data", data, settings().max_input_bytes)
        supervisor().respond(self.id, task, data)

    def events(self, after: int = 0) -> list[dict[str, Any]]:
        """The run's lifecycle events (lifecycle.py) with id > `after`, oldest first: each has
        id, at, kind (e.g. `task.failed`), task, seq, attempt and message."""
        sup = supervisor()
        with sup.db.reading() as conn:
            if not sup.store.run_exists(conn, self.id):
                raise LookupError(f"no run with id {self.id}")
            return sup.store.events(conn, self.id, after)

    def done(self) -> bool:
        return self.status() in TERMINAL

    def wait(self, timeout: float | None = None, interval: float = 0.01, max_interval: float = 0.05) -> dict[str, Any]:
        """Block until the run ends and return its summary; TimeoutError after `timeout` s.
        On PostgreSQL the run's last step wakes this at once (LISTEN/NOTIFY); on SQLite it polls
        every `interval` s, growing to `max_interval`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        sup = supervisor()
        with sup.db.listening(RUN_FINISHED) as notified:
            while True:
                with sup.db.reading() as conn:
                    status = sup.store.status(conn, self.id)  # None until a worker takes a .delay()ed start
                if status in TERMINAL:
                    return self.summary()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"run {self.id} still {status or 'not started'} after {timeout} s")
                if notified is None:
                    time.sleep(interval if remaining is None else min(interval, remaining))
                    interval = min(interval * 1.5, max_interval)
                    continue
                # Other runs' endings wake us too; look again at least every second regardless.
                until = time.monotonic() + (1.0 if remaining is None else min(1.0, remaining))
                while self.id not in notified(until - time.monotonic()) and time.monotonic() < until:
                    pass
