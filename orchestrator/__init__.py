"""Celery Orchestrator: YAML workflows on Celery, durable in PostgreSQL.

    from orchestrator import install, submit, start_workflow
    install(app)                             # in proj/celery.py: your Celery app serves workflows
    submit("deploy", {"app": "shop"}).wait(60)
    start_workflow.delay("deploy", {"app": "shop"})   # from any Celery producer

Exports load lazily, so importing the pure engine (orchestrator.engine) never imports Celery.
"""

from __future__ import annotations

from typing import Any

_SCHEDULING = ("add_schedule", "list_schedules", "get_schedule", "remove_schedule", "pause_schedule",
               "resume_schedule")
__all__ = ["install", "submit", "start_workflow", "RunHandle", "register", "resolve", "prune", "OperationRefused", "InputInvalid",
           *_SCHEDULING]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "install":
        from .installation import install

        return install
    if name == "start_workflow":
        from .tasks import start_workflow

        return start_workflow
    if name in ("submit", "RunHandle", "register", "resolve", "OperationRefused", "InputInvalid"):
        from . import api

        return getattr(api, name)
    if name in _SCHEDULING:
        from . import scheduling

        return getattr(scheduling, name)
    if name == "prune":
        from .pruning import prune

        return prune
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
