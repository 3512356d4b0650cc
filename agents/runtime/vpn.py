"""RFC 5266 at the mobile node: the boundary decision's driver, charon through vici.

The decision itself (inside or outside, for MOBIKE, dual MIP and the MIP proxy) is the
sans-I/O core :mod:`agents.mip.boundary`. This module carries out what it asks for and feeds
the results back: the MN core's attachments and deregistrations (through the agent's
driver), timers on the event loop, the events, and the blocking work on worker threads:

* ``vici``: charon's tunnel inner address for a decision, the direct echo of the home agent
  (bound to the visited link: not through the VPN), and the VPN's teardown once inside;
* ``vici-init``: initiations, one at a time and in order (an IKE exchange may take seconds;
  the queries above never wait behind it);
* ``vpn-watch``: outside, the tunnel check's queries and its echo of the home agent through
  the tunnel (an echo waiting out its timeout must not hold up a move's decision).

No decision state lives here: only the timers' handles and the threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from agents.mip import boundary as core
from agents.mip.actions import CancelTimer, Event, SetTimer
from agents.mip.ipv4 import internet_checksum
from agents.mip.mn import Attachment
from mipbase import rtnl
from mipbase.clock import scaled
from mipbase.events import EventWriter

# charon's IKE SA states of an initiation still under way (ours, or its own close_action)
IKE_IN_PROGRESS = frozenset({"CREATED", "CONNECTING"})


def interface_holding(address: str) -> str | None:
    """The interface that holds ``address``: where charon put the tunnel inner address
    (kernel-libipsec: its TUN ``ipsec0``; XFRM on a stock kernel: the outer interface)."""
    with rtnl.Rtnl() as nl:
        for info in nl.addresses():
            if str(info.address) == address:
                with contextlib.suppress(OSError):
                    return socket.if_indextoname(info.index)
    return None


class VpnClient:
    """The MN's charon, through vici: is the tunnel up, what is our TIA, bring it up/down."""

    def __init__(self, vici_socket: str, ike: str, child: str) -> None:
        self.path = vici_socket
        self.ike = ike
        self.child = child

    def _call(self, fn: Callable[[Any], Any]) -> Any:
        from mipbase.vici_client import close_session, connect

        session = connect(self.path, timeout=scaled(10))
        try:
            return fn(session)
        finally:
            close_session(session)

    def tia(self) -> str | None:
        """Our virtual IP when the IKE SA is established and a child installed."""
        from mipbase import vici_client as vc

        for sa in self._call(lambda s: vc.list_sas(s, self.ike)):
            if sa.get("state") == "ESTABLISHED" and vc.installed_children(sa):
                vips = vc.virtual_ips(sa)
                if vips:
                    return str(vips[0])
        return None

    def state(self) -> str:
        """UP (an IKE SA with an installed child), CONNECTING (an initiation under way, no
        tunnel yet) or DOWN (nothing, or only SAs on their way out)."""
        from mipbase import vici_client as vc

        sas = self._call(lambda s: vc.list_sas(s, self.ike))
        if any(sa.get("state") == "ESTABLISHED" and vc.installed_children(sa) for sa in sas):
            return core.UP
        if any(sa.get("state") in IKE_IN_PROGRESS for sa in sas):
            return core.CONNECTING
        return core.DOWN

    def initiate(self, timeout_s: float = 5.0) -> None:
        from mipbase import vici_client as vc

        self._call(lambda s: vc.initiate(s, self.child, self.ike, timeout=timeout_s))

    def terminate(self, timeout_s: float = 1.0) -> None:
        from mipbase import vici_client as vc

        # force: do not wait for the gateway's answer to the DELETE (it may be unreachable
        # from where we are now); the SA's routes would capture intranet traffic meanwhile
        self._call(lambda s: vc.terminate(s, self.ike, timeout=timeout_s, force=True))


def boundary_config(vpn: Any, link: str) -> core.BoundaryConfig:
    """The core's configuration from the MN's ``vpn`` section (agents.runtime.config.VpnFile)
    and its visited-link interface."""
    return core.BoundaryConfig(
        architecture=core.ARCHITECTURES[vpn.architecture],
        gateway=str(vpn.gateway),
        link=link,
        proxy=str(vpn.proxy) if vpn.proxy is not None else None,
        tia_iface=vpn.iface,
        decision_timeout=vpn.decision_timeout,
        mobike=vpn.mobike,
        path_check=vpn.path_check,
        path_failures=vpn.path_failures,
        scale=scaled,
        gateways=tuple(
            core.GatewayChoice(str(g.gateway), g.ike, tuple(str(n) for n in g.networks))
            for g in getattr(vpn, "gateways", ())  # (a config made by hand may have none)
        ),
    )


