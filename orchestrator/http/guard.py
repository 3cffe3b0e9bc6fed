"""What no route may see: an ASGI middleware in front of the whole app that refuses, for every
request that can change something (any method but GET/HEAD/OPTIONS),

- a cross-site request (403): a page on another site can make a browser POST here with the
  user's cookies and no preflight (a `text/plain` form paused runs when no token was set). The
  browser says where a request comes from in `Sec-Fetch-Site` (modern browsers) or `Origin`
  (older ones); requests that carry neither (curl, scripts, SDKs) are not from a page;
- a body that is not JSON (415), except the login form's;
- a body over `max_body` bytes (413), counted as it arrives, before any route parses it.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAME_ORIGIN = frozenset({"same-origin", "none"})  # "none": typed in the address bar, a bookmark
FORM_PATHS = frozenset({"/login", "/logout"})      # the web view's own forms

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def cross_site(headers: Headers) -> str | None:
    """Why a request comes from another site, or None when it does not (or is not a browser's)."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return None if site.lower() in SAME_ORIGIN else f"Sec-Fetch-Site: {site}"
    origin = headers.get("origin")
    if origin is None:
        return None
    if origin == "null" or urlsplit(origin).netloc.lower() != headers.get("host", "").lower():
        return f"Origin: {origin}"
    return None


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def is_form(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded"


class RequestGuard:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_body: int):
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        why = cross_site(headers)
        if why is not None:
            await _refuse(scope, receive, send, 403, f"cross-site request refused ({why}): operate runs from "
                                                     f"this server's own pages or from a client that is not a browser")
            return
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await _refuse(scope, receive, send, 413, self._too_large())
            return
        body = await self._read(receive)
        if body is None:
            await _refuse(scope, receive, send, 413, self._too_large())
            return
        content_type = headers.get("content-type", "")
        if body and not is_json(content_type) and not (scope["path"] in FORM_PATHS and is_form(content_type)):
            await _refuse(scope, receive, send, 415, f"the request body must be JSON (Content-Type: application/json), "
                                                     f"not {content_type.split(';', 1)[0] or 'untyped'}")
            return
        await self.app(scope, _replay(body, receive), send)

    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_body} bytes"

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it passes `max_body` (what is left is not read)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the disconnect, when it comes

    return replay


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
