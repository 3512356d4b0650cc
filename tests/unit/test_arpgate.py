"""The MN's ARP gate (issue 15, item 6): which of the kernel's requests to resolve an address
it answers with a broadcast, the frame it sends, and the netlink it reads."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv4Network

from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg

from agents.dataplane.arp import arp_request_frame
from agents.runtime.arpgate import Scope, decide
from mipbase import rtnl

HOME = Scope(IPv4Network("10.1.0.0/24"), IPv4Address("10.1.0.100"))
LEASE = Scope(IPv4Network("10.3.0.0/24"), IPv4Address("10.3.0.106"))


def gate(target: str, scopes: dict[str, Scope], **link: object) -> tuple[str | None, str]:
    state = {"carrier": True, "followed": 8, "kernel": 8, **link}
    scope, why = decide(IPv4Address(target), scopes, **state)  # type: ignore[arg-type]
    return (str(scope.sender) if scope else None), why


def test_home_and_a_lease_subnet_are_resolved_from_their_own_address() -> None:
    scopes = {"home": HOME, "lease": LEASE}
    assert gate("10.1.0.10", scopes) == ("10.1.0.100", "home")
    assert gate("10.3.0.254", scopes) == ("10.3.0.106", "lease")


def test_away_nothing_is_resolved() -> None:
    # visited -> office in CI: the FA, router of mode f, asked for on office
    assert gate("10.2.0.254", {"lease": LEASE}) == (None, "away")
    assert gate("10.1.0.10", {}) == (None, "away")


def test_a_carrier_change_not_yet_read_of_withholds_even_at_home() -> None:
    # home -> visited: the kernel counted the loss and the new carrier (8 -> 10) before the
    # agent read of them, and asks for cn on the new network
    assert gate("10.1.0.10", {"home": HOME}, kernel=10) == (None, "link_changed")
    assert gate("10.1.0.10", {"home": HOME}, kernel=None) == (None, "link_changed")
    assert gate("10.1.0.10", {"home": HOME}, followed=None) == (None, "link_changed")
    assert gate("10.1.0.10", {"home": HOME}, carrier=False) == (None, "no_carrier")


def test_the_request_frame_is_a_broadcast_who_has() -> None:
    mac = bytes.fromhex("020000000001")
    frame = arp_request_frame(mac, "10.1.0.100", "10.1.0.10")
    dst, src, ethertype = struct.unpack_from("!6s6sH", frame)
    assert (dst, src, ethertype) == (b"\xff" * 6, mac, 0x0806)
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = struct.unpack_from(
        "!HHBBH6s4s6s4s", frame, 14
    )
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 1)
    assert (sha, tha) == (mac, b"\0" * 6)
    assert (IPv4Address(spa), IPv4Address(tpa)) == (
        IPv4Address("10.1.0.100"),
        IPv4Address("10.1.0.10"),
    )


def _message(kind: int, body: bytes, seq: int = 0) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, 0, seq, 0) + body


def test_the_kernels_requests_are_read_and_other_messages_skipped() -> None:
    def neigh(kind: int, dst: bytes, index: int = 2, family: int = socket.AF_INET) -> bytes:
        body = struct.pack("=BxxxiHBB", family, index, rtnl.NUD_INCOMPLETE, 0, 0)
        body += struct.pack("=HH", 4 + len(dst), rtnl.NDA_DST) + dst
        return _message(kind, body)

    data = (
        neigh(rtnl.RTM_NEWNEIGH, bytes([10, 1, 0, 9]))  # a change, not a request
        + neigh(rtnl.RTM_GETNEIGH, bytes([10, 2, 0, 254]))
        + neigh(rtnl.RTM_GETNEIGH, bytes(16), family=socket.AF_INET6)
        + neigh(rtnl.RTM_GETNEIGH, bytes([10, 1, 0, 10]), index=5)
    )
    got = [(r.index, str(r.address), r.state) for r in rtnl.neighbour_requests(data)]
    assert got == [(2, "10.2.0.254", rtnl.NUD_INCOMPLETE), (5, "10.1.0.10", rtnl.NUD_INCOMPLETE)]
    # truncated or garbage: nothing, no exception
    assert rtnl.neighbour_requests(data[:30]) == []
    assert rtnl.neighbour_requests(b"\xff" * 64) == []


def test_link_and_neighbour_queries_as_pyroute2_reads_them() -> None:
    msg = ifinfmsg(rtnl.get_link(7).encode(3))
    msg.decode()
    assert msg["header"]["type"] == rtnl.RTM_GETLINK and msg["index"] == 7
    msg = ndmsg(rtnl.get_neigh("10.2.0.254", 7).encode(3))
    msg.decode()
    assert msg["header"]["type"] == rtnl.RTM_GETNEIGH
    assert (msg["ifindex"], msg.get_attr("NDA_DST")) == (7, "10.2.0.254")


def test_a_link_answer_gives_carrier_and_change_count() -> None:
    def body(flags: int, changes: int | None) -> memoryview:
        raw = struct.pack("=BxHiII", 0, 1, 4, flags, 0)
        raw += struct.pack("=HH5s", 9, 3, b"eth0") + b"\0" * 3  # IFLA_IFNAME, padded
        if changes is not None:
            raw += struct.pack("=HHI", 8, rtnl.IFLA_CARRIER_CHANGES, changes)
        return memoryview(raw)

    up = rtnl.parse_link(body(rtnl.IFF_UP | rtnl.IFF_LOWER_UP, 6))
    assert up is not None and up.carrier and up.carrier_changes == 6 and up.index == 4
    down = rtnl.parse_link(body(rtnl.IFF_UP, None))
    assert down is not None and not down.carrier and down.carrier_changes is None
    assert rtnl.parse_link(memoryview(b"\0" * 8)) is None
