"""Recovery: what brings a run back after a fault, with the settings users get.

- `on_redelivery`: a worker got a call that may have been delivered before (the broker marked it
  redelivered, Celery retried it after its pool process died, or the orchestrator sent it again).
  Only then it checks, before running it, whether the call is still in flight, whether it already
  ended (its outcome is applied instead), whether another delivery is running it, and whether its
  worker was lost too often already (a poison call fails). First deliveries pay nothing.
- `keep_outcome`: a fan-in call's envelope is kept in PostgreSQL before the chord joins, so losing
  the result backend (the chord's join state) loses no finished call.
- Sweeps, run by housekeeping once per interval for the deployment: outbox rows left behind
  (`reconcile_outbox`, sends again only calls still in flight), fan-in outcomes no chord applied
  (`apply_left_outcomes`), dead workers' messages on Redis (`restore_abandoned`), and the census
  after Redis lost its data (`census`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .engine.commands import Dispatch, from_data
from .redis_broker import RedisBroker
from .runner import call_id
from .store import liveness
from .store.runs import TERMINAL
from .publishing import Outcome
from .supervisor import Supervisor

log = logging.getLogger("orchestrator.recovery")


# A delivery that may not be the first --------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """What to do with a call delivered again: `run` it, `skip` it (nothing to do), `apply` the
    outcome it already has, `fail` it (with `reason`), or `defer` it: another delivery of it runs
    on a worker that was alive a moment ago; look again later (if that worker died, its heartbeat
    stops and the call runs here; if it finishes, the call is no longer in flight)."""

    action: str
    reason: str = ""
    outcome: dict[str, Any] | None = None


RUN = Verdict("run")


def on_redelivery(sup: Supervisor, call: dict[str, Any], hostname: str, pid: int, retries: int) -> Verdict:
    if retries >= sup.settings.max_deliveries:
        return Verdict("fail", f"worker lost {retries} times running this call")
    run_id, seq, attempt, item = call["run"], call["seq"], call["attempt"], call.get("item")
    flying = sup.in_flight(run_id)
    if flying is None or (seq, attempt, item) not in flying:
        return Verdict("skip", "the call is no longer in flight")
    with sup.db.reading() as conn:
        kept = liveness.outcome(conn, run_id, seq, attempt, item)
        if kept is not None:
            return Verdict("apply", "it ended before; its outcome was kept", kept)
        if sup.held(conn, call_id(run_id, seq, attempt, item), besides=(hostname, pid), retries=retries,
                    running_only=True):
            return Verdict("defer", "another delivery of it is running on a worker that was alive a moment ago")
    try:
        trace = sup.canvas.trace(run_id, seq, attempt, item)
    except Exception:  # the backend cannot tell: run it
        trace = None
    if isinstance(trace, dict):
        return Verdict("apply", "it ended before; its report was lost", trace)
    return RUN


def keep_outcome(sup: Supervisor, envelope: dict[str, Any]) -> bool:
    """Keep a fan-in call's envelope until a step applies it; False if the database cannot be
    reached (the chord still carries it)."""
    try:
        with sup.db.transaction() as conn:
            liveness.add_outcome(conn, envelope)
        return True
    except Exception as exc:
        log.warning("could not keep the outcome of %s: %s", envelope.get("task"), exc)
        return False


# Sweeps ----------------------------------------------------------------------------------------

def reconcile_outbox(sup: Supervisor, limit: int = 100) -> int:
    """Carry out outbox rows a process left behind (it died between its commit and its publish,
    or before deleting the row), one transaction per row. Calls are sent again only while still
    in flight and held by no live worker, marked as possibly sent before (the worker checks
    them); revokes and reports to a parent are repeated (both are idempotent). A row whose run a
    step holds is left for the next sweep."""
    done, after = 0, 0
    for _ in range(limit):
        before = after
        try:
            with sup.db.transaction() as conn:
                rows = sup.store.stale_outbox(conn, sup.settings.outbox_grace, 1, after)
                if not rows:
                    break
                row = rows[0]
                after = row.id
                if _carry_out_left(sup, conn, row):
                    sup.store.remove_outbox(conn, row.id)
                    done += 1
        except Exception as exc:  # this row's trouble must not hold the others back
            log.warning("outbox %s: carrying it out failed: %s", after, exc)
            if after == before:  # not even a row could be read: the database is away
                break
    return done


def _carry_out_left(sup: Supervisor, conn: Any, row: Any) -> bool:
    run = sup.store.lock_run(conn, row.run_id, skip_locked=True)
    if run is None and sup.store.run_exists(conn, row.run_id):
        return False  # a step holds the run: next sweep
    flying: set[tuple[int, int, int | None]] = set()
    if run is not None and run.definition_id is not None and run.status not in TERMINAL:
        flying = sup._calls(conn, run)
    commands = [from_data(c) for c in row.payload["commands"]]
    calls = [c for c in commands if isinstance(c, Dispatch)]
    lost = [c for c in calls if (c.seq, c.attempt, c.item) in flying
            and not sup.held(conn, call_id(row.run_id, c.seq, c.attempt, c.item))]
    log.warning("carrying out effects of run %s left unpublished (outbox %s): sending again %d of its %d calls",
                row.run_id, row.id, len(lost), len(calls))
    kept = [c for c in commands if not isinstance(c, Dispatch)] + lost
    sup.carry_out(Outcome(row.run_id, row.payload["workflow"], kept, row.payload.get("parent"), resent=True))
    return True


def apply_left_outcomes(sup: Supervisor) -> int:
    """Apply fan-in outcomes that no chord applied within the grace period (the chord's join
    state was lost with the result backend, or its callback message with the broker). Right
    after a detected loss of Redis's data, without waiting for the grace period."""
    with sup.db.reading() as conn:
        census_state = liveness.remembered(conn, CENSUS) or {}
        grace = 0.0 if census_state.get("recovering_until", 0) > time.time() else sup.settings.outbox_grace
        runs = liveness.old_outcome_runs(conn, grace)
    applied = 0
    for run_id in runs:
        try:
            with sup.db.reading() as conn:
                envelopes = liveness.run_outcomes(conn, run_id)
            if envelopes and sup.complete(envelopes, fan_in=True, skip_locked=True):
                applied += len(envelopes)
        except Exception as exc:  # one run's trouble must not hold the others back
            log.warning("run %s: applying its fan-in outcomes failed: %s", run_id, exc)
    if applied:
        log.warning("applied %d fan-in outcomes no chord had applied", applied)
    return applied


