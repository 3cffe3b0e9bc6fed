"""The project's tasks: one on its app, one shared. Both are workflow actions by their names."""

from __future__ import annotations

from celery import shared_task

from .celery import app


@app.task
def light(word: str = "light") -> str:
    """Named by Celery after its module: tests.deploy.sample.tasks.light."""
    return word.upper()


@shared_task(name="sample.crunch")
def crunch(n: int = 1) -> dict:
    """Routed to the heavy queue by the project's task_routes."""
    return {"sum": sum(range(n + 1))}
