"""How the suite is split over parallel test processes (pytest-xdist; scripts/test.sh runs
`-n 2 --dist loadgroup`): a file's tests stay together, so its module fixtures are made once; the
two fault-injection files form one group, so their deployments (worker processes killed, servers
restarted, bounds measured from the fault) never run beside each other."""

from __future__ import annotations

import pytest

SERIAL_GROUPS = {"tests/faults/": "faults"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks (it suffixes node ids with the group)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        path = item.nodeid.split("::", 1)[0]
        group = next((name for prefix, name in SERIAL_GROUPS.items() if path.startswith(prefix)),
                     path.removeprefix("tests/").removesuffix(".py"))
        item.add_marker(pytest.mark.xdist_group(group))
