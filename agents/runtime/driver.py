"""The asyncio driver shared by every agent: sockets, timers, actions, events.

The protocol machines (agents.mip) never touch a socket or a clock; this driver feeds them
UDP-434 datagrams, ICMP router discovery messages and timer expiries with ``now`` from
CLOCK_MONOTONIC (``loop.time()`` is the same clock), and carries out what they return.
Data-plane actions (tunnels, routes, ARP) go to a role-specific ``DataPlane``.

Nothing a peer sends can kill the agent: every handler runs under a guard that turns an
unexpected exception into an ``agent_error`` event and a counter. Nor can it fill the disk:
the events a flood repeats (drops, denials, relays) go through an
:class:`~agents.runtime.eventlimit.Aggregator` (a few in full per second and kind, the rest
as counts), and the event file has a size cap (mipbase.events.EventWriter).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import struct
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

from agents.mip.actions import Action, CancelTimer, Event, Neighbour, Send, SetTimer
from agents.mip.constants import ALL_SYSTEMS, LIMITED_BROADCAST, MIP_PORT
from agents.runtime.eventlimit import Aggregator
from mipbase.events import EventWriter

if TYPE_CHECKING:
    from agents.runtime.linklayer import BpfProgram, FrameHandler

IP_PKTINFO = 8
IP_RECVERR = 11
_PKTINFO = struct.Struct("=I4s4s")  # ifindex, spec_dst, addr
# struct sock_extended_err: errno, origin, ICMP type and code, pad, info, data; then the
# offender's sockaddr_in (family, port, address)
_EXTENDED_ERR = struct.Struct("=IBBBBII")
SO_EE_ORIGIN_ICMP = 2
# where agent advertisements are sent (RFC 5944 2.1): nothing a router forwards
LINK_SCOPE = frozenset({ALL_SYSTEMS, LIMITED_BROADCAST})
ICMP_ROUTER_ADVERTISEMENT, ICMP_ROUTER_SOLICITATION = 9, 10


class Machine(Protocol):
    counters: dict[str, int]

    def start(self, now: float) -> list[Action]: ...
    def handle_datagram(
        self, payload: bytes, src: str, src_port: int, now: float, iface: str | None = None
    ) -> list[Action]: ...
    def handle_icmp(
        self, payload: bytes, src: str, now: float, iface: str | None = None
    ) -> list[Action]: ...
    def handle_timer(self, name: str, now: float) -> list[Action]: ...


class DataPlane(Protocol):
    def apply(self, action: Action) -> None: ...
    def handle_tunnel_data(self, payload: bytes, src: tuple[str, int], now: float) -> None: ...
    def close(self) -> None: ...


def _pktinfo(ifindex: int, src: str | None) -> list[tuple[int, int, bytes]]:
    spec = socket.inet_aton(src) if src else bytes(4)
    return [(socket.IPPROTO_IP, IP_PKTINFO, _PKTINFO.pack(ifindex, spec, bytes(4)))]


def _send_order(action: Action) -> int:
    return 0 if isinstance(action, Neighbour) else 1 if isinstance(action, Send) else 2


class AgentDriver:
    def __init__(
        self,
        machine: Machine,
        events: EventWriter,
        dataplane: DataPlane | None = None,
        *,
        interfaces: tuple[str, ...] = (),
        groups: tuple[str, ...] = (),
        udp_port: int = MIP_PORT,
        sends_first: bool = False,
    ) -> None:
        self.machine = machine
        # Home and foreign agents: a reply leaves before the data-plane work its message
        # caused (routes, proxy ARP: ~1 ms each through netlink). The binding is already in
        # the core; the installation finishes within the same loop turn, long before
        # anything the reply triggers can come back (at least two link crossings later).
        self.sends_first = sends_first
        self.events = events
        self.dataplane = dataplane
        self.interfaces = interfaces
        for iface in interfaces:  # a clear word at start-up rather than an error per send
            try:
                socket.if_nametoindex(iface)
            except OSError:
                raise OSError(f"no interface {iface!r} in this network namespace") from None
        self.counters: dict[str, int] = {
            "agent_errors": 0,
            "send_errors": 0,
            "events_suppressed": 0,
        }
        self.aggregator = Aggregator()
        self._flush_handle: asyncio.TimerHandle | None = None
        # observers of the core's events (e.g. the MN's boundary controller)
        self.event_hooks: list[Callable[[str, dict[str, Any]], None]] = []
        # observers of ICMP errors about what we sent: (destination, ICMP type, code)
        self.error_hooks: list[Callable[[str, int, int], None]] = []
        self.loop = asyncio.get_event_loop()
        self.loop.set_exception_handler(self._on_loop_error)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.stopping = asyncio.Event()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.udp.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        # ICMP errors about our datagrams (e.g. "net unreachable" for a home agent that is
        # not reachable from here) are reported, not silently dropped
        self.udp.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        self.udp.bind(("0.0.0.0", udp_port))
        self.udp.setblocking(False)
        self.icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.icmp.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        self.icmp.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        self.icmp.setblocking(False)
        for group in groups:
            for iface in interfaces:
                mreq = struct.pack(
                    "=4s4si", socket.inet_aton(group), bytes(4), socket.if_nametoindex(iface)
                )
                with contextlib.suppress(OSError):
                    self.icmp.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        self.loop.add_reader(self.udp.fileno(), self._guard(self._on_udp))
        self.loop.add_reader(self.icmp.fileno(), self._guard(self._on_icmp))
        # packet sockets that see who sent what (see agents.runtime.linklayer)
        self._link_sockets: list[socket.socket] = []
        self._adverts_from_link_layer = False
        # where Neighbour actions go (see note_registration_sources)
        self._neighbour_sink: Callable[[str, str, str], None] | None = None

    def read_adverts_at_link_layer(
        self, ifname: str, learn_neighbour: Callable[[str, str, str], None]
    ) -> None:
        """Take agent advertisements on ``ifname`` from a packet socket and call
        ``learn_neighbour(address, mac, ifname)`` before the machine sees each one. The
        machine (the MN's) is told when each frame arrived: one that waited in the socket
        across a move is the old link's, not the new one's."""
        from agents.runtime.linklayer import (
            ADVERTISEMENTS,
            advertises_itself,
            destination_address,
            split_advertisement,
        )

        handle_icmp: Callable[..., list[Action]] = self.machine.handle_icmp

        def on_frame(packet: bytes, mac: str, ifname: str, received: float) -> None:
            parsed = split_advertisement(packet)
            if parsed is None:
                return
            src, payload = parsed
            dst = destination_address(packet)
            now = self.now()
            if dst in LINK_SCOPE and advertises_itself(payload, src, mac):  # (issue 20)
                self._learn(learn_neighbour, src, mac, ifname)
            actions = handle_icmp(payload, src, now, ifname, received=received, dst=dst)
            self.feed(actions, now)

        self._watch_link_layer(ifname, ADVERTISEMENTS, on_frame, timestamps=True)
        self._adverts_from_link_layer = True

    def note_registration_sources(self, ifname: str, note: Callable[[str, str, str], None]) -> None:
        """Show the machine (a foreign agent's) every datagram to port 434 on ``ifname`` with
        its link-layer source (``handle_link_request``), and carry out the ``Neighbour``
        actions it returns, now or later, with ``note(address, mac, ifname)``: a foreign
        agent keeps its visitors' MACs from their Registration Requests, and only from
        requests that name their sender (issue 20: not from any frame to port 434)."""
        from agents.runtime.linklayer import MIP_DATAGRAMS, registration_datagram

        handle: Callable[..., list[Action]] = self.machine.handle_link_request  # type: ignore[attr-defined]
        self._neighbour_sink = note

        def on_frame(packet: bytes, mac: str, ifname: str, _received: float) -> None:
            parsed = registration_datagram(packet)
            if parsed is None:
                return
            src, dst, payload = parsed
            now = self.now()
            self.feed(handle(payload, src, dst, mac, ifname, now), now)

        self._watch_link_layer(ifname, MIP_DATAGRAMS, on_frame)

    def _watch_link_layer(
        self, ifname: str, program: BpfProgram, on_frame: FrameHandler, timestamps: bool = False
    ) -> None:
        from agents.runtime.linklayer import open_filtered_socket, read_frames

        sock = open_filtered_socket(ifname, program, timestamps=timestamps)
        self._link_sockets.append(sock)
        self.loop.add_reader(sock.fileno(), self._guard(read_frames), sock, on_frame)

    def _learn(self, fn: Callable[[str, str, str], None], src: str, mac: str, ifname: str) -> None:
        try:
            fn(src, mac, ifname)
        except Exception as exc:  # the message still counts without the neighbour entry
            self.counters["agent_errors"] += 1
            self.events.emit("agent_error", error=f"neighbour {src}: {exc}")

    # -- plumbing ---------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic()

    def emit(self, name: str, data: dict[str, Any]) -> None:
        """Write an event, or count it with its kind when a flood repeats it (module
        docstring); the counts are written when their interval ends."""
        now = self.now()
        due = self.aggregator.due()
        if due is not None and now >= due:
            self._flush_events()
        if self.aggregator.offer(name, data, now):
            self.events.emit(name, **data)
        elif self._flush_handle is None:
            at = self.aggregator.due()
            if at is not None:
                self._flush_handle = self.loop.call_at(at, self._guard(self._flush_events))

    def _flush_events(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for record in self.aggregator.flush(self.now()):
            self.counters["events_suppressed"] += record["suppressed"]
            self.events.emit("events_suppressed", **record)

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Any callback on our loop that raised (a timer, a boundary decision, a thread's
        result): counted and recorded like a packet handler's error, never only logged."""
        exc = context.get("exception")
        error = f"{type(exc).__name__}: {exc}" if exc is not None else context.get("message")
        self.counters["agent_errors"] += 1
        self.events.emit("agent_error", error=error, where="callback")

    def from_thread(self, callback: Callable[[Any], None]) -> Callable[[Future[Any]], None]:
        """A done-callback for a worker thread's future: ``callback(result)`` on our loop,
        or the thread's exception counted there (a done-callback that raises in the worker
        thread is only logged by concurrent.futures)."""

        def done(future: Future[Any]) -> None:
            try:
                result = future.result()
            except BaseException as exc:  # the worker's failure, reported on the loop
                self.loop.call_soon_threadsafe(self._on_loop_error, self.loop, {"exception": exc})
                return
            self.loop.call_soon_threadsafe(callback, result)

        return done

    def _guard(self, fn: Callable[..., Any]) -> Callable[..., None]:
        def guarded(*args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:  # a bug or a hostile packet must not stop the agent
                self.counters["agent_errors"] += 1
                self.events.emit("agent_error", error=f"{type(exc).__name__}: {exc}")

        return guarded

    def feed(self, actions: list[Action], received: float | None = None) -> None:
        """Carry out ``actions`` in order. ``received`` (monotonic time the triggering
        message arrived) lets the timing of data-plane work be reported: a handoff's
        latency is mostly what agents spend between receiving and sending."""
        applied: list[list[Any]] = []
        if self.sends_first and self.dataplane is not None:
            # stable; a neighbour entry still goes first: the reply to a visitor needs it
            actions = sorted(actions, key=_send_order)
        for action in actions:
            if isinstance(action, Send):
                self._send(action)
            elif isinstance(action, Neighbour):
                if self._neighbour_sink is not None:
                    self._learn(self._neighbour_sink, action.address, action.mac, action.iface)
            elif isinstance(action, SetTimer):
                old = self._timers.pop(action.name, None)
                if old is not None:
                    old.cancel()
                self._timers[action.name] = self.loop.call_at(
                    action.at, self._guard(self._fire), action.name
                )
            elif isinstance(action, CancelTimer):
                old = self._timers.pop(action.name, None)
                if old is not None:
                    old.cancel()
            elif isinstance(action, Event):
                self.emit(action.name, action.data)
                for hook in self.event_hooks:
                    hook(action.name, action.data)
            elif self.dataplane is not None:
                started = time.monotonic()
                try:
                    self.dataplane.apply(action)
                except Exception as exc:
                    self.counters["agent_errors"] += 1
                    self.events.emit(
                        "dataplane_error",
                        action=type(action).__name__,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                applied.append(
                    [type(action).__name__, round((time.monotonic() - started) * 1e3, 3)]
                )
        if applied:
            done = time.monotonic()
            timing: dict[str, Any] = {"actions": applied}
            if received is not None:
                timing["since_receive_ms"] = round((done - received) * 1e3, 3)
            self.events.emit("dataplane_applied", **timing)

    def _fire(self, name: str) -> None:
        self._timers.pop(name, None)
        self.feed(self.machine.handle_timer(name, self.now()))

    def _send(self, send: Send) -> None:
        ifindex = socket.if_nametoindex(send.iface) if send.iface else 0
        ancillary = _pktinfo(ifindex, send.src) if (ifindex or send.src) else []
        try:
            if send.kind == "icmp":
                ttl = send.ttl or 64
                self.icmp.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
                self.icmp.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
                self.icmp.sendmsg([send.payload], ancillary, 0, (send.dst, 0))
            else:
                self.udp.sendmsg([send.payload], ancillary, 0, (send.dst, send.dst_port))
        except OSError as exc:
            # like a lost packet: the machines retransmit
            self.counters["send_errors"] += 1
            self.emit("send_failed", {"dst": send.dst, "error": exc.strerror or str(exc)})

    @staticmethod
    def _ifname(ancdata: list[tuple[int, int, bytes]]) -> str | None:
        for level, kind, data in ancdata:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
                with contextlib.suppress(OSError):
                    return socket.if_indextoname(_PKTINFO.unpack_from(data)[0])
        return None

    def _on_udp(self) -> None:
        for _ in range(64):
            try:
                payload, anc, _flags, (src, port) = self.udp.recvmsg(65535, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error is pending: it is in the error queue too
                self._on_udp_errors()
                continue
            now = self.now()
            if payload[:1] == b"\x04" and self.dataplane is not None:
                self.dataplane.handle_tunnel_data(payload, (src, port), now)
                continue
            self.feed(self.machine.handle_datagram(payload, src, port, now, self._ifname(anc)), now)

    def _on_udp_errors(self) -> None:
        for _ in range(16):
            try:
                _data, anc, _flags, addr = self.udp.recvmsg(512, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError, OSError):
                return
            for level, kind, data in anc:
                if level != socket.IPPROTO_IP or kind != IP_RECVERR:
                    continue
                if len(data) < _EXTENDED_ERR.size:
                    continue
                _errno, origin, icmp_type, code, _pad, _info, _d = _EXTENDED_ERR.unpack_from(data)
                if origin != SO_EE_ORIGIN_ICMP:
                    continue
                offender = data[_EXTENDED_ERR.size :]
                reporter = socket.inet_ntoa(offender[4:8]) if len(offender) >= 8 else None
                dst = addr[0] if addr else "?"
                self.emit(
                    "icmp_error",
                    {"dst": dst, "type": icmp_type, "code": code, "reporter": reporter},
                )
                for hook in self.error_hooks:
                    hook(dst, icmp_type, code)

    def _on_icmp(self) -> None:
        for _ in range(64):
            try:
                packet, anc, _flags, (src, _) = self.icmp.recvmsg(65535, 64)
            except (BlockingIOError, InterruptedError):
                return
            if len(packet) < 20:
                continue
            ihl = (packet[0] & 0x0F) * 4
            payload = packet[ihl:]
            if payload[:1] not in (b"\x09", b"\x0a"):
                continue  # echo, unreachable, ...: not router discovery
            if payload[:1] == b"\x09" and self._adverts_from_link_layer:
                continue  # taken with its link-layer source from the packet socket
            now = self.now()
            self.feed(self.machine.handle_icmp(payload, src, now, self._ifname(anc)), now)

    # -- life cycle -------------------------------------------------------------------------

    def install_signals(self, on_stop: Callable[[], None]) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, on_stop)

    def close(self) -> None:
        self._flush_events()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for sock in (self.udp, self.icmp, *self._link_sockets):
            with contextlib.suppress(Exception):
                self.loop.remove_reader(sock.fileno())
            sock.close()
        if self.dataplane is not None:
            self.dataplane.close()
