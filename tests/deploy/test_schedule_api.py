"""Schedules over HTTP and the Python API, and `list --json`: shapes, and bad input as a clear
error naming the field (never a traceback or a 500)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from orchestrator import add_schedule, list_schedules, remove_schedule, submit
from orchestrator.http.app import create_app
from orchestrator.scheduling import ScheduleExists, ScheduleInvalid, ScheduleNotFound
from tests.runtime.test_cli import cli

pytestmark = pytest.mark.runtime


@pytest.fixture
def client(deploy_env):
    with TestClient(create_app(token="")) as test_client:
        yield test_client


def test_schedules_over_http(client):
    made = client.post("/api/schedules", json={"name": "nightly", "workflow": "hello", "cron": "0 3 * * *",
                                               "timezone": "Europe/Paris", "params": {"name": "Ada"}})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["cron"] == "0 3 * * *" and body["every"] is None and body["paused"] is False
    assert body["next_due_at"].endswith(("+00:00",)) and body["last_fire"] is None
    assert client.post("/api/schedules", json={"name": "nightly", "workflow": "hello", "every": 60,
                                               "params": {"name": "x"}}).status_code == 409
    assert [s["name"] for s in client.get("/api/schedules").json()] == ["nightly"]
    assert client.post("/api/schedules/nightly/pause").json()["paused"] is True
    assert client.post("/api/schedules/nightly/resume").json()["paused"] is False
    assert client.get("/api/schedules/nightly").json()["timezone"] == "Europe/Paris"
    assert client.delete("/api/schedules/nightly").status_code == 204
    assert client.delete("/api/schedules/nightly").status_code == 404
    assert client.post("/api/schedules/nightly/pause").status_code == 404


@pytest.mark.parametrize("body, field, words", [
    ({"name": "x", "workflow": "hello", "every": 0.1, "params": {"name": "a"}}, "every", "between"),
    ({"name": "x", "workflow": "hello", "cron": "99 * * * *", "params": {"name": "a"}}, "cron", "99"),
    ({"name": "x", "workflow": "hello", "cron": "0 3 * * *", "timezone": "Nowhere/City"}, "timezone", "IANA"),
    ({"name": "x", "workflow": "no-such-workflow", "every": 60}, "workflow", "unknown workflow"),
    ({"name": "x", "workflow": "hello", "every": 60}, "params", "name"),
    ({"name": "x y", "workflow": "hello", "every": 60}, "name", "schedule name"),
])
def test_bad_schedules_are_422_naming_the_field(client, body, field, words):
    response = client.post("/api/schedules", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field and words in response.json()["detail"]


def test_python_api_and_cli_errors(deploy_env):
    add_schedule("py", "hello", every=30, params={"name": "Ada"})
    with pytest.raises(ScheduleExists):
        add_schedule("py", "hello", every=30, params={"name": "Ada"})
    with pytest.raises(ScheduleInvalid):
        add_schedule("both", "hello", every=30, cron="* * * * *")
    assert [s["name"] for s in list_schedules()] == ["py"]
    remove_schedule("py")
    with pytest.raises(ScheduleNotFound):
        remove_schedule("py")
    bad = cli("schedule", "add", "c", "hello", "--cron", "0 3 * *", "-p", "name=a", env=deploy_env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: cron: ") and "Traceback" not in bad.stderr
    missing = cli("schedule", "remove", "nope", env=deploy_env)
    assert missing.returncode == 2 and "no schedule named 'nope'" in missing.stderr
    listed = cli("schedule", "list", env=deploy_env)
    assert listed.returncode == 0


def test_list_json_prints_what_the_http_list_returns(deploy_worker, deploy_env, client):
    run = submit("hello", {"name": "Ada"})
    run.wait(60)
    printed = cli("list", "--json", env=deploy_env)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == client.get("/api/runs").json()
    [entry] = json.loads(printed.stdout)
    assert set(entry) == {"id", "workflow", "status", "created_at", "finished_at", "error"}
    assert entry["id"] == run.id and entry["status"] == "succeeded"


def test_http_schedules_read_no_file_outside_the_workflow_folders(client, tmp_path):
    """As for starting runs over HTTP: a path outside ORCHESTRATOR_WORKFLOWS is 'not found'
    without being opened, and nothing of the file is echoed."""
    secret = tmp_path / "secret.yaml"
    secret.write_text("version: '1.0'\ntasks:\n  - {name: leaked-task-name, action: core.noop}\n")
    refused = client.post("/api/schedules", json={"name": "x", "workflow": str(secret), "every": 60})
    assert refused.status_code == 422 and refused.json()["field"] == "workflow"
    assert "leaked-task-name" not in refused.text
    assert client.get("/api/schedules").json() == []
