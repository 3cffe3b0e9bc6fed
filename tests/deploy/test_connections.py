"""The connection budget: a prefork worker host of concurrency c opens at most 2c + 1 PostgreSQL
connections with the default settings (docs/deployment.md), measured on a real worker under load."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from orchestrator import submit

from tests.runtime.conftest import DATABASE_URL, _libpq

from .conftest import WorkerProcess

pytestmark = pytest.mark.runtime


def test_a_prefork_host_stays_within_its_connection_budget(deploy_env, tmp_path):
    schema = deploy_env["ORCHESTRATOR_DEFAULT_QUEUE"].split(".")[0]
    name = f"budget_{schema}"  # the worker's connections alone (this process's carry the schema's name)
    url = deploy_env["ORCHESTRATOR_DATABASE_URL"].replace(f"application_name={schema}", f"application_name={name}")
    assert name in url
    concurrency = 3
    env = dict(deploy_env, ORCHESTRATOR_DATABASE_URL=url)
    worker = WorkerProcess(env, tmp_path / "worker.log", concurrency=concurrency).wait_ready()
    peak, stop = [0], threading.Event()

    def sample() -> None:
        with psycopg.connect(_libpq(DATABASE_URL), autocommit=True) as conn:
            while not stop.is_set():
                count = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                     (name,)).fetchone()[0]
                peak[0] = max(peak[0], count)
                time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        runs = [submit(workflow) for _ in range(3) for workflow in ("with-items", "subworkflow", "branches-and-join")]
        assert [run.wait(120)["status"] for run in runs] == ["succeeded"] * len(runs)
    finally:
        stop.set()
        sampler.join(5)
        worker.stop()
    print(f"peak connections of a prefork worker with concurrency {concurrency}: {peak[0]}")
    assert 0 < peak[0] <= 2 * concurrency + 2  # the main process: heartbeat and sweep threads
