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
from collections.abc import Callable

from agents.dhcp.frames import ETH_P_IP, attach_filter, format_mac
from agents.mip.constants import MIP_PORT

PACKET_OUTGOING = 4  # sll_pkttype of frames we sent ourselves
ICMP_ROUTER_ADVERTISEMENT = 9
BpfProgram = tuple[tuple[int, int, int, int], ...]

# Classic BPF on packets that start at the IPv4 header (SOCK_DGRAM packet socket).
ADVERTISEMENTS: BpfProgram = (
    (0x30, 0, 0, 9),  # ldb [9]              protocol
    (0x15, 0, 6, 1),  # jeq #1 (ICMP) ? next : drop
    (0x28, 0, 0, 6),  # ldh [6]              flags + fragment offset
    (0x45, 4, 0, 0x1FFF),  # jset #0x1fff ? drop : next
    (0xB1, 0, 0, 0),  # ldxb 4*([0]&0xf)    header length
    (0x50, 0, 0, 0),  # ldb [x+0]            ICMP type
    (0x15, 0, 1, ICMP_ROUTER_ADVERTISEMENT),  # jeq #9 ? accept : drop
    (0x06, 0, 0, 0x10000),  # ret #65536 (accept)
    (0x06, 0, 0, 0),  # ret #0 (drop)
)
# Registration Requests: only the IPv4 header is needed, so only 20 bytes are copied.
MIP_DATAGRAMS: BpfProgram = (
    (0x30, 0, 0, 9),  # ldb [9]              protocol
    (0x15, 0, 6, 17),  # jeq #17 (UDP) ? next : drop
    (0x28, 0, 0, 6),  # ldh [6]              flags + fragment offset
    (0x45, 4, 0, 0x1FFF),  # jset #0x1fff ? drop : next
    (0xB1, 0, 0, 0),  # ldxb 4*([0]&0xf)    header length
    (0x48, 0, 0, 2),  # ldh [x+2]            UDP destination port
    (0x15, 0, 1, MIP_PORT),  # jeq #434 ? accept : drop
    (0x06, 0, 0, 20),  # ret #20 (the IPv4 header)
    (0x06, 0, 0, 0),  # ret #0 (drop)
)

# (IPv4 packet as far as the filter passed it, source MAC, interface)
FrameHandler = Callable[[bytes, str, str], None]


def split_advertisement(packet: bytes) -> tuple[str, bytes] | None:
    """(source address, ICMP message) of an IPv4 packet carrying ICMP type 9, else None."""
    if len(packet) < 28 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = int.from_bytes(packet[2:4], "big")
    if ihl < 20 or total > len(packet) or total < ihl + 8 or packet[9] != 1:
        return None
    if packet[ihl] != ICMP_ROUTER_ADVERTISEMENT:
        return None
    return socket.inet_ntoa(packet[12:16]), packet[ihl:total]


def source_address(packet: bytes) -> str | None:
    return socket.inet_ntoa(packet[12:16]) if len(packet) >= 20 else None


def open_filtered_socket(ifname: str, program: BpfProgram) -> socket.socket:
    """A non-blocking packet socket on ``ifname`` that receives what ``program`` passes."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)  # nothing until bind()
    try:
        attach_filter(sock, program)
        sock.bind((ifname, ETH_P_IP))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def read_frames(sock: socket.socket, handle: FrameHandler) -> None:
    """Drain ``sock``, passing each received packet with its link-layer source."""
    for _ in range(64):
        try:
            packet, addr = sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # e.g. ENETDOWN while the link moves: reading it clears it
            continue
        ifname, _proto, pkttype, _hatype, mac = addr[:5]
        if pkttype == PACKET_OUTGOING or len(mac) < 6:
            continue
        handle(packet, format_mac(mac), ifname)
