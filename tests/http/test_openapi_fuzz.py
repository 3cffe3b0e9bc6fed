"""A property-based run of our own OpenAPI spec (Schemathesis) against a real `orchestrator serve`
on PostgreSQL: every documented operation with generated valid and invalid input (NUL bytes
included), half the time on real runs in every state. It asserts no 5xx, status codes, content
types and bodies that match the spec, invalid input refused, and no traceback in the server's
log. Bounded: a fixed number of examples per operation. `ORCHESTRATOR_TEST_SEED` replays a run."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from .conftest import free_port

pytestmark = [pytest.mark.runtime, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "fuzz-token"
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance,negative_data_rejection,unsupported_method,allow_header_conformance,ignored_auth")
EXAMPLES = 40  # per operation and phase: ~1,500 requests in all

ASK = textwrap.dedent("""
    version: "1.0"
    parameters:
      note: {type: string, default: ""}
    tasks:
      - {name: approve, action: core.ask, input: {prompt: "ok?", schema: {type: object}}}
""")
ORQUESTA_ASK = textwrap.dedent("""
    version: 1.0
    tasks:
      approve:
        action: core.ask
        input: {prompt: "ok?", schema: {type: object}}
""")


def runs_in_every_state() -> dict[str, str]:
    """Runs that need no worker (core.ask waits in the supervisor): {status: id}."""
    from orchestrator.api import start_run, submit

    running, paused, succeeded, canceled = (submit(ASK) for _ in range(4))
    orquesta = submit(ORQUESTA_ASK)
    paused.pause()
    succeeded.respond("approve", {"ok": True})
    canceled.cancel()
    rejected = start_run("no-such-workflow", record_rejection=True)
    return {"running": running.id, "paused": paused.id, "succeeded": succeeded.id, "canceled": canceled.id,
            "orquesta": orquesta.id, "rejected": rejected}


@pytest.fixture
def served(orchestrator_env, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "serve", "--port", str(port), "--token", TOKEN],
                                env={**os.environ, **orchestrator_env}, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/api/health", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield base, log
    finally:
        proc.terminate()
        proc.wait(15)


def test_the_openapi_spec_holds_under_generated_input(served, tmp_path):
    base, log = served
    runs = runs_in_every_state()
    config = tmp_path / "schemathesis.toml"
    config.write_text(textwrap.dedent(f"""
        [dictionaries.runs]
        values = [{", ".join(f'"{run_id}"' for run_id in runs.values())}]

        [parameters]
        "path.run_id" = {{ dictionary = "runs", probability = 0.5 }}
    """))
    seed = int(os.environ.get("ORCHESTRATOR_TEST_SEED") or random.randrange(1 << 32))
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
               f"{base}/api/openapi.json", "--header", f"Authorization: Bearer {TOKEN}", "--checks", CHECKS,
               "--max-examples", str(EXAMPLES), "--seed", str(seed), "--generation-allow-x00", "true",
               # the live feed streams until its run ends: its 404/422 answers are tested in test_api
               "--exclude-path", "/api/runs/{run_id}/events",
               "--wait-for-schema", "30", "--request-timeout", "30", "--no-color", "--output-truncate", "true"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=800)
    (tmp_path / "schemathesis.txt").write_text(result.stdout + result.stderr)  # the whole report
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, f"seed {seed} (ORCHESTRATOR_TEST_SEED={seed} replays it):\n{report}"
    assert " passed" in result.stdout and "0 operations" not in result.stdout, report
    served_log = log.read_text()
    assert "Traceback" not in served_log and "Exception in ASGI" not in served_log, served_log[-4000:]

    from orchestrator import RunHandle

    assert RunHandle(runs["succeeded"]).status() == "succeeded"  # whatever was tried, a finished run stays so
    assert RunHandle(runs["rejected"]).status() == "failed"
