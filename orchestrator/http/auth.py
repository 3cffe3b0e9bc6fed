"""Bearer-token auth: when a token is configured, API requests need `Authorization: Bearer
<token>`, or the web view's session cookie, which the login form sets (HttpOnly, SameSite=Strict,
so a page on another site can neither read it nor send it). The token never travels in a URL:
URLs land in access logs, browser history and Referer headers."""

from __future__ import annotations

import hashlib
import hmac
import os

from fastapi import HTTPException, Request

TOKEN_ENV = "ORCHESTRATOR_API_TOKEN"
COOKIE = "orchestrator_session"


def configured_token(token: str | None) -> str | None:
    """The factory's token, else ORCHESTRATOR_API_TOKEN; empty means no auth."""
    value = token if token is not None else os.environ.get(TOKEN_ENV)
    return value or None


def session_value(token: str) -> str:
    """The cookie's value: derived from the token (the cookie does not carry the token itself,
    so a leaked cookie cannot be replayed as `Authorization: Bearer`)."""
    return hmac.new(token.encode(), b"orchestrator web session v1", hashlib.sha256).hexdigest()


def token_matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.strip().encode(), token.encode())


class TokenAuth:
    """A FastAPI dependency: the bearer token, or the web view's session cookie."""

    def __init__(self, token: str | None):
        self.token = token
        self.session = session_value(token) if token is not None else None

    def allows(self, request: Request) -> bool:
        if self.token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given:
            return token_matches(given, self.token)
        cookie = request.cookies.get(COOKIE, "")
        return bool(cookie) and hmac.compare_digest(cookie.encode(), self.session.encode())

    def __call__(self, request: Request) -> None:
        if not self.allows(request):
            raise HTTPException(401, "missing or wrong token: send Authorization: Bearer <token> "
                                     "(or sign in at /login in a browser)",
                                headers={"WWW-Authenticate": "Bearer"})
