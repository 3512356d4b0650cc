"""Carrying out the machines' data-plane actions, per role, with agents.dataplane.

HA: tunnel each registered home address to its care-of address (``HOME/32 dev TUN``), proxy
ARP on the home link, gratuitous ARP on (de)registration. FA: deliver decapsulated packets
to visitors (``HOME/32 dev VISITED``) and reverse-tunnel what they send (``from HOME lookup
T``). MN: at home the home address sits on the link; in mode ``f`` it stays on the link as a
/32 behind the FA; in mode ``c`` it moves to the TUN and everything else goes through it,
while the care-of address and a host route keep carrying the outer packets to the HA.
"""

from __future__ import annotations

import contextlib
import subprocess
from typing import Any

from agents.dataplane.arp import (
    Plumbing,
    send_gratuitous_arp,
    set_forwarding,
    set_proxy_delay,
)
from agents.dataplane.tunnels import TunnelEngine
from agents.mip.actions import Action, GratuitousArp, ProxyArp, Route, TunnelDown, TunnelUp
from agents.mip.constants import MIP_PORT
from testbed.services.events import EventWriter

REVERSE_TABLE = 100  # policy routing table for reverse tunnelling


def ip(*args: str) -> None:
    """iproute2 for the few route shapes Plumbing does not offer (onlink, src, metric)."""
    subprocess.run(["ip", *args], check=False, capture_output=True)


class _Base:
    tun_name = "mip0"
    key = "dst"

    def __init__(self, events: EventWriter, udp_socket: Any) -> None:
        self.events = events
        self.udp_socket = udp_socket
        self.plumbing = Plumbing()
        self._engine: TunnelEngine | None = None

    @property
    def engine(self) -> TunnelEngine:
        if self._engine is None:
            self._engine = TunnelEngine(
                self.tun_name,
                self.key,
                udp_socket=self.udp_socket,  # type: ignore[arg-type]
                learn_peer=self.key == "dst",
                on_event=self.events.record,
            )
            self._engine.attach()
            ip("link", "set", self.tun_name, "up")
        return self._engine

    def handle_tunnel_data(self, payload: bytes, src: tuple[str, int], now: float) -> None:
        if self._engine is not None:
            self._engine.handle_udp_tunnel_data(payload, src, now)

    def tunnel_up(self, t: TunnelUp) -> None:
        udp = t.encapsulation == "udp"
        self.engine.add(
            t.home_address,
            t.peer,
            t.encapsulation,
            t.local,  # type: ignore[arg-type]
            t.peer_port or MIP_PORT,
        )
        self.events.emit(
            "tunnel_up",
            home_address=t.home_address,
            peer=t.peer,
            encapsulation="udp" if udp else "ipip",
            role=t.role,
        )

    def tunnel_down(self, t: TunnelDown) -> None:
        if self._engine is not None:
            self._engine.remove(t.home_address)
        self.events.emit("tunnel_down", home_address=t.home_address, peer=t.peer, role=t.role)

    def apply(self, action: Action) -> None:
        if isinstance(action, TunnelUp):
            self.tunnel_up(action)
        elif isinstance(action, TunnelDown):
            self.tunnel_down(action)
        elif isinstance(action, ProxyArp):
            self.proxy_arp(action)
        elif isinstance(action, GratuitousArp):
            self.gratuitous_arp(action)
        elif isinstance(action, Route):
            self.route(action)

    def proxy_arp(self, action: ProxyArp) -> None:
        pass

    def gratuitous_arp(self, action: GratuitousArp) -> None:
        if action.iface:
            send_gratuitous_arp(action.iface, action.address)

    def route(self, action: Route) -> None:
        pass

    def stats(self) -> dict[str, int]:
        return self._engine.stats() if self._engine is not None else {}

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self.plumbing.close()


class HaDataPlane(_Base):
    tun_name = "mipha0"
    key = "dst"

    def __init__(self, events: EventWriter, udp_socket: Any, home_iface: str) -> None:
        super().__init__(events, udp_socket)
        self.home_iface = home_iface
        # a home agent forwards, and Linux proxies ARP only on interfaces that forward
        set_forwarding("all", True)
        set_forwarding(home_iface, True)
        set_proxy_delay(home_iface, 0)

    def tunnel_up(self, t: TunnelUp) -> None:
        super().tunnel_up(t)
        self.plumbing.add_host_route(t.home_address, self.tun_name)

    def tunnel_down(self, t: TunnelDown) -> None:
        super().tunnel_down(t)
        self.plumbing.del_host_route(t.home_address)

    def proxy_arp(self, action: ProxyArp) -> None:
        iface = action.iface or self.home_iface
        if action.add:
            self.plumbing.add_proxy_arp(action.address, iface)
        else:
            self.plumbing.del_proxy_arp(action.address, iface)


