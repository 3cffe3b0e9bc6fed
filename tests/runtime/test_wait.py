"""RunHandle.wait() is woken by the run's last step (PostgreSQL LISTEN/NOTIFY), not by polling."""

from __future__ import annotations

import textwrap
import time
from datetime import datetime

import pytest

from orchestrator import submit
from orchestrator.runtime import supervisor
from orchestrator.store.runs import RUN_FINISHED

pytestmark = pytest.mark.runtime

NAP = textwrap.dedent("""
    version: "1.0"
    tasks:
      - {name: nap, action: core.sleep, input: {seconds: 0.5}}
""")


def test_the_last_step_notifies_with_the_run_id(worker, orchestrator_env):
    with supervisor().db.listening(RUN_FINISHED) as notified:
        assert notified is not None
        run = submit(NAP)
        seen: list[str] = []
        deadline = time.monotonic() + 20
        while run.id not in seen:
            assert time.monotonic() < deadline, seen
            seen += notified(1.0)
        assert run.status() == "succeeded"  # notified once committed: the status is already final


def test_wait_returns_as_soon_as_the_run_ends(worker, orchestrator_env):
    run = submit(NAP)
    summary = run.wait(20)
    returned = datetime.now().astimezone()
    lag = (returned - datetime.fromisoformat(summary["finished_at"])).total_seconds()
    assert summary["status"] == "succeeded"
    assert lag < 1.0, f"wait() returned {lag:.3f} s after the run ended"
