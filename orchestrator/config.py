"""Deployment settings, read once from the environment (see docs and interfaces.md); with an
installed Celery app (installation.py) also from its `orchestrator_*` keys, which the environment overrides.

With neither ORCHESTRATOR_BROKER_URL nor ORCHESTRATOR_DATABASE_URL set, the embedded default is
used: a SQLite file under ORCHESTRATOR_HOME (default ./.orchestrator) and an in-process worker.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import yaml


@dataclass(frozen=True)
class Settings:
    broker_url: str | None = None
    database_url: str | None = None
    result_backend: str | None = None
    workflows_path: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    home: Path = Path(".orchestrator")
    supervisor_queue: str = "orchestrator"
    default_queue: str = "celery"
    visibility_timeout: int = 3600
    execution_limit: int = 10_000
    tick_interval: float = 1.0
    lease: float = 1800.0
    outbox_grace: float = 30.0
    heartbeat_interval: float = 10.0
    worker_timeout: float = 30.0
    sweep_interval: float = 5.0
    max_deliveries: int = 3
    max_result_bytes: int = 1 << 20
    max_input_bytes: int = 1 << 20
    expression_timeout: float = 5.0
    expression_max_bytes: int = 4 << 20
    send_events: bool = False
    task_events: bool = True    # ORCHESTRATOR_TASK_EVENTS: the workers send Celery's task events (Flower)
    broker_options: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    db_pool_size: int = 2       # idle PostgreSQL connections a process keeps
    db_max_overflow: int = 3    # more it may open at once (closed when returned)
    pgbouncer: bool = False     # the database URL is a PgBouncer in transaction pooling mode
    database_listen_url: str | None = None  # PostgreSQL itself, for LISTEN behind PgBouncer
    retention: timedelta | None = None  # ORCHESTRATOR_RETENTION: prune finished runs older than this daily

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: the worker runs inside the calling process."""
        return self.broker_url is None

    @property
    def timeout_grace(self) -> float:
        """Seconds past a task's timeout before the engine ends the attempt itself. Prefork
        workers report their own soft time limit first; the embedded thread pool has none."""
        return 0.0 if self.embedded else 15.0

    @property
    def timer_fast_path(self) -> float:
        """Timers due sooner than this also go out as countdown messages; longer ones would
        outlive Redis's visibility timeout and be delivered twice, so only the tick fires them."""
        return self.visibility_timeout / 2

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'orchestrator.db').resolve()}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or "memory://"

    @property
    def effective_result_backend(self) -> str:
        """Chords need a result backend; Redis joins them natively (no chord_unlock polling)."""
        if self.result_backend:
            return self.result_backend
        if self.broker_url is None:
            return "cache+memory://"
        if self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return "redis://127.0.0.1:6379/0"


def _split(value: str | None, sep: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(sep) if part.strip())


def _deployment_config(env: dict[str, str]) -> dict[str, Any]:
    """`config` for expressions: ORCHESTRATOR_CONFIG (JSON) merged over ORCHESTRATOR_CONFIG_FILE (YAML)."""
    values: dict[str, Any] = {}
    path = env.get("ORCHESTRATOR_CONFIG_FILE")
    if path:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: ORCHESTRATOR_CONFIG_FILE must hold a mapping")
        values.update(loaded)
    if env.get("ORCHESTRATOR_CONFIG"):
        values.update(json.loads(env["ORCHESTRATOR_CONFIG"]))
    return values


# An installed Celery app's own settings (installation.py): (defaults the environment overrides,
# values the app decides: its broker, result backend and default queue).
_app_layer: Callable[[], tuple[dict[str, str], dict[str, str]]] | None = None


_app_loader: Callable[[], Any] | None = None  # loads ORCHESTRATOR_APP (runtime.py registers it)


def use_app_loader(loader: Callable[[], Any]) -> None:
    global _app_loader
    _app_loader = loader


def use_app_settings(layer: Callable[[], tuple[dict[str, str], dict[str, str]]] | None) -> None:
    global _app_layer
    _app_layer = layer
    settings.cache_clear()


