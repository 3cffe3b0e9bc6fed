"""The project's Celery app: its own broker, default queue and routes, and one line for the
orchestrator. Everything comes from SAMPLE_* variables so that each test has its own queues."""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

import orchestrator

app = Celery("sample")
app.conf.update(
    broker_url=os.environ["SAMPLE_BROKER_URL"],
    task_default_queue=os.environ["SAMPLE_QUEUE"],
    # The project routes its heavy work to the workers that serve the heavy queue.
    task_routes={"sample.crunch": {"queue": os.environ["SAMPLE_HEAVY_QUEUE"]}},
    worker_prefetch_multiplier=2,  # the project's own choice: install() keeps it
    # The orchestrator's settings may live in the app's conf (ORCHESTRATOR_* variables win).
    orchestrator_database_url=os.environ["SAMPLE_DATABASE_URL"],
    orchestrator_workflows=[str(Path(__file__).resolve().parents[3] / "examples")],
)
app.autodiscover_tasks(["tests.deploy.sample"])

orchestrator.install(app)
