"""The standalone Celery app (`orchestrator worker`, the embedded runner), for deployments
without a Celery app of their own; one that has one calls `orchestrator.install(app)` instead.

Configured from ORCHESTRATOR_* settings: its broker and result backend, acks late and requeue on
worker loss (a killed worker loses nothing), prefetch of one, JSON messages, task events on for
Flower, the supervisor on its own queue so it is never stuck behind long actions. The tasks, the
housekeeping and the routes are the same `install` a team's own app gets (orchestrator/installation.py).
"""

from __future__ import annotations

from celery import Celery

from orchestrator.config import Settings, settings
from orchestrator.installation import BUILTIN_MODULES, _install, own_routes


def configure(app: Celery, conf: Settings) -> None:
    transport_options: dict = {"visibility_timeout": conf.visibility_timeout, **conf.broker_options}
    if conf.embedded:
        transport_options = {"polling_interval": 0.01}  # the memory transport polls; 1 s default is slow
    app.conf.update(
        broker_url=conf.effective_broker_url,
        result_backend=conf.effective_result_backend,
        broker_transport_options=transport_options,
        result_backend_transport_options=dict(transport_options),
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=7 * 24 * 3600,
        result_extended=False,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=conf.task_events,
        task_send_sent_event=False,  # a late task-sent event would overwrite the readable name in Flower
        worker_hijack_root_logger=False,
        task_default_queue=conf.default_queue,
        task_routes=(own_routes(conf.supervisor_queue),),
        imports=tuple(conf.actions),
        timezone="UTC",
        enable_utc=True,
    )
    if conf.broker_url and conf.broker_url.startswith(("amqp", "pyamqp")):
        # RabbitMQ gives a dead connection's unacknowledged messages back at once; a host that
        # vanishes without closing its TCP connections is noticed after ~2 missed heartbeats.
        app.conf.broker_heartbeat = 20


app = Celery("orchestrator", include=list(BUILTIN_MODULES), set_as_current=True)
configure(app, settings())
_install(app, standalone=True)
# Worker threads that resolve `current_app` (callbacks, chords) must find this app, not Celery's
# default one (which would publish to amqp://localhost).
app.set_default()
