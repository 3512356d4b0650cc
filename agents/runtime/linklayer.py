"""Link-layer sources of the messages that name a neighbour, so no one has to ARP for it.

RFC 5944 section 4.6: away from home a mobile node must not broadcast ARP; it takes its
foreign agent's link-layer address from the Agent Advertisement, and the foreign agent takes
the mobile node's from its Registration Request. Raw ICMP and UDP sockets hide those
addresses, so the agents also read these messages from packet sockets whose BPF filters
pass only what is needed (agent advertisements; UDP to port 434), and install the sender as
a neighbour. The first packet each way after a move then goes out at once instead of after
an ARP round trip.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

from agents.dhcp.frames import (
    ETH_P_IP,
    BpfProgram,
    attach_filter,
    format_mac,
    ipv4_filter,
    ipv4_transport,
    udp_payload,
)
from agents.mip.constants import MIP_PORT
from agents.mip.errors import MalformedMessage
from agents.mip.icmp import AgentAdvertisement, decode_icmp
from agents.mip.ipv4 import not_unicast

PACKET_OUTGOING = 4  # sll_pkttype of frames we sent ourselves
ICMP_ROUTER_ADVERTISEMENT = 9
ICMP, UDP = 1, 17

# ICMP type 9 (agent advertisements), whole packets
ADVERTISEMENTS = ipv4_filter(ICMP, (1, 0), ICMP_ROUTER_ADVERTISEMENT, 0x10000)
# Registration Requests (unfragmented UDP to port 434, at least the 24 bytes of a request,
# type 1), whole packets: the foreign agent learns a sender only from a request that parses
# and names it (agents.mip.fa, issue 20). What cannot be a request stays in the kernel: under
# a flood every frame let through costs a parse on top of the UDP socket's.
_REQUEST_MIN = 8 + 24
MIP_DATAGRAMS: BpfProgram = (
    (0x30, 0, 0, 9),  # 0  ldb [9]                protocol
    (0x15, 0, 10, UDP),  # 1  jeq #UDP ? 2 : drop
    (0x28, 0, 0, 6),  # 2  ldh [6]                flags + fragment offset
    (0x45, 8, 0, 0x1FFF),  # 3  jset #0x1fff ? drop : 4
    (0xB1, 0, 0, 0),  # 4  ldxb 4*([0]&0xf)       header length
    (0x48, 0, 0, 2),  # 5  ldh [x+2]              destination port
    (0x15, 0, 5, MIP_PORT),  # 6  jeq #434 ? 7 : drop
    (0x48, 0, 0, 4),  # 7  ldh [x+4]              UDP length
    (0x35, 0, 3, _REQUEST_MIN),  # 8  jge #32 ? 9 : drop
    (0x50, 0, 0, 8),  # 9  ldb [x+8]              message type
    (0x15, 0, 1, 1),  # 10 jeq #1 ? accept : drop
    (0x06, 0, 0, 0x10000),  # 11 ret #65536
    (0x06, 0, 0, 0),  # 12 ret #0
)

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("=qq")
_ANCILLARY_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)

# (IPv4 packet as far as the filter passed it, source MAC, interface, when it arrived: see
# received_at)
FrameHandler = Callable[[bytes, str, str, float], None]


def split_advertisement(packet: bytes) -> tuple[str, bytes] | None:
    """(source address, ICMP message) of an IPv4 packet carrying ICMP type 9, else None."""
    bounds = ipv4_transport(packet, ICMP)
    if bounds is None:
        return None
    ihl, total = bounds
    if packet[ihl] != ICMP_ROUTER_ADVERTISEMENT:
        return None
    return socket.inet_ntoa(packet[12:16]), packet[ihl:total]


def advertises_itself(message: bytes, src: str, mac: str) -> bool:
    """Whether an advertisement may enter its sender at ``mac`` as the MN's neighbour (RFC
    5944 4.6: the agent's MAC from its advertisement, not from ARP). Issue 20, item 4: any
    ICMP type 9 frame did, a forged one with any source included, so a sender could place an
    entry for the address of the agent the MN would use next. Now only an Agent Advertisement
    that decodes (checksum included) with its mobility agent extension, from a unicast
    address that it names as one of its router addresses, from a unicast MAC. (The MN still
    learns only where the kernel has no entry: learning never replaces one.)"""
    try:
        msg = decode_icmp(message)
    except MalformedMessage:
        return False
    if not isinstance(msg, AgentAdvertisement) or msg.agent is None:
        return False
    if not_unicast(src) is not None or src not in {address for address, _ in msg.routers}:
        return False
    try:
        return not int(mac[:2], 16) & 1
    except ValueError:
        return False


def source_address(packet: bytes) -> str | None:
    return socket.inet_ntoa(packet[12:16]) if len(packet) >= 20 else None


def destination_address(packet: bytes) -> str | None:
    return socket.inet_ntoa(packet[16:20]) if len(packet) >= 20 else None


def registration_datagram(packet: bytes) -> tuple[str, str, bytes] | None:
    """(source, destination, UDP payload) of an unfragmented IPv4 datagram to port 434,
    else None (the UDP checksum is not checked: see agents.dhcp.frames.udp_payload)."""
    parsed = udp_payload(packet, MIP_PORT)
    if parsed is None:
        return None
    src, payload = parsed
    return str(src), socket.inet_ntoa(packet[16:20]), payload


def open_filtered_socket(
    ifname: str, program: BpfProgram, *, timestamps: bool = False
) -> socket.socket:
    """A non-blocking packet socket on ``ifname`` that receives what ``program`` passes;
    with ``timestamps`` the kernel stamps each frame as it arrives (see received_at)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)  # nothing until bind()
    try:
        attach_filter(sock, program)
        if timestamps:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((ifname, ETH_P_IP))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def received_at(ancdata: list[tuple[int, int, bytes]]) -> float:
    """When the kernel took the frame, in ``time.monotonic()`` seconds: its SO_TIMESTAMPNS
    stamp (on the real-time clock, so moved by the clocks' current offset), or now when it
    has none. A frame can wait in a socket's queue while the link changes under it."""
    now = time.monotonic()
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(data)
            age = time.time() - (sec + nsec / 1e9)
            return now - max(age, 0.0)  # a real-time clock stepped back: not from the future
    return now


def read_frames(sock: socket.socket, handle: FrameHandler) -> None:
    """Drain ``sock``, passing each received packet with its link-layer source and the time
    it arrived."""
    for _ in range(64):
        try:
            packet, ancdata, _flags, addr = sock.recvmsg(65535, _ANCILLARY_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # e.g. ENETDOWN while the link moves: reading it clears it
            continue
        ifname, _proto, pkttype, _hatype, mac = addr[:5]
        if pkttype == PACKET_OUTGOING or len(mac) < 6:
            continue
        handle(packet, format_mac(mac), ifname, received_at(ancdata))
