"""Fault injection on real Redis, RabbitMQ, PostgreSQL and worker processes, with a tuned
deployment (lease 4 s, outbox grace 2 s, tick 0.5 s, a quick Redis unacked sweep): these prove
mechanisms quickly. The guarantees users get are proved with default settings in
test_liveness.py (host death, broker loss, poison calls, unstorable values, duplicates).

Every test runs with Redis and with RabbitMQ as the broker. After each fault every workflow must
end with the right status and output, and no task execution may be recorded twice: each run's
executions are exactly the expected sequence (a re-run action is the same execution, not a new one).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from .conftest import ROOT
from .servers import kill, pool_children

pytestmark = pytest.mark.faults

CHAIN = (["s1", "s2", "s3", "s4", "s5"], {"total": 15})
FANOUT = (["each", "left", "middle", "right", "merge"], {"squares": [i * i for i in range(8)], "merged": 6})


def start_mix(deployment) -> list[tuple[str, tuple]]:
    return [(deployment.start("chain"), CHAIN), (deployment.start("fanout"), FANOUT),
            (deployment.start("chain"), CHAIN)]


def check(deployment, runs, timeout: float = 120) -> None:
    summaries = deployment.wait([run_id for run_id, _ in runs], timeout)
    for summary, (_, (names, output)) in zip(summaries, runs):
        assert summary["status"] == "succeeded", summary
        assert summary["output"] == output
        assert [t["name"] for t in summary["tasks"]] == names  # nothing recorded twice
        assert all(t["attempts"] == 1 for t in summary["tasks"])
    # Carried-out outbox rows are deleted by the next transaction or within ~2 s; rows a killed
    # process left are carried out (again, harmlessly) by the reconciler after its grace period.
    deadline = time.monotonic() + 20
    while (deployment.rows("outbox"), deployment.rows("timers")) != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert deployment.rows("outbox") == 0
    assert deployment.rows("timers") == 0
    for summary, (_, (names, _output)) in zip(deployment.wait([r for r, _ in runs]), runs):
        assert [t["name"] for t in summary["tasks"]] == names  # the re-published calls changed nothing


def test_sigkill_pool_processes_mid_task(deployment):
    worker = deployment.worker()
    runs = start_mix(deployment)
    for _ in range(5):
        time.sleep(0.8)
        children = pool_children(worker.proc.pid)
        if children:
            kill(children[0])
    check(deployment, runs)


def test_crash_between_commit_and_dispatch(deployment):
    deployment.worker()
    runs = [(deployment.start("chain"), CHAIN)]
    time.sleep(0.6)
    deployment.arm("after_commit")  # the next supervisor step commits, then its process dies
    deadline = time.monotonic() + 20
    while deployment.armed("after_commit") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not deployment.armed("after_commit"), "no supervisor step reached the crash point"
    check(deployment, runs)


def test_postgres_restart(deployment):
    deployment.worker()
    runs = start_mix(deployment)
    time.sleep(1.0)
    deployment.postgres.restart(down_for=2.0)
    check(deployment, runs, timeout=150)


def test_completion_delivered_twice(deployment):
    deployment.worker()
    run_id = deployment.start("chain")
    deployment.wait([run_id])
    before = deployment.summary(run_id)
    code = (
        "from workers.app import app\n"
        f"e = {{'run': {run_id!r}, 'seq': 3, 'attempt': 1, 'item': None, 'task': 's3', 'status': 'failed',"
        " 'result': None, 'error': 'late duplicate'}\n"
        "for _ in range(2):\n"
        f"    app.signature('orchestrator.supervise', args=(e,), queue={deployment.env['ORCHESTRATOR_SUPERVISOR_QUEUE']!r}).apply_async()\n"
    )
    subprocess.run([sys.executable, "-c", code], env={**os.environ, **deployment.env}, cwd=ROOT, check=True, timeout=60)
    time.sleep(2)
    assert deployment.summary(run_id) == before


@pytest.mark.parametrize("workflow", ["chain", "chain-orquesta"])
def test_a_lost_message_is_sent_again_when_its_lease_fires(deployment, workflow):
    """A call whose message vanished (purged with its queue before any worker took it) is sent
    again by its lease (4 s here, 30 min by default: the last resort behind the other recoveries),
    in either workflow format (one run control watches both)."""
    run_id = deployment.start(workflow)
    code = (
        "from workers.app import app\n"
        "with app.connection_for_write() as conn:\n"
        f"    print(conn.default_channel.queue_purge({deployment.env['ORCHESTRATOR_DEFAULT_QUEUE']!r}))\n"
    )
    purged = subprocess.run([sys.executable, "-c", code], env={**os.environ, **deployment.env}, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert purged.returncode == 0 and purged.stdout.strip() == "1", purged.stdout + purged.stderr
    from sqlalchemy import text

    with deployment.db.transaction() as conn:  # as if a worker had received it: no outbox row to replay
        conn.execute(text("DELETE FROM outbox"))
    deployment.worker()
    check(deployment, [(run_id, CHAIN)], timeout=60)
