"""The JSON API, driven through FastAPI's TestClient against real PostgreSQL, Redis and a worker."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from orchestrator import RunHandle

from .conftest import TOKEN

pytestmark = pytest.mark.runtime

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SUMMARY_KEYS = {"id", "workflow", "status", "output", "error", "started_at", "finished_at", "tasks"}
TASK_KEYS = {"name", "status", "attempts", "items", "result", "error", "started_at", "finished_at", "worker"}

REGISTERED = textwrap.dedent("""
    version: "1.0"
    name: http-demo
    parameters:
      n: {type: integer, required: true}
    tasks:
      - {name: double, action: tests.add, input: {a: "{{ parameters.n }}", b: "{{ parameters.n }}"}}
    output_map: {double: "{{ task.double.result }}"}
""")

SLEEPER = textwrap.dedent("""
    version: "1.0"
    name: sleeper
    tasks:
      - {name: nap, action: tests.sleep_then, input: {seconds: 30, value: late}}
""")

ORQUESTA = textwrap.dedent("""
    version: 1.0
    tasks:
      task1:
        action: core.noop
        next:
          - when: <% succeeded() %>
            do: task2
      task2:
        action: core.noop
""")


def start(client, workflow: str, params: dict | None = None) -> str:
    response = client.post("/api/runs", json={"workflow": workflow, "params": params or {}})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_status(client, run_id: str, wanted: set[str], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        summary = client.get(f"/api/runs/{run_id}").json()
        if summary["status"] in wanted:
            return summary
        assert time.monotonic() < deadline, f"run still {summary['status']}, wanted {wanted}"
        time.sleep(0.1)


def test_register_by_text_and_path_then_list(client):
    assert client.post("/api/workflows", json={"yaml": REGISTERED}).json() == {"name": "http-demo"}
    response = client.post("/api/workflows", json={"path": str(EXAMPLES / "hello.yaml")})
    assert response.status_code == 201 and response.json() == {"name": "hello"}
    listed = {w["name"]: w for w in client.get("/api/workflows").json()}
    assert set(listed) == {"http-demo", "hello"}
    assert listed["hello"]["created_at"] and listed["hello"]["versions"] == 1


def test_register_rejects_bad_definitions_with_one_line_messages(client):
    bad = client.post("/api/workflows", json={"yaml": 'version: "1.0"\ntasks:\n  - {name: a, action: no.such}\n'})
    assert bad.status_code == 422
    assert any("no.such" in line and ":3:" in line for line in bad.json()["errors"]), bad.json()
    both = client.post("/api/workflows", json={"yaml": REGISTERED, "path": "x.yaml"})
    assert both.status_code == 422 and "exactly one" in both.json()["detail"]
    missing = client.post("/api/workflows", json={"path": "/nowhere/none.yaml"})
    assert missing.status_code == 422 and "no workflow file" in missing.json()["detail"]


def test_start_list_summary_and_graph(client, worker):
    client.post("/api/workflows", json={"yaml": REGISTERED})
    registered_run = start(client, "http-demo", {"n": 21})
    hello_run = start(client, "hello", {"name": "Ada"})
    summary = wait_status(client, hello_run, {"succeeded", "failed"})
    assert summary == RunHandle(hello_run).summary()
    assert set(summary) == SUMMARY_KEYS and summary["status"] == "succeeded", summary
    assert [t["name"] for t in summary["tasks"]] == ["greet", "shout", "whisper", "summarise"]
    assert all(set(t) == TASK_KEYS for t in summary["tasks"])
    assert wait_status(client, registered_run, {"succeeded"})["output"] == {"double": 42}

    listed = client.get("/api/runs", params={"status": "succeeded"}).json()
    assert {r["id"] for r in listed} == {hello_run, registered_run}
    assert set(listed[0]) >= {"id", "workflow", "status", "created_at", "finished_at", "error"}
    assert len(client.get("/api/runs", params={"limit": 1}).json()) == 1
    assert client.get("/api/runs", params={"status": "failed"}).json() == []
    assert client.get("/api/runs", params={"status": "bogus"}).status_code == 422

    graph = client.get(f"/api/runs/{hello_run}/graph").json()
    assert graph["kind"] == "graph" and graph["workflow"] == "hello" and graph["entry"] == ["greet"]
    assert [n["name"] for n in graph["nodes"]] == ["greet", "shout", "whisper", "summarise"]
    assert graph["nodes"][0] == {"name": "greet", "action": "core.echo", "join": None, "command": False}
    assert graph["nodes"][3]["join"] == "all"
    pairs = {(e["source"], e["target"]) for e in graph["edges"]}
    assert pairs == {("greet", "shout"), ("greet", "whisper"), ("shout", "summarise"), ("whisper", "summarise")}
    assert all("succeeded()" in e["label"] for e in graph["edges"])


def test_graph_of_an_orquesta_workflow_and_of_a_rejected_run(client, worker):
    run_id = start(client, ORQUESTA)
    graph = client.get(f"/api/runs/{run_id}/graph").json()
    assert graph["kind"] == "orquesta" and graph["entry"] == ["task1"]
    assert {n["name"] for n in graph["nodes"]} == {"task1", "task2"}
    assert [(e["source"], e["target"]) for e in graph["edges"]] == [("task1", "task2")]
    assert wait_status(client, run_id, {"succeeded", "failed"})["status"] == "succeeded"

    from orchestrator.api import start_run

    rejected = start_run("no-such-workflow", record_rejection=True)
    graph = client.get(f"/api/runs/{rejected}/graph").json()
    assert graph["kind"] == "none" and graph["nodes"] == [] and "rejected" in graph["error"]


def test_invalid_workflow_or_params_are_422_with_the_messages(client):
    response = client.post("/api/runs", json={"workflow": "hello", "params": {"times": "x"}})
    assert response.status_code == 422
    body = response.json()
    assert "missing required parameter 'name'" in body["detail"] and "times" in body["detail"]
    assert body["errors"] == [body["detail"]] and "\n" not in body["detail"]
    assert "Traceback" not in response.text

    unknown = client.post("/api/runs", json={"workflow": "no-such-workflow"})
    assert unknown.status_code == 422 and "unknown workflow 'no-such-workflow'" in unknown.json()["detail"]

    broken = client.post("/api/runs", json={"workflow": 'version: "1.0"\ntasks:\n  - {name: a, action: core.echo, next: [{do: b}]}\n'})
    assert broken.status_code == 422
    assert all(line.startswith("<string>:") for line in broken.json()["errors"]), broken.json()
    assert any("'b'" in line for line in broken.json()["errors"])

    not_an_object = client.post("/api/runs", json={"workflow": "hello", "params": [1]})
    assert not_an_object.status_code == 422


def test_unknown_run_is_404_everywhere(client):
    assert client.get("/api/runs/nope").status_code == 404
    assert client.get("/api/runs/nope").json() == {"detail": "no run with id nope"}
    assert client.get("/api/runs/nope/graph").status_code == 404
    assert client.get("/api/runs/nope/events").status_code == 404
    assert client.get("/api/runs/nope/log").status_code == 404
    for op in ("pause", "resume", "cancel"):
        assert client.post(f"/api/runs/nope/{op}").status_code == 404
    assert client.post("/api/runs/nope/rerun", json={"from": ["a"]}).status_code == 404
    assert client.post("/api/runs/nope/respond", json={"task": "a", "data": {}}).status_code == 404


def test_operations_and_their_errors(client, worker, monkeypatch):
    run_id = start(client, SLEEPER)
    wait_status(client, run_id, {"running"})
    assert client.post(f"/api/runs/{run_id}/rerun", json={"from": []}).status_code == 409  # not failed
    respond = client.post(f"/api/runs/{run_id}/respond", json={"task": "nap", "data": {"ok": True}})
    assert respond.status_code == 409, respond.text
    paused = client.post(f"/api/runs/{run_id}/pause")
    assert paused.status_code == 200 and paused.json()["status"] in ("pausing", "paused"), paused.json()
    resumed = client.post(f"/api/runs/{run_id}/resume")
    assert resumed.status_code == 200 and resumed.json()["operation"] == "resume"

    monkeypatch.setattr(RunHandle, "pause", lambda self: (_ for _ in ()).throw(NotImplementedError()))
    assert client.post(f"/api/runs/{run_id}/pause").status_code == 501
    monkeypatch.delattr(RunHandle, "respond")
    missing = client.post(f"/api/runs/{run_id}/respond", json={"task": "nap", "data": {}})
    assert missing.status_code == 501 and "respond" in missing.json()["detail"]

    canceled = client.post(f"/api/runs/{run_id}/cancel")
    assert canceled.status_code == 200 and canceled.json()["id"] == run_id
    assert wait_status(client, run_id, {"canceled", "succeeded", "failed"}, timeout=20)["status"] == "canceled"


def test_token_is_required_when_configured(orchestrator_env, monkeypatch):
    from fastapi.testclient import TestClient

    from orchestrator.http import create_app

    client = TestClient(create_app(token=TOKEN))
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/api/runs").status_code == 401
    assert client.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/runs", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert client.get("/api/runs", headers=good).status_code == 200
    assert client.get("/api/health", headers=good).json()["status"] == "ok"
    assert client.get("/api/runs", params={"token": TOKEN}).status_code == 401  # the query form is for browsers' feeds
    assert client.post("/api/runs", json={"workflow": "hello"}).status_code == 401
    assert client.get("/api/openapi.json").status_code == 401
    assert "/api/runs/{run_id}/events" in client.get("/api/openapi.json", headers=good).json()["paths"]
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=good).status_code == 200
    # The token never travels in a URL (access logs keep URLs): not even for the live feed.
    assert client.get("/api/runs/nope/events").status_code == 401
    assert client.get("/api/runs/nope/events", params={"token": TOKEN}).status_code == 401
    assert client.get("/api/runs/nope/events", headers=good).status_code == 404  # past auth, no such run
    # Pages and assets hold no data: they load, and their scripts sign in when the API says 401.
    for page in ("/", "/runs/x", "/login", "/static/run.js", "/static/login.js"):
        assert client.get(page).status_code == 200, page

    monkeypatch.setenv("ORCHESTRATOR_API_TOKEN", "from-env")
    from_env = TestClient(create_app())
    assert from_env.get("/api/runs").status_code == 401
    assert from_env.get("/api/runs", headers={"Authorization": "Bearer from-env"}).status_code == 200


def test_the_login_form_sets_an_http_only_same_site_cookie(orchestrator_env):
    from fastapi.testclient import TestClient

    from orchestrator.http import create_app

    client = TestClient(create_app(token=TOKEN), follow_redirects=False)
    wrong = client.post("/login", data={"token": "nope", "next": "/runs/abc"})
    assert wrong.status_code == 303 and wrong.headers["location"] == "/login?wrong=1&next=%2Fruns%2Fabc"
    assert "set-cookie" not in wrong.headers and client.get("/api/runs").status_code == 401
    good = client.post("/login", data={"token": TOKEN, "next": "/runs/abc"})
    assert good.status_code == 303 and good.headers["location"] == "/runs/abc"
    cookie = good.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie, cookie
    assert TOKEN not in cookie  # derived from the token: not usable as the bearer token
    assert client.get("/api/runs").status_code == 200  # the cookie jar sends it
    assert client.get("/api/runs/nope/events").status_code == 404
    session = client.cookies.get("orchestrator_session")
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {session}"}).status_code == 401
    assert client.post("/logout").status_code == 303 and client.get("/api/runs").status_code == 401
    client.cookies.set("orchestrator_session", "forged")
    assert client.get("/api/runs").status_code == 401
    # `next` stays on this server; a login from another site is refused (no login CSRF).
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "runs"):
        assert client.post("/login", data={"token": TOKEN, "next": target}).headers["location"] == "/"
    assert client.post("/login", data={"token": TOKEN}, headers={"Origin": "http://evil.example"}).status_code == 403


def read_events(client, path: str) -> list[tuple[str, object]]:
    events, name = [], None
    with client.stream("GET", path) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: "):])))
    return events


def test_events_stream_summaries_until_the_run_ends(client, worker):
    run_id = start(client, "hello", {"name": "Ada"})
    events = read_events(client, f"/api/runs/{run_id}/events")
    summaries = [data for name, data in events if name == "summary"]
    assert events[-1] == ("end", {"status": "succeeded"})
    assert summaries[-1] == RunHandle(run_id).summary() and summaries[-1]["status"] == "succeeded"
    assert all(a != b for a, b in zip(summaries, summaries[1:]))  # only changes are sent
    lifecycle = [data for name, data in events if name == "lifecycle"]
    log = client.get(f"/api/runs/{run_id}/log")
    assert log.status_code == 200 and lifecycle == log.json()  # each recorded event, once, in order
    assert [e["kind"] for e in lifecycle][::len(lifecycle) - 1] == ["workflow.started", "workflow.succeeded"]
    assert [e["task"] for e in lifecycle if e["kind"] == "task.started"] == ["greet", "shout", "whisper", "summarise"]
    assert client.get(f"/api/runs/{run_id}/log", params={"after": lifecycle[-2]["id"]}).json() == lifecycle[-1:]
    # A finished run: its events, its final summary once, then the end.
    again = [name for name, _ in read_events(client, f"/api/runs/{run_id}/events")]
    assert again == ["lifecycle"] * len(lifecycle) + ["summary", "end"]


def test_metrics_from_the_database_and_redis(client, worker, orchestrator_env):
    run_id = start(client, "hello", {"name": "Ada"})
    wait_status(client, run_id, {"succeeded"})
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'orchestrator_runs{status="succeeded"} 1.0' in text
    assert 'orchestrator_runs{status="failed"} 0.0' in text
    assert "orchestrator_task_duration_seconds_count 4.0" in text
    assert 'orchestrator_task_duration_seconds_bucket{le="+Inf"} 4.0' in text
    for queue in (orchestrator_env["ORCHESTRATOR_DEFAULT_QUEUE"], orchestrator_env["ORCHESTRATOR_SUPERVISOR_QUEUE"]):
        assert f'orchestrator_queue_length{{queue="{queue}"}}' in text