def restore_abandoned(sup: Supervisor, redis: RedisBroker) -> int:
    """Redis broker: put back the orchestrator messages a dead worker held (nobody refreshed
    them for ORCHESTRATOR_WORKER_TIMEOUT seconds). They come back marked redelivered, so each is
    checked before it runs (on_redelivery)."""
    restored = redis.restore_abandoned(sup.settings.worker_timeout)
    if restored:
        log.warning("restored %d messages held by a worker that stopped refreshing them: %s",
                    len(restored), ", ".join(restored[:10]))
    return len(restored)


def drop_dead_workers(sup: Supervisor) -> int:
    with sup.db.transaction() as conn:
        return liveness.drop_dead_workers(conn, 24 * 3600)


# The census after Redis lost its data --------------------------------------------------------

CENSUS = "census"


def census(sup: Supervisor, redis: RedisBroker | None, backend: Any = None) -> int:
    """Notice that Redis lost its data (an epoch marker key is gone or changed), then recover.

    Broker (Redis): find the calls in flight whose messages went with it and send them again. A
    call is lost when it was in flight before the check, and neither Redis (queued, or held
    unacknowledged) nor any live worker (by a heartbeat taken after the first look) has it, at two
    looks a heartbeat interval apart; the second look catches a message that was between the
    queue and a worker's unacked list at the first. The conductor ignores a CallLost for a call
    that ended meanwhile.

    Result backend (Redis): chords lost their join state; for a while after the loss, fan-in
    outcomes are applied without waiting for their chord (apply_left_outcomes)."""
    with sup.db.reading() as conn:
        known = liveness.remembered(conn, CENSUS) or {}
    broker = backend_epoch = None
    broker_lost = backend_lost = False
    if redis is not None:
        broker, created = redis.epoch()
        broker_lost = known.get("epoch") is not None and (created or broker != known["epoch"])
    if backend is not None and hasattr(backend, "client"):
        backend_epoch, created = _backend_epoch(backend)
        backend_lost = known.get("backend") is not None and (created or backend_epoch != known["backend"])
    value = dict(known, epoch=broker, backend=backend_epoch)
    if broker_lost:
        log.warning("the Redis broker lost its data: looking for the calls it held")
        return _first_look(sup, redis, value)
    if backend_lost:
        log.warning("the Redis result backend lost its data: fan-in outcomes are applied without their chords")
        _remember(sup, dict(value, recovering_until=time.time() + 4 * sup.settings.worker_timeout))
        return 0
    if known.get("phase") == "confirm" and redis is not None:
        return _second_look(sup, redis, value)
    if value != known:
        _remember(sup, value)
    return 0


