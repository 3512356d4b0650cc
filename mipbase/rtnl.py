"""Address, route, neighbour and rule changes as raw rtnetlink requests, sent in batches.

The handoff path changes a handful of these per message (a mode c move: the care-of
address, a default route, a host route to the home agent, the home address onto the TUN).
Through pyroute2 each costs ~0.5 ms on this machine: a hop to the worker thread its
event loop needs, then building and parsing its message objects. Here a request is a few
``struct.pack`` calls and a whole batch is one ``sendmsg``, which the kernel handles
before it returns, then the acks are read back: tens of microseconds
(benchmarks/bench_rtnl.py prints both). pyroute2 stays where speed does not matter
(building labs, kernel tunnels).

The encoders are pure functions (unit-tested against the kernel's layouts); :class:`Rtnl`
is the one socket. Requests in a batch are independent: the kernel acknowledges each with
its own error code and goes on to the next (``netlink_rcv_skb``).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

Op = Literal["add", "replace", "del"]

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_NEWRULE, RTM_DELRULE = 32, 33

IFLA_MASTER, IFLA_CARRIER_CHANGES = 10, 35
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST, IFA_CACHEINFO, IFA_FLAGS = 1, 2, 4, 6, 8
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15
NDA_DST, NDA_LLADDR = 1, 2
FRA_DST, FRA_SRC, FRA_PRIORITY, FRA_TABLE = 1, 2, 6, 15

RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_NOWHERE = 0, 253, 255
RTN_UNSPEC, RTN_UNICAST = 0, 1
RTNH_F_ONLINK = 4
FR_ACT_TO_TBL = 1
NUD_INCOMPLETE, NUD_REACHABLE, NUD_STALE, NUD_DELAY, NUD_PROBE = 0x01, 0x02, 0x04, 0x08, 0x10
NUD_FAILED, NUD_NOARP, NUD_PERMANENT = 0x20, 0x40, 0x80
# a usable link-layer address (include/net/neighbour.h); INCOMPLETE and FAILED have none
NUD_VALID = NUD_PERMANENT | NUD_NOARP | NUD_REACHABLE | NUD_PROBE | NUD_STALE | NUD_DELAY
RTNLGRP_NEIGH = 3  # neighbour changes, and the kernel's requests to resolve (app_solicit)
NTF_PROXY = 0x08
IFA_F_PERMANENT = 0x80
IFF_UP, IFF_LOWER_UP = 0x1, 0x10000
INFINITY_LIFE_TIME = 0xFFFFFFFF

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_RTATTR = struct.Struct("=HH")  # length, type
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope,
#                                       type, flags
_NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
_FIB_RULE_HDR = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, res1,
#                                              res2, action, flags
_IFA_CACHEINFO = struct.Struct("=IIII")  # preferred, valid, cstamp, tstamp
_ERRNO = struct.Struct("=i")

_CREATE_FLAGS = {
    "add": NLM_F_CREATE | NLM_F_EXCL,
    "replace": NLM_F_CREATE | NLM_F_REPLACE,
    "del": 0,
}


@dataclass(frozen=True)
class Request:
    """One rtnetlink request without its header: the header's type and flags, and the body
    (the family-specific struct and its attributes)."""

    type: int
    flags: int
    body: bytes

    def encode(self, seq: int, port: int = 0) -> bytes:
        flags = NLM_F_REQUEST | NLM_F_ACK | self.flags
        return _NLMSGHDR.pack(_NLMSGHDR.size + len(self.body), self.type, flags, seq, port) + (
            self.body
        )


def _attr(kind: int, value: bytes) -> bytes:
    length = _RTATTR.size + len(value)
    return _RTATTR.pack(length, kind) + value + b"\0" * (-length % 4)


def _ip(address: str | IPv4Address) -> bytes:
    return IPv4Address(address).packed


def _u32(value: int) -> bytes:
    return struct.pack("=I", value)


def _flags(op: Op) -> int:
    try:
        return _CREATE_FLAGS[op]
    except KeyError:
        raise ValueError(f"rtnetlink operation must be add, replace or del, not {op!r}") from None


def link_up(index: int) -> Request:
    """``ip link set dev INDEX up``."""
    return link(index, up=True)


def link(index: int, *, up: bool | None = None, master: int | None = None) -> Request:
    """``ip link set dev INDEX [up|down] [master M | nomaster (M = 0)]``."""
    change = 0 if up is None else IFF_UP
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, IFF_UP if up else 0, change)
    if master is not None:
        body += _attr(IFLA_MASTER, _u32(master))
    return Request(RTM_NEWLINK, 0, body)


def addr(
    op: Op,
    index: int,
    address: str | IPv4Address,
    prefixlen: int,
    *,
    broadcast: str | IPv4Address | None = None,
    valid_lft: int | None = None,
    preferred_lft: int | None = None,
) -> Request:
    """``ip addr add|replace|del ADDRESS/PREFIXLEN dev INDEX [broadcast B] [valid_lft ...]``;
    an address with lifetimes is dynamic (not IFA_F_PERMANENT), as iproute2 makes it."""
    body = _IFADDRMSG.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
    body += _attr(IFA_LOCAL, _ip(address)) + _attr(IFA_ADDRESS, _ip(address))
    if broadcast is not None and op != "del":
        body += _attr(IFA_BROADCAST, _ip(broadcast))
    if (valid_lft is not None or preferred_lft is not None) and op != "del":
        valid = INFINITY_LIFE_TIME if valid_lft is None else valid_lft
        preferred = valid if preferred_lft is None else preferred_lft
        body += _attr(IFA_CACHEINFO, _IFA_CACHEINFO.pack(preferred, valid, 0, 0))
    kind = RTM_DELADDR if op == "del" else RTM_NEWADDR
    return Request(kind, _flags(op), body)


def route(
    op: Op,
    dst: str,
    *,
    gateway: str | IPv4Address | None = None,
    oif: int | None = None,
    prefsrc: str | IPv4Address | None = None,
    priority: int | None = None,
    table: int = RT_TABLE_MAIN,
    onlink: bool = False,
    proto: int = RTPROT_BOOT,
) -> Request:
    """``ip route add|replace|del DST [via G] [dev OIF] [src S] [metric P] [table T]
    [onlink]``. A deletion matches any scope, type and protocol, as ``ip route del`` does;
    a route without a gateway is link-scoped."""
    network = IPv4Network(dst, strict=False)
    if op == "del":
        scope, kind, proto = RT_SCOPE_NOWHERE, RTN_UNSPEC, 0
    else:
        scope = RT_SCOPE_UNIVERSE if gateway is not None else RT_SCOPE_LINK
        kind = RTN_UNICAST
    body = _RTMSG.pack(
        socket.AF_INET,
        network.prefixlen,
        0,
        0,
        table if table < 256 else 0,
        proto,
        scope,
        kind,
        RTNH_F_ONLINK if onlink else 0,
    )
    if network.prefixlen:
        body += _attr(RTA_DST, network.network_address.packed)
    if table >= 256:
        body += _attr(RTA_TABLE, _u32(table))
    if gateway is not None:
        body += _attr(RTA_GATEWAY, _ip(gateway))
    if oif is not None:
        body += _attr(RTA_OIF, _u32(oif))
    if prefsrc is not None:
        body += _attr(RTA_PREFSRC, _ip(prefsrc))
    if priority is not None:
        body += _attr(RTA_PRIORITY, _u32(priority))
    return Request(RTM_DELROUTE if op == "del" else RTM_NEWROUTE, _flags(op), body)


def neigh(
    op: Op,
    dst: str | IPv4Address,
    ifindex: int,
    *,
    lladdr: str | None = None,
    state: int = NUD_PERMANENT,
    proxy: bool = False,
) -> Request:
    """``ip neigh add|replace|del DST [lladdr MAC] [nud STATE] [proxy] dev IFINDEX``."""
    body = _NDMSG.pack(socket.AF_INET, ifindex, state, NTF_PROXY if proxy else 0, 0)
    body += _attr(NDA_DST, _ip(dst))
    if lladdr is not None and op != "del":
        body += _attr(NDA_LLADDR, bytes.fromhex(lladdr.replace(":", "")))
    return Request(RTM_DELNEIGH if op == "del" else RTM_NEWNEIGH, _flags(op), body)


def rule(
    op: Op,
    table: int,
    priority: int,
    *,
    src: str | IPv4Address | None = None,
    dst: str | IPv4Address | None = None,
) -> Request:
    """``ip rule add|del [from SRC/32] [to DST/32] lookup TABLE priority PRIORITY``."""
    body = _FIB_RULE_HDR.pack(
        socket.AF_INET,
        32 if dst is not None else 0,
        32 if src is not None else 0,
        0,
        table if table < 256 else 0,
        0,
        0,
        FR_ACT_TO_TBL,
        0,
    )
    if src is not None:
        body += _attr(FRA_SRC, _ip(src))
    if dst is not None:
        body += _attr(FRA_DST, _ip(dst))
    body += _attr(FRA_PRIORITY, _u32(priority)) + _attr(FRA_TABLE, _u32(table))
    # rules have no replace: an "add" of an existing rule gets EEXIST only with NLM_F_EXCL
    return Request(RTM_DELRULE if op == "del" else RTM_NEWRULE, _flags(op), body)


def get_addresses() -> Request:
    """Dump of every IPv4 address (``ip -4 addr show``)."""
    body = _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
    return Request(RTM_GETADDR, NLM_F_DUMP, body)


def get_link(index: int) -> Request:
    """One interface's state (``ip link show dev INDEX``)."""
    return Request(RTM_GETLINK, 0, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0))


