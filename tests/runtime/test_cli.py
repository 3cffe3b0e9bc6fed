"""The `orchestrator` command as a user runs it: subprocesses, exit codes, exact output shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = {"id", "workflow", "status", "output", "error", "started_at", "finished_at", "tasks"}
TASK_KEYS = {"name", "status", "attempts", "items", "result", "error", "started_at", "finished_at", "worker"}


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60):
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env={**base, **(env or {})},
                          cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def embedded_dir(tmp_path):
    """A working directory with no servers configured: the embedded default."""
    return tmp_path


def test_embedded_run_json_summary(embedded_dir):
    result = cli("run", str(ROOT / "examples/hello.yaml"), "-p", "name=Ada", "-p", "times=3", "--json",
                 cwd=embedded_dir)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert set(summary) == SUMMARY_KEYS
    assert summary["status"] == "succeeded"
    assert summary["output"] == {"summary": "HELLO, ADA! / hello, ada!", "repeat": ["Hello, Ada!"] * 3}
    assert [t["name"] for t in summary["tasks"]] == ["greet", "shout", "whisper", "summarise"]
    assert all(set(t) == TASK_KEYS for t in summary["tasks"])
    assert all(t["worker"] for t in summary["tasks"])  # the host that ran each call
    assert (embedded_dir / ".orchestrator" / "orchestrator.db").exists()
    # the run is durable: a later process reads it from the same SQLite file
    status = cli("status", summary["id"], "--json", cwd=embedded_dir)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == summary


def test_embedded_failed_run_exits_1_and_shows_error(embedded_dir):
    flow = embedded_dir / "broken.yaml"
    flow.write_text(textwrap.dedent("""
        version: "1.0"
        tasks:
          - {name: step, action: core.shell, input: {cmd: "echo oops >&2; exit 3"}}
    """))
    result = cli("run", str(flow), cwd=embedded_dir)
    assert result.returncode == 1
    assert "task 'step' failed: command exited with 3: oops" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_embedded_run_of_retry_and_with_items(embedded_dir):
    flow = embedded_dir / "items.yaml"
    flow.write_text(textwrap.dedent("""
        version: "1.0"
        parameters: {names: {type: array, default: [a, b, c]}}
        tasks:
          - name: each
            action: core.echo
            with_items: "{{ parameters.names }}"
            concurrency: 2
            input: {message: "{{ index }}:{{ item }}"}
        output_map: {all: "{{ task.each.result }}"}
    """))
    result = cli("run", str(flow), "--json", cwd=embedded_dir)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["output"] == {"all": ["0:a", "1:b", "2:c"]}
    assert summary["tasks"][0]["items"] == 3


def test_validate_reports_every_problem_with_exit_2(tmp_path):
    tmp_path = tmp_path / ("a-folder-name-long-enough-that-each-line-is-over-80-characters-" * 2)
    tmp_path.mkdir()  # lines piped to a script are never folded at the console's width
    good = tmp_path / "good.yaml"
    good.write_text((ROOT / "examples/hello.yaml").read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: '1.0'\ntasks:\n  - {name: a, action: nope.x, next: [{do: b}]}\n  - {name: c}\n")
    result = cli("validate", str(good), str(bad))
    assert result.returncode == 2
    assert f"{good}: ok" in result.stdout
    assert result.stderr.splitlines() == [
        f"{bad}:3:15: task 'a': unknown action 'nope.x'",
        f"{bad}:3:39: task 'a': transition to unknown task 'b'",
        f"{bad}:4:5: missing required key 'action' in tasks[1]",
    ]
    assert cli("validate", str(good)).returncode == 0


@pytest.mark.parametrize("args, message", [
    (["run", "examples/hello.yaml"], "error: invalid parameters for workflow 'hello': missing required parameter 'name'"),
    (["run", "examples/hello.yaml", "-p", "name=1", "-p", "times=x"],
     "error: invalid parameters for workflow 'hello': parameter 'name': 1 is not of type 'string'; "
     "parameter 'times': 'x' is not of type 'integer'"),
    (["run", "missing.yaml"], "error: no such workflow file: missing.yaml"),
    (["run", "nonesuch"], "error: unknown workflow 'nonesuch': not a file, not in ORCHESTRATOR_WORKFLOWS and not registered"),
    (["run", "examples/hello.yaml", "-p", "oops"], "error: -p 'oops': expected key=value"),
    (["run", "examples/hello.yaml", "--params-json", "{bad"], "error: --params-json: not valid JSON"),
])
def test_bad_input_is_one_clear_line_exit_2(args, message, embedded_dir):
    result = cli(*[str(ROOT / a) if a.startswith("examples/") else a for a in args], cwd=embedded_dir)
    assert result.returncode == 2, result
    assert result.stderr.strip().startswith(message.replace("examples/", str(ROOT / "examples") + "/"))
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_malformed_yaml_file_exit_2(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("version: '1.0'\ntasks: [\n")
    result = cli("run", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"{bad}:3:1: not valid YAML")


def test_template_error_at_start_fails_run_clearly(tmp_path):
    flow = tmp_path / "t.yaml"
    flow.write_text("version: '1.0'\nvars: {x: '{{ parameters.nope }}'}\ntasks:\n  - {name: a, action: core.noop}\n")
    result = cli("run", str(flow), "--json", cwd=tmp_path)
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["status"] == "failed"
    assert summary["error"].startswith("vars.x: undefined: parameters has no field 'nope'")
    assert summary["tasks"] == []


def test_graph_formats():
    mermaid = cli("graph", str(ROOT / "examples/hello.yaml"))
    assert mermaid.returncode == 0
    assert mermaid.stdout.startswith("flowchart TD\n") and "shout -->|succeeded()| summarise" in mermaid.stdout
    dot = cli("graph", str(ROOT / "examples/hello.yaml"), "--format", "dot")
    assert dot.returncode == 0 and dot.stdout.startswith('digraph "hello" {') and '"greet" -> "shout"' in dot.stdout


def test_distributed_start_status_and_list(worker, orchestrator_env):
    started = cli("start", "hello", "-p", "name=Bo", env=orchestrator_env)
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    from orchestrator import RunHandle

    RunHandle(run_id).wait(30)
    status = cli("status", run_id, "--json", env=orchestrator_env)
    summary = json.loads(status.stdout)
    assert summary["status"] == "succeeded" and summary["output"]["summary"] == "HELLO, BO! / hello, bo!"
    listing = cli("list", "--status", "succeeded", env=orchestrator_env)
    assert run_id[:8] in listing.stdout


def test_distributed_run_waits_for_workers(worker, orchestrator_env):
    result = cli("run", "hello", "-p", "name=Cy", "--json", env=orchestrator_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["output"]["summary"] == "HELLO, CY! / hello, cy!"


def test_db_upgrade_creates_schema(pg_schema):
    url, schema = pg_schema
    result = cli("db", "upgrade", env={"ORCHESTRATOR_DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    assert "database schema is up to date" in result.stdout


def test_unreachable_database_is_a_clear_error(tmp_path):
    result = cli("run", str(ROOT / "examples/hello.yaml"), "-p", "name=x",
                 env={"ORCHESTRATOR_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/none"}, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot use the database:")
    assert "Traceback" not in result.stderr


def test_embedded_engine_ends_an_attempt_on_time(embedded_dir):
    """The embedded thread pool has no time limits: the engine's deadline ends the attempt."""
    import time

    flow = embedded_dir / "slow.yaml"
    flow.write_text(textwrap.dedent("""
        version: "1.0"
        tasks:
          - name: slow
            action: core.sleep
            input: {seconds: 20}
            timeout: 1
            next: [{when: "{{ timed_out() }}", do: after}]
          - {name: after, action: core.echo, input: {message: recovered}}
        output_map: {after: "{{ task.after.result }}"}
    """))
    started = time.monotonic()
    result = cli("run", str(flow), "--json", cwd=embedded_dir)
    assert time.monotonic() - started < 10
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [(t["name"], t["status"]) for t in summary["tasks"]] == [("slow", "timed_out"), ("after", "succeeded")]
    assert summary["tasks"][0]["error"] == "timed out after 1 s (no report from the worker)"
    assert summary["output"] == {"after": "recovered"}


