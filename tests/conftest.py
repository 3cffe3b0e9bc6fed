"""How the suite is split over parallel test processes (pytest-xdist; scripts/test.sh runs
`-n 2 --dist loadfile` unless ORCHESTRATOR_TEST_PROCESSES says otherwise): a file's tests stay
together in one process, so its module fixtures are made once, and the fault-injection files
form one unit, so their deployments (worker processes killed, servers restarted, bounds measured
from the fault) never run beside each other.

Tests in one process must not see what the other one's do. Each test has its own schema, queues
and Redis keys; what the whole test database shares is scoped per test: the finished-run
notifications carry run ids (test_snapshots filters on its own), and every connection of a test's
deployment carries its schema as application_name, which the tests that read pg_stat_activity
(lock waiters, connections idle in a transaction) filter on.

Done by a scheduler (xdist's own hook) rather than with `xdist_group` marks: `--dist loadgroup`
stopped grouping on pytest 9.2, it distributes marked tests as if unmarked
(pytest-dev/pytest-xdist#1386)."""

from __future__ import annotations

from typing import Any

import pytest

SERIAL = {"tests/faults/": "faults"}  # folders whose files run one after the other in one process


def unit_of(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return next((unit for folder, unit in SERIAL.items() if path.startswith(folder)), path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") != "loadfile":
        return None  # another distribution asked for: xdist's own
    from xdist.scheduler import LoadFileScheduling

    class FilesAndSerialFolders(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return FilesAndSerialFolders(config, log)
