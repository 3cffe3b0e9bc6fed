"""The `orchestrator` command line (Typer + Rich). Bad input is one clear line and exit code 2;
no traceback reaches the user unless ORCHESTRATOR_DEBUG is set."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.live import Live
from rich.table import Table

from .cli_common import Usage, err, out, parse_params
from .cli_schedule import schedule_app
from .core.errors import InputInvalid, ParametersInvalid, WorkflowInvalid
from .registry import WorkflowNotFound

app = typer.Typer(help="Run YAML workflows on Celery.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(schedule_app, name="schedule")


@app.callback()
def _options(celery_app: Optional[str] = typer.Option(
        None, "--app", "-A", envvar="ORCHESTRATOR_APP",
        help="Your Celery app, module:attribute (e.g. proj.celery:app), which calls orchestrator.install(app); "
             "default: ORCHESTRATOR_APP, else the standalone app.")) -> None:
    if celery_app:
        os.environ["ORCHESTRATOR_APP"] = celery_app
        sys.path.insert(0, os.getcwd())  # as `celery -A` finds a project in the current directory
        from .runtime import celery_app as load

        try:
            load()  # imports and installs it: its conf is a source of settings too
        except ValueError as exc:
            raise Usage(str(exc)) from None

STATUS_STYLE = {"succeeded": "green", "failed": "red", "timed_out": "red", "running": "yellow",
                "started": "yellow", "skipped": "dim", "canceled": "magenta", "canceling": "magenta",
                "pausing": "blue", "paused": "blue", "requested": "cyan"}


@app.command()
def validate(files: list[Path] = typer.Argument(..., help="Workflow files to check."),
             check_actions: bool = typer.Option(True, "--check-actions/--no-check-actions",
                                                help="Report actions that are not registered Celery tasks.")) -> None:
    """Check workflow files: exit 0 when all are valid, else 2 with one line per problem."""
    from .registry import load_file
    from .runtime import action_exists

    bad = 0
    for path in files:
        try:
            load_file(path, action_exists if check_actions else None)
        except WorkflowInvalid as exc:
            bad += 1
            for line in exc.lines():
                err.print(line, markup=False, highlight=False)
        else:
            out.print(f"{path}: ok", markup=False, highlight=False)
    raise typer.Exit(2 if bad else 0)


@app.command()
def run(workflow: str = typer.Argument(..., help="A workflow file, a registered name, or YAML text."),
        param: list[str] = typer.Option([], "-p", "--param", help="key=value (value parsed as JSON when valid)."),
        params_json: Optional[str] = typer.Option(None, "--params-json", help="All parameters as a JSON object."),
        as_json: bool = typer.Option(False, "--json", help="Print only the run summary as JSON."),
        timeout: Optional[float] = typer.Option(None, "--timeout", help="Give up waiting after S seconds.")) -> None:
    """Start a workflow, wait for it and show its progress; exit 0 if it succeeded, else 1."""
    from .api import submit
    from .runtime import stop_embedded_worker

    params = parse_params(param, params_json)
    handle = submit(workflow, params)
    try:
        summary = _follow(handle, timeout, live=not as_json and out.is_terminal)
    finally:
        stop_embedded_worker()
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        _print_summary(summary)
    raise typer.Exit(0 if summary["status"] == "succeeded" else 1)


@app.command()
def start(workflow: str = typer.Argument(..., help="A workflow file, a registered name, or YAML text."),
          param: list[str] = typer.Option([], "-p", "--param"),
          params_json: Optional[str] = typer.Option(None, "--params-json")) -> None:
    """Start a workflow and print its run id (workers run it)."""
    from .api import start_run
    from .config import settings

    if settings().embedded:
        raise Usage("`start` needs a broker (ORCHESTRATOR_BROKER_URL): on the embedded default nothing "
                    "would run the workflow after this command exits; use `orchestrator run`")
    print(start_run(workflow, parse_params(param, params_json)))


@app.command()
def status(run_id: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """Show a run's summary."""
    from .api import RunHandle

    try:
        summary = RunHandle(run_id).summary()
    except LookupError as exc:
        raise Usage(str(exc)) from None
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        _print_summary(summary)


def _operate(run_id: str, operation: str, *args: Any) -> None:
    from .api import RunHandle

    try:
        getattr(RunHandle(run_id), operation)(*args)
    except (LookupError, ValueError) as exc:
        raise Usage(str(exc)) from None
    status = RunHandle(run_id).status()
    out.print(f"{run_id}: {status}", markup=False, highlight=False)


@app.command()
def pause(run_id: str = typer.Argument(...)) -> None:
    """Pause a run: running tasks finish, nothing new starts (pausing, then paused)."""
    _operate(run_id, "pause")


@app.command()
def resume(run_id: str = typer.Argument(...)) -> None:
    """Resume a paused run."""
    _operate(run_id, "resume")


@app.command()
def cancel(run_id: str = typer.Argument(...)) -> None:
    """Cancel a run: running actions are interrupted (canceling), then the run ends canceled."""
    _operate(run_id, "cancel")


