"""Backend choice and the kernel IPIP path's netlink calls (a recording IPRoute double)."""

from __future__ import annotations

from typing import Any

import pytest

from agents.dataplane import kernel
from agents.dataplane.kernel import KernelIpipTunnel, select_backend


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    state = {"ipip": False}
    monkeypatch.setattr(kernel, "kernel_ipip_available", lambda refresh=False: state["ipip"])
    return state


def test_select_backend_auto(probe: dict[str, bool]) -> None:
    assert select_backend("ipip", env={}) == "userspace"
    probe["ipip"] = True
    assert select_backend("ipip", env={}) == "kernel"
    assert select_backend("ipip", env={"TESTBED_TUNNEL": "auto"}) == "kernel"
    assert select_backend("udp", env={}) == "userspace"  # no kernel RFC 3519


def test_select_backend_forced(probe: dict[str, bool]) -> None:
    probe["ipip"] = True
    assert select_backend("ipip", env={"TESTBED_TUNNEL": "userspace"}) == "userspace"
    assert select_backend("ipip", env={"TESTBED_TUNNEL": "Kernel"}) == "kernel"
    with pytest.raises(RuntimeError):
        select_backend("udp", env={"TESTBED_TUNNEL": "kernel"})
    probe["ipip"] = False
    with pytest.raises(RuntimeError):
        select_backend("ipip", env={"TESTBED_TUNNEL": "kernel"})
    with pytest.raises(ValueError):
        select_backend("ipip", env={"TESTBED_TUNNEL": "fast"})


class FakeIPRoute:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.links: dict[str, int] = {}

    def link(self, cmd: str, **kw: Any) -> None:
        self.calls.append(("link", cmd, kw))
        if cmd == "add":
            self.links[kw["ifname"]] = 100 + len(self.links)
        elif cmd == "del":
            self.links.pop(kw["ifname"])

    def link_lookup(self, ifname: str) -> list[int]:
        return [self.links[ifname]] if ifname in self.links else []

    def route(self, cmd: str, **kw: Any) -> None:
        self.calls.append(("route", cmd, kw))

    def rule(self, cmd: str, **kw: Any) -> None:
        self.calls.append(("rule", cmd, kw))

    def close(self) -> None:
        self.calls.append(("close", "", {}))


def test_kernel_tunnel_home_agent_side() -> None:
    ipr = FakeIPRoute()
    kt = KernelIpipTunnel("dst", ipr=ipr)
    kt.add("10.1.0.10", "10.3.0.10", local="10.2.0.1")
    kt.add("10.1.0.11", "10.3.0.10", local="10.2.0.1")  # same care-of address: same link
    name = "mip0a03000a"
    adds = [c for c in ipr.calls if c[:2] == ("link", "add")]
    assert len(adds) == 1
    assert adds[0][2] == {
        "ifname": name, "kind": "ipip", "ipip_remote": "10.3.0.10", "ipip_local": "10.2.0.1",
        "ipip_ttl": 64, "ipip_tos": 1, "ipip_pmtudisc": 1,
    }  # fmt: skip
    routes = [c[2]["dst"] for c in ipr.calls if c[:2] == ("route", "replace")]
    assert routes == ["10.1.0.10/32", "10.1.0.11/32"]
    # a new care-of address moves the home address to a new link
    kt.update("10.1.0.10", peer="10.3.0.20")
    assert set(ipr.links) == {name, "mip0a030014"}
    kt.remove("10.1.0.11")
    assert set(ipr.links) == {"mip0a030014"}  # the unused link is gone
    with pytest.raises(ValueError):
        kt.add("10.1.0.12", "10.3.0.30", "udp")
    kt.close()
    assert ipr.links == {} and ipr.calls[-1][0] == "close"


def test_kernel_tunnel_reverse_side_uses_source_rule() -> None:
    ipr = FakeIPRoute()
    kt = KernelIpipTunnel("src", ipr=ipr)
    kt.add("10.1.0.10", "10.2.0.1")
    rules = [c for c in ipr.calls if c[0] == "rule"]
    tables = [c[2]["table"] for c in ipr.calls if c[:2] == ("route", "replace")]
    assert rules[0][1] == "add" and rules[0][2]["src"] == "10.1.0.10"
    assert rules[0][2]["table"] == tables[0]
    assert kt.remove("10.1.0.10") and not kt.remove("10.1.0.10")
    assert [c[1] for c in ipr.calls if c[0] == "rule"] == ["add", "del"]
    kt.close()
