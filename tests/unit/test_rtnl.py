"""The rtnetlink encoders, checked against pyroute2's decoders (an independent reading of
the kernel's layouts), and the reply parser against garbage."""

from __future__ import annotations

import random
import socket
import struct
from ipaddress import IPv4Address

import pytest
from pyroute2.netlink.rtnl.fibmsg import fibmsg
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from mipbase import rtnl


def decode(cls: type, request: rtnl.Request, seq: int = 7) -> dict:
    msg = cls(request.encode(seq, port=42))
    msg.decode()
    header = msg["header"]
    assert header["length"] == len(request.encode(seq))
    assert header["sequence_number"] == seq and header["pid"] == 42
    assert header["flags"] & (rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK) == 5
    return {
        "msg": msg,
        "attrs": dict(msg["attrs"]),
        "flags": header["flags"],
        "type": header["type"],
    }


def test_route_replace_with_every_attribute() -> None:
    req = rtnl.route(
        "replace",
        "10.1.0.0/24",
        gateway="10.2.0.1",
        oif=3,
        prefsrc="10.1.0.5",
        priority=7,
        table=300,
        onlink=True,
    )
    got = decode(rtmsg, req)
    msg, attrs = got["msg"], got["attrs"]
    assert got["type"] == rtnl.RTM_NEWROUTE
    assert got["flags"] & rtnl.NLM_F_CREATE and got["flags"] & rtnl.NLM_F_REPLACE
    assert not got["flags"] & rtnl.NLM_F_EXCL
    assert (msg["family"], msg["dst_len"], msg["table"]) == (socket.AF_INET, 24, 0)
    assert msg["scope"] == rtnl.RT_SCOPE_UNIVERSE and msg["type"] == rtnl.RTN_UNICAST
    assert msg["flags"] == rtnl.RTNH_F_ONLINK
    assert attrs == {
        "RTA_DST": "10.1.0.0",
        "RTA_TABLE": 300,
        "RTA_GATEWAY": "10.2.0.1",
        "RTA_OIF": 3,
        "RTA_PREFSRC": "10.1.0.5",
        "RTA_PRIORITY": 7,
    }


def test_default_route_through_a_device_is_link_scoped_and_has_no_dst() -> None:
    got = decode(rtmsg, rtnl.route("add", "0.0.0.0/0", oif=9, table=100))
    msg = got["msg"]
    assert got["flags"] & rtnl.NLM_F_EXCL
    assert msg["dst_len"] == 0 and msg["table"] == 100 and msg["scope"] == rtnl.RT_SCOPE_LINK
    assert got["attrs"] == {"RTA_OIF": 9}


def test_route_deletion_matches_any_scope_type_and_protocol() -> None:
    got = decode(rtmsg, rtnl.route("del", "10.1.0.1/32"))
    msg = got["msg"]
    assert got["type"] == rtnl.RTM_DELROUTE
    assert got["flags"] == rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK
    assert (msg["scope"], msg["type"], msg["proto"]) == (rtnl.RT_SCOPE_NOWHERE, 0, 0)
    assert msg["table"] == rtnl.RT_TABLE_MAIN


def test_address_with_lifetime_and_broadcast() -> None:
    req = rtnl.addr("replace", 4, "10.1.0.9", 24, broadcast="10.1.0.255", valid_lft=30)
    got = decode(ifaddrmsg, req)
    assert got["type"] == rtnl.RTM_NEWADDR
    assert got["msg"]["prefixlen"] == 24 and got["msg"]["index"] == 4
    attrs = got["attrs"]
    assert attrs["IFA_LOCAL"] == attrs["IFA_ADDRESS"] == "10.1.0.9"
    assert attrs["IFA_BROADCAST"] == "10.1.0.255"
    assert attrs["IFA_CACHEINFO"]["ifa_valid"] == attrs["IFA_CACHEINFO"]["ifa_preferred"] == 30


def test_address_deletion_carries_only_the_address() -> None:
    got = decode(ifaddrmsg, rtnl.addr("del", 4, "10.1.0.9", 32, broadcast="10.1.0.9"))
    assert got["type"] == rtnl.RTM_DELADDR
    assert set(got["attrs"]) == {"IFA_LOCAL", "IFA_ADDRESS"}


