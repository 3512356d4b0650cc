"""The userspace engine's IP-in-IP packets are routed (and matched against IPsec policies) by
their own source address, for real in two namespaces of our own: a rule for the tunnel's
local address sends them over a second link. Without the source given to the kernel, a raw
socket's packets are routed as if from nowhere: in mode mc and dual MIP on a stock kernel
they missed the XFRM policy of the VPN's inner address and left unencrypted."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
from labtools import ip, namespace_pair

from agents.dataplane.tunnels import TunnelEngine
from testbed import netns

pytestmark = pytest.mark.netns
LOCAL, PEER, HOME = "10.10.0.1", "10.9.9.9", "10.1.0.100"


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    with namespace_pair("s") as (node, peer):
        for i in (1, 2):
            ip(node, "link", "add", f"a{i}", "type", "veth", "peer", "name", f"b{i}", "netns", peer)
            ip(node, "addr", "add", f"10.9.{i}.1/24", "dev", f"a{i}")
            ip(peer, "addr", "add", f"10.9.{i}.2/24", "dev", f"b{i}")
            ip(node, "link", "set", f"a{i}", "up")
            ip(peer, "link", "set", f"b{i}", "up")
        ip(peer, "addr", "add", f"{PEER}/32", "dev", "lo")
        ip(peer, "link", "set", "lo", "up")
        ip(node, "addr", "add", f"{LOCAL}/32", "dev", "lo")
        ip(node, "link", "set", "lo", "up")
        ip(node, "route", "add", f"{PEER}/32", "via", "10.9.1.2")  # the main table: link 1
        ip(node, "route", "add", f"{PEER}/32", "via", "10.9.2.2", "table", "200")  # link 2
        ip(node, "rule", "add", "from", LOCAL, "lookup", "200", "priority", "100")
        yield node, peer


def received(peer: str, link: str) -> int:
    out = ip(peer, "-s", "-j", "link", "show", link)
    return int(json.loads(out)[0]["stats64"]["rx"]["packets"])


def test_ipip_leaves_by_the_route_of_its_own_source(pair: tuple[str, str]) -> None:
    node, peer = pair
    with netns.entered(node):
        engine = TunnelEngine("tbsrc0", "dst")
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        engine.add(HOME, PEER, "ipip", local=LOCAL)
        ip(node, "route", "add", f"{HOME}/32", "dev", "tbsrc0")
        before = received(peer, "b1"), received(peer, "b2")
        for _ in range(20):
            sender.sendto(b"x" * 32, (HOME, 9))
        deadline = time.monotonic() + 2
        while engine.counters["tx_ipip"] < 20 and time.monotonic() < deadline:
            engine.on_readable()
            time.sleep(0.01)
        assert engine.counters["tx_ipip"] == 20, engine.counters
        time.sleep(0.1)
        link1, link2 = received(peer, "b1") - before[0], received(peer, "b2") - before[1]
        assert link2 >= 20 and link1 < 5, (link1, link2)  # by the rule for LOCAL, not main
    finally:
        sender.close()
        engine.close()
