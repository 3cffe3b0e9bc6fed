"""Reads the HTTP layer needs beyond RunStore: registered definitions and a run's task graph
(SQLAlchemy Core on the models' tables; nothing here writes)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from ..core.errors import WorkflowInvalid
from ..formats import graph_view
from ..registry import load_stored
from ..store.models import WorkflowDefinition, WorkflowRun

DEFINITIONS = WorkflowDefinition.__table__
RUNS = WorkflowRun.__table__


def registered_workflows(conn: Connection) -> list[dict[str, Any]]:
    """One entry per registered name: when its newest version was registered, and how many."""
    from ..store.runs import iso

    stmt = (select(DEFINITIONS.c.name, func.max(DEFINITIONS.c.created_at).label("created_at"),
                   func.count().label("versions"))
            .where(DEFINITIONS.c.registered).group_by(DEFINITIONS.c.name).order_by(DEFINITIONS.c.name))
    return [{"name": r.name, "created_at": iso(r.created_at), "versions": r.versions} for r in conn.execute(stmt)]


def run_version(conn: Connection, run_id: str) -> tuple[str, Any] | None:
    """(status, updated_at): every step that changes a run or its task rows moves it; None when
    there is no such run. Cheap to poll, unlike the summary."""
    row = conn.execute(select(RUNS.c.status, RUNS.c.updated_at).where(RUNS.c.id == run_id)).first()
    return None if row is None else (row.status, row.updated_at)


def run_graph(conn: Connection, run_id: str) -> dict[str, Any] | None:
    """The task graph of the definition a run ran: {"kind", "workflow", "nodes", "edges"};
    None when there is no such run. kind is "graph", "orquesta", or "none" (no definition)."""
    run = conn.execute(select(RUNS.c.workflow, RUNS.c.definition_id).where(RUNS.c.id == run_id)).first()
    if run is None:
        return None
    empty = {"kind": "none", "workflow": run.workflow, "nodes": [], "edges": [], "entry": [], "error": None}
    if run.definition_id is None:
        return {**empty, "error": "this run has no stored definition (it was rejected before starting)"}
    row = conn.execute(select(DEFINITIONS).where(DEFINITIONS.c.id == run.definition_id)).first()
    try:
        workflow = load_stored(row.text, row.source, row.name)
    except WorkflowInvalid as exc:
        return {**empty, "error": f"the stored definition no longer compiles: {exc.lines()[0]}"}
    view = graph_view(workflow)
    return {"kind": view.pop("kind"), "workflow": workflow.name, "error": None, **view}
