"""Apply a lease to one interface of the current network namespace over rtnetlink.

Addresses get the lease's remaining time as their kernel lifetime (valid_lft), as
systemd-networkd does: if the client dies, the kernel still drops the address when the
lease ends (RFC 2131 section 4.4.5: no use after expiry). It also marks them as dynamic
(no IFA_F_PERMANENT), which is how a new lease finds stale ones left by an earlier run.

The requests are raw rtnetlink (mipbase.rtnl), all of a lease in one batch: on a
mobile node this sits between the DHCP ACK and the first packet on the new network. The
socket is opened in ``__init__``, so it belongs to the network namespace of the
constructing thread, like the driver's packet sockets.
"""

from __future__ import annotations

import math
import os
import socket
from ipaddress import IPv4Address

from agents.dhcp.client import Lease
from mipbase import rtnl

NUD_STALE = rtnl.NUD_STALE  # usable at once, verified by the kernel on use
RTPROT_DHCP = 16  # /etc/iproute2/rt_protos: "dhcp"
DEFAULT = "0.0.0.0/0"


class LinkConfigurator:
    """Owns one rtnetlink socket; acts on interface ``ifname`` only."""

    def __init__(self, ifname: str, route_metric: int = 0) -> None:
        self.ifname = ifname
        self.metric = route_metric
        try:
            self.index: int = socket.if_nametoindex(ifname)
        except OSError:
            raise OSError(f"no interface {ifname} in this network namespace") from None
        self._rtnl = rtnl.Rtnl()

    def close(self) -> None:
        self._rtnl.close()

    def set_up(self) -> None:
        self._rtnl.call(rtnl.link_up(self.index))

    def apply(
        self, lease: Lease, previous: Lease | None, now: float, router_mac: str | None = None
    ) -> None:
        """Configure ``lease``; drop ``previous`` and stale dynamic addresses of this link.
        With ``router_mac``, the router also becomes a (stale, verified on use) neighbour,
        replacing what the kernel has: the ACK came from that address just now, and an
        entry there may be an unresolved one (INCOMPLETE or FAILED, left by a packet routed
        to the router before the lease, e.g. on the last visit), on which "add" fails and
        which only a broadcast ARP request would resolve.

        One batch; only the address and the default route must succeed (removals find
        nothing when converged)."""
        keep = (lease.address, lease.prefix_len)
        batch: list[rtnl.Request] = []  # in order: the old out, the new in
        if previous is not None and previous.router and previous.router != lease.router:
            batch.append(self._del_default(previous.router))
        stale = set(self._dynamic_addresses())
        if previous is not None:
            stale.add((previous.address, previous.prefix_len))
        batch += [self._del_addr(a, p) for a, p in sorted(stale - {keep})]
        lifetime: dict[str, int] = {}
        if lease.expires_at is not None:
            left = max(1, math.ceil(lease.expires_at - now))
            lifetime = {"valid_lft": left, "preferred_lft": left}
        broadcast = lease.network.broadcast_address
        batch.append(
            rtnl.addr(
                "replace",
                self.index,
                lease.address,
                lease.prefix_len,
                broadcast=broadcast,
                **lifetime,
            )
        )
        required = [len(batch) - 1]
        if lease.router is not None:
            if router_mac is not None:  # before the route that sends to it
                batch.append(
                    rtnl.neigh(
                        "replace", lease.router, self.index, lladdr=router_mac, state=NUD_STALE
                    )
                )
            batch.append(
                rtnl.route(
                    "replace",
                    DEFAULT,
                    gateway=lease.router,
                    oif=self.index,
                    proto=RTPROT_DHCP,
                    priority=self.metric,
                )
            )
            required.append(len(batch) - 1)
        codes = self._rtnl.run(batch)
        for position in required:
            if codes[position]:
                raise rtnl.NetlinkError(
                    codes[position],
                    f"applying the lease on {self.ifname}: {os.strerror(codes[position])}",
                )

    def remove(self, lease: Lease) -> None:
        ops = [self._del_addr(lease.address, lease.prefix_len)]
        if lease.router is not None:
            ops.insert(0, self._del_default(lease.router))
        self._rtnl.run(ops)

    def _dynamic_addresses(self) -> list[tuple[IPv4Address, int]]:
        return [
            (info.address, info.prefixlen)
            for info in self._rtnl.addresses(self.index)
            if not info.flags & rtnl.IFA_F_PERMANENT
        ]

    def _del_addr(self, address: IPv4Address, prefix_len: int) -> rtnl.Request:
        return rtnl.addr("del", self.index, address, prefix_len)

    def _del_default(self, router: IPv4Address) -> rtnl.Request:
        return rtnl.route("del", DEFAULT, gateway=router, oif=self.index, priority=self.metric)
