"""The MN's L2 triggers and co-located addresses: carrier events and DHCP, fed to the core.

On carrier on the MN solicits agents (the core does) and, with ``parallel_dhcp`` (seed 000's
optimisation, default), starts DHCP at the same moment; without it DHCP starts only if no
foreign agent was heard within ``sequential_dhcp_wait``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import Any

from agents.dhcp.driver import DhcpDriver
from agents.runtime.arpgate import ArpGate
from agents.runtime.eventlimit import NOISY
from mipbase.events import EventWriter
from mipbase.linkwatch import LinkWatcher
from mipbase.modes import Mode


class MovementDetector:
    def __init__(self, config: Any, machine: Any, driver: Any, events: EventWriter) -> None:
        self.config = config
        self.machine = machine
        self.driver = driver
        self.events = events
        self.iface = config.interface
        self.links = LinkWatcher(self.iface)
        # RFC 5944 4.6: the kernel asks us before it broadcasts ARP on the link, and we do
        # only where we know we are (home, a lease's subnet): see agents.runtime.arpgate
        self.arp = ArpGate(self.iface, self.links, events)
        self.dhcp: DhcpDriver | None = None
        self._pending: asyncio.TimerHandle | None = None
        self.boundary = None
        driver.event_hooks.append(self._on_core_event)
        if config.vpn is not None:  # the boundary decision (MOBIKE, dual MIP or MIP proxy)
            if config.vpn.architecture == "dual":  # with the x-MIP client underneath
                from agents.runtime.dualboundary import DualBoundaryController as Boundary
            else:
                from agents.runtime.vpn import BoundaryController as Boundary
            self.boundary = Boundary(config.vpn, machine, driver, events, config.interface)
            driver.event_hooks.append(self.boundary.on_event)
            driver.error_hooks.append(self.boundary.on_icmp_error)
        if config.dhcp:
            # No broadcast flag (RFC 2131 4.1: we take unicast replies on a packet socket):
            # the server then unicasts its answer and enters us in its ARP cache, so when
            # it is also the router, the first packet to our new address needs no ARP.
            self.dhcp = DhcpDriver(
                self.iface, on_event=self._on_dhcp_event, route_metric=100, broadcast_flag=False
            )

    def start(self) -> None:
        loop = asyncio.get_event_loop()
        loop.add_reader(self.links.fileno(), self.driver._guard(self._on_link))
        loop.add_reader(self.arp.fileno(), self.driver._guard(self.arp.on_readable))
        if self.dhcp is not None:
            self.dhcp.attach(loop)
        # Where we are is unknown until an advertisement or a lease says so: do not trust the
        # home subnet to be on-link (the home agent's advertisement restores it at home).
        self.driver.dataplane.left_link(True)
        if self.links.carrier:  # already attached: as if the link had just come up
            self.driver.feed(self.machine.link_up(self.iface, time.monotonic()))
            self._start_dhcp()

    def _on_link(self) -> None:
        for up in self.links.read():
            now = time.monotonic()
            if up:
                self.events.emit("carrier_up", iface=self.iface, phase="carrier_up")
                self.events.emit("movement_detected", iface=self.iface, trigger="l2")
                self.driver.feed(self.machine.link_up(self.iface, now))
                self._start_dhcp()
                if self.boundary is not None:
                    self.boundary.moved()
            else:
                self.events.emit("carrier_down", iface=self.iface, phase="carrier_down")
                self.arp.revoke()  # wherever we are next, we do not know it yet
                # First the old router's default route: a move can bring carrier back within
                # 2 ms, and until it is gone the kernel tries to reach that router on the new
                # link (it asks the ARP gate, which withholds that request)
                mode = self.machine.mode
                self.driver.dataplane.left_link(mode in (Mode.HOME, Mode.F), mode)
                if self._pending is not None:
                    self._pending.cancel()
                if self.dhcp is not None:
                    self.dhcp.link_down()
                self.driver.feed(self.machine.link_down(self.iface, now))

    def _on_core_event(self, name: str, data: dict[str, Any]) -> None:
        if name == "movement_detected" and data.get("to") != Mode.HOME:
            self.arp.revoke("home")
        if name == "movement_detected" and data.get("to") == Mode.F:
            self.driver.dataplane.home_for_fa(data.get("agent"))
        elif name == "returned_home":
            # in the same loop callback as the routes back home (GratuitousArp): the kernel's
            # first request for a home neighbour is read after this
            self.arp.allow("home", self.config.home_network, self.config.home_address)
            if self.dhcp is not None:
                # Home, the home address is ours: a co-located care-of address is of no use,
                # and DHCP started in parallel on carrier would go on DISCOVERing on a link
                # with no server for us (issue 15 c). The next carrier starts it again.
                self.dhcp.stop()

    def _start_dhcp(self) -> None:
        if self.dhcp is None:
            return
        if self.config.parallel_dhcp:
            self.dhcp.start()
            return
        loop = asyncio.get_event_loop()

        def maybe_start() -> None:
            self._pending = None
            if self.machine.mode not in (Mode.F, Mode.HOME):
                self.dhcp.start()  # type: ignore[union-attr]

        self._pending = loop.call_later(self.config.sequential_dhcp_wait, maybe_start)

    def _on_dhcp_event(self, record: dict[str, Any]) -> None:
        name = record.get("event")
        if name in NOISY:  # (dhcp_ignored: a flood of forged replies becomes counts, issue 20)
            data = {k: v for k, v in record.items() if k not in ("t_ns", "event")}
            self.driver.emit(name, data)
            return
        self.events.record(record)
        if record.get("event") == "dhcp_ack" and self.machine.mode != Mode.F:
            # Before the lease's default route exists (the driver applies it next): from
            # then until the tunnel is up, nothing may leave from the home address outside
            # it (reverse tunnelling; a packet sent bare would also fake an early recovery).
            self.driver.dataplane.home_off_link()
        if record.get("event") == "dhcp_bound":
            self.driver.dataplane.coa_router = record.get("router")
            lease = ipaddress.IPv4Interface(f"{record['address']}/{record['prefix_len']}")
            self.arp.allow("lease", lease.network, lease.ip)
            # a foreign address: the home address must not be a source candidate on the link
            # (charon would start IKE/MOBIKE from it); an FA puts it back for mode f
            if self.boundary is not None:  # an address of our own: we may be outside
                self.driver.dataplane.home_off_link()
                self.boundary.address_acquired(record["address"])
            self.driver.feed(
                self.machine.address_acquired(
                    record["address"],
                    int(record["prefix_len"]),
                    record.get("router"),
                    time.monotonic(),
                    self.iface,
                )
            )
        elif record.get("event") == "dhcp_unbound" and record.get("address"):
            self.arp.revoke("lease")
            self.driver.feed(self.machine.address_lost(record["address"], time.monotonic()))

    def close(self) -> None:
        if self.boundary is not None:
            self.boundary.close()
        if self.dhcp is not None:
            self.dhcp.detach()
            self.dhcp.close()
        self.arp.close()
        self.links.close()
