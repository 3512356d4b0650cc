"""The MN's Mobile IP socket past a kernel IPsec policy (XFRM) that covers its home address,
for real in two namespaces of our own: without the bypass the request to the FA is swallowed
by the policy (no SA to carry it), with it request and reply pass in the clear."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from labtools import ip, namespace_pair

from agents.dataplane.xfrm import POLICY_INFO_LEN, bypass_ipsec, bypass_policy
from testbed import netns

pytestmark = pytest.mark.netns
MN, FA = "10.1.0.100", "10.2.0.254"


def test_bypass_policy_layout() -> None:
    out = bypass_policy(1)
    assert len(out) == POLICY_INFO_LEN == 168
    assert out[40:42] == socket.AF_INET.to_bytes(2, "little") and out[160:162] == b"\x01\x00"


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    with namespace_pair("x") as (mn, fa):
        for ns, argv in (
            (mn, ["link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", fa]),
            (mn, ["addr", "add", f"{MN}/24", "dev", "va"]),
            (fa, ["addr", "add", f"{FA}/24", "dev", "vb"]),
            (mn, ["link", "set", "va", "up"]),
            (fa, ["link", "set", "vb", "up"]),
            (mn, ["route", "add", "10.2.0.0/24", "dev", "va"]),
            (fa, ["route", "add", "10.1.0.0/24", "dev", "vb"]),
            # what charon installs for a tunnel bound to the home address (no SA yet)
            (mn, ["xfrm", "policy", "add", "src", f"{MN}/32", "dst", "10.0.0.0/8", "dir", "out",
                  "tmpl", "src", MN, "dst", "192.0.2.10", "proto", "esp", "mode", "tunnel"]),
            (mn, ["xfrm", "policy", "add", "src", "10.0.0.0/8", "dst", f"{MN}/32", "dir", "in",
                  "tmpl", "src", "192.0.2.10", "dst", MN, "proto", "esp", "mode", "tunnel"]),
        ):  # fmt: skip
            ip(ns, *argv)
        yield mn, fa


def _exchange(mn: str, fa: str, bypass: bool) -> bool:
    """A request from the home address to the FA and its reply: did the reply come back?"""
    with netns.entered(fa):
        agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with netns.entered(mn):
        node = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        agent.bind((FA, 0))
        agent.settimeout(0.5)
        node.bind((MN, 0))
        node.settimeout(0.5)
        if bypass:
            assert bypass_ipsec(node)
        node.sendto(b"request", agent.getsockname())
        try:
            _request, peer = agent.recvfrom(64)
        except TimeoutError:
            return False
        agent.sendto(b"reply", peer)
        try:
            return node.recvfrom(64)[0] == b"reply"
        except TimeoutError:
            return False
    finally:
        agent.close()
        node.close()


def test_home_bound_policy_swallows_the_request_unless_bypassed(pair: tuple[str, str]) -> None:
    mn, fa = pair
    assert not _exchange(mn, fa, bypass=False)
    assert _exchange(mn, fa, bypass=True)
