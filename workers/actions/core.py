"""Built-in actions: core.noop, core.echo, core.fail, core.sleep, core.shell, core.local (StackStorm's
shell action), core.http and core.ask.

Each action is an ordinary Celery task called with the workflow task's ``input`` map as keyword
arguments. It succeeds by returning a JSON-serialisable value and fails by raising; deliberate
failures raise :class:`ActionFailed` with a one-line message that becomes the step's error text.
Celery's ``SoftTimeLimitExceeded`` is never caught here, so the orchestrator can report a timeout.

Security: ``core.shell`` with a *string* ``cmd`` (and ``core.local``, whose ``cmd`` is always a
string) runs it through ``/bin/sh -c``. If a workflow interpolates parameters or results into that
string (``cmd: "grep {{ parameters.word }} f"``), anyone who controls those values can inject
shell syntax (``x; rm -rf ~``). Prefer ``core.shell``'s *argv* form, a list of strings
(``cmd: ["grep", "{{ parameters.word }}", "f"]``): it runs without a shell, so every element
reaches the program as one literal argument. Keep string commands for fixed text written by the
workflow author. ``core.http`` only accepts http(s) URLs, so a
templated URL cannot read local files through ``file://``.
"""

from __future__ import annotations

import json as jsonlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from http.client import HTTPException
from typing import Any

from celery import shared_task

OUTPUT_TAIL = 500  # characters of stderr/stdout quoted in a failure message


class ActionFailed(Exception):
    """A deliberate action failure; its message is reported verbatim as the step's error. A
    `result` (JSON) goes with it: Orquesta workflows read it as ``result()`` of the failed task."""

    def __init__(self, message: str, result: Any = None):
        super().__init__(message)
        self.result = result


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _seconds(value: Any) -> str:
    """Formats a duration for messages: 0.5 -> '0.5', 30 -> '30'."""
    return f"{value:g}"


@shared_task(name="core.noop")
def noop(**_ignored: Any) -> None:
    """Does nothing; any input is ignored."""
    return None


@shared_task(name="core.echo")
def echo(message: Any = None, **_ignored: Any) -> Any:
    """Returns ``message`` unchanged (any JSON value)."""
    return message


@shared_task(name="core.fail")
def fail(message: str | None = None) -> None:
    """Always fails, with ``message`` as the error."""
    raise ActionFailed(str(message) if message else "failed by core.fail")


@shared_task(name="core.sleep")
def sleep(seconds: Any = None) -> None:
    """Sleeps for ``seconds`` (a number >= 0)."""
    if not _is_number(seconds) or seconds < 0:
        raise ActionFailed(f"core.sleep: 'seconds' must be a number >= 0, got {seconds!r}")
    time.sleep(seconds)
    return None


def _kill_group(proc: subprocess.Popen) -> None:
    """Kills the child's whole process group (its own session), so grandchildren die too."""
    if proc.returncode is not None:  # already reaped: its pid may belong to someone else now
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= OUTPUT_TAIL else "..." + text[-OUTPUT_TAIL:]


def _run_command(action: str, argv: list[str], env: Any, cwd: Any, timeout: Any) -> tuple[int | None, str, str]:
    """Runs argv in its own process group: (exit code, stdout, stderr), the code None when the
    command was killed at `timeout` seconds. Bad arguments and a command that cannot start fail
    the action. Celery's soft time limit (or anything else) kills the group and propagates."""
    if env is not None and not (isinstance(env, dict) and all(isinstance(k, str) for k in env)):
        raise ActionFailed(f"{action}: 'env' must be a mapping of names to values, got {env!r}")
    if cwd is not None and not isinstance(cwd, str):
        raise ActionFailed(f"{action}: 'cwd' must be a string, got {cwd!r}")
    if timeout is not None and (not _is_number(timeout) or timeout <= 0):
        raise ActionFailed(f"{action}: 'timeout' must be a number > 0, got {timeout!r}")
    full_env = {**os.environ, **{key: str(value) for key, value in (env or {}).items()}}

    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=full_env, cwd=cwd,
                                start_new_session=True)  # own process group, killable as a whole
    except OSError as exc:  # program not found, bad cwd, not executable...
        raise ActionFailed(f"{action}: cannot start the command: {exc}") from None
    code: int | None
    try:
        out, err = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            out, err = proc.communicate(timeout=5)  # what it wrote; with the group dead the pipes close
        except subprocess.TimeoutExpired:  # a grandchild left the group and holds the pipes
            proc.wait()
            out, err = b"", b""
        code = None
    except BaseException:  # SoftTimeLimitExceeded (or anything else): never leave it running
        _kill_group(proc)
        proc.wait()
        raise
    return code, out.decode("utf-8", errors="replace"), err.decode("utf-8", errors="replace")


def _failure(code: int, stdout: str, stderr: str) -> str:
    detail = _tail(stderr) or _tail(stdout)
    return f"command exited with {code}" + (f": {detail}" if detail else "")


@shared_task(name="core.shell")
def shell(cmd: Any = None, env: Any = None, cwd: Any = None, timeout: Any = None) -> dict[str, Any]:
    """Runs a command; returns ``{"stdout", "stderr", "return_code"}``, fails on a non-zero exit.

    ``cmd`` is a string (run by ``/bin/sh -c``) or a list of strings (argv, no shell: the safe
    form for interpolated values). ``env`` is merged over the worker's environment, ``cwd`` sets
    the working directory and ``timeout`` (seconds) kills the command's process group.
    """
    if isinstance(cmd, str) and cmd.strip():
        argv = ["/bin/sh", "-c", cmd]
    elif isinstance(cmd, list) and cmd and all(isinstance(part, str) for part in cmd):
        argv = list(cmd)
    else:
        raise ActionFailed(f"core.shell: 'cmd' must be a non-empty string or a non-empty list of "
                           f"strings, got {cmd!r}")
    code, stdout, stderr = _run_command("core.shell", argv, env, cwd, timeout)
    if code is None:
        raise ActionFailed(f"command timed out after {_seconds(timeout)} s")
    if code != 0:
        raise ActionFailed(_failure(code, stdout, stderr))
    return {"stdout": stdout, "stderr": stderr, "return_code": code}


