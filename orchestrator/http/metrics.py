"""`/metrics`: Prometheus gauges computed at scrape time from the database (and Redis queue
lengths when the broker is Redis). A collector of its own registry, so apps never clash.

A scrape costs the same at ten million runs as at ten: active runs are counted from the
(status, created_at) index, which holds few of them; finished runs from run_counts, which
database triggers keep as runs enter and leave a terminal status (migration 0007); the duration
histogram reads the newest finished task executions by id."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import Connection, func, select, union_all

from ..config import settings
from ..runtime import supervisor
from ..store.models import RunCount, TaskExecution, WorkflowRun
from ..store.runs import TERMINAL
from ..supervisor import Supervisor

log = logging.getLogger("orchestrator.http")
RUNS = WorkflowRun.__table__
TASKS = TaskExecution.__table__
COUNTS = RunCount.__table__
STATUSES = ("requested", "running", "pausing", "paused", "canceling", "canceled", "succeeded", "failed")
ACTIVE = tuple(s for s in STATUSES if s not in TERMINAL)
BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
RECENT = 1000
PRIORITY_SEPARATOR = "\x06\x16"  # kombu's Redis transport keeps priorities 3, 6, 9 in lists of their own


class OrchestratorCollector:
    def __init__(self, sup: Supervisor | None = None):
        self.sup = sup  # None: this process's supervisor (runtime.supervisor())

    def collect(self) -> Iterator[Metric]:
        sup = self.sup or supervisor()
        with sup.db.reading() as conn:
            counts = run_counts(conn)
            recent = conn.execute(select(TASKS.c.started_at, TASKS.c.finished_at)
                                  .where(TASKS.c.finished_at.is_not(None))
                                  .order_by(TASKS.c.id.desc()).limit(RECENT)).all()
        runs = GaugeMetricFamily("orchestrator_runs", "Workflow runs by status.", labels=["status"])
        for status in sorted(set(STATUSES) | set(counts)):
            runs.add_metric([status], counts.get(status, 0))
        yield runs
        yield _durations([(f - s).total_seconds() for s, f in recent])
        queues = _queue_lengths()
        if queues is not None:
            gauge = GaugeMetricFamily("orchestrator_queue_length", "Messages waiting in a broker queue.",
                                      labels=["queue"])
            for name, length in queues.items():
                gauge.add_metric([name], length)
            yield gauge


def run_counts(conn: Connection) -> dict[str, int]:
    """Runs per status, in one statement (one snapshot): the active ones counted where they are
    indexed, the finished ones summed from run_counts' shards. Statuses without runs are absent."""
    active = (select(RUNS.c.status, func.count().label("runs")).where(RUNS.c.status.in_(ACTIVE))
              .group_by(RUNS.c.status))
    finished = select(COUNTS.c.status, func.sum(COUNTS.c.runs).label("runs")).group_by(COUNTS.c.status)
    return {status: int(runs) for status, runs in conn.execute(union_all(active, finished)) if runs}


def _durations(seconds: list[float]) -> HistogramMetricFamily:
    buckets = []
    for bound in BUCKETS:
        buckets.append((str(bound), sum(1 for s in seconds if s <= bound)))
    buckets.append(("+Inf", len(seconds)))
    return HistogramMetricFamily("orchestrator_task_duration_seconds",
                                 f"Durations of the {RECENT} most recent finished task executions.",
                                 buckets=buckets, sum_value=sum(seconds))


def _queue_lengths() -> dict[str, int] | None:
    """LLEN of the action and supervisor queues (all priority lists); None when the broker is
    not Redis or cannot be reached (the scrape still succeeds)."""
    conf = settings()
    client = _redis(conf.broker_url) if conf.broker_url else None
    if client is None:
        return None
    try:
        lengths = {}
        for queue in dict.fromkeys((conf.default_queue, conf.supervisor_queue)):
            keys = [queue] + [f"{queue}{PRIORITY_SEPARATOR}{p}" for p in (3, 6, 9)]
            lengths[queue] = sum(client.llen(key) for key in keys)
        return lengths
    except Exception as exc:  # noqa: BLE001 - a broker outage must not fail the scrape
        log.warning("queue lengths unavailable: %s", exc)
        return None


@lru_cache(maxsize=4)
def _redis(url: str):
    if not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def metrics_text(sup: Supervisor | None = None) -> bytes:
    """The exposition text of one scrape, read through `sup` (default: this process's)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OrchestratorCollector(sup))
    return generate_latest(registry)
