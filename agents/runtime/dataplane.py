"""Carrying out the machines' data-plane actions, per role, with agents.dataplane.

HA: tunnel each registered home address to its care-of address (``HOME/32 dev TUN``), proxy
ARP on the home link, gratuitous ARP on (de)registration. FA: deliver decapsulated packets
to visitors (``HOME/32 dev VISITED``) and reverse-tunnel what they send (``from HOME lookup
T``). MN: at home the home address sits on the link; in mode ``f`` it stays on the link as a
/32 behind the FA; in mode ``c`` it moves to the TUN and everything else goes through it,
while the care-of address and a host route keep carrying the outer packets to the HA.
"""

from __future__ import annotations

import math
import socket
import time
from typing import Any, Final

from agents.dataplane.arp import (
    Plumbing,
    gratuitous_arp_frame,
    interface_mac,
    set_forwarding,
    set_proxy_delay,
)
from agents.dataplane.kernel import KernelIpipTunnel, select_backend
from agents.dataplane.packets import IPIP_MTU, UDP_MTU
from agents.dataplane.tun import get_mtu
from agents.dataplane.tunnels import TunnelEngine
from agents.mip.actions import Action, GratuitousArp, ProxyArp, Route, TunnelDown, TunnelUp
from agents.mip.constants import MIP_PORT
from mipbase import rtnl
from mipbase.events import EventWriter
from mipbase.modes import Mode

REVERSE_TABLE = 100  # policy routing table for reverse tunnelling
MC_TABLE, MC_RULE_PRIORITY = 121, 120  # mode mc: before strongSwan's rule 220
MAIN_TABLE, HOME_RULE_PRIORITY = 254, 200  # otherwise: home address -> main, before 220
PROXY_IKE_TABLE, PROXY_IKE_RULE_PRIORITY = 123, 115  # MIP proxy: IKE/ESP into our tunnel

# kernel-libipsec's ipsec0; an XFRM path (ESP in UDP, AES-CBC, HMAC) takes up to ~100 bytes
# of a 1500-byte link too, so the same budget serves both
VPN_MTU = 1400


class Netlink:
    """Route and address changes on the handoff path (raw rtnetlink through Plumbing).

    Errors such as "no such route/address" are expected while converging and ignored.
    """

    def __init__(self, plumbing: Plumbing) -> None:
        self.plumbing = plumbing

    def batch(self, requests: list[rtnl.Request]) -> None:
        """One round trip to the kernel for all of ``requests``; each may fail on its own."""
        if requests:
            self.plumbing.run(requests)

    def addr(self, op: rtnl.Op, ifname: str, address: str, prefixlen: int) -> None:
        self.batch([rtnl.addr(op, self.plumbing.ifindex(ifname), address, prefixlen)])

    def route_request(
        self,
        op: rtnl.Op,
        dst: str,
        *,
        via: str | None = None,
        dev: str | None = None,
        src: str | None = None,
        onlink: bool = False,
        metric: int | None = None,
    ) -> rtnl.Request:
        oif = self.plumbing.ifindex(dev) if dev else None
        return rtnl.route(
            op, dst, gateway=via, oif=oif, prefsrc=src, priority=metric, onlink=onlink
        )

    def route(self, op: rtnl.Op, dst: str, **kw: Any) -> None:
        self.batch([self.route_request(op, dst, **kw)])


