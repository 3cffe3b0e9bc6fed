"""Celery Orchestrator: YAML workflows on Celery, durable in PostgreSQL.

    from orchestrator import submit, start_workflow
    submit("deploy", {"app": "shop"}).wait(60)
    start_workflow.delay("deploy", {"app": "shop"})   # from any Celery producer

Exports load lazily, so importing the pure engine (orchestrator.engine) never imports Celery.
"""

from __future__ import annotations

from typing import Any

__all__ = ["submit", "start_workflow", "RunHandle", "register", "resolve", "OperationRefused", "InputInvalid"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "start_workflow":
        from .tasks import start_workflow

        return start_workflow
    if name in ("submit", "RunHandle", "register", "resolve", "OperationRefused", "InputInvalid"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
