"""`orchestrator serve` as a user starts it: uvicorn on loopback, token from the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from orchestrator.http.serve import is_loopback

from .conftest import free_port

pytestmark = pytest.mark.runtime
ROOT = Path(__file__).resolve().parents[2]


def test_serve_command_binds_loopback_and_requires_its_token(orchestrator_env, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "serve", "--port", str(port), "--token", "cli-token"],
                                env={**os.environ, **orchestrator_env}, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1,
                                     headers={"Authorization": "Bearer cli-token"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert response.status_code == 200 and response.json()["database"] == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 401
        assert f"Uvicorn running on http://127.0.0.1:{port}" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(15)


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1") and not is_loopback("example.org")
