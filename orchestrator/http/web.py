"""The web view: two static pages and their assets from the `orchestrator.web` package. Pages
hold no data; their scripts read the API (with the token from `?token=`)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import Response

from .auth import TokenAuth
from .routes import RunId

TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}
ASSETS = ("app.css", "common.js", "runs.js", "run.js", "graph.js")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> Response:
    data = resources.files("orchestrator.web").joinpath(name).read_bytes()
    suffix = name[name.rfind("."):]
    return Response(data, media_type=TYPES[suffix], headers=SECURITY_HEADERS)


def build_web_router(token: str | None) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    page_auth = [Depends(TokenAuth(token, query=True))]

    @router.get("/", dependencies=page_auth)
    def runs_page() -> Response:
        return _file("index.html")

    @router.get("/runs/{run_id}", dependencies=page_auth)
    def run_page(run_id: RunId) -> Response:
        return _file("run.html")

    @router.get("/static/{name}")
    def asset(name: str) -> Response:
        if name not in ASSETS:  # a fixed list: no paths from the request reach the file system
            raise HTTPException(404, "no such asset")
        return _file(name)

    return router