def test_neighbour_and_proxy_entry() -> None:
    got = decode(ndmsg, rtnl.neigh("add", "10.1.0.1", 4, lladdr="02:00:00:00:00:01", state=4))
    assert got["type"] == rtnl.RTM_NEWNEIGH
    assert (got["msg"]["ifindex"], got["msg"]["state"], got["msg"]["flags"]) == (4, 4, 0)
    assert got["attrs"] == {"NDA_DST": "10.1.0.1", "NDA_LLADDR": "02:00:00:00:00:01"}
    proxy = decode(
        ndmsg, rtnl.neigh("del", "10.1.0.100", 2, lladdr="02:00:00:00:00:01", proxy=True)
    )
    assert proxy["type"] == rtnl.RTM_DELNEIGH and proxy["msg"]["flags"] == rtnl.NTF_PROXY
    assert proxy["attrs"] == {"NDA_DST": "10.1.0.100"}


def test_rule_from_and_to_a_host() -> None:
    got = decode(fibmsg, rtnl.rule("add", 123, 115, src="10.1.0.100", dst="198.51.100.1"))
    msg = got["msg"]
    assert got["type"] == rtnl.RTM_NEWRULE and got["flags"] & rtnl.NLM_F_EXCL
    assert (msg["src_len"], msg["dst_len"], msg["table"], msg["action"]) == (32, 32, 123, 1)
    assert got["attrs"] == {
        "FRA_SRC": "10.1.0.100",
        "FRA_DST": "198.51.100.1",
        "FRA_PRIORITY": 115,
        "FRA_TABLE": 123,
    }
    big = decode(fibmsg, rtnl.rule("del", 1000, 5, src="10.1.0.100"))
    assert big["type"] == rtnl.RTM_DELRULE
    assert big["msg"]["table"] == 0 and big["attrs"]["FRA_TABLE"] == 1000


def test_link_up() -> None:
    got = decode(ifinfmsg, rtnl.link_up(5))
    assert got["type"] == rtnl.RTM_NEWLINK
    assert (got["msg"]["index"], got["msg"]["flags"], got["msg"]["change"]) == (5, 1, 1)


def test_unknown_operation_is_refused() -> None:
    with pytest.raises(ValueError, match="add, replace or del"):
        rtnl.route("flush", "0.0.0.0/0")  # type: ignore[arg-type]


def _address_message(index: int, address: str, prefixlen: int, flags: int) -> bytes:
    body = struct.pack("=BBBBi", socket.AF_INET, prefixlen, flags & 0xFF, 0, index)
    body += struct.pack("=HH", 8, rtnl.IFA_LOCAL) + IPv4Address(address).packed
    body += struct.pack("=HHI", 8, rtnl.IFA_FLAGS, flags)
    return struct.pack("=IHHII", 16 + len(body), rtnl.RTM_NEWADDR, 2, 1, 0) + body


def test_address_dump_parsing() -> None:
    data = _address_message(3, "10.1.0.9", 24, 0x80) + _address_message(4, "10.2.0.9", 32, 0x200)
    infos = [rtnl.parse_address(body) for _k, _f, _s, body in rtnl._messages(data)]
    assert infos == [
        rtnl.AddressInfo(3, IPv4Address("10.1.0.9"), 24, 0x80),
        rtnl.AddressInfo(4, IPv4Address("10.2.0.9"), 32, 0x200),
    ]


def test_garbage_replies_never_raise() -> None:
    rng = random.Random(5)
    good = _address_message(3, "10.1.0.9", 24, 0)
    for _ in range(3000):
        data = bytearray(good * rng.randint(0, 2))
        for _ in range(rng.randint(0, 8)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data[: rng.randint(0, len(data))]) + rng.randbytes(rng.randint(0, 20))
        for _kind, _flags, _seq, body in rtnl._messages(data):
            rtnl.parse_address(body)


def test_link_down_and_out_of_its_bridge_then_into_another() -> None:
    down = decode(ifinfmsg, rtnl.link(5, up=False, master=0))
    assert (down["msg"]["flags"], down["msg"]["change"]) == (0, 1)
    assert down["attrs"]["IFLA_MASTER"] == 0
    attach = decode(ifinfmsg, rtnl.link(5, master=9))
    assert attach["msg"]["change"] == 0 and attach["attrs"]["IFLA_MASTER"] == 9
