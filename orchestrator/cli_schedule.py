"""`orchestrator schedule ...`, `orchestrator beat` and `orchestrator prune` (registered by cli.py)."""

from __future__ import annotations

import json
from typing import Any, Optional

import typer
from rich.table import Table

from .cli_common import Usage, out, parse_params

schedule_app = typer.Typer(help="Start workflows on a schedule (fired by `orchestrator beat`).", no_args_is_help=True)


def _api():
    """The schedule API, with its errors turned into one clear line (exit 2)."""
    from . import scheduling

    return scheduling


def _usage(exc: Exception) -> Usage:
    return Usage(str(exc))


@schedule_app.command("add")
def add(name: str = typer.Argument(..., help="The schedule's name (letters, digits, _ . : -)."),
        workflow: str = typer.Argument(..., help="A workflow name (ORCHESTRATOR_WORKFLOWS or registered) or file."),
        every: Optional[float] = typer.Option(None, "--every", help="Fire every SECONDS."),
        cron: Optional[str] = typer.Option(None, "--cron", help='A cron expression: "m h dom mon dow".'),
        timezone: str = typer.Option("UTC", "--timezone", help="The cron's time zone (IANA name)."),
        missed: str = typer.Option("coalesce", "--missed",
                                   help="After downtime: coalesce (one run for the missed due times) or skip."),
        param: list[str] = typer.Option([], "-p", "--param", help="key=value (the value parsed as JSON if it is)."),
        params_json: Optional[str] = typer.Option(None, "--params-json"),
        as_json: bool = typer.Option(False, "--json")) -> None:
    """Add a schedule: each due time starts exactly one run of WORKFLOW."""
    from pathlib import Path


    api = _api()
    if Path(workflow).is_file():
        workflow = str(Path(workflow).resolve())  # workers read it from there
    try:
        added = api.add_schedule(name, workflow, every=every, cron=cron, params=parse_params(param, params_json),
                                 timezone=timezone, missed=missed)
    except (api.ScheduleInvalid, api.ScheduleExists) as exc:
        raise _usage(exc) from None
    if as_json:
        print(json.dumps(added, indent=2))
    else:
        out.print(f"schedule {added['name']}: {_when(added)}, next due {added['next_due_at']}", markup=False,
                  highlight=False)


@schedule_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="A JSON array of schedules.")) -> None:
    """The schedules, by name."""

    found = _api().list_schedules()
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("name", "workflow", "when", "state", "next due", "last fire")
    for s in found:
        last = s["last_fire"]
        table.add_row(s["name"], s["workflow"], _when(s), "paused" if s["paused"] else "active",
                      s["next_due_at"] or "", f"{last['due_at']} {last['run_id']}" if last else "")
    out.print(table)


@schedule_app.command("remove")
def remove(name: str = typer.Argument(...)) -> None:
    """Delete a schedule (the runs it started stay)."""
    _change(name, "remove_schedule", "removed")


@schedule_app.command("pause")
def pause(name: str = typer.Argument(...)) -> None:
    """Stop firing until resumed."""
    _change(name, "pause_schedule", "paused")


@schedule_app.command("resume")
def resume(name: str = typer.Argument(...)) -> None:
    """Fire again from the next due time (the paused time is not caught up)."""
    _change(name, "resume_schedule", "resumed")


def _change(name: str, operation: str, done: str) -> None:

    api = _api()
    try:
        getattr(api, operation)(name)
    except api.ScheduleNotFound as exc:
        raise _usage(exc) from None
    out.print(f"schedule {name} {done}", markup=False, highlight=False)


def _when(schedule: dict[str, Any]) -> str:
    if schedule["every"] is not None:
        return f"every {schedule['every']:g}s"
    zone = "" if schedule["timezone"] == "UTC" else f" ({schedule['timezone']})"
    return f"cron {schedule['cron']}{zone}"


def beat(args: list[str]) -> None:
    """Celery beat with the orchestrator's scheduler on the standalone app. On the embedded
    default (no broker) the runs start on a worker inside this process."""
    from .config import settings
    from .runtime import celery_app, ensure_embedded_worker

    conf = settings()
    if not any(a in ("-S", "--scheduler") or a.startswith("--scheduler=") for a in args):
        args = [*args, "--scheduler", "orchestrator.beat:Scheduler"]
    if not any(a in ("-s", "--schedule") or a.startswith("--schedule=") for a in args):
        conf.home.mkdir(parents=True, exist_ok=True)  # Celery's own entries' shelve file (not ours)
        args = [*args, "--schedule", str(conf.home / "celerybeat-schedule")]
    if conf.embedded:
        ensure_embedded_worker()
    celery_app().start(["beat", *args])


def prune(older_than: str, statuses: list[str], as_json: bool) -> None:
    from .pruning import prune as prune_runs
    from .retention import parse_duration

    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise Usage(f"--older-than: {exc}") from None
    try:
        report = prune_runs(age, statuses)
    except ValueError as exc:
        raise Usage(str(exc)) from None
    if as_json:
        print(json.dumps(report.as_dict()))
    else:
        out.print(f"pruned {report.runs} finished runs older than {older_than}", markup=False, highlight=False)
