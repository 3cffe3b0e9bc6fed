"""`orchestrator serve`: the HTTP app under uvicorn (loopback unless told otherwise)."""

from __future__ import annotations

import ipaddress
import sys

from .auth import configured_token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(host: str = "127.0.0.1", port: int = 8080, token: str | None = None) -> None:
    import uvicorn

    from ..runtime import stop_embedded_worker
    from .app import create_app

    token = configured_token(token)
    if token is None and not is_loopback(host):
        print(f"warning: serving on {host} without a token: anyone who can reach it can start and "
              f"cancel runs (set --token or ORCHESTRATOR_API_TOKEN)", file=sys.stderr)
    try:
        uvicorn.run(create_app(token), host=host, port=port, log_level="info", proxy_headers=False)
    finally:
        stop_embedded_worker()
