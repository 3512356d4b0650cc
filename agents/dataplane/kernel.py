"""The kernel IP-in-IP path, and the choice between it and the userspace engine.

Where the kernel has ``ipip`` (most distribution kernels; not this testbed's), encapsulation
is best left to it: one ``ipip`` link per tunnel peer (``ip link add NAME type ipip local A
remote B``) and routes into it. A link with a fixed remote only accepts packets from that
remote, which keeps the security boundary of the userspace engine's peer check.
RFC 3519 UDP encapsulation has no kernel equivalent (FOU lacks the 4-byte MIP Tunnel Data
header), so UDP tunnels always use :class:`~agents.dataplane.tunnels.TunnelEngine`.

:func:`select_backend` probes by creating an ``ipip`` link (in the caller's namespace, under
a random name, deleted at once); ``TESTBED_TUNNEL=userspace|kernel`` forces the choice.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address
from typing import Any, Final, Literal, TypeVar

from agents.dataplane.packets import DEFAULT_TTL, IPIP_MTU

Backend = Literal["kernel", "userspace"]
Address = str | IPv4Address
ENV_VAR: Final = "TESTBED_TUNNEL"
TOS_INHERIT: Final = 1  # iproute2 "tos inherit": RFC 2003 section 3.1 copies the inner TOS
TABLE_BASE: Final = 0x4D49_0000  # routing tables for reverse tunnelling, one per link
RULE_PRIORITY: Final = 1000
_T = TypeVar("_T")
_probe_cache: dict[int, bool] = {}


def _netns_id() -> int:
    try:
        return os.stat("/proc/thread-self/ns/net").st_ino
    except OSError:
        return 0


def _on_worker(fn: Callable[[], _T]) -> _T:
    # pyroute2's synchronous IPRoute must not run on a thread with a running asyncio loop;
    # a fresh thread inherits this thread's network namespace.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ipip-probe") as pool:
        return pool.submit(fn).result()


def kernel_ipip_available(refresh: bool = False) -> bool:
    """True if an ``ipip`` link can be created in this network namespace (cached per ns)."""
    ns = _netns_id()
    if not refresh and ns in _probe_cache:
        return _probe_cache[ns]

    def probe() -> bool:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        name = f"mipprobe{secrets.token_hex(3)}"
        with IPRoute() as ipr:
            try:
                ipr.link("add", ifname=name, kind="ipip", ipip_remote="192.0.2.1")
            except NetlinkError:
                return False  # EOPNOTSUPP: no ipip module (this testbed); EPERM: not root
            with contextlib.suppress(NetlinkError):
                ipr.link("del", ifname=name)
            return True

    try:
        ok = _on_worker(probe)
    except (ImportError, OSError):
        ok = False
    _probe_cache[ns] = ok
    return ok


def select_backend(encapsulation: str = "ipip", env: Mapping[str, str] | None = None) -> Backend:
    """Which data plane to use for ``encapsulation`` in this namespace.

    ``TESTBED_TUNNEL=userspace`` or ``kernel`` forces one (``kernel`` raises if the kernel
    cannot do it); unset or ``auto``: the kernel for ``ipip`` when the probe succeeds.
    """
    env = os.environ if env is None else env
    forced = env.get(ENV_VAR, "auto").strip().lower() or "auto"
    if forced not in ("auto", "kernel", "userspace"):
        raise ValueError(f"{ENV_VAR} must be userspace, kernel or auto, not {forced!r}")
    if forced == "userspace":
        return "userspace"
    if encapsulation != "ipip":
        if forced == "kernel":
            raise RuntimeError(f"{ENV_VAR}=kernel, but the kernel cannot do {encapsulation}")
        return "userspace"
    if kernel_ipip_available():
        return "kernel"
    if forced == "kernel":
        raise RuntimeError(f"{ENV_VAR}=kernel, but no ipip link can be created here")
    return "userspace"


class KernelIpipTunnel:
    """Kernel IP-in-IP tunnels with the table API of ``TunnelEngine`` (``add``/``update``/
    ``remove``), for ``encapsulation='ipip'`` only.

    ``key='dst'`` (HA): ``HOME/32 dev LINK``. ``key='src'`` (mobile node, FA; RFC 3024):
    ``from HOME/32 lookup T`` and ``default dev LINK table T``, with one table per link.
    Links are named ``<prefix><peer in hex>`` and deleted when their last home address goes.
    All netlink runs on a private worker thread (safe to call from an asyncio loop).
    """

    def __init__(
        self,
        key: Literal["dst", "src"] = "dst",
        *,
        prefix: str = "mip",
        ttl: int = DEFAULT_TTL,
        mtu: int = IPIP_MTU,
        ipr: Any = None,
    ) -> None:
        if key not in ("dst", "src"):
            raise ValueError(f"key must be 'dst' or 'src', not {key!r}")
        if len(prefix) > 7:
            raise ValueError("prefix too long for a 15-character interface name")
        self.key = key
        self.prefix = prefix
        self.ttl = ttl
        self.mtu = mtu
        self.counters: dict[str, int] = {}  # the kernel keeps its own (ip -s link)
        self._homes: dict[str, tuple[str, str | None]] = {}  # home -> (peer, local)
        self._links: dict[tuple[str, str | None], tuple[str, int]] = {}  # -> (name, table)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ipip-nl")
        if ipr is None:
            from pyroute2 import IPRoute

            ipr = self._call(IPRoute)
        self._ipr = ipr

    def _call(self, fn: Callable[[], _T]) -> _T:
        return self._pool.submit(fn).result()

    def link_name(self, peer: str) -> str:
        return f"{self.prefix}{IPv4Address(peer).packed.hex()}"

    def _ensure_link(self, peer: str, local: str | None) -> tuple[str, int]:
        found = self._links.get((peer, local))
        if found is not None:
            return found
        if any(p == peer for p, _ in self._links):
            # The link name encodes the peer only (15 characters leave no room for more).
            raise ValueError(f"a link to {peer} with another local address exists")
        name = self.link_name(peer)
        table = TABLE_BASE + len(self._links) + 1
        while table in {t for _, t in self._links.values()}:
            table += 1
        ipr = self._ipr

        def make() -> None:
            kw: dict[str, Any] = {
                "ifname": name,
                "kind": "ipip",
                "ipip_remote": peer,
                "ipip_ttl": self.ttl,
                "ipip_tos": TOS_INHERIT,
                "ipip_pmtudisc": 1,  # RFC 2003 tunnel MTU discovery (outer DF set)
            }
            if local is not None:
                kw["ipip_local"] = local
            ipr.link("add", **kw)
            idx = ipr.link_lookup(ifname=name)[0]
            ipr.link("set", index=idx, mtu=self.mtu, state="up")
            if self.key == "src":
                ipr.route("replace", dst="0.0.0.0/0", oif=idx, table=table)

        self._call(make)
        self._links[(peer, local)] = (name, table)
        return name, table

    def _drop_link_if_unused(self, link: tuple[str, str | None]) -> None:
        if link in self._homes.values() or link not in self._links:
            return
        name, _table = self._links.pop(link)
        ipr = self._ipr

        def drop() -> None:
            with contextlib.suppress(Exception):
                ipr.link("del", ifname=name)  # its routes go with it

        self._call(drop)

    def add(
        self,
        home_address: Address,
        peer: Address,
        encapsulation: str = "ipip",
        local: Address | None = None,
        **_ignored: Any,
    ) -> None:
        if encapsulation != "ipip":
            raise ValueError("the kernel backend does IP in IP only; use TunnelEngine for udp")
        home = str(IPv4Address(home_address))
        link = (str(IPv4Address(peer)), str(IPv4Address(local)) if local is not None else None)
        old = self._homes.get(home)
        name, table = self._ensure_link(*link)
        ipr = self._ipr

        def route() -> None:
            idx = ipr.link_lookup(ifname=name)[0]
            if self.key == "dst":
                ipr.route("replace", dst=f"{home}/32", oif=idx)
            else:
                if old is not None and old != link:
                    self._del_rule(home, self._links[old][1])
                with contextlib.suppress(Exception):  # EEXIST on re-registration
                    ipr.rule(
                        "add", src=home, src_len=32, table=table, priority=RULE_PRIORITY,
                        family=socket.AF_INET,
                    )  # fmt: skip

        self._call(route)
        self._homes[home] = link
        if old is not None and old != link:
            self._drop_link_if_unused(old)

    def _del_rule(self, home: str, table: int) -> None:
        with contextlib.suppress(Exception):
            self._ipr.rule(
                "del", src=home, src_len=32, table=table, priority=RULE_PRIORITY,
                family=socket.AF_INET,
            )  # fmt: skip

    def update(
        self,
        home_address: Address,
        *,
        peer: Address | None = None,
        encapsulation: str | None = None,
        local: Address | None = None,
        **_ignored: Any,
    ) -> None:
        home = str(IPv4Address(home_address))
        old_peer, old_local = self._homes[home]
        self.add(
            home,
            peer if peer is not None else old_peer,
            encapsulation or "ipip",
            local if local is not None else old_local,
        )

    def remove(self, home_address: Address) -> bool:
        home = str(IPv4Address(home_address))
        link = self._homes.pop(home, None)
        if link is None:
            return False
        table = self._links[link][1]
        ipr = self._ipr

        def unroute() -> None:
            if self.key == "dst":
                with contextlib.suppress(Exception):
                    ipr.route("del", dst=f"{home}/32")
            else:
                self._del_rule(home, table)

        self._call(unroute)
        self._drop_link_if_unused(link)
        return True

    def tunnels(self) -> dict[str, tuple[str, str | None]]:
        return dict(self._homes)

    def close(self) -> None:
        for home in list(self._homes):
            with contextlib.suppress(Exception):
                self.remove(home)
        with contextlib.suppress(Exception):
            self._call(self._ipr.close)
        self._pool.shutdown(wait=True)

    def __enter__(self) -> KernelIpipTunnel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "ENV_VAR",
    "Backend",
    "KernelIpipTunnel",
    "kernel_ipip_available",
    "select_backend",
]