class BoundaryController:
    """Drives :class:`agents.mip.boundary.BoundaryCore` for one MN (see the module docstring).

    Inputs come from the movement detector (``moved``, ``address_acquired``) and the agent's
    driver (``on_event``: the MN core's events; ``on_icmp_error``)."""

    def __init__(
        self, config: Any, machine: Any, driver: Any, events: EventWriter, link: str
    ) -> None:
        self.config = config
        self.machine = machine
        self.driver = driver
        self.events = events
        self.link = link
        self.vpn = VpnClient(config.vici, config.ike, config.child)
        self.core = core.BoundaryCore(boundary_config(config, link), machine, time.monotonic())
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vici")
        self.initiator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vici-init")
        self.watchdog = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vpn-watch")
        self.loop = asyncio.get_event_loop()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    # inputs ---------------------------------------------------------------------------------

    def moved(self) -> None:
        self.handle(core.Moved())

    def address_acquired(self, address: str | None = None) -> None:
        self.handle(core.AddressAcquired(address))

    def on_event(self, name: str, data: dict[str, Any]) -> None:
        event = core.from_core_event(name, data)
        if event is not None:
            self.handle(event)

    def on_icmp_error(self, dst: str, icmp_type: int, code: int) -> None:
        self.handle(core.IcmpUnreachable(dst, icmp_type, code))

    def handle(self, event: core.Input) -> None:
        self.carry_out(self.core.handle(event, time.monotonic()))

    # actions --------------------------------------------------------------------------------

    def carry_out(self, actions: list[core.Action]) -> None:
        for action in actions:
            if isinstance(action, Event):
                self.events.emit(action.name, **action.data)
            elif isinstance(action, SetTimer):
                self._cancel_timer(action.name)
                self._timers[action.name] = self.loop.call_at(action.at, self._fire, action.name)
            elif isinstance(action, CancelTimer):
                self._cancel_timer(action.name)
            elif isinstance(action, core.UseAttachment):
                self._use_attachment(action.attachment)
            elif isinstance(action, core.UseOuterAttachment):
                self.use_outer(action.attachment)
            elif isinstance(action, core.DeregisterFrom):
                # after the batch of the MN core's actions in progress (the routes to the agent)
                self.loop.call_soon(self._deregister, action.attachment)
            elif isinstance(action, core.BindVpnToHome):
                self.driver.dataplane.vpn_bound_to_home(action.bound, action.gateway)
            elif isinstance(action, core.InitiateVpn):
                if action.after_batch:
                    self.loop.call_soon(self._submit_initiation, action)
                else:
                    self._submit_initiation(action)
            elif isinstance(action, core.TerminateVpn):
                self.pool.submit(self._terminate, action.timeout_s)
            elif isinstance(action, core.QueryTunnel):
                self._query(action)
            elif isinstance(action, core.ProbeHomeAgent):
                self._probe(action)
            else:
                raise TypeError(f"not a boundary action: {action!r}")

    def _fire(self, name: str) -> None:
        self._timers.pop(name, None)
        self.handle(core.TimerFired(name))

    def _cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _use_attachment(self, attachment: Attachment | None) -> None:
        if attachment is not None and attachment.via_vpn and attachment.iface is None:
            attachment = replace(attachment, iface=interface_holding(attachment.care_of))
        self.driver.feed(self.machine.use_attachment(attachment, time.monotonic()))

    def use_outer(self, attachment: Attachment | None) -> None:
        raise TypeError("this architecture has no x-MIP client")

    def _deregister(self, attachment: Attachment) -> None:
        self.driver.feed(self.machine.deregister_from(attachment, time.monotonic()))

    def _then(self, future: Any, make_input: Callable[[Any], core.Input]) -> None:
        """The worker's result, as an input, on the loop."""
        future.add_done_callback(
            self.driver.from_thread(lambda result: self.handle(make_input(result)))
        )

    def _submit_initiation(self, action: core.InitiateVpn) -> None:
        future = self.initiator.submit(self._initiate, action)
        self._then(future, lambda outcome: core.InitiateDone(action.attempt, *outcome))

    def _initiate(self, action: core.InitiateVpn) -> tuple[str, str | None]:
        """On the initiator thread: one look at charon, an initiation if there is no tunnel;
        the state after it and, if the initiation failed, why. One no longer wanted by its
        turn (a move, inside, a newer one meanwhile) is not started at all."""
        if not self.core.initiation_wanted(action.attempt):
            return core.DOWN, None  # a stale outcome: the core ignores it
        ike = action.ike or self.config.ike
        if ike != getattr(self.vpn, "ike", ike):
            # another gateway: its own connection, the old gateway's IKE SA closed first
            with contextlib.suppress(Exception):
                self.vpn.terminate(timeout_s=-1)
            self.vpn.ike = ike
        elif action.fresh:
            # the old SA's peer address is gone: do not wait for its DELETE to be answered,
            # nor for charon to finish closing it (that waited 50 ms before the IKE_SA_INIT)
            with contextlib.suppress(Exception):
                self.vpn.terminate(timeout_s=-1)
        try:
            state = self.vpn.state()
            if state != core.DOWN:
                return state, None
            self.vpn.initiate(timeout_s=action.timeout_s)
            return core.UP, None  # vici's initiate returns once the CHILD_SA is installed
        except Exception as exc:  # NO_PROPOSAL_CHOSEN, a timeout, charon's socket gone
            return core.DOWN, f"{type(exc).__name__}: {exc}"

    def _query(self, action: core.QueryTunnel) -> None:
        future = (self.watchdog if action.watch else self.pool).submit(self._tia)
        self._then(future, lambda tia: core.TunnelSeen(action.query, tia))

    def _tia(self) -> str | None:
        try:
            return self.vpn.tia()
        except Exception:  # charon busy or restarting: no tunnel as far as we know
            return None

    def _probe(self, action: core.ProbeHomeAgent) -> None:
        executor = self.pool if action.path == "direct" else self.watchdog

        def echo() -> tuple[bool, float]:
            started = time.monotonic()
            answered = icmp_echo(
                action.home_agent, action.iface, action.timeout_s, action.seq, action.source
            )
            return answered, time.monotonic() - started

        # the round trip of an answered echo: the core's tunnel echo timeout follows it
        self._then(
            executor.submit(echo),
            lambda result: core.HomeAgentAnswered(
                action.path, result[0], result[1] if result[0] else None
            ),
        )

    def _terminate(self, timeout_s: float) -> None:
        try:
            self.vpn.terminate(timeout_s=timeout_s)
        except Exception as exc:  # nothing to terminate is the common case
            if "no matching" not in str(exc).lower() and "not found" not in str(exc).lower():
                error = f"{type(exc).__name__}: {exc}"
                self.loop.call_soon_threadsafe(
                    lambda: self.events.emit("vpn_terminate_failed", error=error)
                )

    def close(self) -> None:
        for name in list(self._timers):
            self._cancel_timer(name)
        for executor in (self.pool, self.initiator, self.watchdog):
            executor.shutdown(wait=False, cancel_futures=True)


def icmp_echo(
    address: str,
    ifname: str | None,
    timeout_s: float,
    seq: int = 1,
    source: str | None = None,
) -> bool:
    """One ICMP echo request, out of ``ifname`` if given (SO_BINDTODEVICE: main routing, not
    the VPN's policy table) and from ``source`` if given; True if the reply comes within
    ``timeout_s``."""
    import os
    import select
    import socket
    import struct

    ident = os.getpid() & 0xFFFF
    payload = b"testbed-boundary"
    checksum = internet_checksum(struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload)
    packet = struct.pack("!BBHHH", 8, 0, checksum, ident, seq) + payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        if ifname is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        if source is not None:
            try:
                sock.bind((source, 0))
            except OSError:
                return False
        try:
            sock.sendto(packet, (address, 0))
        except OSError:
            return False
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                return False
            data, (src, _) = sock.recvfrom(2048)
            ihl = (data[0] & 0x0F) * 4
            if src == address and data[ihl] == 0 and data[ihl + 4 : ihl + 8] == packet[4:8]:
                return True
    return False
