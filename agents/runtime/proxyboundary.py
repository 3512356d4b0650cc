"""The MIP proxy architecture (seed 003) at the mobile node: crossing the security boundary.

On every new address the MN registers with its home agent directly (the core does that, as
in RFC 5266). No accepted direct registration within ``decision_timeout``: we are outside.
Then the MN registers its co-located care-of address with the MIP proxy in the DMZ, which is
the home agent toward us (attachment mode ``proxy``: the same MN-HA security association,
RFC 3519 UDP tunnelling when a NAT is in the way). Once the proxy accepts, the IPsec tunnel
to the VPN gateway is brought up, bound to the home address: its IKE and ESP packets leave
from the home address and ride our Mobile IP tunnel to the proxy, which hands them to the
gateway. All Mobile IP control stays outside the VPN.

A later move outside is one registration with the proxy from the new address; the IPsec SAs
do not change (their addresses do not). In parallel an ICMP echo to the home agent, bound to
the link (not through any tunnel), asks whether the new network is inside after all.
"""

from __future__ import annotations

import time
from typing import Any

from agents.mip.mn import Attachment
from agents.runtime.vpn import BoundaryBase
from mipbase.clock import scaled
from mipbase.events import EventWriter


class ProxyBoundaryController(BoundaryBase):
    def __init__(self, config: Any, machine: Any, driver: Any, events: EventWriter) -> None:
        super().__init__(config, machine, driver, events)
        self.proxy = str(config.proxy)
        self._address: str | None = None
        self._outside_coa: str | None = None
        self._registered: Attachment | None = None  # our binding with the proxy

    # called by the movement detector and the driver ------------------------------------

    def address_acquired(self, address: str | None = None) -> None:
        self._address = address
        outside = self._outside_coa is not None
        self.events.emit("boundary_probe", proxy=self.proxy, outside=outside)
        if outside and address is not None:
            # outside already: follow with the proxy at once, and ask the HA directly
            self._register_with_proxy(address, moved_only=True)
            self._probe_home_agent()
            return
        self._decision = self.loop.call_later(scaled(self.config.decision_timeout), self._decide)

    def on_event(self, name: str, data: dict[str, Any]) -> None:
        if name == "agent_discovered" and self._outside_coa:
            self._leave_proxy()  # an FA or our HA advertising: inside; the core registers
        elif name == "registration_accepted" and data.get("mode") == "proxy":
            self._registered = self.machine.attachment
            self._after_batch(self._ensure_tunnel)  # needs the tunnel and routes it brings
        elif name == "returned_home" or (
            name == "registration_accepted" and data.get("mode") in ("f", "c", "home")
        ):
            self._cancel_decision()
            self._set_inside()

    # internals ----------------------------------------------------------------------------

    def _decide(self) -> None:
        self._decision = None
        if self.machine.registered and self.machine.mode in ("f", "c", "home"):
            return
        if self._address is None:
            self.events.emit("boundary_decision", inside=None, reason="no address")
            return
        self._inside = False
        self._register_with_proxy(self._address, moved_only=False)

    def _register_with_proxy(self, address: str, moved_only: bool) -> None:
        self.events.emit(
            "boundary_decision",
            inside=False,
            mode="proxy",
            proxy=self.proxy,
            care_of=address,
            moved_only=moved_only,
            phase="boundary_decision",
            after_ms=self._after_ms(),
        )
        if self._outside_coa is None:
            self.driver.dataplane.vpn_bound_to_home(True, str(self.config.gateway))
        self._outside_coa = address
        attachment = Attachment(
            "proxy",
            care_of=address,
            src=address,
            iface=self.link,
            colocated=True,
            home_agent=self.proxy,
        )
        self.driver.feed(self.machine.use_attachment(attachment, time.monotonic()))

    def _probed(self, answered: bool) -> None:
        self.events.emit("home_agent_probe", answered=answered)
        if answered and self._outside_coa is not None:
            self._leave_proxy()

    def _leave_proxy(self) -> None:
        self._outside_coa = None
        self.driver.dataplane.vpn_bound_to_home(False, str(self.config.gateway))
        self.driver.feed(self.machine.use_attachment(None, time.monotonic()))

    def _ensure_tunnel(self) -> None:
        try:
            if not self.vpn.established():
                self.vpn.initiate(timeout_s=scaled(5.0))
        except Exception as exc:  # the gateway unreachable through the proxy, auth failure
            self._report("vpn_initiate_failed", exc)

    def _forget_outside(self) -> None:
        if self._outside_coa is not None:
            self._outside_coa = None
            self.driver.dataplane.vpn_bound_to_home(False, str(self.config.gateway))
        if self._registered is not None:
            # the proxy would otherwise answer our next trip outside from a binding the HA
            # has since replaced (its own registration there is not renewed by ours); after
            # this batch of actions, which brings the routes to reach it
            registered, self._registered = self._registered, None
            self.loop.call_soon(
                lambda: self.driver.feed(self.machine.deregister_from(registered, time.monotonic()))
            )
