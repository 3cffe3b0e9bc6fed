"""Actions the deployment tests route to hosts (loaded by workers through ORCHESTRATOR_ACTIONS)."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from workers.app import app


@app.task(name="deploy.where")
def where() -> dict[str, str]:
    """Which host ran this (the name its worker was started with), and the address that host
    reaches the broker from."""
    broker = urlparse(os.environ["ORCHESTRATOR_BROKER_URL"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((broker.hostname, broker.port or 6379))
        address = probe.getsockname()[0]
    return {"host": os.environ.get("TEST_HOST_NAME"), "address": address}