ASK = textwrap.dedent("""
    version: "1.0"
    tasks:
      - {name: approve, action: core.ask, input: {prompt: "ok?", schema: {type: object}}}
""")


def test_operations_in_the_wrong_state_exit_2_with_one_line(orchestrator_env):
    """A run waiting on core.ask needs no worker; a finished run refuses every operation."""
    from orchestrator import submit

    run = submit(ASK)
    resumed = cli("resume", run.id, env=orchestrator_env)
    assert resumed.returncode == 2 and resumed.stderr.strip() == (
        f"error: cannot resume run {run.id}: it is running (only a paused run can be resumed)")
    assert cli("respond", run.id, "approve", "--data", "{}", env=orchestrator_env).returncode == 0
    assert run.status() == "succeeded"
    for op in ("pause", "resume", "cancel", "rerun"):
        result = cli(op, run.id, env=orchestrator_env)
        assert result.returncode == 2, (op, result)
        assert len(result.stderr.strip().splitlines()) == 1 and "succeeded" in result.stderr, result.stderr
    answered = cli("respond", run.id, "approve", "--data", "{}", env=orchestrator_env)
    assert answered.returncode == 2 and "it is succeeded" in answered.stderr


def test_rerun_from_the_same_task_twice_runs_it_once(worker, orchestrator_env, test_redis):
    """`--from X --from X` (and the API's `from: [X, X]`) start X once: tests.count counts runs."""
    import uuid

    from fastapi.testclient import TestClient

    from orchestrator import RunHandle, submit
    from orchestrator.http import create_app

    key = uuid.uuid4().hex
    run = submit(textwrap.dedent(f"""
        version: "1.0"
        tasks:
          - {{name: counted, action: tests.count, input: {{key: "{key}"}}, next: [{{do: boom}}]}}
          - {{name: boom, action: tests.flaky, input: {{key: "{key}", failures: 2}}}}
    """))
    assert run.wait(30)["status"] == "failed"
    assert int(test_redis.get(f"count:{key}")) == 1
    result = cli("rerun", run.id, "--from", "counted", "--from", "counted", env=orchestrator_env)
    assert result.returncode == 0, result.stderr
    summary = RunHandle(run.id).wait(30)
    assert summary["status"] == "failed" and int(test_redis.get(f"count:{key}")) == 2, summary
    with TestClient(create_app(token="")) as client:
        response = client.post(f"/api/runs/{run.id}/rerun", json={"from": ["counted", "counted"]})
    assert response.status_code == 200, response.text
    summary = RunHandle(run.id).wait(30)
    assert summary["status"] == "succeeded" and int(test_redis.get(f"count:{key}")) == 3, summary
    assert [t["name"] for t in summary["tasks"]].count("counted") == 3


