"""The built-in core.* actions, called in-process against real processes and a real HTTP server."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from workers.actions.core import ActionFailed, echo, fail, http, local, noop, shell, sleep
from workers.app import app


# --- registration, noop, echo, fail, sleep -------------------------------------------------------

def test_every_core_action_is_registered_under_its_name():
    for name in ("core.noop", "core.echo", "core.fail", "core.sleep", "core.shell", "core.local", "core.http",
                 "core.ask"):
        assert name in app.tasks, name
    assert app.tasks["core.echo"](message="via registry") == "via registry"


def test_noop_ignores_input_and_returns_none():
    assert noop() is None
    assert app.tasks["core.noop"](anything=1, other=[2]) is None


def test_echo_returns_the_message_unchanged():
    message = {"a": [1, 2.5, None, True], "b": "text"}
    assert echo(message=message) == message
    assert echo(message="x", ignored="extra") == "x"
    assert echo() is None


def test_fail_raises_action_failed_with_the_message():
    with pytest.raises(ActionFailed) as info:
        fail(message="deliberate boom")
    assert str(info.value) == "deliberate boom"
    with pytest.raises(ActionFailed) as info:
        app.tasks["core.fail"]()
    assert str(info.value) == "failed by core.fail"


def test_sleep_really_sleeps():
    started = time.monotonic()
    assert sleep(seconds=0.3) is None
    assert 0.3 <= time.monotonic() - started < 1.5


@pytest.mark.parametrize("seconds", [-1, "1", None, True])
def test_sleep_rejects_bad_seconds(seconds):
    with pytest.raises(ActionFailed, match="seconds"):
        sleep(seconds=seconds)


# --- core.shell ------------------------------------------------------------------------------------

def test_shell_string_command_runs_through_sh():
    result = shell(cmd="echo hello; echo warning >&2")
    assert result == {"stdout": "hello\n", "stderr": "warning\n", "return_code": 0}
    json.dumps(result)


def test_shell_argv_passes_arguments_literally():
    hostile = "; echo pwned"
    result = shell(cmd=["printf", "%s", hostile])
    assert result["stdout"] == hostile  # one literal argument, no second command ran
    # The same text spliced into a string command is executed: the reason to prefer argv.
    assert shell(cmd=f"printf %s {hostile}")["stdout"] == "pwned\n"


def test_shell_env_is_merged_over_the_worker_environment(monkeypatch):
    monkeypatch.setenv("CORE_ACTIONS_OUTER", "from-worker")
    monkeypatch.setenv("CORE_ACTIONS_OVERRIDDEN", "old")
    result = shell(cmd='echo "$CORE_ACTIONS_OUTER $CORE_ACTIONS_OVERRIDDEN $CORE_ACTIONS_NUM"',
                   env={"CORE_ACTIONS_OVERRIDDEN": "new", "CORE_ACTIONS_NUM": 5})
    assert result["stdout"] == "from-worker new 5\n"


def test_shell_runs_in_cwd(tmp_path: Path):
    (tmp_path / "marker.txt").write_text("found me")
    assert shell(cmd=["cat", "marker.txt"], cwd=str(tmp_path))["stdout"] == "found me"
    assert shell(cmd=["pwd", "-P"], cwd=str(tmp_path))["stdout"].strip() == str(tmp_path.resolve())


def test_shell_nonzero_exit_fails_with_stderr():
    with pytest.raises(ActionFailed) as info:
        shell(cmd="echo some output; echo disk is full >&2; exit 3")
    assert str(info.value) == "command exited with 3: disk is full"


def test_shell_nonzero_exit_quotes_stdout_when_stderr_is_empty():
    with pytest.raises(ActionFailed) as info:
        shell(cmd=["sh", "-c", "echo only on stdout; exit 2"])
    assert str(info.value) == "command exited with 2: only on stdout"


def test_shell_failure_message_keeps_only_the_tail_of_stderr():
    with pytest.raises(ActionFailed) as info:
        shell(cmd="head -c 5000 /dev/zero | tr '\\0' x >&2; echo THE-END >&2; exit 1")
    message = str(info.value)
    assert message.startswith("command exited with 1: ")
    assert message.endswith("THE-END")
    assert len(message) < 600


def test_shell_output_is_decoded_with_replacement():
    result = shell(cmd=["printf", "\\377ok"])
    assert result["stdout"] == "\ufffdok"


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _wait_dead(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_shell_timeout_kills_the_whole_process_group(tmp_path: Path):
    pidfile = tmp_path / "grandchild.pid"
    started = time.monotonic()
    with pytest.raises(ActionFailed) as info:
        # The background sleep is a grandchild holding the output pipes: only a group kill frees them.
        shell(cmd=f"sleep 30 & echo $! > {pidfile}; sleep 5", timeout=0.5)
    assert time.monotonic() - started < 2
    assert str(info.value) == "command timed out after 0.5 s"
    assert _wait_dead(int(pidfile.read_text()))


def test_shell_soft_time_limit_propagates_and_kills_the_child(tmp_path: Path):
    """Celery's soft limit is an exception raised from a signal handler; simulate it the same way."""
    pidfile = tmp_path / "child.pid"

    def soft_limit(signum, frame):
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, soft_limit)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(SoftTimeLimitExceeded):
            shell(cmd=f"echo $$ > {pidfile}; exec sleep 30")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert _wait_dead(int(pidfile.read_text()))


