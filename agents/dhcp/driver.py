"""Run :class:`~agents.dhcp.client.DhcpClient` on one interface of the current namespace.

Sockets (see :mod:`agents.dhcp.frames` for why):

* an ``AF_PACKET``/``SOCK_DGRAM`` socket with a BPF filter (UDP to port 68) receives every
  reply, whatever the interface's addresses, routes or ``rp_filter``, and sends the
  broadcasts (DISCOVER, REQUEST in SELECTING/INIT-REBOOT/REBINDING) as whole IPv4 frames;
* a UDP socket bound to port 68 on the device (``SO_BINDTODEVICE``) sends the unicasts of
  RENEWING and RELEASE through normal routing. A drop-all filter keeps its receive queue
  empty; being bound stops the kernel answering replies with ICMP port unreachable.

Time: the machine gets ``time.monotonic()`` seconds; events get ``t_ns`` from
``time.monotonic_ns()`` (one clock for all namespaces, so events from several agents merge).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import random
import selectors
import socket
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from agents.dhcp.client import (
    Action,
    Bound,
    CancelTimer,
    ClientConfig,
    DhcpClient,
    Event,
    Lease,
    SendDhcp,
    SetTimer,
    State,
    Unbound,
)
from agents.dhcp.frames import (
    CLIENT_PORT,
    ETH_P_IP,
    SERVER_PORT,
    attach_dhcp_client_filter,
    attach_drop_all_filter,
    format_mac,
    ipv4_udp,
    udp_payload,
)

if TYPE_CHECKING:
    from agents.dhcp.netconf import LinkConfigurator

EventSink = Callable[[dict[str, Any]], None]
_PACKET_OUTGOING = 4
_BROADCAST_MAC = b"\xff" * 6


class DhcpTimeout(TimeoutError):
    """No lease within the time asked for; the message is one line saying how far it got."""


class DhcpDriver:
    """Sockets, timers and netlink around one :class:`DhcpClient`.

    Event-loop contract: watch :meth:`fileno` for readability and call :meth:`on_readable`;
    call :meth:`on_timer` at (or after) :meth:`next_deadline`. Or use :meth:`attach` to do
    that on an asyncio loop, or :meth:`run` to block.
    """

    def __init__(
        self,
        ifname: str,
        *,
        configure: bool = True,
        config: ClientConfig | None = None,
        rng: random.Random | None = None,
        on_event: EventSink | None = None,
        route_metric: int = 0,
        **config_overrides: Any,
    ) -> None:
        self.ifname = ifname
        self.on_event = on_event
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=512)
        self.lease: Lease | None = None  # the lease currently applied (or just bound)
        self._timers: dict[str, float] = {}
        self._waiters: list[asyncio.Future[Lease]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._ident = 0
        self._pkt: socket.socket | None = None
        self._udp: socket.socket | None = None
        self._net: LinkConfigurator | None = None
        self._frame_source: tuple[IPv4Address, str] | None = None  # of the frame in hand
        try:
            if configure:
                from agents.dhcp.netconf import LinkConfigurator

                self._net = LinkConfigurator(ifname, route_metric)
                # Up before binding: a packet socket bound to a down link starts with a
                # pending ENETDOWN error (and the broadcasts could not go out anyway).
                self._net.set_up()
            self._pkt = self._make_packet_socket(ifname)
            mac: bytes = self._pkt.getsockname()[4]
            self._udp = self._make_udp_socket(ifname)
        except BaseException:
            self.close()
            raise
        if config is None:
            config = ClientConfig(chaddr=mac, **config_overrides)
        self.client = DhcpClient(config, rng)

    @staticmethod
    def _make_packet_socket(ifname: str) -> socket.socket:
        # Protocol 0 at creation: nothing is delivered until bind(), which comes after the
        # filter, so no unfiltered frame from any interface can slip into the queue.
        pkt = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        try:
            attach_dhcp_client_filter(pkt)
            pkt.bind((ifname, ETH_P_IP))
            pkt.setblocking(False)
            # Belt and braces: empty the queue (also clears a pending ENETDOWN).
            with contextlib.suppress(OSError):
                while True:
                    pkt.recv(65535)
        except BaseException:
            pkt.close()
            raise
        return pkt

    @staticmethod
    def _make_udp_socket(ifname: str) -> socket.socket:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            attach_drop_all_filter(udp)
            udp.bind(("0.0.0.0", CLIENT_PORT))
            udp.setblocking(False)
        except BaseException:
            udp.close()
            raise
        return udp

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close sockets and netlink. The applied lease stays configured (kernel lifetime)."""
        self.detach()
        for sock in (self._pkt, self._udp):
            if sock is not None:
                sock.close()
        self._pkt = self._udp = None
        if self._net is not None:
            self._net.close()
            self._net = None
        for fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters.clear()

    def __enter__(self) -> DhcpDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def packet_socket(self) -> socket.socket:
        assert self._pkt is not None, "driver closed"
        return self._pkt

    def fileno(self) -> int:
        return self.packet_socket.fileno()

    @property
    def state(self) -> State:
        return self.client.state

    # --- inputs (each stamps one clock reading) -------------------------------------------

    def start(self, *, try_reboot: bool = False) -> None:
        self._run(lambda now: self.client.start(now, try_reboot=try_reboot))

    def link_down(self) -> None:
        self._run(self.client.link_down)

    def stop(self) -> None:
        self._run(self.client.stop)

    def release(self) -> None:
        self._run(self.client.release)

    def renew(self) -> None:
        self._run(self.client.renew)

    def on_readable(self) -> None:
        while True:
            try:
                data, addr = self.packet_socket.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # ENETDOWN once per carrier loss/link down; the kernel re-hooks the socket
                # when the link comes back, so report it and carry on.
                name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                self._emit("dhcp_socket_error", time.monotonic_ns(), error=name)
                return
            if addr[2] == _PACKET_OUTGOING:
                continue
            parsed = udp_payload(data)
            if parsed is not None:
                source, payload = parsed
                # who sent it, at the link layer: an ACK from our router names its MAC
                self._frame_source = (source, format_mac(addr[4]))
                self._run(lambda now, p=payload: self.client.handle_packet(p, now))
                self._frame_source = None

    def next_deadline(self) -> float | None:
        """Earliest armed timer, in ``time.monotonic()`` seconds."""
        return min(self._timers.values(), default=None)

    def on_timer(self) -> None:
        now = time.monotonic()
        for name, at in sorted(self._timers.items(), key=lambda kv: kv[1]):
            if at <= now and self._timers.get(name) == at:
                del self._timers[name]
                self._run(lambda t, n=name: self.client.handle_timer(n, t))
        # asyncio may call back a hair early (within its clock resolution): re-arm always.
        self._reschedule()

    # --- carrying out actions -------------------------------------------------------------

    def _run(self, step: Callable[[float], list[Action]]) -> None:
        t_ns = time.monotonic_ns()
        for action in step(t_ns / 1e9):
            self._apply(action, t_ns)
        self._reschedule()

    def _apply(self, action: Action, t_ns: int) -> None:
        if isinstance(action, SendDhcp):
            self._send(action, t_ns)
        elif isinstance(action, SetTimer):
            self._timers[action.name] = action.at
        elif isinstance(action, CancelTimer):
            self._timers.pop(action.name, None)
        elif isinstance(action, Event):
            self._emit(action.name, t_ns, **action.data)
        elif isinstance(action, Bound):
            self._bind(action, t_ns)
        elif isinstance(action, Unbound):
            if self._net is not None:
                self._net.remove(action.lease)
            self.lease = None
            address = str(action.lease.address)
            self._emit("dhcp_unbound", time.monotonic_ns(), reason=action.reason, address=address)

    def _bind(self, action: Bound, t_ns: int) -> None:
        configured = False
        if self._net is not None:
            try:
                # The server is often the router itself (a relay is the router too): its
                # MAC is in the ACK's frame, so the first packet through it needs no ARP.
                src = self._frame_source
                router_mac = src[1] if src and src[0] == action.lease.router else None
                self._net.apply(action.lease, action.previous or self.lease, t_ns / 1e9, router_mac)
                configured = True
            except (OSError, ValueError) as exc:  # NetlinkError is an OSError
                # Reported, not raised: raising here would leave the machine BOUND and any
                # waiter hanging; the embedding agent decides what a failed apply means.
                self._emit("dhcp_configure_failed", time.monotonic_ns(), error=str(exc))
        self.lease = action.lease
        done = time.monotonic_ns()
        self._emit(
            "dhcp_bound",
            done,
            **action.lease.to_dict(),
            configured=configured,
            configure_ms=(done - t_ns) / 1e6,
            rapid_commit=action.rapid_commit,
        )
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(action.lease)
        self._waiters.clear()

    def _send(self, action: SendDhcp, t_ns: int) -> None:
        try:
            if action.broadcast:
                self._ident = (self._ident + 1) & 0xFFFF
                frame = ipv4_udp(
                    action.src, action.dst, CLIENT_PORT, SERVER_PORT, action.payload, self._ident
                )
                self.packet_socket.sendto(frame, (self.ifname, ETH_P_IP, 0, 0, _BROADCAST_MAC))
            else:
                assert self._udp is not None
                self._udp.sendto(action.payload, (str(action.dst), SERVER_PORT))
        except OSError as exc:
            # A lost send is like a lost packet: the machine's retransmission covers it.
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            self._emit("dhcp_send_failed", t_ns, dst=str(action.dst), error=name)

    def _emit(self, name: str, t_ns: int, **data: Any) -> None:
        record = {"t_ns": t_ns, "event": name, "ifname": self.ifname, **data}
        self.events.append(record)
        if self.on_event is not None:
            self.on_event(record)

    # --- blocking use ---------------------------------------------------------------------

    def run(self, until: Callable[[], bool], timeout: float) -> bool:
        """Serve sockets and timers until ``until()`` is true (-> True) or ``timeout`` s."""
        end = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.packet_socket, selectors.EVENT_READ)
            while not until():
                now = time.monotonic()
                if now >= end:
                    return False
                deadline = self.next_deadline()
                wake = end if deadline is None else min(end, deadline)
                if sel.select(max(0.0, wake - now)):
                    self.on_readable()
                self.on_timer()
        return True

    # --- asyncio use ----------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Serve this driver from an asyncio loop (the caller still calls :meth:`start`)."""
        self._loop = loop or asyncio.get_running_loop()
        self._loop.add_reader(self.fileno(), self.on_readable)
        self._reschedule()

    def detach(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(OSError, RuntimeError, ValueError):  # loop already closed
                self._loop.remove_reader(self.fileno())
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            self._loop = None

    def _reschedule(self) -> None:
        if self._loop is None:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        deadline = self.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - time.monotonic())
            self._handle = self._loop.call_later(delay, self.on_timer)

    def bound_future(self) -> asyncio.Future[Lease]:
        """A future (of the running loop) resolved with the next lease bound and applied."""
        fut: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return fut

    async def wait_bound(self, timeout: float | None = None) -> Lease:
        """Wait (on an attached driver) for the next lease to be bound and applied."""
        return await asyncio.wait_for(self.bound_future(), timeout)

    def describe(self) -> str:
        """One line on how far acquisition got (for timeout messages)."""
        sent = collections.Counter(e["event"] for e in self.events)
        return (
            f"state {self.client.state}, {sent['dhcp_discover_sent']} DISCOVER(s), "
            f"{sent['dhcp_offer']} OFFER(s), {sent['dhcp_request_sent']} REQUEST(s), "
            f"{sent['dhcp_nak']} NAK(s)"
        )