def _backend_epoch(backend: Any) -> tuple[str, bool]:
    import uuid

    from .redis_broker import EPOCH_KEY

    client = backend.client
    value = client.get(EPOCH_KEY)
    if value is None:
        fresh = uuid.uuid4().hex
        if client.set(EPOCH_KEY, fresh, nx=True):
            return fresh, True
        value = client.get(EPOCH_KEY)
    return (value.decode() if isinstance(value, bytes) else str(value)), False


def _remember(sup: Supervisor, value: dict[str, Any]) -> None:
    with sup.db.transaction() as conn:
        liveness.remember(conn, CENSUS, value)


def _first_look(sup: Supervisor, redis: RedisBroker, value: dict[str, Any]) -> int:
    candidates: dict[str, list[Any]] = {}
    after = ""
    while True:
        with sup.db.reading() as conn:
            runs = liveness.active_runs(conn, after)
        if not runs:
            break
        after = runs[-1]
        for run_id in runs:
            for seq, attempt, item in sup.in_flight(run_id) or ():
                candidates[call_id(run_id, seq, attempt, item)] = [run_id, seq, attempt, item]
    present = redis.call_ids()
    suspects = [c for task_id, c in candidates.items() if task_id not in present]
    now = time.time()
    _remember(sup, dict(value, phase="confirm", at=now, suspects=suspects,
                        recovering_until=now + 4 * sup.settings.worker_timeout))
    return 0


def _second_look(sup: Supervisor, redis: RedisBroker, known: dict[str, Any]) -> int:
    at = known["at"]
    if time.time() < at + sup.settings.heartbeat_interval + 1:
        return 0
    with sup.db.reading() as conn:
        workers = liveness.live_workers(conn, sup.settings.worker_timeout)
    since = datetime.fromtimestamp(at, timezone.utc)
    if any(_aware(w.heartbeat_at) <= since for w in workers):
        return 0  # a live worker has not reported what it holds since the first look
    present = redis.call_ids()
    held = {entry[0] for w in workers for entry in (w.calls or ())}
    lost = 0
    for run_id, seq, attempt, item in known.get("suspects", []):
        task_id = call_id(run_id, seq, attempt, item)
        if task_id in present or task_id in held:
            continue
        try:
            sup.lose(run_id, seq, attempt, item, "its message was lost with the broker's data")
            lost += 1
        except Exception as exc:  # the others still go
            log.warning("run %s: sending call %s again failed: %s", run_id, task_id, exc)
    _remember(sup, {k: v for k, v in known.items() if k not in ("phase", "at", "suspects")})
    if lost:
        log.warning("sent again %d calls whose messages Redis lost", lost)
    return lost


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
