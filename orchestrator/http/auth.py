"""Bearer-token auth: when a token is configured, requests need `Authorization: Bearer <token>`
(or `?token=` where a browser cannot set headers: EventSource and page loads)."""

from __future__ import annotations

import hmac
import os

from fastapi import HTTPException, Request

TOKEN_ENV = "ORCHESTRATOR_API_TOKEN"


def configured_token(token: str | None) -> str | None:
    """The factory's token, else ORCHESTRATOR_API_TOKEN; empty means no auth."""
    value = token if token is not None else os.environ.get(TOKEN_ENV)
    return value or None


class TokenAuth:
    """A FastAPI dependency; `query` allows the token as a query parameter too."""

    def __init__(self, token: str | None, query: bool = False):
        self.token = token
        self.query = query

    def __call__(self, request: Request) -> None:
        if self.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            given = request.query_params.get("token", "") if self.query else ""
        if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise HTTPException(401, "missing or wrong token: send Authorization: Bearer <token>",
                                headers={"WWW-Authenticate": "Bearer"})
