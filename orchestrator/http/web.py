"""The web view: static pages and their assets from the `orchestrator.web` package. Pages hold
no data (their scripts read the API), so they load without a token; with one configured, the
API answers 401 and the scripts send the browser to /login, whose form sets the session cookie
(auth.py). The token never appears in a URL."""

from __future__ import annotations

from importlib import resources
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from .auth import COOKIE, session_value, token_matches
from .routes import RunId

TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}
ASSETS = ("app.css", "common.js", "runs.js", "run.js", "graph.js", "login.js")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
MAX_FORM_BYTES = 16 * 1024


def _file(name: str) -> Response:
    data = resources.files("orchestrator.web").joinpath(name).read_bytes()
    suffix = name[name.rfind("."):]
    return Response(data, media_type=TYPES[suffix], headers=SECURITY_HEADERS)


def local_path(target: str | None) -> str:
    """`target` when it is a path on this server, else "/": the login never redirects elsewhere."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or not target.isprintable():
        return "/"
    return target


def build_web_router(token: str | None) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def runs_page() -> Response:
        return _file("index.html")

    @router.get("/runs/{run_id}")
    def run_page(run_id: RunId) -> Response:
        return _file("run.html")

    @router.get("/login")
    def login_page() -> Response:
        return _file("login.html")

    @router.post("/login")
    async def login(request: Request) -> Response:
        """The form: `token` and `next` (application/x-www-form-urlencoded). A good token sets
        the session cookie and goes back to `next`; a wrong one back to the form."""
        body = await request.body()
        try:
            form = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace"), max_num_fields=4)
        except ValueError:  # more fields than the form has
            form = {}
        target = local_path((form.get("next") or ["/"])[0])
        if token is not None and not token_matches((form.get("token") or [""])[0], token):
            return RedirectResponse(f"/login?wrong=1&next={quote(target, safe='')}", status_code=303)
        response = RedirectResponse(target, status_code=303)
        if token is not None:
            response.set_cookie(COOKIE, session_value(token), httponly=True, samesite="strict", path="/",
                                secure=request.url.scheme == "https")
        return response

    @router.post("/logout")
    def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @router.get("/static/{name}")
    def asset(name: str) -> Response:
        if name not in ASSETS:  # a fixed list: no paths from the request reach the file system
            raise HTTPException(404, "no such asset")
        return _file(name)

    return router
