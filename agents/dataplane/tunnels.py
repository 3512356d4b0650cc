"""Userspace Mobile IP tunnels: one TUN device, a raw IP-in-IP socket and UDP 434.

One :class:`TunnelEngine` per agent process owns a TUN device and a table of tunnels keyed
by home address.

TUN -> wire. The kernel routes packets into the TUN (a /32 route of each home address at the
HA; a source rule or default route at a mobile node or FA doing reverse tunnelling). The
engine reads one inner packet, looks its tunnel up by inner *destination* (``key='dst'``, HA:
packets for the mobile node's home address) or inner *source* (``key='src'``, mobile node or
FA: RFC 3024 reverse tunnelling of everything sent from the home address) and sends it:

* IP in IP (RFC 2003): a raw ``IPPROTO_IPIP`` socket with ``IP_HDRINCL``. We write the outer
  header ourselves, from a per-tunnel cache, because RFC 2003 section 3.1 wants the inner TOS
  copied and an inner DF copied to the outer header -- per packet, which a plain raw socket
  cannot do without a setsockopt or control message per packet. Linux fills in total
  length, ID and checksum (raw(7)), and the source address when we leave it 0.
* IP in UDP (RFC 3519 section 3.3): the MIP Tunnel Data header (type 4, next header 4) plus
  the inner packet, from a UDP socket bound to the tunnel's local port (434 by default). The
  agent's registration code needs the same port, so the engine can share the agent's socket
  (``udp_socket=``): either the agent reads it and hands type-4 messages to
  :meth:`TunnelEngine.handle_udp_tunnel_data`, or the engine reads it (``on_udp_message=``)
  and hands everything else to the agent.

Wire -> TUN. The raw socket gets every protocol-4 packet of the namespace with its outer
header (and while it is open the kernel stops answering protocol 4 with ICMP unreachable).
Both paths check the outer header, the Tunnel Data header, the inner header, and that the
outer source is the peer of a tunnel -- and, with ``strict_inner`` (default), that the inner
address is the home address of *that* tunnel (RFC 3024's home agent checks a
reverse-tunnelled packet's inner source against the binding of the outer source; the same
check on the other side keeps a peer from injecting traffic for home addresses that are not
its own). Anything else is dropped and counted in :attr:`TunnelEngine.counters`; nothing
raises out of the receive paths.

Routing around the engine (the agents' job; :class:`agents.dataplane.arp.Plumbing` has the
calls):

* HA (``key='dst'``): ``HOME/32 dev TUN``; forwarding on; proxy ARP for HOME on the home
  interface with ``proxy_delay`` 0, and a gratuitous ARP on registration (RFC 5944 section
  4.6). Reverse-tunnelled packets come out of the TUN and are forwarded by the kernel.
* Mobile node with a co-located care-of address (``key='src'``): the home address on the
  TUN, ``from HOME lookup T`` and ``default dev TUN table T``; registrations and the outer
  packets keep using the care-of address and the main table.
* FA (``key='src'``): ``HOME/32`` on the visited-network interface (decapsulated packets are
  forwarded there) and ``from HOME lookup T`` / ``default dev TUN table T`` for reverse
  tunnelling; ``rp_filter`` 0 or 2 on the TUN, whose decapsulated packets come from sources
  not routed via the TUN.

The kernel forwarding into and out of the TUN decrements the inner TTL, as RFC 2003 section
3.1 asks of an encapsulator or decapsulator that forwards.

Tunnel MTU (RFC 2003 section 4, RFC 1191). The path to a tunnel's peer may carry less than
the TUN's MTU plus the outer header -- an IPsec VPN on the way (RFC 5266's mode mc: IP in
IP inside the gateway's ``ipsec0``, MTU 1400). The raw socket has ``IP_RECVERR``: an ICMP
"fragmentation needed" about one of our outer packets (it quotes the outer header, whose
destination is the peer) and the kernel's own "message too long" for a send beyond the
outgoing interface's MTU land in its error queue. The engine keeps the reported MTU per
peer (:meth:`TunnelEngine.path_mtu`, forgotten after :data:`PMTU_EXPIRES` s as RFC 1191
section 6.3 and Linux do) and refuses an inner packet with DF set that no longer fits
with an ICMP "fragmentation needed" to its source, next-hop MTU = path MTU - 20, sent
from the raw socket like the outer packets (RFC 2003 section 4.1): the correspondent's
path MTU discovery then lowers its packets, where the gateway's ICMP alone reaches only
the encapsulator. Inner packets without DF go out; the kernel fragments the outer packet.
The Linux ``ipip`` device does the same (``ip_tunnel_xmit``); UDP tunnels do not (yet).

Threading: call everything from one thread (the loop's). No netlink is used here.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import os
import selectors
import socket
import struct
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any, Final, Literal

from agents.dataplane.packets import (
    DEFAULT_TTL,
    DROP_REASONS,
    ICMP_FRAG_NEEDED,
    ICMP_UNREACH,
    IPIP_MTU,
    IPPROTO_IPIP,
    IPV4_HEADER_LEN,
    MIN_IPV4_MTU,
    MIP_PORT,
    TUNNEL_DATA_HEADER,
    TUNNEL_DATA_TYPE,
    complete_partial_checksum,
    frag_needed,
    ipip_outer_header,
    parse_ipip,
    parse_tunnel_data,
)
from agents.dataplane.tun import TunDevice

Encapsulation = Literal["ipip", "udp"]
KeyMode = Literal["dst", "src"]
Address = str | IPv4Address
UdpAddr = tuple[str, int]
EventSink = Callable[[dict[str, Any]], None]
UdpMessageSink = Callable[[bytes, UdpAddr], None]

IP_PKTINFO: Final = 8  # <linux/in.h>; not exported by Python 3.11's socket module
IP_RECVERR: Final = 11  # <linux/in.h>: ICMP errors and local send errors to the error queue
MSG_ERRQUEUE: Final = 0x2000
SO_EE_ORIGIN_LOCAL, SO_EE_ORIGIN_ICMP = 1, 2  # <linux/errqueue.h>
_SOCK_EE: Final = struct.Struct("=IBBBBII")  # struct sock_extended_err
PMTU_EXPIRES: Final = 600.0  # s a learned path MTU holds (RFC 1191 6.3; Linux mtu_expires)
NO_MTU: Final = 0xFFFF  # a tunnel's inner MTU while no path MTU is known: send everything
SO_SNDBUFFORCE: Final = 32
SO_RCVBUFFORCE: Final = 33
SOCKET_BUFFER: Final = 4 << 20  # absorbs bursts while the loop is busy elsewhere
_BUF_SIZE: Final = 65535
_ANY4: Final = b"\0\0\0\0"
_ADDRS = struct.Struct("4s4s").unpack_from  # (source, destination) at offset 12 of a header

# Counters besides the parse drop reasons of agents.dataplane.packets.
C_TX_IPIP: Final = "tx_ipip"  # inner packets sent IP in IP
C_TX_UDP: Final = "tx_udp"  # inner packets sent in MIP Tunnel Data messages
C_TX_NOT_IPV4: Final = "tx_not_ipv4"  # read from TUN, not IPv4 (IPv6 on the TUN, junk)
C_TX_NO_TUNNEL: Final = "tx_no_tunnel"  # read from TUN, no tunnel for its key address
C_TX_ERROR: Final = "tx_error"  # send failed (ENOBUFS, EMSGSIZE, unreachable ...)
C_TX_FRAG_NEEDED: Final = "tx_frag_needed"  # DF, beyond the tunnel MTU: ICMP to the source
C_PMTU_ICMP: Final = "pmtu_icmp"  # "fragmentation needed" from the path, about a peer
C_PMTU_LOCAL: Final = "pmtu_local"  # the kernel's EMSGSIZE for an outer packet to a peer
C_RX_ERRQUEUE_OTHER: Final = "rx_errqueue_other"  # other ICMP errors about outer packets
C_RX_IPIP: Final = "rx_ipip"  # inner packets decapsulated from IP in IP and written to TUN
C_RX_UDP: Final = "rx_udp"  # ... from MIP Tunnel Data messages
C_RX_UNKNOWN_PEER: Final = "rx_unknown_peer"  # outer source is no tunnel's peer
C_RX_INNER_MISMATCH: Final = "rx_inner_mismatch"  # known peer, inner address not its own
C_RX_PORT_MISMATCH: Final = "rx_udp_port_mismatch"  # known peer address, other port
C_RX_PEER_LEARNED: Final = "rx_udp_peer_learned"  # peer port learned (learn_peer=True)
C_RX_UDP_OTHER: Final = "rx_udp_other"  # not type 4: handed to on_udp_message or dropped
C_TUN_WRITE_ERROR: Final = "tun_write_error"
# inner checksums a kernel IP-in-IP peer left unfinished (offload), finished by us
C_RX_CSUM_COMPLETED: Final = "rx_csum_completed"
C_TUN_READ_ERROR: Final = "tun_read_error"
C_RX_ERROR: Final = "rx_socket_error"

COUNTERS: Final = (
    C_TX_IPIP,
    C_TX_UDP,
    C_TX_NOT_IPV4,
    C_TX_NO_TUNNEL,
    C_TX_ERROR,
    C_TX_FRAG_NEEDED,
    C_PMTU_ICMP,
    C_PMTU_LOCAL,
    C_RX_ERRQUEUE_OTHER,
    C_RX_IPIP,
    C_RX_UDP,
    C_RX_UNKNOWN_PEER,
    C_RX_INNER_MISMATCH,
    C_RX_PORT_MISMATCH,
    C_RX_PEER_LEARNED,
    C_RX_UDP_OTHER,
    C_TUN_WRITE_ERROR,
    C_RX_CSUM_COMPLETED,
    C_TUN_READ_ERROR,
    C_RX_ERROR,
    *DROP_REASONS,
)


def _packed(address: Address) -> bytes:
    return IPv4Address(address).packed


def _pktinfo(local: str) -> bytes:
    """struct in_pktinfo {ifindex, spec_dst, addr}: spec_dst is the source used."""
    return struct.pack("@i4s4s", 0, _packed(local), _ANY4)


def _force_buffers(sock: socket.socket, size: int = SOCKET_BUFFER) -> None:
    """Bigger socket buffers; *FORCE ignores rmem_max/wmem_max for root (best effort)."""
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, plain, size)


class Tunnel:
    """One tunnel end: a home address and where its packets go. :meth:`TunnelEngine.update`
    replaces the object rather than changing its addressing, so the hot path never sees a
    half-updated tunnel (only ``last_rx`` and the header cache change in place)."""

    __slots__ = (
        "cmsg",
        "encapsulation",
        "headers",
        "home",
        "home4",
        "is_udp",
        "last_rx",
        "local",
        "local4",
        "local_port",
        "mtu",
        "peer",
        "peer4",
        "peer_port",
        "raw_addr",
        "sock",
        "ttl",
        "udp_addr",
    )

    def __init__(
        self,
        home: str,
        peer: str,
        encapsulation: Encapsulation,
        local: str | None,
        peer_port: int,
        local_port: int,
        ttl: int,
        sock: socket.socket | None,
        cmsg: list[tuple[int, int, bytes]],
    ) -> None:
        self.home = home
        self.home4 = _packed(home)
        self.peer = peer
        self.peer4 = _packed(peer)
        self.encapsulation: Encapsulation = encapsulation
        self.is_udp = encapsulation == "udp"
        self.local = local
        self.local4 = _packed(local) if local else _ANY4
        self.peer_port = peer_port
        self.local_port = local_port
        self.ttl = ttl
        self.udp_addr: UdpAddr = (peer, peer_port)
        self.raw_addr = (peer, 0)
        self.sock = sock  # the UDP socket (udp) or None (ipip: the engine's raw socket)
        self.cmsg = cmsg  # IP_PKTINFO: the source the kernel routes by (UDP: and sends from)
        self.headers: dict[int, bytes] = {}  # outer IPv4 headers by outer_header_key()
        self.last_rx: float | None = None  # time.monotonic() of the last packet accepted
        # the largest inner packet with DF that is sent (path MTU to the peer - 20); set in
        # place by the engine when it learns or forgets the path MTU of the peer
        self.mtu = NO_MTU

    def outer_header(self, key: int) -> bytes:
        hdr = self.headers.get(key)
        if hdr is None:
            hdr = self.headers[key] = ipip_outer_header(self.local4, self.peer4, key, self.ttl)
        return hdr

    def to_dict(self) -> dict[str, Any]:
        return {
            "home": self.home,
            "peer": self.peer,
            "encapsulation": self.encapsulation,
            "local": self.local,
            "peer_port": self.peer_port,
            "local_port": self.local_port,
            "last_rx": self.last_rx,
            "mtu": self.mtu if self.mtu != NO_MTU else None,
        }

    def __repr__(self) -> str:
        where = f"{self.peer}:{self.peer_port}" if self.is_udp else self.peer
        return f"Tunnel({self.home} -> {where} {self.encapsulation})"


class _UdpEndpoint:
    __slots__ = ("addr", "owned", "served", "sock")

    def __init__(self, sock: socket.socket, owned: bool, served: bool) -> None:
        self.sock = sock
        self.owned = owned
        self.served = served
        self.addr: str = sock.getsockname()[0]


class TunnelEngine:
    """A TUN device plus tunnel endpoints keyed by home address (see the module doc).

    Event-loop contract: watch every fd of :meth:`filenos` for readability and call
    :meth:`on_readable` (with the fd, or with none to service all); the set grows when a
    UDP tunnel opens a new local port. Or use :meth:`attach` to do that on an asyncio loop,
    or :meth:`run` to block.

    Parameters: ``tun`` a name (the engine creates and owns the device) or an open
    :class:`TunDevice`; ``key`` which inner address selects the tunnel of a packet read from
    the TUN ('dst': HA; 'src': mobile node/FA reverse tunnelling); ``mtu`` of a TUN created
    here (:data:`IPIP_MTU` 1480, or :data:`UDP_MTU` 1468 where UDP tunnels are possible);
    ``udp_socket`` the agent's UDP 434 socket to share, read by the engine if
    ``on_udp_message`` is given (non-tunnel messages go there), else by the agent (which
    calls :meth:`handle_udp_tunnel_data`); ``learn_peer`` take a UDP peer's new port from
    tunnel data (HA behind-NAT case); ``strict_inner`` require the inner home address to
    belong to the tunnel of the outer source (off: any known peer may send for any address,
    e.g. broadcasts tunnelled to a mobile node); ``ttl`` of outer IPIP headers; ``ipip=False``
    opens no raw socket; ``raw_socket`` an already open raw IPPROTO_IPIP socket with
    ``IP_HDRINCL`` (opened before dropping privileges, or a test double); ``batch`` packets
    per fd and callback; ``on_event`` gets event dicts (e.g. ``tunnel_peer_learned``).
    """

    def __init__(
        self,
        tun: str | TunDevice,
        key: KeyMode = "dst",
        *,
        mtu: int = IPIP_MTU,
        udp_socket: socket.socket | None = None,
        on_udp_message: UdpMessageSink | None = None,
        learn_peer: bool = False,
        strict_inner: bool = True,
        ttl: int = DEFAULT_TTL,
        ipip: bool = True,
        raw_socket: socket.socket | None = None,
        batch: int = 128,
        on_event: EventSink | None = None,
    ) -> None:
        if key not in ("dst", "src"):
            raise ValueError(f"key must be 'dst' or 'src', not {key!r}")
        self.key: KeyMode = key
        self.learn_peer = learn_peer
        self.strict_inner = strict_inner
        self.ttl = ttl
        self.batch = batch
        self.on_event = on_event
        self.on_udp_message = on_udp_message
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=256)
        self.last_error: str | None = None
        # Offsets of the lookup address in an IPv4 header: TUN -> wire uses the key address
        # of the packet; wire -> TUN checks the *other* end (a packet from the mobile node
        # carries its home address as source, one to it as destination).
        self._tx_key = slice(16, 20) if key == "dst" else slice(12, 16)
        self._rx_key_is_src = key == "dst"
        self._by_home: dict[bytes, Tunnel] = {}
        self._peer_refs: dict[bytes, int] = {}  # outer peer address -> tunnels using it
        self._udp: dict[int, _UdpEndpoint] = {}  # local port -> socket
        self._loop: asyncio.AbstractEventLoop | None = None
        self._readers: dict[int, Callable[[], None]] = {}
        self._rxbuf = bytearray(_BUF_SIZE)
        self._rxmv = memoryview(self._rxbuf)
        self._raw: socket.socket | None = None
        self._own_raw = raw_socket is None
        self._recverr = False  # IP_RECVERR is on: read the raw socket's error queue
        self._path_mtu: dict[bytes, tuple[int, float]] = {}  # peer -> (MTU, expiry)
        self._own_tun = isinstance(tun, str)
        self.tun: TunDevice = TunDevice(tun, mtu=mtu) if isinstance(tun, str) else tun
        try:
            if raw_socket is not None:
                raw_socket.setblocking(False)
                self._raw = raw_socket
            elif ipip:
                self._raw = self._make_raw_socket()
            if self._raw is not None:
                self._readers[self._raw.fileno()] = self._on_raw
                with contextlib.suppress(OSError):  # a test double may not be an IP socket
                    self._raw.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
                    self._recverr = True
            self._readers[self.tun.fd] = self._on_tun
            if udp_socket is not None:
                udp_socket.setblocking(False)
                _force_buffers(udp_socket)
                port = udp_socket.getsockname()[1]
                ep = _UdpEndpoint(udp_socket, owned=False, served=on_udp_message is not None)
                self._udp[port] = ep
                if ep.served:
                    self._readers[udp_socket.fileno()] = self._udp_reader(udp_socket)
        except BaseException:
            self.close()
            raise

    # --- sockets --------------------------------------------------------------------------

    @staticmethod
    def _make_raw_socket() -> socket.socket:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP)
        try:
            raw.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
            raw.setblocking(False)
            _force_buffers(raw)
        except BaseException:
            raw.close()
            raise
        return raw

    def _udp_endpoint(self, port: int) -> _UdpEndpoint:
        ep = self._udp.get(port)
        if ep is not None:
            return ep
        # No SO_REUSEADDR: if the agent holds this port without sharing its socket, we
        # want EADDRINUSE here rather than two sockets splitting the datagrams.
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(("0.0.0.0", port))
            sock.setblocking(False)
            _force_buffers(sock)
        except BaseException:
            sock.close()
            raise
        ep = self._udp[port] = _UdpEndpoint(sock, owned=True, served=True)
        reader = self._udp_reader(sock)
        self._readers[sock.fileno()] = reader
        if self._loop is not None:
            self._loop.add_reader(sock.fileno(), reader)
        return ep

    # --- the tunnel table -----------------------------------------------------------------

    def add(
        self,
        home_address: Address,
        peer: Address,
        encapsulation: Encapsulation = "ipip",
        local: Address | None = None,
        peer_port: int = MIP_PORT,
        local_port: int = MIP_PORT,
    ) -> Tunnel:
        """Tunnel ``home_address`` to/from ``peer`` (care-of address, or HA address on the
        mobile node's side). Replaces any tunnel of that home address (re-registration)."""
        tunnel = self._make(
            str(IPv4Address(home_address)),
            str(IPv4Address(peer)),
            encapsulation,
            str(IPv4Address(local)) if local is not None else None,
            peer_port,
            local_port,
        )
        self._install(tunnel)
        return tunnel

    _KEEP: Final = object()

    def update(
        self,
        home_address: Address,
        *,
        peer: Address | None = None,
        encapsulation: Encapsulation | None = None,
        local: Address | object | None = _KEEP,
        peer_port: int | None = None,
        local_port: int | None = None,
    ) -> Tunnel:
        """Change a tunnel in place (new care-of address, other encapsulation, NAT rebinding).

        Arguments left out keep their value; ``local=None`` clears the local address.
        Raises ``KeyError`` if there is no tunnel for ``home_address``.
        """
        old = self._by_home[_packed(home_address)]
        tunnel = self._make(
            old.home,
            str(IPv4Address(peer)) if peer is not None else old.peer,
            encapsulation or old.encapsulation,
            old.local
            if local is TunnelEngine._KEEP
            else (str(IPv4Address(local)) if local is not None else None),  # type: ignore[arg-type]
            peer_port if peer_port is not None else old.peer_port,
            local_port if local_port is not None else old.local_port,
        )
        tunnel.last_rx = old.last_rx
        self._install(tunnel)
        return tunnel

    def remove(self, home_address: Address) -> bool:
        """Forget the tunnel of ``home_address`` (deregistration); False if there was none."""
        tunnel = self._by_home.pop(_packed(home_address), None)
        if tunnel is None:
            return False
        self._unref_peer(tunnel.peer4)
        return True

    def get(self, home_address: Address) -> Tunnel | None:
        return self._by_home.get(_packed(home_address))

    def tunnels(self) -> list[Tunnel]:
        return list(self._by_home.values())

    def _make(
        self,
        home: str,
        peer: str,
        encapsulation: Encapsulation,
        local: str | None,
        peer_port: int,
        local_port: int,
    ) -> Tunnel:
        sock: socket.socket | None = None
        cmsg: list[tuple[int, int, bytes]] = []
        if encapsulation == "udp":
            ep = self._udp_endpoint(local_port)
            sock = ep.sock
            if local is not None and ep.addr != local:
                if ep.addr != "0.0.0.0":
                    raise ValueError(f"UDP port {local_port} is bound to {ep.addr}, not {local}")
                cmsg = [(socket.IPPROTO_IP, IP_PKTINFO, _pktinfo(local))]
        elif encapsulation == "ipip":
            if self._raw is None:
                raise ValueError("this engine was made with ipip=False")
            if local is not None:
                # The raw socket writes our header, but the kernel routes (and matches IPsec
                # policies) by the socket's source, which is none: without it, mode mc and
                # dual MIP's outer packets from the VPN's inner address meet the kernel's
                # XFRM policy for that address only when a table-220 route happens to
                # supply it as preferred source, and leave unencrypted otherwise.
                cmsg = [(socket.IPPROTO_IP, IP_PKTINFO, _pktinfo(local))]
        else:
            raise ValueError(f"encapsulation must be 'ipip' or 'udp', not {encapsulation!r}")
        tunnel = Tunnel(
            home, peer, encapsulation, local, peer_port, local_port, self.ttl, sock, cmsg
        )
        known = self._path_mtu.get(tunnel.peer4)
        if known is not None and not tunnel.is_udp:
            tunnel.mtu = known[0] - IPV4_HEADER_LEN
        return tunnel

    def _install(self, tunnel: Tunnel) -> None:
        old = self._by_home.get(tunnel.home4)
        self._peer_refs[tunnel.peer4] = self._peer_refs.get(tunnel.peer4, 0) + 1
        self._by_home[tunnel.home4] = tunnel  # one dict store: the hot path sees old or new
        if old is not None:
            self._unref_peer(old.peer4)

    def _unref_peer(self, peer4: bytes) -> None:
        left = self._peer_refs.get(peer4, 0) - 1
        if left > 0:
            self._peer_refs[peer4] = left
        else:
            self._peer_refs.pop(peer4, None)

    # --- TUN -> wire ----------------------------------------------------------------------

    def _on_tun(self) -> None:
        read = os.read
        fd = self.tun.fd
        table_get = self._by_home.get
        key = self._tx_key
        raw = self._raw
        sendmsg = raw.sendmsg if raw is not None else None
        tdh = TUNNEL_DATA_HEADER
        n_ipip = n_udp = n_none = n_bad = n_err = 0
        try:
            for _ in range(self.batch):
                try:
                    pkt = read(fd, _BUF_SIZE)
                except BlockingIOError:
                    break
                except OSError as exc:
                    self._count(C_TUN_READ_ERROR, exc)
                    break
                if len(pkt) < 20 or pkt[0] >> 4 != 4:
                    n_bad += 1
                    continue
                t = table_get(pkt[key])
                if t is None:
                    n_none += 1
                    continue
                try:
                    if t.is_udp:
                        if t.cmsg:
                            t.sock.sendmsg((tdh, pkt), t.cmsg, 0, t.udp_addr)
                        else:
                            t.sock.sendto(tdh + pkt, t.udp_addr)
                        n_udp += 1
                    else:
                        # RFC 2003 section 3.1: TOS copied, DF copied if set (cached header).
                        hk = pkt[1] << 1 | (pkt[6] >> 6 & 1)
                        if len(pkt) > t.mtu and hk & 1 and self._too_big(t, pkt):
                            continue  # section 4.1: refused with an ICMP to the source
                        hdr = t.headers.get(hk) or t.outer_header(hk)
                        sendmsg((hdr, pkt), t.cmsg, 0, t.raw_addr)  # type: ignore[misc]
                        n_ipip += 1
                except OSError as exc:
                    # Like a full interface queue: drop; TCP and the agents recover.
                    n_err += 1
                    self.last_error = errno.errorcode.get(exc.errno or 0, str(exc))
                    if exc.errno == errno.EMSGSIZE and not t.is_udp and self._recverr:
                        # the kernel knows a smaller MTU towards the peer: learn it now (its
                        # error queue says), and refuse this packet as the next ones will be
                        self._read_errors()
                        if len(pkt) > t.mtu and pkt[6] & 0x40:
                            self._too_big(t, pkt)
        finally:
            c = self.counters
            c[C_TX_IPIP] += n_ipip
            c[C_TX_UDP] += n_udp
            c[C_TX_NO_TUNNEL] += n_none
            c[C_TX_NOT_IPV4] += n_bad
            c[C_TX_ERROR] += n_err

    # --- wire -> TUN ----------------------------------------------------------------------

    def _on_raw(self) -> None:
        raw = self._raw
        if raw is None:
            return
        recv_into = raw.recv_into
        buf = self._rxbuf
        mv = self._rxmv
        write = os.write
        fd = self.tun.fd
        table_get = self._by_home.get
        complete_partial = complete_partial_checksum
        rx_src = self._rx_key_is_src
        c = self.counters
        ok = 0
        now = time.monotonic()
        try:
            for i in range(self.batch):
                try:
                    n = recv_into(buf)
                except BlockingIOError:
                    if i == 0 and self._recverr:  # woken by the error queue alone
                        self._read_errors()
                    break
                except OSError as exc:
                    if self._recverr:  # an ICMP error, reported once; details queued
                        self._read_errors()
                    else:
                        self._count(C_RX_ERROR, exc)
                    break
                r = parse_ipip(buf, n)
                if r.__class__ is str:
                    c[r] += 1  # type: ignore[index]
                    continue
                off, end = r  # type: ignore[misc]
                osrc = buf[12:16]
                isrc, idst = _ADDRS(buf, off + 12)
                t = table_get(isrc if rx_src else idst)
                if t is None or t.peer4 != osrc:
                    osrc = bytes(osrc)
                    if self.strict_inner or osrc not in self._peer_refs:
                        c[self._why_not(osrc)] += 1
                        continue
                else:
                    t.last_rx = now
                if complete_partial(buf, off, end):
                    c[C_RX_CSUM_COMPLETED] += 1
                try:
                    write(fd, mv[off:end])
                    ok += 1
                except OSError as exc:
                    self._count(C_TUN_WRITE_ERROR, exc)
        finally:
            c[C_RX_IPIP] += ok

    # --- tunnel MTU (RFC 2003 section 4) ---------------------------------------------------

    def _read_errors(self) -> None:
        """Drain the raw socket's error queue: learn path MTUs towards tunnel peers."""
        raw = self._raw
        if raw is None:
            return
        for _ in range(self.batch):
            try:
                _data, ancdata, _flags, addr = raw.recvmsg(64, 512, MSG_ERRQUEUE)
            except BlockingIOError:
                return
            except OSError as exc:
                self._count(C_RX_ERROR, exc)
                return
            for level, kind, value in ancdata:
                if level != socket.IPPROTO_IP or kind != IP_RECVERR or len(value) < 16:
                    continue
                err, origin, icmp_type, icmp_code, _, info, _ = _SOCK_EE.unpack_from(value)
                icmp = (icmp_type, icmp_code)
                # the address is the destination of the packet the error is about: the peer
                if origin == SO_EE_ORIGIN_ICMP and icmp == (ICMP_UNREACH, ICMP_FRAG_NEEDED):
                    self._learn(addr[0], info, C_PMTU_ICMP, value[16:])
                elif origin == SO_EE_ORIGIN_LOCAL and err == errno.EMSGSIZE:
                    self._learn(addr[0], info, C_PMTU_LOCAL, b"")
                else:
                    self.counters[C_RX_ERRQUEUE_OTHER] += 1

    def _learn(self, peer: str, mtu: int, counter: str, offender: bytes) -> None:
        try:
            peer4 = socket.inet_aton(peer)
        except (OSError, TypeError):
            peer4 = b""
        if peer4 not in self._peer_refs or mtu < MIN_IPV4_MTU + IPV4_HEADER_LEN:
            # about no tunnel of ours (e.g. one of our own ICMP errors), or an MTU no
            # tunnel can use
            self.counters[C_RX_ERRQUEUE_OTHER] += 1
            return
        self.counters[counter] += 1
        self.learn_path_mtu(
            peer,
            mtu,
            reported_by=socket.inet_ntoa(offender[4:8]) if len(offender) >= 8 else "kernel",
        )

    def learn_path_mtu(self, peer: Address, mtu: int, *, reported_by: str = "") -> int:
        """Record the path MTU towards ``peer`` (from an ICMP or the kernel). It only goes
        down until it expires (RFC 1191 section 6.3). Returns the path MTU now in force."""
        peer4 = _packed(peer)
        now = time.monotonic()
        known = self._path_mtu.get(peer4)
        if known is not None and known[1] > now and known[0] <= mtu:
            return known[0]
        self._path_mtu[peer4] = (mtu, now + PMTU_EXPIRES)
        for t in self._by_home.values():
            if t.peer4 == peer4 and not t.is_udp:
                t.mtu = mtu - IPV4_HEADER_LEN
        self._emit("tunnel_mtu", peer=str(IPv4Address(peer4)), path_mtu=mtu,
                   tunnel_mtu=mtu - IPV4_HEADER_LEN, reported_by=reported_by)  # fmt: skip
        return mtu

    def path_mtu(self, peer: Address) -> int | None:
        """The path MTU learned towards ``peer``, if any (and not expired)."""
        known = self._path_mtu.get(_packed(peer))
        return known[0] if known is not None and known[1] > time.monotonic() else None

    def _forget_path_mtu(self, peer4: bytes) -> None:
        self._path_mtu.pop(peer4, None)
        for t in self._by_home.values():
            if t.peer4 == peer4:
                t.mtu = NO_MTU
        self._emit("tunnel_mtu", peer=str(IPv4Address(peer4)), path_mtu=None, tunnel_mtu=None,
                   reported_by="expired")  # fmt: skip

    def _too_big(self, t: Tunnel, pkt: bytes) -> bool:
        """``pkt`` (DF set) exceeds ``t.mtu``: answer its source with an ICMP "fragmentation
        needed" (next-hop MTU ``t.mtu``) and drop it -- True -- unless the path MTU has
        expired, when it goes out as the probe for a new one (False)."""
        known = self._path_mtu.get(t.peer4)
        if known is not None and known[1] <= time.monotonic():
            self._forget_path_mtu(t.peer4)
            return False
        self.counters[C_TX_FRAG_NEEDED] += 1
        icmp = frag_needed(pkt, t.mtu)
        if icmp is not None and self._raw is not None:
            try:  # IP_HDRINCL: the kernel fills in our source address and the checksum
                self._raw.sendto(icmp, (socket.inet_ntoa(icmp[16:20]), 0))
            except OSError as exc:
                self._count(C_TX_ERROR, exc)
        return True

    def _why_not(self, osrc4: bytes) -> str:
        return C_RX_INNER_MISMATCH if osrc4 in self._peer_refs else C_RX_UNKNOWN_PEER

    def _udp_reader(self, sock: socket.socket) -> Callable[[], None]:
        def on_readable() -> None:
            self._on_udp(sock)

        return on_readable

    def _on_udp(self, sock: socket.socket) -> None:
        recvfrom_into = sock.recvfrom_into
        buf = self._rxbuf
        handle = self._udp_tunnel_data
        now = time.monotonic()
        for _ in range(self.batch):
            try:
                n, src = recvfrom_into(buf)
            except BlockingIOError:
                return
            except OSError as exc:  # ICMP port unreachable from a peer, reported once
                self._count(C_RX_ERROR, exc)
                return
            if n and buf[0] == TUNNEL_DATA_TYPE:
                handle(buf, n, src, now)
                continue
            self.counters[C_RX_UDP_OTHER] += 1
            if self.on_udp_message is not None:
                try:
                    self.on_udp_message(bytes(buf[:n]), src)
                except Exception as exc:  # the agent's bug must not stop the data plane
                    self._emit("udp_message_handler_failed", error=repr(exc))

    def handle_udp_tunnel_data(
        self, payload: bytes | bytearray | memoryview, src: UdpAddr, now: float | None = None
    ) -> bool:
        """Decapsulate one MIP Tunnel Data message received by the agent on a shared socket.

        ``payload`` is the UDP payload (first byte 4), ``src`` the outer (address, port),
        ``now`` a ``time.monotonic()`` reading (stored as the tunnel's ``last_rx``). True if
        the inner packet was written to the TUN; otherwise the reason is counted.
        """
        return self._udp_tunnel_data(payload, len(payload), src, now)

    def _udp_tunnel_data(
        self, buf: bytes | bytearray | memoryview, n: int, src: UdpAddr, now: float | None
    ) -> bool:
        c = self.counters
        r = parse_tunnel_data(buf, n)
        if r.__class__ is str:
            c[r] += 1  # type: ignore[index]
            return False
        off, end = r  # type: ignore[misc]
        isrc, idst = _ADDRS(buf, off + 12)
        home4 = isrc if self._rx_key_is_src else idst
        t = self._by_home.get(home4)
        if t is None or t.udp_addr != src:
            if not self._admit_udp(t, src):
                return False
            t = self._by_home.get(home4)  # learning replaced it
        if t is not None:
            t.last_rx = time.monotonic() if now is None else now
        try:
            os.write(self.tun.fd, memoryview(buf)[off:end])
        except OSError as exc:
            self._count(C_TUN_WRITE_ERROR, exc)
            return False
        c[C_RX_UDP] += 1
        return True

    def _admit_udp(self, t: Tunnel | None, src: UdpAddr) -> bool:
        """The slow path of the UDP peer check: learning a new port, or counting a drop."""
        try:
            src4 = socket.inet_aton(src[0])
        except (OSError, TypeError, IndexError):
            self.counters[C_RX_UNKNOWN_PEER] += 1
            return False
        if t is not None and t.peer4 == src4 and t.is_udp:
            if self.learn_peer:
                # NAT rebinding: the mapping's port changed. Learn only the port -- an
                # address change needs an (authenticated) registration, since tunnel data
                # itself carries no authentication.
                self.counters[C_RX_PEER_LEARNED] += 1
                old = t.peer_port
                new = self.update(t.home, peer_port=src[1])
                self._emit("tunnel_peer_learned", home=t.home, peer=t.peer, old_port=old,
                           new_port=new.peer_port)  # fmt: skip
                return True
            if not self.strict_inner:
                return True
            self.counters[C_RX_PORT_MISMATCH] += 1
            return False
        if not self.strict_inner and src4 in self._peer_refs:
            return True
        self.counters[self._why_not(src4)] += 1
        return False

    # --- other output ---------------------------------------------------------------------

    def send_udp(self, peer: UdpAddr, payload: bytes, local_port: int = MIP_PORT) -> bool:
        """Send ``payload`` from the engine's UDP socket on ``local_port`` (RFC 3519
        keepalives are the agent's, sent on its own timer). False (and counted) on error."""
        try:
            self._udp_endpoint(local_port).sock.sendto(payload, (str(peer[0]), int(peer[1])))
        except OSError as exc:
            self._count(C_TX_ERROR, exc)
            return False
        return True

    def _count(self, name: str, exc: OSError) -> None:
        self.counters[name] += 1
        self.last_error = errno.errorcode.get(exc.errno or 0, str(exc))

    def _emit(self, name: str, **data: Any) -> None:
        record = {"t_ns": time.monotonic_ns(), "event": name, "tun": self.tun.name, **data}
        self.events.append(record)
        if self.on_event is not None:
            with contextlib.suppress(Exception):
                self.on_event(record)

    # --- event-loop integration -----------------------------------------------------------

    def fileno(self) -> int:
        """The TUN fd (the busiest one); see :meth:`filenos` for all of them."""
        return self.tun.fd

    def filenos(self) -> list[int]:
        return list(self._readers)

    def on_readable(self, fd: int | None = None) -> None:
        """Service ``fd`` (or all fds) until it would block or ``batch`` packets are done."""
        if fd is not None:
            reader = self._readers.get(fd)
            if reader is not None:
                reader()
            return
        for reader in list(self._readers.values()):
            reader()

    def attach(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Serve the engine from an asyncio loop (level-triggered readers, one per fd)."""
        self._loop = loop or asyncio.get_running_loop()
        for fd, reader in self._readers.items():
            self._loop.add_reader(fd, reader)

    def detach(self) -> None:
        if self._loop is not None:
            for fd in self._readers:
                with contextlib.suppress(OSError, RuntimeError, ValueError):
                    self._loop.remove_reader(fd)
            self._loop = None

    def run(self, until: Callable[[], bool] = lambda: False, timeout: float | None = None) -> bool:
        """Serve with a selector until ``until()`` (-> True) or ``timeout`` s (-> False)."""
        end = None if timeout is None else time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            registered: set[int] = set()
            while not until():
                for fd in self._readers.keys() - registered:
                    sel.register(fd, selectors.EVENT_READ)
                    registered.add(fd)
                wait = 0.2
                if end is not None:
                    left = end - time.monotonic()
                    if left <= 0:
                        return False
                    wait = min(wait, left)
                for sk, _ in sel.select(wait):
                    self.on_readable(sk.fd)  # type: ignore[arg-type]
        return True

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close sockets the engine opened and the TUN it created (routes via it go too)."""
        self.detach()
        self._readers.clear()
        if self._raw is not None:
            if self._own_raw:
                self._raw.close()
            self._raw = None
        for ep in self._udp.values():
            if ep.owned:
                ep.sock.close()
        self._udp.clear()
        if self._own_tun and hasattr(self, "tun"):
            self.tun.close()

    def __enter__(self) -> TunnelEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, int]:
        """Counters that are not zero."""
        return {k: v for k, v in self.counters.items() if v}


__all__ = ["COUNTERS", "Encapsulation", "KeyMode", "Tunnel", "TunnelEngine"]