def get_neigh(dst: str | IPv4Address, ifindex: int) -> Request:
    """One neighbour entry (``ip neigh get DST dev IFINDEX``)."""
    body = _NDMSG.pack(socket.AF_INET, ifindex, 0, 0, 0) + _attr(NDA_DST, _ip(dst))
    return Request(RTM_GETNEIGH, 0, body)


@dataclass(frozen=True)
class AddressInfo:
    index: int
    address: IPv4Address
    prefixlen: int
    flags: int  # IFA_F_*, from IFA_FLAGS when the kernel gives them (it has more bits)


def _messages(data: bytes) -> Iterator[tuple[int, int, int, memoryview]]:
    """(type, flags, sequence, body) of each whole message in ``data``."""
    view = memoryview(data)
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _port = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            return
        yield kind, flags, seq, view[offset + _NLMSGHDR.size : offset + length]
        offset += (length + 3) & ~3


def _attrs(body: memoryview, start: int) -> Iterator[tuple[int, memoryview]]:
    offset = start
    while offset + _RTATTR.size <= len(body):
        length, kind = _RTATTR.unpack_from(body, offset)
        if length < _RTATTR.size or offset + length > len(body):
            return
        yield kind, body[offset + _RTATTR.size : offset + length]
        offset += (length + 3) & ~3


