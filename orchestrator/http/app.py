"""The HTTP service: `create_app(token)` builds the FastAPI app with the JSON API (/api, OpenAPI
at /api/openapi.json), the web view (/, /runs/{id}) and Prometheus metrics (/metrics).

    uvicorn --factory orchestrator.http.app:create_app     # or: orchestrator serve
"""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.routing import BaseRoute

from .. import __version__, guard
from ..config import settings
from .auth import TokenAuth, configured_token
from .guard import RequestGuard
from .metrics import metrics_text
from .problems import validation_failed
from .routes import build_routers
from .schedules import build_schedules_router
from .web import build_web_router

log = logging.getLogger("orchestrator.http")


def max_body(max_input_bytes: int) -> int:
    """The largest request body read: room for parameters at their limit (JSON escapes can make
    them up to ~4x larger on the wire) plus a workflow definition."""
    return 4 * max_input_bytes + (1 << 20)


def create_app(token: str | None = None) -> FastAPI:
    """The app; `token` (else ORCHESTRATOR_API_TOKEN) makes every /api request and /metrics
    need `Authorization: Bearer <token>`."""
    token = configured_token(token)
    guard.install()  # expressions evaluated while serving (validation, starts) are bounded
    app = FastAPI(title="Celery Orchestrator", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None, description="Start, follow and operate workflow runs.")
    for router in build_routers(token):
        app.include_router(router)
    app.include_router(build_schedules_router(token))
    app.include_router(build_web_router(token))
    app.add_middleware(RequestGuard, max_body=max_body(settings().max_input_bytes))

    @app.get("/api/openapi.json", include_in_schema=False, dependencies=[Depends(TokenAuth(token))])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(TokenAuth(token))])
    def metrics() -> Response:
        return Response(metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    app.add_exception_handler(RequestValidationError, validation_failed)

    @app.exception_handler(405)
    async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
        """405 with `Allow` listing the methods of every route at this path (Starlette names only
        the first route's)."""
        path = request.url.path
        allowed = sorted({m for r in app.routes if isinstance(r, BaseRoute) and getattr(r, "methods", None)
                          and r.path_regex.match(path) for m in r.methods})
        return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": ", ".join(allowed)})

    @app.exception_handler(OperationalError)
    async def database_unavailable(request: Request, exc: OperationalError) -> JSONResponse:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        log.warning("database unavailable: %s", first)
        return JSONResponse({"detail": f"cannot use the database: {first}"}, status_code=503)

    return app
