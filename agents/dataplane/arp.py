"""Home-network plumbing of RFC 5944 section 4.6: proxy ARP, gratuitous ARP, host routes.

While a mobile node is away, its home agent answers ARP for the home address (proxy ARP)
and, on registration, broadcasts a gratuitous ARP so that nodes on the home link replace the
mobile node's MAC in their caches with the HA's. On deregistration the HA withdraws the
proxy entry and the mobile node, back home, sends its own gratuitous ARP (RFC 5944 section
4.6 also suggests repeating these a few times; the agent does that on its timer).

Linux details that matter:

* a proxy entry (``ip neigh add proxy ADDR dev IF``: ``RTM_NEWNEIGH`` with ``NTF_PROXY``)
  is only answered
  if forwarding is on for ``IF`` and the route to ADDR leaves by another device (the TUN);
* broadcast requests for a proxied address are answered after a random delay of up to
  ``neigh/IF/proxy_delay`` (default 0.8 s): :func:`set_proxy_delay` sets it to 0;
* Linux updates an *existing* cache entry from a gratuitous ARP (request or reply) even
  with ``arp_accept`` 0; it creates no new entry unless ``arp_accept`` is 1.

Netlink goes through :class:`Plumbing` (raw rtnetlink requests, see
:mod:`mipbase.rtnl`). The ``/proc/sys`` helpers are per network namespace (the
calling thread's).
"""

from __future__ import annotations

import errno
import fcntl
import socket
import struct
import time
from ipaddress import IPv4Address
from typing import Any, Final, Literal

from mipbase import rtnl
from mipbase.rtnl import Rtnl

ETH_P_ARP: Final = 0x0806
ETH_P_IP: Final = 0x0800
ARP_REQUEST: Final = 1
ARP_REPLY: Final = 2
BROADCAST_MAC: Final = b"\xff" * 6
SIOCGIFHWADDR: Final = 0x8927
NUD_STALE: Final = rtnl.NUD_STALE
RT_TABLE_MAIN: Final = rtnl.RT_TABLE_MAIN
_GONE: Final = (errno.ENOENT, errno.ESRCH)  # removing what is already gone
_ARP = struct.Struct("!6s6sHHHBBH6s4s6s4s")  # Ethernet header + ARP for IPv4 over Ethernet
Address = str | IPv4Address


# --- gratuitous ARP ---------------------------------------------------------------------


