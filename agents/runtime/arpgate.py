"""RFC 5944 4.6 on the mobile node's link: no broadcast ARP away from home, whatever the timing.

The kernel forgets a link's neighbour entries when its carrier goes, but the routes that led
to them stay until the agent has read of the loss and taken them away. On a move faster
than that (the lab attaches the node to its next network ~0.5 ms after detaching it; the
agent takes 0.5-2 ms to react, more on a busy machine), a packet sent in between (the
correspondent's stream, a TCP segment, from the home address) made the kernel broadcast an
ARP request on the *new* network for a neighbour of the old one: 'who-has 10.2.0.254 tell
10.1.0.100' on office after visited, 'who-has 10.1.0.10 tell 10.1.0.100' on visited after
home. No setting can be changed in time from user space, because user space is what is
late; so the kernel never broadcasts on this link (``mcast_solicit`` 0) and asks us instead
(``app_solicit``: an ``RTM_GETNEIGH`` on RTNLGRP_NEIGH, immediately and then once a second),
and we broadcast the request ourselves only for a target on a network we know we are on:

* the home network, from the home address, once the home agent's advertisement said we are
  home (returned_home), until the next carrier loss;
* the subnet of the current DHCP lease, from that address (a co-located care-of address is
  an ordinary host on its link; its router's MAC normally comes with the ACK);

and only if we have followed every carrier change of the link: the kernel counts them as
they happen (IFLA_CARRIER_CHANGES), before it tells us, so a request made after a move we
have not yet read of finds the kernel's count ahead of ours and is withheld. What the MN
needs away from home it learns without ARP (the agent's MAC from its advertisement, the
router's from the DHCP ACK); unicast probes that re-verify a known MAC stay with the kernel.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from agents.dataplane.arp import arp_request_frame, interface_mac, neigh_param, set_neigh_param
from mipbase import rtnl
from mipbase.events import EventWriter

# the kernel's own resolution on the MN's link: no broadcasts, three requests to us
SOLICIT = {"mcast_solicit": 0, "app_solicit": 3}


class Link(Protocol):
    """What we know of the link (mipbase.linkwatch.LinkWatcher): carrier, and the kernel's
    carrier change count as of the last change we read of."""

    carrier: bool
    changes: int | None


@dataclass(frozen=True)
class Scope:
    network: IPv4Network
    sender: IPv4Address


def decide(
    target: IPv4Address,
    scopes: dict[str, Scope],
    *,
    carrier: bool,
    followed: int | None,
    kernel: int | None,
) -> tuple[Scope | None, str]:
    """Whether to broadcast a request for ``target``: the scope it falls in, or None and why
    not. ``followed`` is the change count we have read of, ``kernel`` the kernel's now."""
    if followed is None or kernel is None or followed != kernel:
        return None, "link_changed"  # moved (or flapped) and we have not read of it yet
    if not carrier:
        return None, "no_carrier"
    for name, scope in scopes.items():
        if target in scope.network:
            return scope, name
    return None, "away"


class ArpGate:
    """Answers the kernel's requests to resolve an address on ``ifname`` (see the module).

    Made in the MN's network namespace, on its loop's thread; :meth:`on_readable` when
    :meth:`fileno` is readable.
    """

    def __init__(self, ifname: str, link: Link, events: EventWriter) -> None:
        self.ifname = ifname
        self.link = link
        self.events = events
        self.index = socket.if_nametoindex(ifname)
        self.mac = interface_mac(ifname)
        self.scopes: dict[str, Scope] = {}
        self._saved = {name: neigh_param(ifname, name) for name in SOLICIT}
        self.query = rtnl.Rtnl()
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
        )
        self.packet = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.sock.bind((0, 1 << (rtnl.RTNLGRP_NEIGH - 1)))
            self.sock.setblocking(False)
            self.packet.bind((ifname, 0))
            for name, value in SOLICIT.items():
                set_neigh_param(ifname, name, value)
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def allow(self, name: str, network: IPv4Network, sender: IPv4Address | str) -> None:
        """Resolve targets in ``network`` from ``sender`` (until :meth:`revoke`)."""
        self.scopes[name] = Scope(network, IPv4Address(sender))

    def revoke(self, name: str | None = None) -> None:
        """No longer resolve in scope ``name`` (None: any; the carrier went)."""
        if name is None:
            self.scopes.clear()
        else:
            self.scopes.pop(name, None)

    def on_readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ENOBUFS: requests lost; the kernel asks again in a second
                continue
            for request in rtnl.neighbour_requests(data):
                if request.index == self.index:
                    self.resolve(request.address)

    def resolve(self, target: IPv4Address) -> bool:
        """Broadcast a request for ``target`` if :func:`decide` allows it; whether it did."""
        try:
            kernel = self.query.link_info(self.index).carrier_changes
        except OSError:
            kernel = None
        scope, why = decide(
            target,
            self.scopes,
            carrier=self.link.carrier,
            followed=self.link.changes,
            kernel=kernel,
        )
        if scope is None:
            self.events.emit("arp_withheld", target=str(target), reason=why)
            return False
        try:
            self.packet.send(arp_request_frame(self.mac, scope.sender, target))
        except OSError as exc:  # the kernel asks again in a second
            self.events.emit("send_failed", dst=str(target), error=str(exc), what="arp")
            return False
        self.events.emit("arp_request_sent", target=str(target), sender=str(scope.sender))
        return True

    def close(self) -> None:
        """Give the kernel its own resolution back (a later agent sets it again)."""
        for name, value in self._saved.items():
            with contextlib.suppress(OSError):  # the interface went with the namespace
                set_neigh_param(self.ifname, name, value)
        self.sock.close()
        self.packet.close()
        self.query.close()
