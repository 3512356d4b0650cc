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
registers only where the boundary decision (:mod:`agents.mip.boundary`, architecture
``dual``) attaches it: this module carries that out and feeds its acceptances back.
"""

from __future__ import annotations

import time
from typing import Any

from agents.mip import boundary as core
from agents.mip.actions import Event
from agents.mip.mn import Attachment, MnConfig, MobileNode
from agents.runtime.dataplane import MnDataPlane, _Base
from agents.runtime.driver import AgentDriver
from agents.runtime.vpn import BoundaryController
from mipbase.clock import wallclock
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
    """The boundary driver with the x-MIP client: its attachments and acceptances."""

    def __init__(
        self, config: Any, machine: Any, driver: Any, events: EventWriter, link: str
    ) -> None:
        super().__init__(config, machine, driver, events, link)
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

    def use_outer(self, attachment: Attachment | None) -> None:
        self.outer_driver.feed(self.outer.use_attachment(attachment, time.monotonic()))

    def _on_outer_event(self, name: str, data: dict[str, Any]) -> None:
        event = core.from_outer_event(name, data)
        if event is not None:
            self.handle(event)

    def close(self) -> None:
        super().close()
        self.outer_driver.close()
