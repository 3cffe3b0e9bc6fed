"""How the API answers what it refuses: one JSON shape for every error (`Problem`: a one-line
`detail`, the `errors` when there are several, the request `field` when one value was refused),
409s that also name the run's status (`Refusal`), and the OpenAPI declarations of both, so the
spec lists every status code a route can answer."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..core.errors import InputInvalid, WorkflowInvalid, one_line


class Problem(BaseModel):
    detail: str = Field(description="What was wrong, in one line per problem.")
    errors: list[str] | None = Field(None, description="Each problem, one line each (validation errors).")
    field: str | None = Field(None, description="The request field that was refused, when it was one.")


class Refusal(BaseModel):
    detail: str = Field(description="Why the run's state does not allow the operation.")
    id: str
    operation: str
    status: str = Field(description="The run's status when the operation was refused.")


def _problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


# Every /api route: what the guard, the token check and the body parser may answer.
COMMON = {
    400: _problem("The body is not readable JSON"),
    401: _problem("A token is set and the request has neither it nor the web view's session"),
    403: _problem("A cross-site request from a browser"),
    422: _problem("A parameter or body field was refused (`field` names it)"),
    503: _problem("The database cannot be reached"),
}
WITH_BODY = {
    413: _problem("The body is larger than the server reads"),
    415: _problem("The body is not JSON"),
}
NOT_FOUND = {404: _problem("No run with this id")}
OPERATION = {**NOT_FOUND, **WITH_BODY,
             409: {"model": Refusal, "description": "The run's state does not allow this operation"},
             501: _problem("This version has no such operation")}


def invalid(exc: Exception) -> JSONResponse:
    """422 with the problems as one-line messages (never a traceback); `field` names the request
    field when one value was refused."""
    lines = exc.lines() if isinstance(exc, WorkflowInvalid) else [one_line(str(exc))]
    body: dict[str, Any] = {"detail": "\n".join(lines), "errors": lines}
    if isinstance(exc, InputInvalid):
        body["field"] = exc.field
    return JSONResponse(body, status_code=422)


async def validation_failed(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's own 422 (a parameter or body field of the wrong shape), in the Problem shape:
    `body.params: Input should be a valid dictionary`. The refused value is not echoed."""
    lines, fields = [], []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        fields.append(where)
        lines.append(one_line(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", "invalid")))
    lines = lines or ["the request is not valid"]
    body: dict[str, Any] = {"detail": "\n".join(lines), "errors": lines}
    if fields and fields[0]:
        body["field"] = fields[0]
    return JSONResponse(body, status_code=422)
