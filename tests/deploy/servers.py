"""Servers the deployment tests start themselves: PgBouncer (transaction pooling, from Debian's
`pgbouncer` package) in front of the test database, and a Redis bound to a chosen address.
Ports come from ORCHESTRATOR_TEST_PORTS (a range, default 40600-40699)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

PGBOUNCER = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)


def port_range() -> tuple[int, int]:
    low, _, high = os.environ.get("ORCHESTRATOR_TEST_PORTS", "40600-40699").partition("-")
    return int(low), int(high)


def free_port(host: str = "127.0.0.1") -> int:
    low, high = port_range()
    for port in random.sample(range(low, high + 1), high - low + 1):
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


def wait_port(host: str, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout} s")


class PgBouncer:
    """A PgBouncer in transaction pooling mode whose database `orch` is the test database with
    `schema` as its search path (set by connect_query on each server connection)."""

    def __init__(self, database_url: str, schema: str, host: str = "127.0.0.1", pool_size: int = 4):
        if PGBOUNCER is None:
            pytest.fail("pgbouncer is not installed (scripts/services.sh installs it from Debian's packages)")
        target = make_url(database_url)
        self.host, self.port = host, free_port(host)
        # PgBouncer refuses to run as root: it runs as `postgres`, which must read its files.
        self.dir = Path(tempfile.mkdtemp(prefix="h-pgbouncer-"))
        (self.dir / "users.txt").write_text('"postgres" ""\n')
        (self.dir / "pgbouncer.ini").write_text(f"""
[databases]
orch = host={target.host} port={target.port or 5432} dbname={target.database} user=postgres connect_query='SET search_path TO {schema}'

[pgbouncer]
listen_addr = {host}
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir / 'users.txt'}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 500
ignore_startup_parameters = extra_float_digits,options
logfile = {self.dir / 'pgbouncer.log'}
pidfile = {self.dir / 'pgbouncer.pid'}
""")
        shutil.chown(self.dir, "postgres")
        os.chmod(self.dir, 0o755)
        for name in ("users.txt", "pgbouncer.ini"):
            os.chmod(self.dir / name, 0o644)
        self.proc = subprocess.Popen([PGBOUNCER, "-u", "postgres", str(self.dir / "pgbouncer.ini")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_port(host, self.port)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"pgbouncer did not start: {self.log()[-2000:]}") from None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/orch"

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """A redis-server of the test's own, bound to `host`, nothing saved."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host, self.port = host, free_port(host)
        self.proc = subprocess.Popen(["redis-server", "--bind", host, "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--protected-mode", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(host, self.port)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