@pytest.mark.parametrize("kwargs, mentions", [
    ({}, "'cmd'"),
    ({"cmd": 5}, "'cmd'"),
    ({"cmd": "   "}, "'cmd'"),
    ({"cmd": []}, "'cmd'"),
    ({"cmd": ["echo", 5]}, "'cmd'"),
    ({"cmd": "true", "env": ["A=1"]}, "'env'"),
    ({"cmd": "true", "cwd": 7}, "'cwd'"),
    ({"cmd": "true", "timeout": -1}, "'timeout'"),
    ({"cmd": "true", "timeout": "5"}, "'timeout'"),
])
def test_shell_rejects_bad_input(kwargs, mentions):
    with pytest.raises(ActionFailed, match=mentions):
        shell(**kwargs)


def test_shell_missing_program_or_cwd_fails_clearly(tmp_path: Path):
    with pytest.raises(ActionFailed, match="cannot start the command.*no-such-program-xyz"):
        shell(cmd=["no-such-program-xyz"])
    with pytest.raises(ActionFailed, match="cannot start the command"):
        shell(cmd="true", cwd=str(tmp_path / "missing"))


# --- core.local (StackStorm's shell action) -------------------------------------------------------

def test_local_returns_stackstorms_result_shape():
    result = local(cmd="echo hello; echo oops >&2")
    assert result == {"stdout": "hello", "stderr": "oops", "return_code": 0, "succeeded": True, "failed": False}
    assert app.tasks["core.local"](cmd="printf 'a\\nb\\n\\n'")["stdout"] == "a\nb\n"  # only the last line break goes


def test_local_reads_json_output_as_json_like_stackstorm():
    assert local(cmd="echo 5")["stdout"] == 5
    assert local(cmd="""echo '{"a": [1, true]}'""")["stdout"] == {"a": [1, True]}
    assert local(cmd="echo '5 apples'")["stdout"] == "5 apples"


def test_local_env_cwd_and_the_shell(tmp_path: Path):
    result = local(cmd='echo "$GREETING from $(pwd)" | tr a-z A-Z', env={"GREETING": "hi"}, cwd=str(tmp_path))
    assert result["stdout"] == f"HI FROM {str(tmp_path).upper()}"


def test_local_nonzero_exit_fails_and_keeps_the_result():
    with pytest.raises(ActionFailed) as info:
        local(cmd="echo partial; echo broken >&2; exit 3")
    assert str(info.value) == "command exited with 3: broken"
    assert info.value.result == {"stdout": "partial", "stderr": "broken", "return_code": 3,
                                 "succeeded": False, "failed": True}


def test_local_timeout_kills_the_group_and_reports_what_it_wrote(tmp_path: Path):
    pidfile = tmp_path / "grandchild.pid"
    started = time.monotonic()
    with pytest.raises(ActionFailed) as info:
        local(cmd=f"echo started; sleep 30 & echo $! > {pidfile}; sleep 5", timeout=0.5)
    assert time.monotonic() - started < 2
    assert str(info.value) == "command timed out after 0.5 s"
    assert info.value.result["return_code"] == -9 and info.value.result["stdout"] == "started"
    assert _wait_dead(int(pidfile.read_text()))


