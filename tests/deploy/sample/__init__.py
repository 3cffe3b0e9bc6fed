"""A user's Celery project, as the README's "Add to an existing Celery deployment" describes it:
its own app (celery.py, which calls orchestrator.install(app)), its own tasks and task_routes.
Started with `celery -A tests.deploy.sample worker` and `celery -A tests.deploy.sample beat`."""

from .celery import app

__all__ = ("app",)
