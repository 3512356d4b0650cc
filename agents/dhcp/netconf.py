"""Apply a lease to one interface of the current network namespace with pyroute2.

Addresses get the lease's remaining time as their kernel lifetime (valid_lft), as
systemd-networkd does: if the client dies, the kernel still drops the address when the
lease ends (RFC 2131 section 4.4.5: no use after expiry). It also marks them as dynamic
(no IFA_F_PERMANENT), which is how a new lease finds stale ones left by an earlier run.

pyroute2 0.9's synchronous ``IPRoute`` drives an asyncio loop of its own with
``run_until_complete``, so it cannot be created or called on a thread whose asyncio loop is
running (RuntimeError "This event loop is already running") -- exactly where a mobile node
agent embeds the driver. Hence every netlink call runs on one private worker thread. That
thread is started in ``__init__``, so it (and its netlink socket) lives in the network
namespace of the constructing thread, like the driver's packet sockets.
"""

from __future__ import annotations

import contextlib
import math
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address
from typing import TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from agents.dhcp.client import Lease

IFA_F_PERMANENT = 0x80
NUD_STALE = 0x04  # usable at once, verified by the kernel on use
RTPROT_DHCP = 16  # /etc/iproute2/rt_protos: "dhcp"
DEFAULT = "0.0.0.0/0"
_T = TypeVar("_T")


class LinkConfigurator:
    """Owns one netlink socket on a worker thread; acts on interface ``ifname`` only."""

    def __init__(self, ifname: str, route_metric: int = 0) -> None:
        self.ifname = ifname
        self.metric = route_metric
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"dhcp-nl-{ifname}")
        try:
            self._ipr: IPRoute = self._call(IPRoute)
            found = self._call(lambda: self._ipr.link_lookup(ifname=ifname))
            if not found:
                raise OSError(f"no interface {ifname} in this network namespace")
        except BaseException:
            self.close()
            raise
        self.index: int = found[0]

    def _call(self, fn: Callable[[], _T]) -> _T:
        return self._pool.submit(fn).result()

    def close(self) -> None:
        ipr = getattr(self, "_ipr", None)
        if ipr is not None:
            with contextlib.suppress(Exception):  # best effort on teardown
                self._call(ipr.close)
        self._pool.shutdown(wait=True)

    def set_up(self) -> None:
        self._call(lambda: self._ipr.link("set", index=self.index, state="up"))

    def apply(
        self, lease: Lease, previous: Lease | None, now: float, router_mac: str | None = None
    ) -> None:
        """Configure ``lease``; drop ``previous`` and stale dynamic addresses of this link.
        With ``router_mac``, the router also becomes a (stale, verified on use) neighbour."""
        self._call(lambda: self._apply(lease, previous, now, router_mac))

    def remove(self, lease: Lease) -> None:
        self._call(lambda: self._remove(lease))

    def _dynamic_addresses(self) -> list[tuple[IPv4Address, int]]:
        out = []
        for msg in self._ipr.get_addr(family=socket.AF_INET, index=self.index):
            flags = msg.get_attr("IFA_FLAGS")
            if flags is None:
                flags = msg["flags"]
            if not flags & IFA_F_PERMANENT:
                out.append((IPv4Address(msg.get_attr("IFA_LOCAL")), msg["prefixlen"]))
        return out

    def _del_addr(self, address: IPv4Address, prefix_len: int) -> None:
        with contextlib.suppress(NetlinkError):
            self._ipr.addr("del", index=self.index, address=str(address), prefixlen=prefix_len)

    def _del_default(self, router: IPv4Address) -> None:
        with contextlib.suppress(NetlinkError):
            self._ipr.route(
                "del", dst=DEFAULT, gateway=str(router), oif=self.index, priority=self.metric
            )

    def _apply(
        self, lease: Lease, previous: Lease | None, now: float, router_mac: str | None
    ) -> None:
        keep = (lease.address, lease.prefix_len)
        if previous is not None and previous.router and previous.router != lease.router:
            self._del_default(previous.router)
        stale = set(self._dynamic_addresses())
        if previous is not None:
            stale.add((previous.address, previous.prefix_len))
        for address, prefix_len in stale - {keep}:
            self._del_addr(address, prefix_len)
        lifetime: dict[str, int] = {}
        if lease.expires_at is not None:
            left = max(1, math.ceil(lease.expires_at - now))
            lifetime = {"valid_lft": left, "preferred_lft": left}
        self._ipr.addr(
            "replace",
            index=self.index,
            address=str(lease.address),
            prefixlen=lease.prefix_len,
            broadcast=str(lease.network.broadcast_address),
            **lifetime,
        )
        if lease.router is not None and router_mac is not None:
            with contextlib.suppress(NetlinkError):  # EEXIST: the kernel knows better
                self._ipr.neigh(
                    "add",
                    dst=str(lease.router),
                    lladdr=router_mac,
                    ifindex=self.index,
                    state=NUD_STALE,
                )
        if lease.router is not None:
            self._ipr.route(
                "replace",
                dst=DEFAULT,
                gateway=str(lease.router),
                oif=self.index,
                proto=RTPROT_DHCP,
                priority=self.metric,
            )

    def _remove(self, lease: Lease) -> None:
        if lease.router is not None:
            self._del_default(lease.router)
        self._del_addr(lease.address, lease.prefix_len)