def test_parameters_over_the_input_limit_exit_2(embedded_dir):
    flow = embedded_dir / "ask.yaml"
    flow.write_text(ASK)
    env = {"ORCHESTRATOR_MAX_INPUT_BYTES": "100", "ORCHESTRATOR_HOME": str(embedded_dir / "home")}
    result = cli("run", str(flow), "-p", "blob=" + "x" * 100, env=env, cwd=embedded_dir)
    assert result.returncode == 2, result
    assert result.stderr.strip() == "error: params: 112 bytes of JSON, over the limit of 100 (ORCHESTRATOR_MAX_INPUT_BYTES)"
    nul = cli("run", str(flow), "--params-json", '{"a": "x\\u0000y"}', env=env, cwd=embedded_dir)
    assert nul.returncode == 2 and "a NUL character at params.a" in nul.stderr, nul
    listed = cli("list", env=env, cwd=embedded_dir)
    assert listed.returncode == 0 and "ask" not in listed.stdout  # nothing was stored


def test_embedded_mode_keeps_numbers_exact(embedded_dir):
    """SQLite's JSON columns have NUMERIC affinity: a bare number stored as text came back
    converted (2**63 as a float, 2.0 as the integer 2)."""
    flow = embedded_dir / "big.yaml"
    flow.write_text(textwrap.dedent("""
        version: "1.0"
        tasks:
          - {name: big, action: core.echo, input: {message: "{{ 2**63 }}"}}
          - {name: huge, action: core.echo, input: {message: "{{ 10**30 + 1 }}"}}
          - {name: two, action: core.echo, input: {message: "{{ 2.0 }}"}}
          - {name: tiny, action: core.echo, input: {message: "{{ -(2**63) - 1 }}"}}
        output_map: {big: "{{ task.big.result }}"}
    """))
    result = cli("run", str(flow), "--json", cwd=embedded_dir)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    results = {t["name"]: t["result"] for t in summary["tasks"]}
    assert results == {"big": 2**63, "huge": 10**30 + 1, "two": 2.0, "tiny": -(2**63) - 1}, results
    assert isinstance(results["two"], float) and summary["output"] == {"big": 2**63}
    status = cli("status", summary["id"], "--json", cwd=embedded_dir)
    assert json.loads(status.stdout)["tasks"] == summary["tasks"]
