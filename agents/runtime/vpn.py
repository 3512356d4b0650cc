"""RFC 5266 at the mobile node: crossing the security boundary with the VPN gateway.

On every move the MN registers with its home agent directly, without the VPN (the core does
that from the new FA or co-located address), and at the same time makes sure the IPsec
tunnel to the gateway is there: charon moves an existing IKE SA by itself (MOBIKE, from the
address change), or we initiate one. Then:

* the home agent answers the direct request: we are inside. Plain ``f``/``c``; the VPN is
  not used for that traffic (its routes would capture the intranet), so it is closed;
* only the gateway answers (no accepted direct registration within ``decision_timeout``,
  but a tunnel inner address, TIA): we are outside. The TIA is registered as co-located
  care-of address through the tunnel: mode ``mc``. Later moves between foreign networks
  change only the tunnel's outer address (MOBIKE); a new TIA means a new registration.

The decision and its time are events (``boundary_decision``), a phase of the handoff.

Outside, a settled MN echoes its home agent through the tunnel every ``path_check`` seconds.
charon cannot always see a dead path: after a NAT flush the mapping may move to a new port
(a packet from the gateway claims the old one first), and a MOBIKE responder does not follow
ESP to a new port; kernel-libipsec has no NAT mapping events and charon's first NAT-D check
only stores its baseline. ``path_failures`` unanswered echoes in a row: a new IKE SA
(``vpn_path_dead``), which also shortens recovery from a gateway restart.
vici calls block, so they run on a worker thread; results come back to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agents.mip.ipv4 import internet_checksum
from agents.mip.mn import Attachment
from agents.runtime.vpnretry import CONNECTING, DOWN, UP, TunnelKeeper, thread_safe_emit
from mipbase import rtnl
from mipbase.clock import scaled
from mipbase.events import EventWriter

# Back inside, the gateway usually answers our DELETE within a few ms through the intranet;
# waiting longer (charon forces the SA down after the timeout) only keeps its routes about
INSIDE_TERMINATE_S = 0.25
# After a move, a failed initiation is retried as long as a decision can still use the
# tunnel: the decision's timeout plus its wait for a TIA (``_decide``: 5 s)
DECISION_WAIT_S = 5.0
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

    def established(self) -> bool:
        """An established IKE SA with an installed child (whatever its addresses)."""
        from mipbase import vici_client as vc

        return any(
            sa.get("state") == "ESTABLISHED" and vc.installed_children(sa)
            for sa in self._call(lambda s: vc.list_sas(s, self.ike))
        )

    def state(self) -> str:
        """UP (an IKE SA with an installed child), CONNECTING (an initiation under way, no
        tunnel yet) or DOWN (nothing, or only SAs on their way out)."""
        from mipbase import vici_client as vc

        sas = self._call(lambda s: vc.list_sas(s, self.ike))
        if any(sa.get("state") == "ESTABLISHED" and vc.installed_children(sa) for sa in sas):
            return UP
        if any(sa.get("state") in IKE_IN_PROGRESS for sa in sas):
            return CONNECTING
        return DOWN

    def initiate(self, timeout_s: float = 5.0) -> None:
        from mipbase import vici_client as vc

        self._call(lambda s: vc.initiate(s, self.child, self.ike, timeout=timeout_s))

    def terminate(self, timeout_s: float = 1.0) -> None:
        from mipbase import vici_client as vc

        # force: do not wait for the gateway's answer to the DELETE (it may be unreachable
        # from where we are now); the SA's routes would capture intranet traffic meanwhile
        self._call(lambda s: vc.terminate(s, self.ike, timeout=timeout_s, force=True))


class BoundaryBase:
    """What every architecture's boundary controller shares: the MN's charon through vici
    (queries and teardown on their own thread, so that they never wait behind an IKE
    exchange in progress), the decision timer, the direct probe of the home agent, and
    the VPN's teardown once inside."""

    def __init__(self, config: Any, machine: Any, driver: Any, events: EventWriter) -> None:
        self.config = config
        self.machine = machine
        self.driver = driver
        self.events = events
        self.vpn = VpnClient(config.vici, config.ike, config.child)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vici")
        self.initiator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vici-init")
        self.loop = asyncio.get_event_loop()
        self.link = "eth0"
        self._decision: asyncio.TimerHandle | None = None
        self._moved_at = time.monotonic()
        self._inside = True

    def moved(self) -> None:
        """A new point of attachment: a pending decision was about the old one."""
        self._moved_at = time.monotonic()
        self._cancel_decision()

    def _cancel_decision(self) -> None:
        if self._decision is not None:
            self._decision.cancel()
            self._decision = None

    def _after_ms(self) -> float:
        """Time since the last move, for the decision's events."""
        return round((time.monotonic() - self._moved_at) * 1000, 3)

    def _set_inside(self) -> None:
        """The home agent answered directly: inside. The VPN is closed."""
        was_outside = not self._inside
        self._inside = True
        self._forget_outside()
        self.events.emit(
            "boundary_decision",
            inside=True,
            phase="boundary_decision",
            after_ms=self._after_ms(),
            changed=was_outside,
        )
        self.pool.submit(self._terminate)

    def _forget_outside(self) -> None:
        """What each architecture keeps while outside, dropped on the way inside."""
        raise NotImplementedError

    def on_icmp_error(self, dst: str, icmp_type: int, code: int) -> None:
        """The network says the home agent cannot be reached from here (ICMP destination
        unreachable for our direct registration): outside, without waiting out the timer."""
        if icmp_type != 3 or dst != str(self.machine.home_agent) or self._decision is None:
            return
        self._cancel_decision()
        self.events.emit("home_agent_unreachable", code=code, phase="home_agent_unreachable")
        self._decide()

    def _decide(self) -> None:
        raise NotImplementedError

    def _probe_home_agent(self) -> None:
        """Outside: does the home agent answer here, directly (not through any tunnel)?"""
        future = self.pool.submit(self._home_agent_answers)
        future.add_done_callback(self.driver.from_thread(self._probed))

    def _home_agent_answers(self) -> bool:
        """An ICMP echo to the home agent bound to the link, i.e. not through the VPN."""
        return icmp_echo(
            str(self.machine.home_agent), self.link, timeout_s=scaled(self.config.decision_timeout)
        )

    def _probed(self, answered: bool) -> None:
        raise NotImplementedError

    def _after_batch(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the VPN thread once the driver has carried out the current batch
        of the core's actions (the tunnel and routes that come with an acceptance)."""
        self.loop.call_soon(self.initiator.submit, fn)

    def _report(self, event: str, exc: Exception) -> None:
        self.loop.call_soon_threadsafe(
            lambda: self.events.emit(event, error=f"{type(exc).__name__}: {exc}")
        )

    def _terminate(self) -> None:
        try:
            self.vpn.terminate(timeout_s=INSIDE_TERMINATE_S)
        except Exception as exc:  # nothing to terminate is the common case
            if "no matching" not in str(exc).lower() and "not found" not in str(exc).lower():
                self._report("vpn_terminate_failed", exc)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.initiator.shutdown(wait=False, cancel_futures=True)


class BoundaryController(BoundaryBase):
    mode = "mc"  # the attachment mode of a registration through the tunnel

    def __init__(self, config: Any, machine: Any, driver: Any, events: EventWriter) -> None:
        super().__init__(config, machine, driver, events)
        self._outside_tia: str | None = None
        self._tunnel_changed = threading.Event()
        self._watching = False
        self._path_misses = 0
        self._echo_seq = 1
        # the path watchdog (TIA check, echo through the tunnel: up to 0.5 s each) on a
        # thread of its own: on the decision's thread it could hold up a move's decision
        self.watchdog = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vpn-watch")
        # initiations retried until the tunnel is up (on the initiator thread)
        self.keeper = TunnelKeeper(self.vpn, thread_safe_emit(self.loop, self.events), scale=scaled)
        self._reconnecting = False

    def moved(self) -> None:
        super().moved()
        self.keeper.cancel()  # retries were for the old attachment; this one brings its own

    # called by the movement detector and the driver ------------------------------------

    def address_acquired(self, address: str | None = None) -> None:
        """An address of our own: ask the home agent directly and the gateway at once."""
        self.events.emit(
            "boundary_probe", gateway=self.config.gateway, outside=self._outside_tia is not None
        )
        if self._outside_tia is None:
            # inside or unknown: the core's direct registration is the probe
            self.initiator.submit(self._ensure_tunnel, self.keeper.ticket(), self._probe_until())
        elif not self.config.mobike:
            # without MOBIKE the tunnel cannot follow us: a new IKE SA, then (a new TIA or
            # not) a new registration through it
            self._outside_tia = None
            self.initiator.submit(self._renew_tunnel, self.keeper.ticket(), self._probe_until())
        else:
            # outside in mc: probe the home agent without the VPN (not through table 220)
            self._probe_home_agent()
        self._decision = self.loop.call_later(scaled(self.config.decision_timeout), self._decide)

    def on_event(self, name: str, data: dict[str, Any]) -> None:
        """Core events: a directly accepted registration means we are inside; a foreign
        agent heard while outside is worth a direct registration attempt."""
        if name == "agent_discovered" and self._outside_tia:  # an FA, or home: inside
            self._leave_mc()
        if name in ("registration_accepted", "returned_home") and data.get("mode") != self.mode:
            self._cancel_decision()
            if name == "returned_home" or data.get("mode") in ("f", "c", "home"):
                self._set_inside()

    def _leave_mc(self) -> None:
        self._outside_tia = None
        self.keeper.cancel()  # the home agent answers here: no tunnel to bring back
        self.driver.feed(self.machine.use_attachment(None, time.monotonic()))

    def _probed(self, answered: bool) -> None:
        self.events.emit("home_agent_probe", answered=answered)
        if answered and self._outside_tia is not None:
            self._leave_mc()  # the core registers directly; its acceptance decides "inside"

    # internals ----------------------------------------------------------------------------

    def _probe_until(self) -> float:
        """After a move: retry failed initiations while a decision can still use them
        (later, a tunnel nobody decided for would only capture traffic)."""
        wait = scaled(self.config.decision_timeout) + scaled(DECISION_WAIT_S)
        return time.monotonic() + wait

    def _ensure_tunnel(self, ticket: int | None = None, until: float | None = None) -> None:
        """On the initiator thread: the tunnel up, initiations retried (``vpn_retry``) until
        it is, or until cancelled (a move, inside, closing) or past ``until``. Failures are
        ``vpn_initiate_failed`` events: an unreachable gateway leaves outside unknown."""
        if self.keeper.keep_up(ticket, until):
            self._tunnel_changed.set()  # a waiting decision need not poll on

    def _renew_tunnel(self, ticket: int | None = None, until: float | None = None) -> None:
        # the old SA's peer address is gone: do not wait for its DELETE to be answered, nor
        # for charon to finish closing it (that waited 50 ms before the new IKE_SA_INIT)
        with contextlib.suppress(Exception):
            self.vpn.terminate(timeout_s=-1)
        self._ensure_tunnel(ticket, until)

    def _reconnect(self) -> None:
        """Outside, and the tunnel is gone without a move: charon gave up on it (a restarted
        gateway that answered NO_PROPOSAL_CHOSEN before loading its connections). Bring it
        back, retrying until it is up; the watchdog then sees the TIA again (a new one: a
        new registration)."""
        if self._reconnecting:
            return
        self._reconnecting = True
        self.events.emit("vpn_tunnel_lost", tia=self._outside_tia)
        future = self.initiator.submit(self._ensure_tunnel, self.keeper.ticket())
        future.add_done_callback(self.driver.from_thread(self._reconnected))

    def _reconnected(self, _result: None) -> None:
        self._reconnecting = False

    def _forget_outside(self) -> None:
        self._outside_tia = None
        self.keeper.cancel()  # inside: the VPN is closed, not brought back

    def _decide(self) -> None:
        self._decision = None
        future = self.pool.submit(self._wait_tia, scaled(5.0))
        future.add_done_callback(self.driver.from_thread(self._outside))

    def _wait_tia(self, timeout_s: float) -> str | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._tunnel_changed.clear()
            with contextlib.suppress(Exception):
                tia = self.vpn.tia()
                if tia:
                    return tia
            # woken at once when our own initiate completes; polled for what charon does
            # by itself (MOBIKE, a rekey)
            self._tunnel_changed.wait(0.02)
        return None

    def _outside(self, tia: str | None) -> None:
        if tia is None:
            self.events.emit("boundary_decision", inside=None, reason="neither answered")
            return
        if self.machine.mode in ("f", "c", "home") and self.machine.registered:
            return  # the home agent answered meanwhile: inside after all
        if self._outside_tia == tia and self.machine.mode == self.mode:
            self.events.emit(
                "boundary_decision",
                inside=False,
                tia=tia,
                moved_only=True,
                mode=self.mode,
                phase="boundary_decision",
                after_ms=self._after_ms(),
            )
            return  # same TIA: MOBIKE moved the tunnel, the registration stays
        self._inside = False
        self.events.emit(
            "boundary_decision",
            inside=False,
            tia=tia,
            mode=self.mode,
            phase="boundary_decision",
            after_ms=self._after_ms(),
        )
        if tia != self._outside_tia:
            self._outside_tia = tia
            self._watch_tia()
            attachment = Attachment(
                self.mode,
                care_of=tia,
                src=tia,
                iface=self.config.iface or interface_holding(tia),
                colocated=True,
                via_vpn=True,
            )
            self.driver.feed(self.machine.use_attachment(attachment, time.monotonic()))

    def _watch_tia(self) -> None:
        """Outside, the tunnel may be re-established without a move (DPD after a gateway
        restart, a rekey): a different TIA then needs a new registration."""
        if self._watching:
            return
        self._watching = True

        def check() -> None:
            if self._outside_tia is None:
                self._watching = False
                return
            future = self.watchdog.submit(self._wait_tia, scaled(0.5))
            future.add_done_callback(self.driver.from_thread(self._tia_checked))

        self._check = check
        self.loop.call_later(1.0, check)

    def _tia_checked(self, tia: str | None) -> None:
        if self._outside_tia is None:
            self._watching = False
            return
        if tia is not None and tia != self._outside_tia:
            self.events.emit("tia_changed", old=self._outside_tia, new=tia)
            self._outside(tia)
        elif tia is not None and self._settled():
            self._check_path(tia)
        elif tia is None:
            self._reconnect()
        self.loop.call_later(1.0, self._check)

    def _settled(self) -> bool:
        """Long enough since the last move that MOBIKE and the registration are done."""
        cfg = self.config
        return (
            cfg.path_check > 0
            and self.machine.mode == self.mode
            and self.machine.registered
            and time.monotonic() - self._moved_at > scaled(3 * max(cfg.path_check, 1.0))
        )

    def close(self) -> None:
        self.keeper.cancel()  # a retry waiting out its backoff returns at once
        self.watchdog.shutdown(wait=False, cancel_futures=True)
        super().close()

    def _check_path(self, tia: str) -> None:
        # odd numbers from 3: never the boundary probe's 1
        self._echo_seq = self._echo_seq + 2 if self._echo_seq < 0xFFF0 else 3
        seq = self._echo_seq
        timeout = scaled(min(0.5, self.config.path_check))
        future = self.watchdog.submit(
            icmp_echo, str(self.machine.home_agent), None, timeout, seq, tia
        )
        future.add_done_callback(self.driver.from_thread(self._path_checked))

    def _path_checked(self, answered: bool) -> None:
        if answered or self._outside_tia is None:
            self._path_misses = 0
            return
        self._path_misses += 1
        if self._path_misses >= self.config.path_failures:
            self._path_misses = 0
            self.events.emit("vpn_path_dead", tia=self._outside_tia)
            self.initiator.submit(self._renew_tunnel, self.keeper.ticket())


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