def parse_address(body: memoryview) -> AddressInfo | None:
    """One RTM_NEWADDR body; None for anything but an IPv4 address with IFA_LOCAL."""
    if len(body) < _IFADDRMSG.size:
        return None
    family, prefixlen, flags, _scope, index = _IFADDRMSG.unpack_from(body)
    if family != socket.AF_INET:
        return None
    local = None
    for kind, value in _attrs(body, _IFADDRMSG.size):
        if kind == IFA_LOCAL and len(value) == 4:
            local = IPv4Address(bytes(value))
        elif kind == IFA_FLAGS and len(value) == 4:
            flags = struct.unpack("=I", value)[0]
    return None if local is None else AddressInfo(index, local, prefixlen, flags)


@dataclass(frozen=True)
class LinkInfo:
    index: int
    flags: int  # IFF_*: IFF_LOWER_UP is the carrier
    carrier_changes: int | None  # IFLA_CARRIER_CHANGES: the kernel counts each as it happens

    @property
    def carrier(self) -> bool:
        return bool(self.flags & IFF_LOWER_UP)


def parse_link(body: memoryview) -> LinkInfo | None:
    """One RTM_NEWLINK body; None when it is too short."""
    if len(body) < _IFINFOMSG.size:
        return None
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(body)
    changes = None
    for kind, value in _attrs(body, _IFINFOMSG.size):
        if kind == IFLA_CARRIER_CHANGES and len(value) == 4:
            changes = struct.unpack("=I", value)[0]
    return LinkInfo(index, flags, changes)


@dataclass(frozen=True)
class NeighbourInfo:
    index: int
    address: IPv4Address
    state: int  # NUD_*
    lladdr: str | None


def parse_neigh(body: memoryview) -> NeighbourInfo | None:
    """One RTM_NEWNEIGH or RTM_GETNEIGH body (the kernel's request to resolve is the latter);
    None for anything but an IPv4 neighbour with NDA_DST."""
    if len(body) < _NDMSG.size:
        return None
    family, index, state, _flags, _type = _NDMSG.unpack_from(body)
    if family != socket.AF_INET:
        return None
    dst = lladdr = None
    for kind, value in _attrs(body, _NDMSG.size):
        if kind == NDA_DST and len(value) == 4:
            dst = IPv4Address(bytes(value))
        elif kind == NDA_LLADDR:
            lladdr = ":".join(f"{b:02x}" for b in bytes(value))
    return None if dst is None else NeighbourInfo(index, dst, state, lladdr)


def neighbour_requests(data: bytes) -> list[NeighbourInfo]:
    """The kernel's requests to resolve an address (``RTM_GETNEIGH`` on RTNLGRP_NEIGH, sent
    instead of a broadcast ARP request while ``app_solicit`` allows; ``ip monitor`` prints
    them as "miss") in ``data`` from a socket of that group; its other messages are skipped."""
    out = []
    for kind, _flags, _seq, body in _messages(data):
        info = parse_neigh(body) if kind == RTM_GETNEIGH else None
        if info is not None:
            out.append(info)
    return out


class NetlinkError(OSError):
    """A request the kernel refused; ``errno`` is its error code."""