@pytest.mark.parametrize("kwargs, mentions", [
    ({}, "'cmd'"),
    ({"cmd": ["echo", "argv"]}, "'cmd' must be a non-empty string"),
    ({"cmd": " "}, "'cmd'"),
    ({"cmd": "true", "env": {1: "x"}}, "'env'"),
    ({"cmd": "true", "cwd": ["/"]}, "'cwd'"),
    ({"cmd": "true", "timeout": 0}, "'timeout'"),
])
def test_local_rejects_bad_input(kwargs, mentions):
    with pytest.raises(ActionFailed, match=f"core.local: {mentions}"):
        local(**kwargs)


# --- core.http -------------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, status: int, body: str, content_type: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Served-By", "test-server")
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        received = self.rfile.read(length).decode("utf-8")
        if self.path == "/json":
            self._send(200, json.dumps({"hello": "world"}), "application/json")
        elif self.path == "/text":
            self._send(200, "plain text", "text/plain; charset=utf-8")
        elif self.path == "/missing":
            self._send(404, json.dumps({"error": "no such thing"}), "application/json")
        elif self.path == "/boom":
            self._send(500, "internal kaboom", "text/plain")
        elif self.path == "/echo":
            self._send(200, json.dumps({"method": self.command, "body": received,
                                        "headers": {k.lower(): v for k, v in self.headers.items()}}),
                       "application/json")
        elif self.path == "/slow":
            time.sleep(1.5)
            try:
                self._send(200, "too late", "text/plain")
            except OSError:  # the client gave up already
                pass
        else:
            self._send(400, "unknown path", "text/plain")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_get_json(server):
    result = http(url=f"{server}/json")
    assert result["status_code"] == 200
    assert result["json"] == {"hello": "world"}
    assert "body" not in result
    assert result["headers"]["X-Served-By"] == "test-server"
    json.dumps(result)


def test_http_plain_text_comes_back_as_body(server):
    result = app.tasks["core.http"](url=f"{server}/text")
    assert result["status_code"] == 200
    assert result["body"] == "plain text"
    assert "json" not in result


def test_http_4xx_is_returned_not_raised(server):
    result = http(url=f"{server}/missing")
    assert result["status_code"] == 404
    assert result["json"] == {"error": "no such thing"}


def test_http_5xx_raises_with_url_and_status(server):
    with pytest.raises(ActionFailed) as info:
        http(url=f"{server}/boom")
    assert str(info.value) == f"GET {server}/boom returned 500: internal kaboom"


def test_http_default_method_is_get(server):
    assert http(url=f"{server}/echo")["json"]["method"] == "GET"


def test_http_json_body_is_sent_with_content_type_and_headers(server):
    result = http(url=f"{server}/echo", method="post", json={"n": [1, 2]}, headers={"X-Token": "abc"})
    seen = result["json"]
    assert seen["method"] == "POST"
    assert json.loads(seen["body"]) == {"n": [1, 2]}
    assert seen["headers"]["content-type"] == "application/json"
    assert seen["headers"]["x-token"] == "abc"


def test_http_text_body_is_sent_as_is(server):
    seen = http(url=f"{server}/echo", method="PUT", body="raw <data>",
                headers={"Content-Type": "text/plain"})["json"]
    assert seen["method"] == "PUT"
    assert seen["body"] == "raw <data>"
    assert seen["headers"]["content-type"] == "text/plain"


def test_http_connection_refused_names_the_url():
    with socket.socket() as probe:  # a port that was free a moment ago and now has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/anything"
    with pytest.raises(ActionFailed) as info:
        http(url=url, timeout=5)
    assert str(info.value).startswith(f"GET {url} failed: ")
    assert "refused" in str(info.value).lower()


def test_http_timeout_fails_fast_and_names_the_url(server):
    started = time.monotonic()
    with pytest.raises(ActionFailed) as info:
        http(url=f"{server}/slow", timeout=0.3)
    assert time.monotonic() - started < 1.2
    assert str(info.value) == f"GET {server}/slow timed out after 0.3 s"


@pytest.mark.parametrize("kwargs, mentions", [
    ({}, "'url'"),
    ({"url": "file:///etc/passwd"}, "'url'"),
    ({"url": "http://127.0.0.1/", "json": {}, "body": "x"}, "either 'json' or 'body'"),
    ({"url": "http://127.0.0.1/", "body": {"not": "text"}}, "'body'"),
    ({"url": "http://127.0.0.1/", "headers": ["X: 1"]}, "'headers'"),
    ({"url": "http://127.0.0.1/", "timeout": 0}, "'timeout'"),
])
def test_http_rejects_bad_input(kwargs, mentions):
    with pytest.raises(ActionFailed, match=mentions):
        http(**kwargs)