@app.command()
def rerun(run_id: str = typer.Argument(...),
          from_task: list[str] = typer.Option([], "--from", help="Rerun from these tasks (default: the failed ones).")) -> None:
    """Rerun a failed run from its failed tasks (or --from TASK), keeping what succeeded."""
    _operate(run_id, "rerun", list(from_task) or None)


@app.command()
def respond(run_id: str = typer.Argument(...), task: str = typer.Argument(...),
            data: str = typer.Option(..., "--data", help="The response, as JSON.")) -> None:
    """Answer a core.ask task with JSON data matching its schema."""
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise Usage(f"--data: not valid JSON: {exc}") from None
    _operate(run_id, "respond", task, value)


@app.command()
def logs(run_id: str = typer.Argument(...),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing events until the run ends."),
         as_json: bool = typer.Option(False, "--json", help="One JSON object per line.")) -> None:
    """A run's lifecycle events: started, paused, each task's start and end, and how it ended."""
    from .api import RunHandle
    from .store.runs import TERMINAL

    handle, last = RunHandle(run_id), 0
    while True:
        try:
            events = handle.events(last)
        except LookupError as exc:
            raise Usage(str(exc)) from None
        for event in events:
            last = event["id"]
            if as_json:
                print(json.dumps(event, default=str), flush=True)
            else:
                out.print(_event_line(event), highlight=False, soft_wrap=True)
        if not follow or (not events and handle.status() in TERMINAL):
            return
        if not events:
            time.sleep(0.2)


def _event_line(event: dict[str, Any]) -> str:
    from rich.markup import escape

    scope, status = event["kind"].split(".", 1)
    what = "workflow" if scope == "workflow" else escape(event["task"] or "?")
    if scope == "task" and (event["attempt"] or 1) > 1 and status != "started":
        what += f" (attempt {event['attempt']})"
    line = f"[dim]{escape((event['at'] or '')[:23].replace('T', ' '))}[/]  {what:<24} {_styled(status)}"
    return line + (f"  {escape(event['message'])}" if event["message"] else "")


@app.command("list")
def list_runs(status_filter: Optional[str] = typer.Option(None, "--status", help="Only runs in this status."),
              limit: int = typer.Option(50, "--limit"),
              as_json: bool = typer.Option(False, "--json", help="A JSON array, as the HTTP API's /api/runs.")) -> None:
    """Recent runs, newest first."""
    from .runtime import supervisor

    sup = supervisor()
    with sup.db.reading() as conn:
        runs = sup.store.list_runs(conn, status_filter, limit)
    if as_json:
        print(json.dumps(runs, indent=2))
        return
    table = Table("id", "workflow", "status", "created", "error")
    for r in runs:
        table.add_row(r["id"], r["workflow"], _styled(r["status"]), r["created_at"] or "", (r["error"] or "")[:60])
    out.print(table)


@app.command()
def graph(file: Path = typer.Argument(...), fmt: str = typer.Option("mermaid", "--format", help="mermaid or dot")) -> None:
    """Print a workflow's task graph: tasks with their actions, joins, engine commands, and the
    transitions with their conditions (either format)."""
    from .engine.graphview import render
    from .registry import load_file

    if fmt not in ("mermaid", "dot"):
        raise Usage(f"--format must be mermaid or dot, not {fmt!r}")
    workflow = load_file(file)
    print(render(workflow.graph.view(workflow.name), fmt), end="")