LOCAL_TIMEOUT = 60  # StackStorm's default for core.local
KILLED = -9         # StackStorm's return_code for a command killed at its timeout


def _stackstorm_text(text: str) -> Any:
    """As StackStorm's local runner reports a stream: without its last line break, and read as
    JSON when it is JSON (``echo 5`` gives 5, ``echo '{"a": 1}'`` a mapping)."""
    text = text[:-1] if text.endswith("\n") else text
    text = text[:-1] if text.endswith("\r") else text
    try:
        return jsonlib.loads(text)
    except ValueError:
        return text


@shared_task(name="core.local")
def local(cmd: Any = None, env: Any = None, cwd: Any = None, timeout: Any = None) -> dict[str, Any]:
    """StackStorm's ``core.local``: runs the ``cmd`` string with ``/bin/sh -c`` and returns
    ``{"stdout", "stderr", "return_code", "succeeded", "failed"}`` in StackStorm's shape (streams
    without their last line break, read as JSON when they are JSON). ``timeout`` defaults to 60
    seconds, as in StackStorm. A non-zero exit or a timeout fails the action; the failure still
    carries that result, so a workflow can read ``result().stderr`` when the task failed."""
    if not isinstance(cmd, str) or not cmd.strip():
        raise ActionFailed(f"core.local: 'cmd' must be a non-empty string, got {cmd!r}")
    timeout = LOCAL_TIMEOUT if timeout is None else timeout
    code, stdout, stderr = _run_command("core.local", ["/bin/sh", "-c", cmd], env, cwd, timeout)
    result = {"failed": code != 0, "succeeded": code == 0, "return_code": KILLED if code is None else code,
              "stdout": _stackstorm_text(stdout), "stderr": _stackstorm_text(stderr)}
    if code is None:
        raise ActionFailed(f"command timed out after {_seconds(timeout)} s", result=result)
    if code != 0:
        raise ActionFailed(_failure(code, stdout, stderr), result=result)
    return result


def _header_dict(message: Any) -> dict[str, str]:
    """Response headers as a plain dict; repeated headers are joined with ', '."""
    headers: dict[str, str] = {}
    for name, value in message.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError)


@shared_task(name="core.http")
def http(url: Any = None, method: Any = "GET", headers: Any = None, json: Any = None,
         body: Any = None, timeout: Any = 30) -> dict[str, Any]:
    """Makes an HTTP request; returns ``{"status_code", "headers", "json"|"body"}``.

    ``json`` is sent as a JSON body (with its content type), ``body`` as text. 4xx responses are
    returned; 5xx responses and transport errors (refused, DNS, timeout) raise ActionFailed.
    """
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise ActionFailed(f"core.http: 'url' must be an http:// or https:// URL, got {url!r}")
    if not isinstance(method, str) or not method.strip():
        raise ActionFailed(f"core.http: 'method' must be a string, got {method!r}")
    if headers is not None and not isinstance(headers, dict):
        raise ActionFailed(f"core.http: 'headers' must be a mapping, got {headers!r}")
    if json is not None and body is not None:
        raise ActionFailed("core.http: give either 'json' or 'body', not both")
    if body is not None and not isinstance(body, str):
        raise ActionFailed(f"core.http: 'body' must be a string, got {type(body).__name__}")
    if not _is_number(timeout) or timeout <= 0:
        raise ActionFailed(f"core.http: 'timeout' must be a number > 0, got {timeout!r}")
    method = method.strip().upper()
    request_headers = {str(name): str(value) for name, value in (headers or {}).items()}

    data = None
    if json is not None:
        data = jsonlib.dumps(json).encode("utf-8")
        if not any(name.lower() == "content-type" for name in request_headers):
            request_headers["Content-Type"] = "application/json"
    elif body is not None:
        data = body.encode("utf-8")

    request = urllib.request.Request(url, data=data, headers=request_headers, method=method)
    try:
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:  # 4xx/5xx: still a response, handled below
            response = exc
        with response:
            status = response.status
            response_headers = _header_dict(response.headers)
            charset = response.headers.get_content_charset() or "utf-8"
            content_type = response.headers.get_content_type()
            text = response.read().decode(charset, errors="replace")
    except (OSError, HTTPException) as exc:  # URLError, refused, reset, timeout...
        if _is_timeout(exc):
            raise ActionFailed(f"{method} {url} timed out after {_seconds(timeout)} s") from None
        reason = getattr(exc, "reason", None) or exc
        raise ActionFailed(f"{method} {url} failed: {reason}") from None

    if status >= 500:
        raise ActionFailed(f"{method} {url} returned {status}" + (f": {_tail(text)}" if text.strip() else ""))
    result: dict[str, Any] = {"status_code": status, "headers": response_headers}
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            result["json"] = jsonlib.loads(text)
            return result
        except ValueError:
            pass  # labelled JSON but is not: hand back the text instead
    result["body"] = text
    return result


@shared_task(name="core.ask")
def ask(schema: Any = None, prompt: Any = None) -> None:
    """An approval. The engine handles it without a worker: the task waits until someone answers
    (`orchestrator respond`, RunHandle.respond or HTTP) with data matching `schema`."""
    raise ActionFailed("core.ask is answered with `orchestrator respond`; it never runs on a worker")
