"""The JSON API for schedules under /api/schedules (the same operations as `orchestrator schedule`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from .. import scheduling
from ..core.errors import ParametersInvalid, WorkflowInvalid
from ..registry import WorkflowNotFound
from .auth import TokenAuth
from .problems import COMMON, WITH_BODY, Problem

NOT_FOUND = {404: {"model": Problem, "description": "No schedule with this name"}}
EXISTS = {409: {"model": Problem, "description": "A schedule with this name exists"}}


class ScheduleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Letters, digits, `_ . : -`; at most 100 characters.")
    workflow: str = Field(description="A registered workflow name, a file in the ORCHESTRATOR_WORKFLOWS folders, or YAML text.")
    every: float | None = Field(None, description="Fire every this many seconds (exclusive with `cron`).")
    cron: str | None = Field(None, description='A 5-field cron expression, e.g. "0 3 * * 1-5".')
    timezone: str = Field("UTC", description="The IANA time zone the cron expression is read in.")
    missed: str = Field("coalesce", description="After downtime: `coalesce` (one run) or `skip`.")
    params: dict[str, Any] = Field(default_factory=dict)


def _invalid(field: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": message, "errors": [message], "field": field}, status_code=422)


def build_schedules_router(token: str | None) -> APIRouter:
    router = APIRouter(prefix="/api/schedules", tags=["schedules"], dependencies=[Depends(TokenAuth(token))],
                       responses=COMMON)

    @router.get("", operation_id="list_schedules")
    def list_schedules() -> list[dict[str, Any]]:
        return scheduling.list_schedules()

    @router.post("", status_code=201, responses={**WITH_BODY, **EXISTS}, operation_id="add_schedule")
    def add(body: ScheduleBody) -> Any:
        try:
            return scheduling.add_schedule(body.name, body.workflow, every=body.every, cron=body.cron,
                                           params=body.params, timezone=body.timezone, missed=body.missed,
                                           confined=True)
        except scheduling.ScheduleInvalid as exc:
            return _invalid(exc.field, str(exc))
        except WorkflowNotFound as exc:
            return _invalid("workflow", f"workflow: {exc}")
        except WorkflowInvalid as exc:
            return _invalid("workflow", "\n".join(exc.lines()))
        except ParametersInvalid as exc:
            return _invalid("params", f"params: {exc}")
        except scheduling.ScheduleExists as exc:
            raise HTTPException(409, str(exc)) from None

    @router.get("/{name}", responses=NOT_FOUND, operation_id="get_schedule")
    def get(name: str) -> dict[str, Any]:
        return _found(scheduling.get_schedule, name)

    @router.delete("/{name}", status_code=204, responses=NOT_FOUND, operation_id="remove_schedule")
    def remove(name: str) -> Response:
        _found(scheduling.remove_schedule, name)
        return Response(status_code=204)

    @router.post("/{name}/pause", responses={**NOT_FOUND, **WITH_BODY}, operation_id="pause_schedule")
    def pause(name: str) -> dict[str, Any]:
        return _found(scheduling.pause_schedule, name)

    @router.post("/{name}/resume", responses={**NOT_FOUND, **WITH_BODY}, operation_id="resume_schedule")
    def resume(name: str) -> dict[str, Any]:
        return _found(scheduling.resume_schedule, name)

    return router


def _found(operation: Any, name: str) -> Any:
    try:
        return operation(name)
    except scheduling.ScheduleNotFound as exc:
        raise HTTPException(404, str(exc)) from None