class _Base:
    tun_name = "mip0"
    key = "dst"
    kernel_capable = False

    def __init__(self, events: EventWriter, udp_socket: Any) -> None:
        self.events = events
        self.udp_socket = udp_socket
        self.plumbing = Plumbing()
        self._engine: TunnelEngine | None = None
        # IP-in-IP through the kernel where it has ipip (HA and FA; the MN and every UDP
        # tunnel use the userspace engine). TESTBED_TUNNEL=userspace|kernel forces a choice.
        self.kernel: KernelIpipTunnel | None = None
        if self.kernel_capable and select_backend("ipip") == "kernel":
            self.kernel = KernelIpipTunnel(self.key)  # type: ignore[arg-type]
        # One packet socket per interface for gratuitous ARPs, kept open: closing a packet
        # socket waits for an RCU grace period (~10 ms), which would land in the handoff.
        self._arp_sockets: dict[str, socket.socket] = {}

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
            self._engine.attach()  # the TUN comes up with the engine
        return self._engine

    def kernel_tunnel(self, t: TunnelUp) -> bool:
        """Carry ``t`` on the kernel backend when there is one and it is IP in IP."""
        if self.kernel is None or t.encapsulation != "ipip":
            return False
        self.kernel.add(t.home_address, t.peer, "ipip", t.local)
        self.events.emit(
            "tunnel_up",
            home_address=t.home_address,
            peer=t.peer,
            encapsulation="ipip",
            role=t.role,
            backend="kernel",
        )
        return True

    def prepare(self) -> None:
        """Create the TUN device and tunnel sockets ahead of the first registration."""
        _ = self.engine

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
            # UDP tunnels leave from the agent's own port (a second client may not use 434)
            self._local_port(),
        )
        self.events.emit(
            "tunnel_up",
            home_address=t.home_address,
            peer=t.peer,
            encapsulation="udp" if udp else "ipip",
            role=t.role,
        )

    def _local_port(self) -> int:
        sock = getattr(self, "udp_socket", None)
        return sock.getsockname()[1] if sock is not None else MIP_PORT

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
        if not action.iface:
            return
        sock = self._arp_sockets.get(action.iface)
        if sock is None:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            sock.bind((action.iface, 0))
            self._arp_sockets[action.iface] = sock
        sock.send(gratuitous_arp_frame(interface_mac(action.iface), action.address, "request"))

    def route(self, action: Route) -> None:
        pass

    def learn_neighbour(self, address: str, mac: str, ifname: str) -> None:
        """An agent's MAC from its advertisement (RFC 5944 4.6: no broadcast ARP away
        from home). An entry the kernel already has is left alone."""
        self.plumbing.learn_neighbour(address, mac, ifname)

    def stats(self) -> dict[str, int]:
        return self._engine.stats() if self._engine is not None else {}

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        for sock in self._arp_sockets.values():
            sock.close()
        if self.kernel is not None:
            self.kernel.close()
        self.plumbing.close()


class HaDataPlane(_Base):
    tun_name = "mipha0"
    key = "dst"
    kernel_capable = True

    def __init__(self, events: EventWriter, udp_socket: Any, home_iface: str) -> None:
        super().__init__(events, udp_socket)
        self.home_iface = home_iface
        # a home agent forwards, and Linux proxies ARP only on interfaces that forward
        set_forwarding("all", True)
        set_forwarding(home_iface, True)
        set_proxy_delay(home_iface, 0)

    def tunnel_up(self, t: TunnelUp) -> None:
        if self.kernel_tunnel(t):
            return
        super().tunnel_up(t)
        self.plumbing.add_host_route(t.home_address, self.tun_name)

    def tunnel_down(self, t: TunnelDown) -> None:
        if self.kernel is not None and self.kernel.remove(t.home_address):
            self.events.emit(
                "tunnel_down",
                home_address=t.home_address,
                peer=t.peer,
                role=t.role,
                backend="kernel",
            )
            return
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
    kernel_capable = True

    def __init__(self, events: EventWriter, udp_socket: Any) -> None:
        super().__init__(events, udp_socket)
        # (interface, address, MAC) -> when we last entered it as a neighbour
        self._link_sources: dict[tuple[str, str, str], float] = {}

    def tunnel_up(self, t: TunnelUp) -> None:
        if self.kernel_tunnel(t):  # the kernel backend routes reverse tunnelling itself
            return
        super().tunnel_up(t)
        if t.reverse:
            self.plumbing.add_default_route(self.tun_name, table=REVERSE_TABLE)
            self.plumbing.add_source_rule(t.home_address, REVERSE_TABLE)

    def tunnel_down(self, t: TunnelDown) -> None:
        if self.kernel is not None and self.kernel.remove(t.home_address):
            return
        super().tunnel_down(t)
        self.plumbing.del_source_rule(t.home_address, REVERSE_TABLE)

    def note_link_source(self, address: str, mac: str, ifname: str) -> None:
        """RFC 5944 4.6: a visitor's MAC from its Registration Request, not from ARP.

        Entered when the request arrives, so that the relayed reply (which leaves before
        the visitor's route is installed) and what follows it go out without an ARP round
        trip. At most once a second per (address, MAC): anyone on the link can send to 434.
        """
        now = time.monotonic()
        key = (ifname, address, mac)
        if now - self._link_sources.get(key, -math.inf) < 1.0:
            return
        if len(self._link_sources) > 4096:
            self._link_sources.clear()
        self._link_sources[key] = now
        self.plumbing.learn_neighbour(address, mac, ifname, replace=True)

    def route(self, action: Route) -> None:
        home = action.prefix.split("/")[0]
        if action.add and action.iface:
            self.plumbing.add_host_route(home, action.iface)
        elif not action.add:
            self.plumbing.del_host_route(home)


