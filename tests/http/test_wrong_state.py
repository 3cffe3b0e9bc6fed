"""Operations on a run in the wrong state answer 409 naming the run's status (never 200 for a
request that changed nothing), for both workflow formats. The runs wait on `core.ask`, which the
supervisor holds without any worker, so no test here races a clock."""

from __future__ import annotations

import textwrap

import pytest

from orchestrator import RunHandle

pytestmark = pytest.mark.runtime

ASK = {
    "native": textwrap.dedent("""
        version: "1.0"
        tasks:
          - {name: approve, action: core.ask, input: {prompt: "ok?", schema: {type: object}}}
        output_map: {answer: "{{ task.approve.result }}"}
    """),
    "orquesta": textwrap.dedent("""
        version: 1.0
        tasks:
          approve:
            action: core.ask
            input: {prompt: "ok?", schema: {type: object}}
    """),
}


def start(client, workflow: str) -> str:
    response = client.post("/api/runs", json={"workflow": workflow})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def post(client, run_id: str, op: str, body: dict | None = None):
    return client.post(f"/api/runs/{run_id}/{op}", json=body) if body is not None else client.post(
        f"/api/runs/{run_id}/{op}")


def refused(client, run_id: str, op: str, status: str, body: dict | None = None) -> str:
    response = post(client, run_id, op, body)
    assert response.status_code == 409, (op, response.status_code, response.text)
    data = response.json()
    assert data["status"] == status and data["id"] == run_id and data["operation"] == op, data
    assert "\n" not in data["detail"] and "Traceback" not in response.text
    return data["detail"]


@pytest.mark.parametrize("fmt", ["native", "orquesta"])
def test_operations_in_the_wrong_state_are_409_with_the_status(client, fmt):
    run_id = start(client, ASK[fmt])
    assert RunHandle(run_id).status() == "running"
    assert "it is running" in refused(client, run_id, "resume", "running")
    refused(client, run_id, "rerun", "running", {"from": []})
    assert "not waiting" in refused(client, run_id, "respond", "running", {"task": "nope", "data": {}})

    paused = post(client, run_id, "pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused", paused.text
    refused(client, run_id, "pause", "paused")
    assert post(client, run_id, "resume").json()["status"] == "running"

    answered = post(client, run_id, "respond", {"task": "approve", "data": {"ok": True}})
    assert answered.status_code == 200 and answered.json()["status"] == "succeeded", answered.text
    for op in ("pause", "resume", "cancel"):
        assert "succeeded" in refused(client, run_id, op, "succeeded")
    refused(client, run_id, "respond", "succeeded", {"task": "approve", "data": {}})
    refused(client, run_id, "rerun", "succeeded", {"from": []})
    assert RunHandle(run_id).summary()["status"] == "succeeded"

    other = start(client, ASK[fmt])
    assert post(client, other, "cancel").json()["status"] == "canceled"
    refused(client, other, "cancel", "canceled")
    refused(client, other, "pause", "canceled")


def test_a_rejected_start_cannot_be_operated(client):
    from orchestrator.api import start_run

    rejected = start_run("no-such-workflow", record_rejection=True)
    refused(client, rejected, "cancel", "failed")
    assert "rejected" in refused(client, rejected, "rerun", "failed", {"from": []})


@pytest.mark.parametrize("fmt", ["native", "orquesta"])
def test_the_python_api_raises_operation_refused(orchestrator_env, fmt):
    from orchestrator import OperationRefused, submit

    run = submit(ASK[fmt])
    with pytest.raises(OperationRefused, match="cannot resume run .*: it is running") as caught:
        run.resume()
    assert caught.value.status == "running"
    run.respond("approve", {})
    for op in (run.pause, run.resume, run.cancel):
        with pytest.raises(OperationRefused) as caught:
            op()
        assert caught.value.status == "succeeded"
    with pytest.raises(ValueError):  # OperationRefused is a ValueError, as these errors always were
        run.respond("approve", {})