def interface_mac(ifname: str) -> bytes:
    """The 6-byte hardware address of ``ifname`` in this namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        res = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("256s", ifname.encode()[:15]))
    return res[18:24]


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def gratuitous_arp_frame(
    mac: bytes, address: Address, op: Literal["request", "reply"] = "request"
) -> bytes:
    """A broadcast gratuitous ARP frame (RFC 5944 section 4.6).

    Sender and target protocol address are both ``address``, the sender hardware address is
    ``mac``. For a request the target hardware address is zero (RFC 5227 style); for a reply
    it is the broadcast address, the link-layer address the update is meant for.
    """
    if len(mac) != 6:
        raise ValueError("mac must be 6 bytes")
    ip4 = IPv4Address(address).packed
    code = ARP_REQUEST if op == "request" else ARP_REPLY
    tha = b"\0" * 6 if code == ARP_REQUEST else BROADCAST_MAC
    return _ARP.pack(BROADCAST_MAC, mac, ETH_P_ARP, 1, ETH_P_IP, 6, 4, code, mac, ip4, tha, ip4)


def parse_arp(frame: bytes) -> dict[str, Any] | None:
    """Decode an Ethernet ARP frame for IPv4 (None if it is not one); for tests and probes."""
    if len(frame) < _ARP.size:
        return None
    dst, src, etype, htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(frame)
    if etype != ETH_P_ARP or htype != 1 or ptype != ETH_P_IP or hlen != 6 or plen != 4:
        return None
    return {
        "eth_dst": mac_str(dst),
        "eth_src": mac_str(src),
        "op": op,
        "sha": mac_str(sha),
        "spa": str(IPv4Address(spa)),
        "tha": mac_str(tha),
        "tpa": str(IPv4Address(tpa)),
        "gratuitous": spa == tpa,
    }


def send_gratuitous_arp(
    ifname: str,
    address: Address,
    mac: bytes | None = None,
    *,
    op: Literal["request", "reply"] = "request",
    count: int = 1,
    interval: float = 0.0,
) -> int:
    """Broadcast ``count`` gratuitous ARPs for ``address`` on ``ifname``; returns frames sent.

    ``mac`` defaults to the interface's own (the HA's on registration; the mobile node's
    when it announces itself back home). With ``count`` > 1 this sleeps ``interval`` between
    frames: on an event loop, send one at a time from a timer instead.
    """
    if mac is None:
        mac = interface_mac(ifname)
    frame = gratuitous_arp_frame(mac, address, op)
    # Protocol 0: this socket only sends, nothing is queued for it to read.
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as s:
        s.bind((ifname, 0))
        for i in range(count):
            if i and interval > 0:
                time.sleep(interval)
            s.send(frame)
    return count


# --- per-namespace sysctls --------------------------------------------------------------


def _write_sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def neigh_param(ifname: str, name: str) -> int:
    """``net.ipv4.neigh.IF.NAME`` (e.g. ``mcast_solicit``)."""
    with open(f"/proc/sys/net/ipv4/neigh/{ifname}/{name}") as f:
        return int(f.read())


def set_neigh_param(ifname: str, name: str, value: int) -> None:
    """Set ``net.ipv4.neigh.IF.NAME``: ``mcast_solicit`` (broadcast requests the kernel sends
    to resolve an address), ``app_solicit`` (requests it makes to user space instead)."""
    _write_sysctl(f"/proc/sys/net/ipv4/neigh/{ifname}/{name}", str(value))


def set_proxy_delay(ifname: str, centiseconds: int = 0) -> None:
    """``net.ipv4.neigh.IF.proxy_delay`` (in jiffies as USER_HZ, i.e. 1/100 s); 0 = answer
    proxied ARP requests at once instead of after up to 0.8 s."""
    _write_sysctl(f"/proc/sys/net/ipv4/neigh/{ifname}/proxy_delay", str(centiseconds))


def set_forwarding(ifname: str = "all", on: bool = True) -> None:
    """``net.ipv4.conf.IF.forwarding``: a home agent forwards, and Linux proxies ARP only on
    interfaces with forwarding on."""
    _write_sysctl(f"/proc/sys/net/ipv4/conf/{ifname}/forwarding", "1" if on else "0")


def arp_request_frame(mac: bytes, sender: Address, target: Address) -> bytes:
    """A broadcast ARP request: who has ``target``? Tell ``sender`` (at ``mac``)."""
    if len(mac) != 6:
        raise ValueError("mac must be 6 bytes")
    spa, tpa = IPv4Address(sender).packed, IPv4Address(target).packed
    zero = b"\0" * 6
    return _ARP.pack(
        BROADCAST_MAC, mac, ETH_P_ARP, 1, ETH_P_IP, 6, 4, ARP_REQUEST, mac, spa, zero, tpa
    )


# --- netlink ----------------------------------------------------------------------------


class Plumbing:
    """Routes, rules, addresses and proxy-ARP entries as raw rtnetlink requests
    (mipbase.rtnl: tens of microseconds each, on the calling thread).

    The socket is opened in ``__init__``, so it belongs to the network namespace of the
    constructing thread. Each call returns once the kernel has answered.
    """

    def __init__(self) -> None:
        self.rtnl = Rtnl()

    def run(self, requests: list[rtnl.Request]) -> list[int]:
        """Send ``requests`` in one batch; each one's error code (0: done). For changes
        that may fail on their own while routing converges ("no such route")."""
        return self.rtnl.run(requests)

    def close(self) -> None:
        self.rtnl.close()

    def __enter__(self) -> Plumbing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ifindex(self, ifname: str) -> int:
        # an ioctl (microseconds) where a link dump costs a millisecond on the handoff
        # path; the process and the socket share one network namespace
        try:
            return socket.if_nametoindex(ifname)
        except OSError:
            raise OSError(f"no interface {ifname} in this network namespace") from None

    # proxy ARP (RFC 5944 section 4.6)

    def add_proxy_arp(self, address: Address, ifname: str) -> None:
        """Answer ARP for ``address`` on ``ifname`` (``ip neigh replace proxy A dev IF``)."""
        self.rtnl.call(rtnl.neigh("replace", address, self.ifindex(ifname), proxy=True))

    def learn_neighbour(
        self, address: Address, mac: str, ifname: str, *, replace: bool = False
    ) -> bool:
        """Enter ``address`` at ``mac`` as a stale (usable, verified on use) neighbour.

        Without ``replace`` only if the kernel has no usable entry yet (False when it has
        one): replacing would demote a confirmed entry and start needless probes whenever an
        advertisement comes. An entry without an address (INCOMPLETE or FAILED: something
        was routed to ``address`` before we learnt it) is replaced: "add" fails on it as on
        any entry, and on the MN's link the kernel never resolves it by broadcast
        (agents.runtime.arpgate), so it would stay unusable.
        """
        index = self.ifindex(ifname)
        op: rtnl.Op = "replace" if replace else "add"
        request = rtnl.neigh(op, address, index, lladdr=mac, state=NUD_STALE)
        if self.rtnl.call(request, ignore=(errno.EEXIST,)):
            return True
        entry = self.rtnl.neighbour(address, index)
        if entry is not None and entry.state & rtnl.NUD_VALID:
            return False
        request = rtnl.neigh("replace", address, index, lladdr=mac, state=NUD_STALE)
        return self.rtnl.call(request)

    def del_proxy_arp(self, address: Address, ifname: str) -> bool:
        request = rtnl.neigh("del", address, self.ifindex(ifname), proxy=True)
        return self.rtnl.call(request, ignore=_GONE)

    # routes and rules

    def add_host_route(
        self,
        address: Address,
        ifname: str,
        *,
        table: int = RT_TABLE_MAIN,
        src: Address | None = None,
    ) -> None:
        """``ip route replace ADDR/32 dev IF [src S] [table T]``: e.g. a home address via the
        TUN at the HA (the packets to it then reach the tunnel engine)."""
        dst = f"{IPv4Address(address)}/32"
        oif = self.ifindex(ifname)
        self.rtnl.call(rtnl.route("replace", dst, oif=oif, prefsrc=src, table=table))

    def del_host_route(self, address: Address, *, table: int = RT_TABLE_MAIN) -> bool:
        dst = f"{IPv4Address(address)}/32"
        return self.rtnl.call(rtnl.route("del", dst, table=table), ignore=_GONE)

    def add_default_route(
        self, ifname: str, *, table: int = RT_TABLE_MAIN, src: Address | None = None
    ) -> None:
        """``ip route replace default dev IF [src S] [table T]`` (reverse tunnelling table)."""
        oif = self.ifindex(ifname)
        self.rtnl.call(rtnl.route("replace", "0.0.0.0/0", oif=oif, prefsrc=src, table=table))

    def add_source_rule(self, address: Address, table: int, priority: int = 1000) -> None:
        """``ip rule add from ADDR/32 lookup T priority P``: RFC 3024 reverse tunnelling of
        what a node sends from its home address, while everything else (registrations, the
        outer packets themselves) keeps the main table."""
        request = rtnl.rule("add", table, priority, src=address)
        self.rtnl.call(request, ignore=(errno.EEXIST,))

    def del_source_rule(self, address: Address, table: int, priority: int = 1000) -> bool:
        request = rtnl.rule("del", table, priority, src=address)
        return self.rtnl.call(request, ignore=_GONE)

    def add_address(self, ifname: str, address: Address, prefixlen: int = 32) -> None:
        """Put ``address`` on ``ifname`` (the home address on a mobile node's TUN)."""
        request = rtnl.addr("add", self.ifindex(ifname), address, prefixlen)
        self.rtnl.call(request, ignore=(errno.EEXIST,))

    def del_address(self, ifname: str, address: Address, prefixlen: int = 32) -> bool:
        request = rtnl.addr("del", self.ifindex(ifname), address, prefixlen)
        return self.rtnl.call(request, ignore=(*_GONE, errno.EADDRNOTAVAIL))


__all__ = [
    "Plumbing",
    "gratuitous_arp_frame",
    "interface_mac",
    "mac_str",
    "parse_arp",
    "send_gratuitous_arp",
    "set_forwarding",
    "set_proxy_delay",
]