def load_settings(env: dict[str, str] | None = None) -> Settings:
    if env is None:
        defaults, forced = _app_layer() if _app_layer is not None else ({}, {})
        env = {**defaults, **os.environ, **forced}
    env = dict(env)
    return Settings(
        broker_url=env.get("ORCHESTRATOR_BROKER_URL") or None,
        database_url=env.get("ORCHESTRATOR_DATABASE_URL") or None,
        result_backend=env.get("ORCHESTRATOR_RESULT_BACKEND") or None,
        workflows_path=_split(env.get("ORCHESTRATOR_WORKFLOWS"), os.pathsep),
        actions=_split(env.get("ORCHESTRATOR_ACTIONS"), ","),
        home=Path(env.get("ORCHESTRATOR_HOME", ".orchestrator")),
        supervisor_queue=env.get("ORCHESTRATOR_SUPERVISOR_QUEUE", "orchestrator"),
        default_queue=env.get("ORCHESTRATOR_DEFAULT_QUEUE", "celery"),
        visibility_timeout=int(env.get("ORCHESTRATOR_VISIBILITY_TIMEOUT", "3600")),
        execution_limit=int(env.get("ORCHESTRATOR_EXECUTION_LIMIT", "10000")),
        tick_interval=float(env.get("ORCHESTRATOR_TICK_INTERVAL", "1")),
        lease=float(env.get("ORCHESTRATOR_LEASE", "1800")),
        outbox_grace=float(env.get("ORCHESTRATOR_OUTBOX_GRACE", "30")),
        heartbeat_interval=float(env.get("ORCHESTRATOR_HEARTBEAT_INTERVAL", "10")),
        worker_timeout=float(env.get("ORCHESTRATOR_WORKER_TIMEOUT", "30")),
        sweep_interval=float(env.get("ORCHESTRATOR_SWEEP_INTERVAL", "5")),
        max_deliveries=int(env.get("ORCHESTRATOR_MAX_DELIVERIES", "3")),
        max_result_bytes=int(env.get("ORCHESTRATOR_MAX_RESULT_BYTES", str(1 << 20))),
        max_input_bytes=int(env.get("ORCHESTRATOR_MAX_INPUT_BYTES", str(1 << 20))),
        expression_timeout=float(env.get("ORCHESTRATOR_EXPRESSION_TIMEOUT", "5")),
        expression_max_bytes=int(env.get("ORCHESTRATOR_EXPRESSION_MAX_BYTES", str(4 << 20))),
        send_events=env.get("ORCHESTRATOR_SEND_EVENTS", "0").lower() in ("1", "true", "yes", "on"),
        task_events=env.get("ORCHESTRATOR_TASK_EVENTS", "1").lower() not in ("0", "false", "no", "off"),
        broker_options=json.loads(env.get("ORCHESTRATOR_BROKER_OPTIONS") or "{}"),
        config=_deployment_config(env),
        db_pool_size=int(env.get("ORCHESTRATOR_DB_POOL_SIZE", "2")),
        db_max_overflow=int(env.get("ORCHESTRATOR_DB_MAX_OVERFLOW", "3")),
        pgbouncer=env.get("ORCHESTRATOR_PGBOUNCER", "0").lower() in ("1", "true", "yes", "on"),
        database_listen_url=env.get("ORCHESTRATOR_DATABASE_LISTEN_URL") or None,
        retention=_retention(env.get("ORCHESTRATOR_RETENTION")),
    )


def _retention(value: str | None) -> timedelta | None:
    if not value or not value.strip() or value.strip().lower() in ("0", "off", "never"):
        return None
    from .retention import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"ORCHESTRATOR_RETENTION: {exc}") from None


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process's settings (read once; tests that change the environment call cache_clear)."""
    if _app_layer is None and _app_loader is not None and os.environ.get("ORCHESTRATOR_APP"):
        _app_loader()  # imports and installs ORCHESTRATOR_APP: its conf is a source of settings too
    return load_settings()