class Rtnl:
    """One NETLINK_ROUTE socket of the calling thread's network namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC)
        try:
            self.sock.bind((0, 0))
            self.sock.settimeout(2.0)  # the kernel answers before sendmsg returns
            self.port = self.sock.getsockname()[0]
        except BaseException:
            self.sock.close()
            raise
        self._seq = 0
        # an agent's loop and its boundary worker may both change routes: one request
        # batch and its acks at a time on the socket
        self._lock = threading.Lock()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, requests: list[Request]) -> dict[int, int]:
        seqs = {}
        parts = []
        for request in requests:
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            seqs[self._seq] = len(parts)
            parts.append(request.encode(self._seq, self.port))
        self.sock.sendmsg(parts)
        return seqs

    def run(self, requests: Iterable[Request]) -> list[int]:
        """Send ``requests`` in one batch; each one's error code (0: done), in order."""
        batch = list(requests)
        if not batch:
            return []
        with self._lock:
            return self._run(batch)

    def _run(self, batch: list[Request]) -> list[int]:
        seqs = self._send(batch)
        results: list[int | None] = [None] * len(batch)
        waiting = len(batch)
        while waiting:
            data = self.sock.recv(65536)
            for kind, _flags, seq, body in _messages(data):
                position = seqs.get(seq)
                if kind != NLMSG_ERROR or position is None or results[position] is not None:
                    continue
                code = -_ERRNO.unpack_from(body)[0] if len(body) >= 4 else errno.EPROTO
                results[position] = code
                waiting -= 1
        return [code or 0 for code in results]

    def call(self, request: Request, *, ignore: tuple[int, ...] = ()) -> bool:
        """One request; True if done, False if refused with one of ``ignore``, else
        :class:`NetlinkError`."""
        (code,) = self.run([request])
        if code == 0:
            return True
        if code in ignore:
            return False
        raise NetlinkError(code, f"rtnetlink: {os.strerror(code)}")

    def _get(self, request: Request) -> tuple[int, list[tuple[int, bytes]]]:
        """One get request: its error code (0: found) and the (type, body) it answered."""
        with self._lock:
            (seq,) = self._send([request])
            answer: list[tuple[int, bytes]] = []
            while True:
                data = self.sock.recv(65536)
                for kind, _flags, got, body in _messages(data):
                    if got != seq:
                        continue
                    if kind == NLMSG_ERROR:  # the ack (0) after the answer, or the refusal
                        code = -_ERRNO.unpack_from(body)[0] if len(body) >= 4 else errno.EPROTO
                        return code, answer
                    answer.append((kind, bytes(body)))

    def link_info(self, index: int) -> LinkInfo:
        """Interface ``index`` as the kernel has it now (carrier, carrier change count)."""
        code, answer = self._get(get_link(index))
        if code:
            raise NetlinkError(code, f"rtnetlink get link {index}: {os.strerror(code)}")
        for kind, body in answer:
            info = parse_link(memoryview(body)) if kind == RTM_NEWLINK else None
            if info is not None and info.index == index:
                return info
        raise NetlinkError(errno.EPROTO, f"rtnetlink get link {index}: no answer")

    def neighbour(self, dst: str | IPv4Address, ifindex: int) -> NeighbourInfo | None:
        """The kernel's entry for ``dst`` on ``ifindex``; None when it has none."""
        code, answer = self._get(get_neigh(dst, ifindex))
        if code == errno.ENOENT:
            return None
        if code:
            raise NetlinkError(code, f"rtnetlink get neighbour {dst}: {os.strerror(code)}")
        for kind, body in answer:
            info = parse_neigh(memoryview(body)) if kind == RTM_NEWNEIGH else None
            if info is not None:
                return info
        return None

    def addresses(self, index: int | None = None) -> list[AddressInfo]:
        """The IPv4 addresses of interface ``index`` (of all with None)."""
        with self._lock:
            return self._addresses(index)

    def _addresses(self, index: int | None) -> list[AddressInfo]:
        (seq,) = self._send([get_addresses()])
        out: list[AddressInfo] = []
        while True:
            data = self.sock.recv(65536)
            for kind, _flags, got, body in _messages(data):
                if got != seq:
                    continue
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    code = -_ERRNO.unpack_from(body)[0] if len(body) >= 4 else errno.EPROTO
                    if code:
                        raise NetlinkError(code, f"rtnetlink dump: {os.strerror(code)}")
                    continue
                info = parse_address(body)
                if info is not None and (index is None or info.index == index):
                    out.append(info)


__all__ = [
    "AddressInfo",
    "LinkInfo",
    "NeighbourInfo",
    "NetlinkError",
    "Request",
    "Rtnl",
    "addr",
    "get_addresses",
    "get_link",
    "get_neigh",
    "link",
    "link_up",
    "neigh",
    "neighbour_requests",
    "parse_address",
    "parse_link",
    "parse_neigh",
    "route",
    "rule",
]