@app.command()
def register(files: list[Path] = typer.Argument(...)) -> None:
    """Store workflow definitions by name, so `start_workflow.delay(name)` and `run NAME` find them."""
    from .api import register as register_one

    for path in files:
        out.print(f"registered {register_one(path)} from {path}", markup=False, highlight=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """A Celery worker with the supervisor and the actions; extra options go to `celery worker`."""
    from .config import settings
    from .runtime import celery_app

    conf = settings()
    if conf.embedded:
        raise Usage("`worker` needs ORCHESTRATOR_BROKER_URL (e.g. redis://127.0.0.1:6379/0)")
    args = list(ctx.args)
    if not any(a in ("-Q", "--queues") or a.startswith("--queues=") for a in args):
        args += ["-Q", f"{conf.default_queue},{conf.supervisor_queue}"]
    if any(a in ("-E", "--task-events", "--events") for a in args):
        # A worker sending task events sends the workflows' lifecycle events too (events.py).
        os.environ["ORCHESTRATOR_SEND_EVENTS"] = "1"
        settings.cache_clear()
    celery_app().worker_main(["worker", *args])


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def beat(ctx: typer.Context) -> None:
    """Celery beat firing the schedules (`orchestrator schedule`); extra options go to `celery beat`.
    Run one; a second by mistake fires nothing twice."""
    from .cli_schedule import beat as run_beat

    run_beat(list(ctx.args))


@app.command()
def prune(older_than: str = typer.Option(..., "--older-than", help="An age: 90s, 12h, 30d, 2w."),
          status_filter: list[str] = typer.Option([], "--status", help="Only finished runs in this status (repeatable)."),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Delete finished runs older than --older-than, with everything they own, in batches."""
    from .cli_schedule import prune as run_prune

    run_prune(older_than, status_filter, as_json)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def flower(ctx: typer.Context) -> None:
    """Flower on this deployment's broker (`celery -A workers.app flower`); options go to Flower.
    Workers started with -E send the task events it shows."""
    from .config import settings
    from .runtime import celery_app

    if settings().embedded:
        raise Usage("`flower` needs ORCHESTRATOR_BROKER_URL (e.g. redis://127.0.0.1:6379/0)")
    celery_app().start(["flower", *ctx.args])


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (alembic upgrade head)."""
    from .config import settings
    from .store import database

    url = settings().effective_database_url
    database(url).upgrade()
    out.print(f"database schema is up to date ({_redact(url)})", markup=False, highlight=False)


@app.command()
def rehearse(cases_file: Path = typer.Argument(..., help="A rehearsal file: JSON or YAML with `cases`."),
             as_json: bool = typer.Option(False, "--json", help="Print a machine-readable report."),
             level: str = typer.Option("strict", "--level", help="strict, names or outcome.")) -> None:
    """Rehearse workflows against scripted outcomes; exit 0 when every case passes at --level."""
    from .cases import CaseFileError
    from .cli_rehearse import rehearse_command

    try:
        code = rehearse_command(cases_file, as_json, level)
    except CaseFileError as exc:
        raise Usage(str(exc)) from None
    raise typer.Exit(code)


@app.command()
def serve(host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
          port: int = typer.Option(8080, "--port"),
          token: Optional[str] = typer.Option(None, "--token", help="Require `Authorization: Bearer TOKEN` "
                                              "(default: ORCHESTRATOR_API_TOKEN).")) -> None:
    """Serve the HTTP API (/api), the web view (/) and Prometheus metrics (/metrics)."""
    from .http.serve import serve as serve_http

    serve_http(host, port, token)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database>"


def _styled(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/]" if style else status


def _duration(task: dict[str, Any]) -> str:
    from datetime import datetime

    if not task.get("started_at") or not task.get("finished_at"):
        return ""
    seconds = (datetime.fromisoformat(task["finished_at"]) - datetime.fromisoformat(task["started_at"])).total_seconds()
    return f"{seconds:.2f}s"


def _table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"{summary['workflow']} {summary['id']}: {_styled(summary['status'])}", title_justify="left")
    for column in ("task", "status", "attempts", "items", "duration", "host", "result / error"):
        table.add_column(column)
    for task in summary["tasks"]:
        detail = task["error"] if task["error"] else json.dumps(task["result"], default=str)
        table.add_row(task["name"], _styled(task["status"]), str(task["attempts"]),
                      "" if task["items"] is None else str(task["items"]), _duration(task),
                      task.get("worker") or "", (detail or "")[:80])
    return table


def _follow(handle: Any, timeout: float | None, live: bool) -> dict[str, Any]:
    if not live:
        try:
            return handle.wait(timeout)
        except TimeoutError as exc:
            raise Usage(str(exc)) from None
    deadline = None if timeout is None else time.monotonic() + timeout
    with Live(_table(handle.summary()), console=out, refresh_per_second=10, transient=True) as view:
        while True:
            summary = handle.summary()
            view.update(_table(summary))
            if summary["status"] in ("succeeded", "failed", "canceled"):
                return summary
            if deadline is not None and time.monotonic() > deadline:
                raise Usage(f"run {handle.id} still {summary['status']} after {timeout} s")
            time.sleep(0.1)


def _print_summary(summary: dict[str, Any]) -> None:
    out.print(_table(summary))
    if summary.get("schedule"):
        out.print(f"schedule: {summary['schedule']['name']} (due {summary['schedule']['due_at']})", markup=False,
                  highlight=False)
    if summary["error"]:
        err.print(f"error: {summary['error']}", markup=False, highlight=False)
    if summary["output"] is not None:
        out.print("output: " + json.dumps(summary["output"], default=str), markup=False, highlight=False)


def main() -> None:
    """Entry point: maps expected errors to clean messages and exit codes."""
    from sqlalchemy.exc import OperationalError

    from . import guard

    guard.install()  # rehearse, validate, run and start evaluate expressions in this process
    try:
        code = app(standalone_mode=False)
    except WorkflowInvalid as exc:
        for line in exc.lines():
            err.print(line, markup=False, highlight=False)
        sys.exit(2)
    except (ParametersInvalid, InputInvalid, WorkflowNotFound, Usage) as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
    except OperationalError as exc:
        err.print(f"error: cannot use the database: {str(exc.orig).strip().splitlines()[0]}", markup=False,
                  highlight=False)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # the last guard: a readable line, the traceback only on request
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        if os.environ.get("ORCHESTRATOR_DEBUG"):
            raise
        err.print(f"error: {type(exc).__name__}: {exc}", markup=False, highlight=False)
        sys.exit(1)
    code = code if isinstance(code, int) else 0
    from .runtime import embedded_worker_used

    if embedded_worker_used():
        # Actions still running in the embedded pool (e.g. one the engine timed out) cannot be
        # interrupted, and Python would wait for them at exit. Every state change is committed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
