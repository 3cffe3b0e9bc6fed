"""Process-wide wiring of the shell: settings -> database, canvas, supervisor; and the embedded
in-process worker used when no broker is configured."""

from __future__ import annotations

import logging
import os
import threading
from functools import lru_cache

from celery.worker import WorkController

from . import config, guard
from .apps import STANDALONE, find_app
from .canvas import Canvas
from .config import settings
from .engine.validate import Workflow
from .events import EventPublisher
from .registry import compile_workflow, find_in_folders, load_file
from .store import database
from .supervisor import Supervisor

log = logging.getLogger("orchestrator.runtime")


_app = None  # the app install(app) was last given (installation.py), if any


def use_app(app) -> None:
    """Make `app` this process's Celery app (install(app) calls this)."""
    global _app
    if app is not _app:
        _app = app
        supervisor.cache_clear()
        _imported_actions.cache_clear()


def celery_app():
    """This process's Celery app: the one ORCHESTRATOR_APP names (module:attribute), else the
    one install(app) was given, else the standalone app (apps.STANDALONE)."""
    reference = os.environ.get("ORCHESTRATOR_APP")
    if reference:
        return _named_app(reference)
    if _app is not None:
        return _app
    return _named_app(STANDALONE)


@lru_cache(maxsize=8)
def _named_app(reference: str):
    return find_app(reference)


config.use_app_loader(celery_app)


# True in a worker process (its main process or a pool process): it lives as long as the worker,
# so its supervisor may defer deleting carried-out outbox rows (supervisor.py).
worker_process = False


@lru_cache(maxsize=1)
def supervisor() -> Supervisor:
    app = celery_app()  # first: an installed app's conf is a source of settings (installation.py)
    conf = settings()
    guard.install(conf.expression_timeout, conf.expression_max_bytes)  # every evaluation here is bounded
    db = database(conf.effective_database_url)
    db.ensure_schema(migrate=db.is_sqlite)  # the embedded SQLite file migrates itself
    # An in-memory broker has nobody else to listen: no events to send there.
    events = EventPublisher(app, enabled=conf.send_events and not conf.embedded)
    canvas = Canvas(app, conf.supervisor_queue, single_queue=conf.embedded, lease=conf.lease)
    sup = Supervisor(db, canvas, conf, find_workflow, events)
    sup.long_lived = worker_process
    return sup


def find_workflow(name: str) -> Workflow | None:
    """A workflow by name: a file in ORCHESTRATOR_WORKFLOWS, else a definition registered in the
    database; None when there is none (the name is then an unknown action)."""
    path = find_in_folders(name, settings().workflows_path)
    if path is not None:
        return load_file(path)
    sup = supervisor()
    with sup.db.reading() as conn:
        row = sup.store.registered_definition(conn, name)
    return None if row is None else compile_workflow(row.text, row.source, row.name)


@lru_cache(maxsize=1)
def _imported_actions() -> bool:
    celery_app().loader.import_default_modules()  # built-ins plus ORCHESTRATOR_ACTIONS
    return True


def action_exists(name: str) -> bool:
    """True when a Celery task of that name is registered in this process (after importing
    the built-in actions and the modules in ORCHESTRATOR_ACTIONS), or a workflow has that name."""
    _imported_actions()
    if name in celery_app().tasks:
        return True
    if find_in_folders(name, settings().workflows_path) is not None:
        return True
    conf = settings()
    if conf.database_url is None and not (conf.home / "orchestrator.db").exists():
        return False  # no database to ask, and validation must not create one
    try:
        return find_workflow(name) is not None
    except Exception:  # the database cannot be reached (validate works offline): unknown
        return False


class _ReadyWorker(WorkController):
    def __init__(self, *args, **kwargs):
        self.ready = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer):
        self.ready.set()


class EmbeddedWorker:
    """A Celery worker in a thread of this process, on the in-memory broker: the same tasks,
    supervisor and store code paths as a distributed worker, with no servers."""

    def __init__(self, concurrency: int = 4):
        self.concurrency = concurrency
        self.worker: _ReadyWorker | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> "EmbeddedWorker":
        app = celery_app()
        _imported_actions()
        conf = settings()
        self.worker = _ReadyWorker(app=app, pool="threads", concurrency=self.concurrency,
                                   hostname=f"embedded-{threading.get_ident()}@localhost",
                                   queues=[conf.default_queue, conf.supervisor_queue],
                                   without_heartbeat=True, without_mingle=True, without_gossip=True,
                                   loglevel="WARNING")
        self.thread = threading.Thread(target=self.worker.start, name="orchestrator-embedded-worker", daemon=True)
        self.thread.start()
        if not self.worker.ready.wait(30):
            raise RuntimeError("the embedded worker did not start within 30 s")
        return self

    def stop(self, timeout: float = 0.5) -> None:
        """Stop consuming, waiting at most `timeout` s: the memory transport's loop wakes only every
        2 s and running actions cannot be interrupted, while every state change is already
        committed, so waiting longer buys nothing."""
        if self.thread is None or self.worker is None:
            return
        # WorkController.stop waits for the pool's running actions; do that off this thread.
        stopper = threading.Thread(target=self.worker.stop, kwargs={"in_sighandler": False, "exitcode": 0},
                                   name="orchestrator-embedded-stop", daemon=True)
        stopper.start()
        stopper.join(timeout)
        self.thread = None


_embedded: EmbeddedWorker | None = None
_embedded_lock = threading.Lock()
_embedded_started = False


def embedded_worker_used() -> bool:
    return _embedded_started


def ensure_embedded_worker() -> EmbeddedWorker | None:
    """Start the in-process worker once, when running on the embedded default."""
    global _embedded, _embedded_started
    if getattr(celery_app(), "_orchestrator_installed", None) == "app":
        return None  # a team's own app has its own workers (and broker): never one in here
    if not settings().embedded:
        return None
    with _embedded_lock:
        if _embedded is None:
            _embedded = EmbeddedWorker().start()
            _embedded_started = True
        return _embedded


def stop_embedded_worker() -> None:
    global _embedded
    with _embedded_lock:
        if _embedded is not None:
            _embedded.stop()
            _embedded = None
