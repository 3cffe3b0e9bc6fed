"""Many hosts: three workers, each in its own network namespace (its own address on a bridge, over
a veth pair), reaching Redis and PostgreSQL (through PgBouncer) over the network, each consuming
its own queue. A workflow whose tasks are routed to each host runs end to end, and each task ran
on the host its queue names: as the action itself reports, and as the run records (its summary's
`worker`, the worker's hostname)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.runtime.conftest import ROOT, WorkerProcess
from tests.runtime.test_cli import cli

from .netns import Hosts
from .servers import PgBouncer, Redis

pytestmark = [pytest.mark.runtime, pytest.mark.timeout(300)]  # real processes on a loaded CI machine


class HostWorker(WorkerProcess):
    """`orchestrator worker` started inside a host's namespace."""

    def __init__(self, hosts: Hosts, host: str, env: dict[str, str], queues: list[str], log):
        self.log = log
        argv = [sys.executable, "-m", "orchestrator", "worker", "-P", "prefork", "-c", "1", "-n", f"{host}@host-{host}",
                "-Q", ",".join(queues), "--without-mingle", "--without-gossip", "-l", "info", "--logfile", str(log)]
        self.proc = subprocess.Popen(hosts.command(host, argv), env={**os.environ, **env, "TEST_HOST_NAME": host}, cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture
def hosts():
    made = Hosts(["a", "b", "c"])
    yield made
    made.close()


def test_a_workflow_routed_to_three_hosts_runs_end_to_end(pg_schema, hosts, tmp_path):
    url, schema = pg_schema
    redis = Redis(hosts.gateway)
    bouncer = PgBouncer(url.split("?", 1)[0], schema, host=hosts.gateway)
    workers: list[HostWorker] = []
    try:
        env = {"ORCHESTRATOR_BROKER_URL": f"{redis.url}/0", "ORCHESTRATOR_DATABASE_URL": bouncer.url,
               "ORCHESTRATOR_PGBOUNCER": "1", "ORCHESTRATOR_DEFAULT_QUEUE": f"{schema}.actions",
               "ORCHESTRATOR_SUPERVISOR_QUEUE": f"{schema}.supervisor", "ORCHESTRATOR_ACTIONS": "tests.deploy.actions",
               "ORCHESTRATOR_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
        for host in ("a", "b", "c"):
            queues = [f"{schema}.host-{host}", f"{schema}.supervisor"] + ([f"{schema}.actions"] if host == "a" else [])
            workers.append(HostWorker(hosts, host, env, queues, tmp_path / f"worker-{host}.log"))
        for worker in workers:
            worker.wait_ready()
        workflow = tmp_path / "three-hosts.yaml"
        workflow.write_text(textwrap.dedent(f"""
            version: "1.0"
            tasks:
              - name: on_a
                action: deploy.where
                queue: {schema}.host-a
                next: [{{do: [on_b, on_c]}}]
              - {{name: on_b, action: deploy.where, queue: {schema}.host-b, next: [{{do: done}}]}}
              - {{name: on_c, action: deploy.where, queue: {schema}.host-c, next: [{{do: done}}]}}
              - {{name: done, action: core.echo, join: all, input: {{message: ok}}}}
        """))
        result = cli("run", str(workflow), "--json", "--timeout", "120", env=env, timeout=180)
    finally:
        for worker in workers:
            worker.stop()
        bouncer.stop()
        redis.stop()
    assert result.returncode == 0, result.stderr + "".join(w.text()[-1500:] for w in workers)
    summary = json.loads(result.stdout)
    ran = {task["name"]: task["result"] for task in summary["tasks"]}
    recorded = {task["name"]: task["worker"] for task in summary["tasks"]}
    for host in ("a", "b", "c"):
        assert ran[f"on_{host}"] == {"host": host, "address": hosts.addresses[host]}
        assert recorded[f"on_{host}"] == f"{host}@host-{host}"  # the hostname of the worker its route names
    assert len(set(hosts.addresses.values())) == 3