def acquire(
    ifname: str, timeout: float = 10.0, *, configure: bool = True, **driver_kwargs: Any
) -> Lease:
    """Get (and unless ``configure=False`` apply) a lease on ``ifname``, blocking.

    The driver is closed afterwards: nothing renews the lease, but the kernel address
    lifetime retires it when it ends. Raises :class:`DhcpTimeout`.
    """
    with DhcpDriver(ifname, configure=configure, **driver_kwargs) as drv:
        drv.start()
        if not drv.run(lambda: drv.lease is not None, timeout):
            raise DhcpTimeout(f"no lease on {ifname} within {timeout:g} s ({drv.describe()})")
        assert drv.lease is not None
        return drv.lease


async def acquire_async(
    ifname: str, timeout: float = 10.0, *, configure: bool = True, **driver_kwargs: Any
) -> Lease:
    """Asyncio form of :func:`acquire` (one-shot; embed :class:`DhcpDriver` to renew)."""
    drv = DhcpDriver(ifname, configure=configure, **driver_kwargs)
    try:
        drv.attach()
        waiting = drv.bound_future()
        drv.start()
        try:
            return await asyncio.wait_for(waiting, timeout)
        except TimeoutError:
            raise DhcpTimeout(
                f"no lease on {ifname} within {timeout:g} s ({drv.describe()})"
            ) from None
    finally:
        drv.close()


__all__ = ["DhcpDriver", "DhcpTimeout", "acquire", "acquire_async"]
