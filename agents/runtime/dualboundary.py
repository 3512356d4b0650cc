"""Dual MIP (RFC 5265) at the mobile node: an external Mobile IP underneath the VPN.

Inside, plain Mobile IP with the internal home agent (i-HA), as in RFC 5266. Outside, the
MN first registers its co-located care-of address with the external home agent (x-HA, in
the DMZ) for its external home address (x-HoA); the IPsec tunnel to the VPN gateway is bound
to the x-HoA (its IKE and ESP leave from it, through the x-MIP tunnel); then the tunnel inner
address (TIA) is registered with the i-HA through the tunnel as co-located care-of address
(mode ``dual``). Three nested tunnels carry the MN's traffic: i-MIP inside ESP inside x-MIP.

A move outside is one x-MIP registration from the new address: the x-HoA, the IPsec SAs and
the i-MIP binding stay. As in RFC 5266 the MN asks the i-HA directly on every move (an ICMP
echo bound to the link outside; the core's direct registration otherwise).

The x-MIP client is a second protocol core (:class:`agents.mip.mn.MobileNode`) with its own
driver (UDP port ``external.port``: 434 is the internal client's), its own TUN (``mipx0``)
and events under the node name ``<node>.x``. It never hears advertisements or link events: it
registers only where this controller attaches it.
"""

from __future__ import annotations

import time
from typing import Any

from agents.mip.actions import Event
from agents.mip.mn import Attachment, MnConfig, MobileNode
from agents.runtime.dataplane import MnDataPlane, _Base
from agents.runtime.driver import AgentDriver
from agents.runtime.vpn import BoundaryController
from mipbase.clock import scaled, wallclock
from mipbase.events import EventWriter

OUTER_TABLE, OUTER_RULE_PRIORITY = 122, 110  # before mode mc's 120 and strongSwan's 220


class OuterDataPlane(MnDataPlane):
    """The x-MIP tunnel: the x-HoA on ``mipx0``; only what leaves from it goes in (IKE and
    ESP to the gateway); everything else keeps the main table."""

    tun_name = "mipx0"

    def tunnel_up(self, t: Any) -> None:
        _Base.tunnel_up(self, t)
        self.nl.addr("replace", self.tun_name, self.home, 32)
        self.plumbing.add_default_route(self.tun_name, table=OUTER_TABLE)
        self.plumbing.add_source_rule(self.home, OUTER_TABLE, priority=OUTER_RULE_PRIORITY)

    def tunnel_down(self, t: Any) -> None:
        self.plumbing.del_source_rule(self.home, OUTER_TABLE, priority=OUTER_RULE_PRIORITY)
        _Base.tunnel_down(self, t)
        self.nl.addr("del", self.tun_name, self.home, 32)

    # never at home, never behind an FA: the link is the internal client's business
    def gratuitous_arp(self, action: Any) -> None:
        pass

    def route(self, action: Any) -> None:
        pass


class DualBoundaryController(BoundaryController):
    mode = "dual"

    def __init__(self, config: Any, machine: Any, driver: Any, events: EventWriter) -> None:
        super().__init__(config, machine, driver, events)
        x = config.external
        self.outer = MobileNode(
            MnConfig(
                home_address=str(x.home_address),
                home_agent=str(x.home_agent),
                home_network=str(x.home_network),
                spi=x.spi,
                key=x.key,
                lifetime=x.lifetime,
                reverse_tunnel=True,
                prefer="c",
                local_port=x.port,
                deregister_at_boot=False,
                retransmit_initial=0.25,
                retransmit_max=4.0,
            ),
            wallclock=wallclock,
        )
        self.outer_events = EventWriter(events.stream, f"{events.node}.x")
        self.outer_driver = AgentDriver(
            self.outer, self.outer_events, None, interfaces=(self.link,), udp_port=x.port
        )
        # the x-MIP client attaches only where we say: no advertisements, no solicitations
        self.loop.remove_reader(self.outer_driver.icmp.fileno())
        self.outer_driver.dataplane = OuterDataPlane(
            self.outer_events,
            self.outer_driver.udp,
            iface=self.link,
            home=str(x.home_address),
            home_prefix=x.home_network.prefixlen,
            home_router=str(x.home_agent),
            home_agent=str(x.home_agent),
        )
        self.outer_driver.dataplane.prepare()
        self.outer_driver.event_hooks.append(self._on_outer_event)
        # started, but without its solicitations (no agent of its own to discover)
        started = self.outer.start(time.monotonic())
        self.outer_driver.feed([a for a in started if isinstance(a, Event)])
        self._outer_coa: str | None = None
        self._address: str | None = None
        self._bringing_up = False

    # called by the movement detector -----------------------------------------------------

    def address_acquired(self, address: str | None = None) -> None:
        self._address = address
        outside = self._outside_tia is not None
        self.events.emit("boundary_probe", gateway=self.config.gateway, outside=outside)
        if outside and address is not None:
            # x-MIP follows the move; the IPsec SAs and the i-MIP binding stay. Inside again?
            self._use_outer(address)
            self._probe_home_agent()
            return
        self._decision = self.loop.call_later(scaled(self.config.decision_timeout), self._decide)

    # internals ----------------------------------------------------------------------------

    def _decide(self) -> None:
        self._decision = None
        if self.machine.registered and self.machine.mode in ("f", "c", "home"):
            return
        if self._address is None:
            self.events.emit("boundary_decision", inside=None, reason="no address")
            return
        # outside: the x-HA first; the tunnel and the i-MIP registration once it accepts
        self._bringing_up = True
        self._use_outer(self._address)

    def _use_outer(self, address: str) -> None:
        self._outer_coa = address
        attachment = Attachment("c", care_of=address, src=address, iface=self.link, colocated=True)
        self.outer_driver.feed(self.outer.use_attachment(attachment, time.monotonic()))

    def _on_outer_event(self, name: str, data: dict[str, Any]) -> None:
        if name == "registration_accepted":
            # the mobile node's own stream of events says where x-MIP stands (a phase)
            self.events.emit(
                "external_registration",
                mode=self.mode,
                care_of=data.get("care_of"),
                udp=data.get("udp"),
                latency=data.get("latency"),
                phase="external_registration",
            )
        if name == "registration_accepted" and self._bringing_up:
            self._bringing_up = False
            # after this batch of actions: the x-MIP tunnel and the x-HoA come with it
            self.loop.call_soon(self._bring_up_tunnel)

    def _bring_up_tunnel(self) -> None:
        def up() -> str | None:
            self._ensure_tunnel()
            return self._wait_tia(scaled(5.0))

        future = self.initiator.submit(up)
        future.add_done_callback(self.driver.from_thread(self._outside))

    def _leave_outer(self) -> None:
        self._bringing_up = False
        if self._outer_coa is not None:
            self._outer_coa = None
            self.outer_driver.feed(self.outer.use_attachment(None, time.monotonic()))

    def _leave_mc(self) -> None:
        super()._leave_mc()
        self._leave_outer()

    def _set_inside(self) -> None:
        super()._set_inside()
        self._leave_outer()

    def close(self) -> None:
        super().close()
        self.outer_driver.close()
