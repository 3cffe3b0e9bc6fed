"""Hosts for tests: network namespaces (`ip netns`) joined to a bridge by veth pairs, each its own
"host" with its own address. Names carry the stream's prefix and a random tag; everything is
removed in `close()`."""

from __future__ import annotations

import os
import random
import secrets
import subprocess

import pytest


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


class Hosts:
    """`names` hosts on 10.<net>.<subnet>.0/24: the bridge (this process's side) is .1, the hosts
    .11, .12, ... Skips the test when the kernel refuses namespaces (not root, no CAP_SYS_ADMIN)."""

    def __init__(self, names: list[str], prefix: str | None = None, net: int | None = None):
        self.prefix = prefix or os.environ.get("ORCHESTRATOR_TEST_NETNS_PREFIX", "h6")
        net = net or int(os.environ.get("ORCHESTRATOR_TEST_NET", "26"))
        self.tag = secrets.token_hex(2)
        self.subnet = random.randint(1, 254)
        self.bridge = f"{self.prefix}br{self.tag}"
        self.gateway = f"10.{net}.{self.subnet}.1"
        self.namespaces: dict[str, str] = {}
        self.addresses: dict[str, str] = {}
        self._links: list[str] = []
        probe = _ip("netns", "add", f"{self.prefix}-{self.tag}-probe")
        if probe.returncode != 0:
            pytest.skip(f"the kernel refuses network namespaces here ({probe.stderr.strip()})")
        _ip("netns", "del", f"{self.prefix}-{self.tag}-probe")
        try:
            self._check(_ip("link", "add", self.bridge, "type", "bridge"))
            self._links.append(self.bridge)
            self._check(_ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge))
            self._check(_ip("link", "set", self.bridge, "up"))
            for index, name in enumerate(names):
                self._add(name, f"10.{net}.{self.subnet}.{11 + index}")
        except Exception:
            self.close()
            raise

    def _add(self, name: str, address: str) -> None:
        namespace, outside, inside = f"{self.prefix}-{self.tag}-{name}", f"{self.prefix}{self.tag}{name}", "eth0"
        self._check(_ip("netns", "add", namespace))
        self.namespaces[name] = namespace
        self._check(_ip("link", "add", outside, "type", "veth", "peer", "name", f"{outside}p"))
        self._links.append(outside)
        self._check(_ip("link", "set", f"{outside}p", "netns", namespace))
        self._check(_ip("-n", namespace, "link", "set", f"{outside}p", "name", inside))
        self._check(_ip("link", "set", outside, "master", self.bridge, "up"))
        self._check(_ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inside))
        self._check(_ip("-n", namespace, "link", "set", inside, "up"))
        self._check(_ip("-n", namespace, "link", "set", "lo", "up"))
        self.addresses[name] = address

    @staticmethod
    def _check(result: subprocess.CompletedProcess) -> None:
        if result.returncode != 0:
            raise RuntimeError(f"ip {' '.join(result.args[1:])}: {result.stderr.strip()}")

    def command(self, name: str, argv: list[str]) -> list[str]:
        """`argv` run inside host `name`."""
        return ["ip", "netns", "exec", self.namespaces[name], *argv]

    def close(self) -> None:
        for namespace in self.namespaces.values():
            _ip("netns", "del", namespace)  # takes the inside end of its veth pair, and so the pair
        for link in reversed(self._links):
            _ip("link", "del", link)
        self.namespaces.clear()