class MnDataPlane(_Base):
    tun_name = "mipmn0"
    key = "src"
    _home_bound = False  # MIP proxy: IKE/ESP from the home address into our TUN
    # prefix length of the home address on the link as we last set it, None when we took
    # it off; UNKNOWN until we first touch it (the topology put it there)
    UNKNOWN: Final = -1
    _home_link_prefix: int | None = UNKNOWN

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
        self._fa_router: str | None = None  # the foreign agent we last routed through
        self._fa_host: str | None = None  # the FA with an on-link host route (home_for_fa)
        self._mc = False
        self._tun_mtu = IPIP_MTU  # the engine's TUN is made with this MTU
        # What the MN sends from its home address follows the main table, not a VPN's
        # policy table (220): inside, traffic must not enter a tunnel that is being torn
        # down (or was brought up by the boundary probe). Mode mc's rule (120) comes first.
        self.plumbing.add_source_rule(self.home, MAIN_TABLE, priority=HOME_RULE_PRIORITY)
        self.nl = Netlink(self.plumbing)

    def vpn_bound_to_home(self, on: bool, gateway: str) -> None:
        """MIP proxy architecture: the IPsec tunnel is bound to the home address, so what we
        send from it must meet strongSwan's table 220 (into ipsec0) rather than go straight
        to the main table; the IKE and ESP packets (from the home address to the gateway)
        always take our Mobile IP tunnel (table 123): neither the host route to the proxy
        (the gateway's own address in one box) nor a moment without our tunnel (during a
        move: the engine then drops them) may send them out bare."""
        gw_rule = {"src": self.home, "dst": gateway}
        self._home_bound = on
        if on:
            self.plumbing.del_source_rule(self.home, MAIN_TABLE, priority=HOME_RULE_PRIORITY)
            self.plumbing.add_default_route(self.tun_name, table=PROXY_IKE_TABLE)
            self.nl.batch([rtnl.rule("add", PROXY_IKE_TABLE, PROXY_IKE_RULE_PRIORITY, **gw_rule)])
        else:
            self.nl.batch([rtnl.rule("del", PROXY_IKE_TABLE, PROXY_IKE_RULE_PRIORITY, **gw_rule)])
            self.plumbing.add_source_rule(self.home, MAIN_TABLE, priority=HOME_RULE_PRIORITY)

    def _home_link_ops(self, prefix: int | None) -> list[rtnl.Request]:
        """Requests that leave the home address on the link as /``prefix`` (None: off it);
        none when it is so already, and no removal of what is not there (each request
        takes the kernel's rtnl lock, which strongSwan and the lab contend for)."""
        current = self._home_link_prefix
        if current == prefix:
            return []
        self._home_link_prefix = prefix
        index = self.plumbing.ifindex(self.iface)
        if current == self.UNKNOWN:
            there: tuple[int, ...] = (self.home_prefix, 32)
        else:
            there = () if current is None else (current,)
        ops = [rtnl.addr("del", index, self.home, p) for p in there if p != prefix]
        if prefix is not None:
            ops.append(rtnl.addr("replace", index, self.home, prefix))
        return ops

    def home_off_link(self) -> None:
        self.nl.batch(self._home_link_ops(None))

    def left_link(self, keep_home_on_link: bool, mode: str | None = None) -> None:
        """Carrier lost: we may be anywhere next. Drop the link's default routes (a stale one
        would hide that the next network is different); with ``keep_home_on_link`` (we were
        home or behind an FA) keep the home address as a /32, so the home subnet is no longer
        on-link. The core's actions rebuild routing once it knows where we are.
        """
        index = self.plumbing.ifindex(self.iface)
        ops = [rtnl.route("del", "0.0.0.0/0", oif=index)] * 2
        # A packet sent between carrier loss and the route's removal left an unresolved
        # entry for the router it went to, and the kernel would go on asking for it with
        # broadcast ARP on whatever link comes next (RFC 5944 4.6: not away from home).
        router = {Mode.HOME: self.home_router, Mode.F: self._fa_router}.get(mode, self.coa_router)
        if router:
            ops.append(rtnl.neigh("del", router, index))
        if self._fa_host is not None:  # the FA we registered through is not on the next link
            ops.append(rtnl.route("del", f"{self._fa_host}/32", oif=index))
            self._fa_host = None
        if keep_home_on_link:
            ops += self._home_link_ops(32)
        self.nl.batch(ops)

    def home_for_fa(self, agent: str | None = None) -> None:
        """About to register through an FA: the home address must be ours on the link (the
        request's source, and what the FA delivers to), and the FA a neighbour on it in the
        main table. Without that host route the request, bound to the link, falls through
        the main table to a VPN's table 220: with XFRM (a stock kernel) that table keeps
        ``10.0.0.0/8 via <the old router> dev <link>`` while the IKE SA lives, and the
        request would go to a router that is not there (with kernel-libipsec its routes are
        on ipsec0, and the kernel's on-link fallback saved us)."""
        index = self.plumbing.ifindex(self.iface)
        ops = self._home_link_ops(32)
        if agent is not None and agent != self._fa_host:
            if self._fa_host is not None:
                ops.append(rtnl.route("del", f"{self._fa_host}/32", oif=index))
            ops.append(rtnl.route("replace", f"{agent}/32", oif=index))
            self._fa_host = agent
        self.nl.batch(ops)

    def gratuitous_arp(self, action: GratuitousArp) -> None:
        """Back home (RFC 5944 4.6): the home address on the link, the home router again."""
        tun = self.plumbing.ifindex(self.tun_name)
        self.nl.batch(
            [
                rtnl.addr("del", tun, self.home, 32),
                rtnl.route("del", "0.0.0.0/0", oif=tun),
                rtnl.route("del", f"{self.home_agent}/32"),
                *self._home_link_ops(self.home_prefix),
                self.nl.route_request(
                    "replace", "0.0.0.0/0", via=self.home_router, dev=self.iface, src=self.home
                ),
            ]
        )
        super().gratuitous_arp(action)
        self.events.emit("dataplane_home", address=self.home)

    def route(self, action: Route) -> None:
        """Mode f: the home address stays on the link (as /32) behind the FA as router."""
        if action.add and action.via:
            self._fa_router = action.via
            default = self.nl.route_request(
                "replace",
                "0.0.0.0/0",
                via=action.via,
                dev=action.iface or self.iface,
                src=self.home,
                onlink=True,
            )
            self.nl.batch([*self._home_link_ops(32), default])
        elif action.via:
            self.nl.route("del", "0.0.0.0/0", via=action.via)

    def tunnel_up(self, t: TunnelUp) -> None:
        """Mode c: decapsulate ourselves; the home address lives on the TUN.

        Mode mc (the care-of address is the VPN's inner address on ``ipsec0``): the same, and
        what the MN sends from its home address is steered into our TUN ahead of the VPN's
        own policy table (220), whose routes would otherwise carry it into the IPsec tunnel
        directly; our encapsulated packets (from the TIA) then take table 220 into it.
        """
        mc = t.via_vpn
        super().tunnel_up(t)
        self._fit_tun_mtu(t.iface if mc else None, t.encapsulation)
        tun = self.plumbing.ifindex(self.tun_name)
        # one batch: off the link, onto the TUN, then the routes (in this order: the kernel
        # takes them one after the other, and a route's source must already be ours)
        ops = [*self._home_link_ops(None), rtnl.addr("replace", tun, self.home, 32)]
        if mc:
            # only what comes from the home address goes into our TUN: the main table keeps
            # carrying IKE and ESP (from the care-of address) to the gateway
            ops += [
                rtnl.route("replace", "0.0.0.0/0", oif=tun, table=MC_TABLE),
                rtnl.rule("add", MC_TABLE, MC_RULE_PRIORITY, src=self.home),
            ]
            self._mc = True
        else:
            if self.coa_router:
                ops.append(
                    self.nl.route_request(
                        "replace", f"{t.peer}/32", via=self.coa_router, dev=self.iface
                    )
                )
            ops.append(rtnl.route("replace", "0.0.0.0/0", oif=tun, prefsrc=self.home, priority=0))
            if self._home_bound:  # a move may have taken it with the main table's routes
                ops.append(rtnl.route("replace", "0.0.0.0/0", oif=tun, table=PROXY_IKE_TABLE))
        self.nl.batch(ops)

    def _fit_tun_mtu(self, vpn_iface: str | None, encapsulation: str = "ipip") -> None:
        """Mode mc: our IP-in-IP packets (+20 bytes; +32 in UDP) must fit the VPN's interface
        (``ipsec0`` of kernel-libipsec: 1400), else the kernel refuses them there without a
        word to the sender. A TUN that much smaller makes the kernel tell local senders and
        TCP pick its MSS by it. Other modes: the TUN's MTU for a 1500-byte link again."""
        mtu = IPIP_MTU
        if vpn_iface:
            overhead = 1500 - (UDP_MTU if encapsulation == "udp" else IPIP_MTU)
            try:
                # with the kernel's XFRM the inner address sits on the outer interface (1500)
                # and ESP's own overhead is not in its MTU: budget as for ipsec0
                mtu = min(IPIP_MTU, min(get_mtu(vpn_iface), VPN_MTU) - overhead)
            except OSError as exc:
                self.events.emit("tun_mtu_failed", iface=vpn_iface, error=str(exc))
                return
        if mtu == self._tun_mtu or self._engine is None:
            return
        try:
            self._engine.tun.set_mtu(mtu)
        except OSError as exc:
            self.events.emit("tun_mtu_failed", tun=self.tun_name, mtu=mtu, error=str(exc))
            return
        self._tun_mtu = mtu
        self.events.emit("tun_mtu", tun=self.tun_name, mtu=mtu, vpn_iface=vpn_iface)

    def tunnel_down(self, t: TunnelDown) -> None:
        tun = self.plumbing.ifindex(self.tun_name)
        ops: list[rtnl.Request] = []
        if self._mc:
            ops.append(rtnl.rule("del", MC_TABLE, MC_RULE_PRIORITY, src=self.home))
            self._mc = False
        ops += [rtnl.route("del", "0.0.0.0/0", oif=tun), rtnl.route("del", f"{t.peer}/32")]
        if not self._home_bound:
            # (removing a device's last address flushes every route through it, in every
            # table: home-bound, the IKE/ESP of the tunnel must meet our TUN through a move
            # and be dropped there, not take the new link bare)
            ops.append(rtnl.addr("del", tun, self.home, 32))
        self._fit_tun_mtu(None)
        super().tunnel_down(t)
        self.nl.batch(ops)  # one batch, like the set-up
