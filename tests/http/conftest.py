"""HTTP tests run against the same real services as tests/runtime: an isolated PostgreSQL schema
and Redis queues per test (`orchestrator_env`) and a real worker subprocess (`worker`)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.runtime.conftest import *  # noqa: F401,F403 - pg_schema, orchestrator_env, worker, test_redis

TOKEN = "t0ken-for-tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def client(orchestrator_env):
    """A TestClient of an app without a token (`""` means none, whatever the environment says)."""
    from fastapi.testclient import TestClient

    from orchestrator.http import create_app

    with TestClient(create_app(token="")) as test_client:
        yield test_client


@pytest.fixture
def live_server(orchestrator_env):
    """The app under uvicorn in a thread on a free loopback port, with TOKEN required."""
    import uvicorn

    from orchestrator.http import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(token=TOKEN), host="127.0.0.1", port=port, log_level="warning",
                                          timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
