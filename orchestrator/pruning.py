"""Retention, the shell: `prune()` (the CLI's `orchestrator prune` and the Python API) and
`prune_if_due()`, the deployment's daily prune under ORCHESTRATOR_RETENTION.

    from orchestrator import prune
    prune("30d")                          # finished runs older than 30 days, everything they own
    prune("12h", statuses=["succeeded"])  # only succeeded ones

`prune_if_due()` is cheap to call often (every worker's housekeeping calls it once a minute): it looks at the
database at most once a minute per process, and one process of the whole deployment claims each
day's prune (the job's due time is claimed like a schedule's, store/prune.py).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from .retention import PruneReport, check_statuses, next_daily, parse_duration
from .store import Database
from .store import prune as rows
from .store.runs import utcnow

log = logging.getLogger("orchestrator.retention")

BATCH = 500          # runs per transaction
DAILY_BATCHES = 20  # per pass of the daily job (10,000 runs, seconds): it shares the housekeeping
                    # thread with the timer sweep; a backlog continues at the next passes, a minute apart
JOB = "prune"
CHECK_EVERY = 60.0   # seconds between two looks at the job's due time, per process
LEASE = timedelta(hours=1)  # a process that died mid-prune: another takes the job after this


def prune(older_than: str | timedelta, statuses: list[str] | None = None, *, now: datetime | None = None,
          batch: int = BATCH, max_batches: int | None = None, db: Database | None = None) -> PruneReport:
    """Delete finished runs that finished more than `older_than` ago, in transactions of `batch`
    runs. ValueError for a bad duration or a status that is not a finished one."""
    age = parse_duration(older_than) if isinstance(older_than, str) else older_than
    wanted = check_statuses(statuses)
    db = db or _database()
    cut = (now or utcnow()) - age
    runs = batches = 0
    while max_batches is None or batches < max_batches:
        with db.transaction() as conn:
            deleted = rows.prune_batch(conn, cut, wanted, batch)
        batches += 1
        runs += deleted
        if deleted < batch:
            with db.transaction() as conn:
                rows.prune_orphan_fires(conn, cut)
            return PruneReport(runs, batches, done=True)
    return PruneReport(runs, batches, done=False)


_next_check = 0.0
_check_lock = threading.Lock()


def prune_if_due(retention: timedelta | None = None, *, now: datetime | None = None,
                 db: Database | None = None, force_check: bool = False) -> PruneReport | None:
    """The daily prune: when ORCHESTRATOR_RETENTION (or `retention`) is set and the day's prune
    is due, claim it and prune; None when there was nothing to do here."""
    global _next_check
    if retention is None:
        from .config import settings

        retention = settings().retention
    if retention is None:
        return None
    with _check_lock:
        if not force_check and time.monotonic() < _next_check:
            return None
        _next_check = time.monotonic() + CHECK_EVERY
    db = db or _database()
    now = now or utcnow()
    with db.transaction() as conn:
        due = rows.job_due_at(conn, JOB, now)
        if due > now or not rows.claim_job(conn, JOB, due, now + LEASE):
            return None
    report = prune(retention, now=now, max_batches=DAILY_BATCHES, db=db)
    with db.transaction() as conn:
        rows.finish_job(conn, JOB, next_daily(now, report), report.as_dict())
    if report.runs:
        log.info("retention: pruned %d finished runs older than %s", report.runs, retention)
    return report


def _database() -> Database:
    from .runtime import supervisor

    return supervisor().db
