"""The JSON API under /api: workflows, runs, operations, the live feed and the task graph."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text

from ..api import RunHandle, register, resolve, submit
from ..core.errors import InputInvalid, OperationRefused, ParametersInvalid, WorkflowInvalid, one_line
from ..registry import WorkflowNotFound, looks_like_yaml
from ..runtime import supervisor
from .auth import TokenAuth
from .events import summary_events
from .metrics import STATUSES
from .problems import COMMON, NOT_FOUND, OPERATION, WITH_BODY, invalid
from .queries import registered_workflows, run_graph, run_version

# What a started run's id leads to (OpenAPI links: clients and property-based tests follow them).
RUN_LINKS = {f"{op}": {"operationId": op, "parameters": {"run_id": "$response.body#/id"}}
             for op in ("get_run", "get_run_graph", "get_run_log", "pause_run", "resume_run", "cancel_run",
                        "rerun_run", "respond_run")}
# Run ids are up to 64 printable characters: anything else is refused (422) before a query is made.
RunId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$",
                            description="The run's id.")]


class RegisterBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    yaml: str | None = Field(None, description="The workflow definition as YAML text.")
    path: str | None = Field(None, description="A workflow file in the server's ORCHESTRATOR_WORKFLOWS folders.")


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"workflow": "hello", "params": {"name": "Ada"}},
        {"workflow": "version: \"1.0\"\ntasks:\n  - {name: approve, action: core.ask, input: {prompt: ok?}}\n"}]})
    workflow: str = Field(description="A registered name, a file in the server's ORCHESTRATOR_WORKFLOWS "
                                      "folders (a path relative to them), or YAML text.")
    params: dict[str, Any] = Field(default_factory=dict)


class RerunBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_tasks: list[str] = Field(default_factory=list, alias="from", description="Tasks to rerun from.")


class RespondBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str
    data: Any = Field(description="The answer to the task's `core.ask`.")


def build_routers(token: str | None) -> list[APIRouter]:
    """The API's routes (the bearer token, or the web view's session cookie, when a token is set)."""
    router = APIRouter(prefix="/api", dependencies=[Depends(TokenAuth(token))], responses=COMMON)

    @router.get("/health", tags=["service"], operation_id="health")
    def health() -> dict[str, str]:
        with supervisor().db.reading() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok", "database": "ok"}

    @router.post("/workflows", status_code=201, tags=["workflows"], responses=WITH_BODY, operation_id="register_workflow")
    def register_workflow(body: RegisterBody) -> Any:
        if (body.yaml is None) == (body.path is None):
            return invalid(ValueError("give exactly one of `yaml` (the definition) or `path` (a file)"))
        if body.yaml is not None and not looks_like_yaml(body.yaml):
            return invalid(ValueError("yaml: not a workflow definition (expected YAML text with `tasks`)"))
        try:
            return {"name": register(resolve(body.yaml if body.yaml is not None else body.path, confined=True))}
        except (WorkflowInvalid, WorkflowNotFound) as exc:
            return invalid(exc)

    @router.get("/workflows", tags=["workflows"], operation_id="list_workflows")
    def list_workflows() -> list[dict[str, Any]]:
        with supervisor().db.reading() as conn:
            return registered_workflows(conn)

    @router.post("/runs", status_code=201, tags=["runs"], operation_id="start_run",
                 responses={**WITH_BODY, 201: {"description": "The run's id", "links": RUN_LINKS}})
    def start(body: StartBody) -> Any:
        try:
            return {"id": submit(resolve(body.workflow, confined=True), body.params).id}
        except (WorkflowInvalid, WorkflowNotFound, ParametersInvalid, InputInvalid) as exc:
            return invalid(exc)

    @router.get("/runs", tags=["runs"], operation_id="list_runs")
    def list_runs(status: Literal[STATUSES] | None = Query(None, description="Only runs in this status."),
                  limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
        sup = supervisor()
        with sup.db.reading() as conn:
            return sup.store.list_runs(conn, status or None, limit)

    @router.get("/runs/{run_id}", tags=["runs"], responses=NOT_FOUND, operation_id="get_run")
    def run_summary(run_id: RunId) -> dict[str, Any]:
        return _summary(run_id)

    @router.get("/runs/{run_id}/graph", tags=["runs"], responses=NOT_FOUND, operation_id="get_run_graph")
    def graph(run_id: RunId) -> dict[str, Any]:
        with supervisor().db.reading() as conn:
            found = run_graph(conn, run_id)
        if found is None:
            raise HTTPException(404, f"no run with id {run_id}")
        return found

    for name in ("pause", "resume", "cancel"):
        router.add_api_route(f"/runs/{{run_id}}/{name}", _simple_operation(name), methods=["POST"],
                             tags=["operations"], name=name, summary=f"{name.capitalize()} a run",
                             responses=OPERATION, operation_id=f"{name}_run")

    @router.post("/runs/{run_id}/rerun", tags=["operations"], responses=OPERATION, operation_id="rerun_run")
    def rerun(run_id: RunId, body: RerunBody | None = None) -> Any:
        return operate(run_id, "rerun", from_tasks=(body.from_tasks if body else []))

    @router.post("/runs/{run_id}/respond", tags=["operations"], responses=OPERATION, operation_id="respond_run")
    def respond(run_id: RunId, body: RespondBody) -> Any:
        return operate(run_id, "respond", body.task, body.data)

    @router.get("/runs/{run_id}/log", tags=["runs"], responses=NOT_FOUND, operation_id="get_run_log",
                summary="The run's lifecycle events, oldest first (poll with `after`)")
    def log(run_id: RunId, after: int = Query(0, ge=0, le=2**31 - 1, description="Only events with a greater id.")
            ) -> list[dict[str, Any]]:
        try:
            return RunHandle(run_id).events(after)
        except LookupError:
            raise HTTPException(404, f"no run with id {run_id}") from None

    @router.get("/runs/{run_id}/events", tags=["runs"], responses=NOT_FOUND, response_class=StreamingResponse,
                operation_id="follow_run",
              summary="Server-sent events: the summary on each change, and each lifecycle event")
    def events(run_id: RunId) -> StreamingResponse:
        if _version(run_id) is None:  # 404 before the stream starts
            raise HTTPException(404, f"no run with id {run_id}")
        return StreamingResponse(summary_events(lambda: _version(run_id), lambda: _summary_or_none(run_id),
                                                read_events=lambda after: _events_or_empty(run_id, after)),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return [router]


def _version(run_id: str) -> Any:
    with supervisor().db.reading() as conn:
        return run_version(conn, run_id)


def _summary_or_none(run_id: str) -> dict[str, Any] | None:
    try:
        return RunHandle(run_id).summary()
    except LookupError:
        return None


def _events_or_empty(run_id: str, after: int) -> list[dict[str, Any]]:
    try:
        return RunHandle(run_id).events(after)
    except LookupError:
        return []


def _summary(run_id: str) -> dict[str, Any]:
    summary = _summary_or_none(run_id)
    if summary is None:
        raise HTTPException(404, f"no run with id {run_id}")
    return summary


def _simple_operation(name: str):
    def operation(run_id: RunId) -> Any:
        return operate(run_id, name)

    operation.__name__ = name
    return operation


def operate(run_id: str, name: str, *args: Any, **kwargs: Any) -> Any:
    """Call RunHandle(run_id).<name>(...): unknown run 404, not allowed in the run's state 409
    (naming the status), rejected input 422, an operation this version does not have 501."""
    handle = RunHandle(run_id)
    try:
        handle.status()
        result = getattr(handle, name)(*args, **kwargs)
    except LookupError as exc:
        raise HTTPException(404, str(exc).strip('"\'') or f"no run with id {run_id}") from None
    except (AttributeError, NotImplementedError):
        raise HTTPException(501, f"the {name} operation is not available in this version") from None
    except (ParametersInvalid, WorkflowInvalid, InputInvalid) as exc:
        return invalid(exc)
    except ValueError as exc:  # OperationRefused, or the format's own refusal (a task not waiting, ...)
        status = exc.status if isinstance(exc, OperationRefused) else handle.status()
        return JSONResponse({"detail": one_line(str(exc)), "id": run_id, "operation": name, "status": status},
                            status_code=409)
    return {"id": run_id, "operation": name, "status": handle.status(), "result": _plain(result)}


def _plain(value: Any) -> Any:
    if isinstance(value, RunHandle):
        return {"id": value.id}
    try:
        return jsonable_encoder(value)
    except Exception:  # noqa: BLE001 - whatever an operation returns, the response stays JSON
        return repr(value)