class FaDataPlane(_Base):
    tun_name = "mipfa0"
    key = "src"

    def tunnel_up(self, t: TunnelUp) -> None:
        super().tunnel_up(t)
        if t.reverse:
            self.plumbing.add_default_route(self.tun_name, table=REVERSE_TABLE)
            self.plumbing.add_source_rule(t.home_address, REVERSE_TABLE)

    def tunnel_down(self, t: TunnelDown) -> None:
        super().tunnel_down(t)
        self.plumbing.del_source_rule(t.home_address, REVERSE_TABLE)

    def route(self, action: Route) -> None:
        home = action.prefix.split("/")[0]
        if action.add and action.iface:
            self.plumbing.add_host_route(home, action.iface)
        elif not action.add:
            self.plumbing.del_host_route(home)


class MnDataPlane(_Base):
    tun_name = "mipmn0"
    key = "src"

    def __init__(
        self,
        events: EventWriter,
        udp_socket: Any,
        *,
        iface: str,
        home: str,
        home_prefix: int,
        home_router: str,
        home_agent: str,
    ) -> None:
        super().__init__(events, udp_socket)
        self.iface = iface
        self.home = home
        self.home_prefix = home_prefix
        self.home_router = home_router
        self.home_agent = home_agent
        self.coa_router: str | None = None  # from the DHCP lease, for the outer packets

    def _home_on_link(self, prefix: int) -> None:
        for other in (self.home_prefix, 32):
            if other != prefix:
                ip("addr", "del", f"{self.home}/{other}", "dev", self.iface)
        ip("addr", "replace", f"{self.home}/{prefix}", "dev", self.iface)

    def _home_off_link(self) -> None:
        for prefix in (self.home_prefix, 32):
            ip("addr", "del", f"{self.home}/{prefix}", "dev", self.iface)

    def left_link(self) -> None:
        """Carrier lost: we may be anywhere next. Keep the home address (as a /32, so the home
        subnet is no longer on-link) and drop the default route; the core's actions rebuild
        routing once it knows where we are (home, an FA, or a co-located address)."""
        self._home_on_link(32)
        ip("route", "del", "default", "via", self.home_router)

    def gratuitous_arp(self, action: GratuitousArp) -> None:
        """Back home (RFC 5944 4.6): the home address on the link, the home router again."""
        with contextlib.suppress(Exception):
            self.plumbing.del_address(self.tun_name, self.home)
        ip("route", "del", "default", "dev", self.tun_name)
        ip("route", "del", f"{self.home_agent}/32")
        self._home_on_link(self.home_prefix)
        ip(
            "route",
            "replace",
            "default",
            "via",
            self.home_router,
            "dev",
            self.iface,
            "src",
            self.home,
        )
        super().gratuitous_arp(action)
        self.events.emit("dataplane_home", address=self.home)

    def route(self, action: Route) -> None:
        """Mode f: the home address stays on the link (as /32) behind the FA as router."""
        if action.add and action.via:
            self._home_on_link(32)
            ip(
                "route",
                "replace",
                "default",
                "via",
                action.via,
                "dev",
                action.iface or self.iface,
                "onlink",
                "src",
                self.home,
            )
        elif action.via:
            ip("route", "del", "default", "via", action.via)

    def tunnel_up(self, t: TunnelUp) -> None:
        """Mode c: decapsulate ourselves; the home address lives on the TUN."""
        super().tunnel_up(t)
        self._home_off_link()
        self.plumbing.add_address(self.tun_name, self.home)
        if self.coa_router:
            ip("route", "replace", f"{t.peer}/32", "via", self.coa_router, "dev", self.iface)
        ip("route", "replace", "default", "dev", self.tun_name, "src", self.home, "metric", "0")

    def tunnel_down(self, t: TunnelDown) -> None:
        super().tunnel_down(t)
        ip("route", "del", "default", "dev", self.tun_name)
        ip("route", "del", f"{t.peer}/32")
        with contextlib.suppress(Exception):
            self.plumbing.del_address(self.tun_name, self.home)
