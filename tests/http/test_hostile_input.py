"""The JSON API under hostile input: cross-site requests, files outside the workflow folders,
NUL characters, oversized parameters and bodies, documents that would exhaust the parser. Each
answer is a 4xx naming the field, never a 500, and nothing is stored for a refused request."""

from __future__ import annotations

import json
import textwrap

import pytest

from orchestrator import RunHandle

pytestmark = pytest.mark.runtime

ASK = textwrap.dedent("""
    version: "1.0"
    parameters:
      blob: {type: string, default: ""}
    tasks:
      - {name: approve, action: core.ask, input: {prompt: "ok?", schema: {type: object}}}
""")


def start(client, workflow: str = ASK, **params) -> str:
    response = client.post("/api/runs", json={"workflow": workflow, "params": params})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def run_count(client) -> int:
    return len(client.get("/api/runs", params={"limit": 1000}).json())


# Cross-site requests ---------------------------------------------------------------------------

def test_a_cross_site_form_post_cannot_operate_a_run(client):
    """With no token set, a page on another site could make the browser POST here: a text/plain
    form (no preflight) paused a run. Now it is refused before any route sees it."""
    run_id = start(client)
    form = {"Content-Type": "text/plain"}
    for headers in ({**form, "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
                    {**form, "Origin": "http://evil.example"},              # a browser without Fetch metadata
                    {**form, "Origin": "null"},                              # a sandboxed frame
                    {**form, "Origin": "http://testserver.evil.example"},
                    {**form, "Sec-Fetch-Site": "same-site"}):               # a sibling subdomain
        response = client.post(f"/api/runs/{run_id}/pause", content='{"x": 1}', headers=headers)
        assert response.status_code == 403, (headers, response.text)
        assert "cross-site" in response.json()["detail"]
    for origin in ("http://evil.example", "null"):
        response = client.post(f"/api/runs/{run_id}/cancel", headers={"Origin": origin})
        assert response.status_code == 403
    response = client.post("/api/runs", json={"workflow": ASK}, headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403
    assert RunHandle(run_id).status() == "running" and run_count(client) == 1


def test_state_changing_requests_with_a_body_must_be_json(client):
    run_id = start(client)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        response = client.post("/api/runs", content='{"workflow": "hello", "params": {"name": "x"}}',
                               headers={"Content-Type": content_type})
        assert response.status_code == 415, (content_type, response.text)
        assert "application/json" in response.json()["detail"]
        response = client.post(f"/api/runs/{run_id}/respond", content='{"task": "approve", "data": {}}',
                               headers={"Content-Type": content_type})
        assert response.status_code == 415
    assert RunHandle(run_id).status() == "running" and run_count(client) == 1


def test_same_origin_and_non_browser_requests_still_work(client):
    run_id = start(client)
    assert client.post(f"/api/runs/{run_id}/pause", headers={"Origin": "http://testserver",
                                                             "Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert client.post(f"/api/runs/{run_id}/resume", headers={"Origin": "http://testserver"}).status_code == 200
    # curl -X POST with no body and no content type; a JSON client with a charset
    assert client.post(f"/api/runs/{run_id}/pause").status_code == 200
    response = client.post(f"/api/runs/{run_id}/resume", content="", headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 200, response.text
    response = client.post(f"/api/runs/{run_id}/respond", content='{"task": "approve", "data": {}}',
                           headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 200 and response.json()["status"] == "succeeded"


# Files outside the workflow folders ------------------------------------------------------------

@pytest.fixture
def folder(tmp_path, monkeypatch, orchestrator_env):
    """ORCHESTRATOR_WORKFLOWS = one folder holding ask.yaml, beside a secret file outside it."""
    from orchestrator.config import settings

    inside = tmp_path / "workflows"
    (inside / "team").mkdir(parents=True)
    (inside / "team" / "ask.yaml").write_text(ASK)
    (tmp_path / "secret.yaml").write_text("root: $6$hash-of-the-root-password\nadmin: hunter2\n")
    monkeypatch.setenv("ORCHESTRATOR_WORKFLOWS", str(inside))
    settings.cache_clear()
    return inside


def test_the_api_reads_no_file_outside_the_workflow_folders(client, folder):
    secret = folder.parent / "secret.yaml"
    for ref in ("/etc/passwd", "/etc/shadow", str(secret), "../secret.yaml", "team/../../secret.yaml",
                str(folder / ".." / "secret.yaml"), "/proc/self/environ", "x/" * 3000 + "y.yaml"):
        for response in (client.post("/api/runs", json={"workflow": ref}),
                         client.post("/api/workflows", json={"path": ref})):
            assert response.status_code == 422, (ref, response.text)
            assert "ORCHESTRATOR_WORKFLOWS" in response.json()["detail"], response.text
            for word in ("hunter2", "$6$hash", "daemon:", "/bin/", "PATH="):
                assert word not in response.text, (ref, response.text)
    assert run_count(client) == 0
    # Inside the folders: relative to them, or absolute.
    assert client.post("/api/runs", json={"workflow": "team/ask.yaml"}).status_code == 201
    assert client.post("/api/runs", json={"workflow": str(folder / "team" / "ask.yaml")}).status_code == 201
    assert client.post("/api/workflows", json={"path": "team/ask.yaml"}).json() == {"name": "ask"}
    assert client.post("/api/runs", json={"workflow": "ask"}).status_code == 201  # registered


def test_the_python_api_still_reads_any_file_it_is_given(orchestrator_env, folder):
    from orchestrator import resolve
    from orchestrator.core.errors import WorkflowInvalid

    assert resolve(str(folder / "team" / "ask.yaml")).name == "ask"
    with pytest.raises(WorkflowInvalid):  # the caller's own file: its problems are the caller's to see
        resolve(str(folder.parent / "secret.yaml"))


# NUL characters and other values no store keeps ------------------------------------------------

ROUTES = [("GET", "/api/runs/{id}"), ("GET", "/api/runs/{id}/graph"), ("GET", "/api/runs/{id}/log"),
          ("GET", "/api/runs/{id}/events"), ("POST", "/api/runs/{id}/pause"), ("POST", "/api/runs/{id}/resume"),
          ("POST", "/api/runs/{id}/cancel"), ("POST", "/api/runs/{id}/rerun"), ("POST", "/api/runs/{id}/respond"),
          ("GET", "/runs/{id}")]
BODIES = {"/rerun": {"from": ["a"]}, "/respond": {"task": "a", "data": {}}}


@pytest.mark.parametrize("bad_id", ["a%00b", "%00", "x" * 65, "a%1Fb", "%7F"])
def test_bad_ids_are_4xx_in_every_route(client, bad_id):
    for method, template in ROUTES:
        path = template.replace("{id}", bad_id)
        body = next((b for suffix, b in BODIES.items() if template.endswith(suffix)), None)
        response = client.request(method, path, json=body)
        assert 400 <= response.status_code < 500, (method, path, response.status_code, response.text)
        assert "psycopg" not in response.text and "SQL" not in response.text


def test_nul_and_unstorable_values_in_parameters_and_answers_are_422(client):
    for params, where in (({"name": "a\x00b"}, "params.name"), ({"a\x00": 1}, "params"),
                          ({"x": ["ok", {"y": "\ud800"}]}, "params.x[1].y")):
        response = client.post("/api/runs", content=json.dumps({"workflow": ASK, "params": params}),
                               headers={"Content-Type": "application/json"})  # ASCII: \ud800 as an escape
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "params" and where in response.json()["detail"], response.text
    for raw in ('{"workflow": "hello", "params": {"x": NaN}}', '{"workflow": "hello", "params": {"x": Infinity}}',
                '{"workflow": "hello", "params": {"x": ' + "9" * 5000 + "}}",
                '{"workflow": "hello", "params": ' + "[" * 100_000 + "]" * 100_000 + "}"):
        response = client.post("/api/runs", content=raw, headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, (raw[:60], response.text)
    for workflow in ("he\x00llo", "a\x00/b.yaml"):
        response = client.post("/api/runs", json={"workflow": workflow})
        assert response.status_code == 422 and "NUL" in response.json()["detail"], response.text
    assert run_count(client) == 0

    run_id = start(client)
    response = client.post(f"/api/runs/{run_id}/respond", json={"task": "approve", "data": {"x": "a\x00b"}})
    assert response.status_code == 422 and response.json()["field"] == "data", response.text
    assert "data.x" in response.json()["detail"]
    for task in ("app\x00rove", "\x00"):
        response = client.post(f"/api/runs/{run_id}/respond", json={"task": task, "data": {}})
        assert 400 <= response.status_code < 500, response.text
    response = client.post(f"/api/runs/{run_id}/rerun", json={"from": ["a\x00"]})
    assert 400 <= response.status_code < 500, response.text
    assert client.get("/api/runs", params={"status": "running\x00"}).status_code == 422
    assert RunHandle(run_id).status() == "running"


# Sizes -----------------------------------------------------------------------------------------

@pytest.fixture
def small_limit(orchestrator_env, monkeypatch):
    """ORCHESTRATOR_MAX_INPUT_BYTES=1000, and a client of an app built with it."""
    from fastapi.testclient import TestClient

    from orchestrator.config import settings
    from orchestrator.http import create_app

    monkeypatch.setenv("ORCHESTRATOR_MAX_INPUT_BYTES", "1000")
    settings.cache_clear()
    with TestClient(create_app(token="")) as client:
        yield client


def test_parameters_over_the_input_limit_are_refused_before_anything_is_stored(small_limit):
    from orchestrator import InputInvalid, submit

    client = small_limit
    response = client.post("/api/runs", json={"workflow": ASK, "params": {"blob": "x" * 1000}})
    assert response.status_code == 422 and response.json()["field"] == "params", response.text
    assert "over the limit of 1000 (ORCHESTRATOR_MAX_INPUT_BYTES)" in response.json()["detail"]
    assert client.post("/api/runs", json={"workflow": ASK, "params": {"blob": "x" * 900}}).status_code == 201
    with pytest.raises(InputInvalid, match="over the limit of 1000") as caught:
        submit(ASK, {"blob": "é" * 200})  # 200 characters, 1,200 bytes as the limit counts them (\\u00e9)
    assert caught.value.field == "params"
    assert run_count(client) == 1

    run_id = client.get("/api/runs").json()[0]["id"]
    response = client.post(f"/api/runs/{run_id}/respond", json={"task": "approve", "data": {"a": "x" * 1000}})
    assert response.status_code == 422 and response.json()["field"] == "data"
    assert RunHandle(run_id).status() == "running"


def test_a_body_over_the_limit_is_413_before_it_is_parsed(small_limit):
    client = small_limit
    big = b'{"workflow": "x", "params": {"a": "' + b"x" * (4 * 1000 + (1 << 20)) + b'"}}'
    response = client.post("/api/runs", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "larger than" in response.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(300):
            yield b"x" * 4096

    response = client.post("/api/runs", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert run_count(client) == 0


# Documents that would exhaust the parser -------------------------------------------------------

BOMBS = {
    "a 100k-deep list": "version: 1.0\ntasks:\n  a: " + "[" * 100_000 + "]" * 100_000 + "\n",
    "a 100,000-digit integer": "version: 1.0\ntasks:\n  a: {action: core.noop, input: {n: " + "1" * 100_000 + "}}\n",
    "a billion laughs": "version: 1.0\ntasks:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"  {chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_documents_over_the_parser_limits_are_422(client, name):
    for response in (client.post("/api/runs", json={"workflow": BOMBS[name]}),
                     client.post("/api/workflows", json={"yaml": BOMBS[name]})):
        assert response.status_code == 422, (name, response.status_code, response.text[:300])
        assert len(response.text) < 2000, response.text[:300]  # names the place, does not echo the value
        assert response.json()["errors"][0].startswith("<string>:")
    assert run_count(client) == 0
