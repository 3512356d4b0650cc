"""IPv4/UDP framing for the packet-socket side of the driver, plus the socket filters.

Why a packet socket at all: before the client has an address, the kernel's IP layer drops a
unicast OFFER to the not-yet-configured yiaddr, and with ``rp_filter`` 1/2 and no route even
a broadcast reply (measured: both lost on a plain UDP socket). RFC 2131 section 4.1 also wants
DISCOVER/REQUEST sent from 0.0.0.0, which a UDP socket cannot promise once any address is on
the interface. So broadcasts go out, and all replies come in, through ``AF_PACKET``.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from ipaddress import IPv4Address

from agents.mip.ipv4 import internet_checksum

CLIENT_PORT = 68
SERVER_PORT = 67
ETH_P_IP = 0x0800
SO_ATTACH_FILTER = 26
_IPPROTO_UDP = 17
_IPTOS_LOWDELAY = 0x10  # what ISC dhclient uses for its raw frames


def format_mac(raw: bytes) -> str:
    """``aa:bb:cc:dd:ee:ff`` from the first six bytes of a link-layer address."""
    return ":".join(f"{b:02x}" for b in raw[:6])


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum (the one implementation lives in agents.mip.ipv4)."""
    return internet_checksum(data)


def ipv4_udp(
    src: IPv4Address, dst: IPv4Address, sport: int, dport: int, payload: bytes, ident: int = 0
) -> bytes:
    """An IPv4 packet carrying one UDP datagram, checksums filled in (no offload here)."""
    ulen = 8 + len(payload)
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, _IPPROTO_UDP, ulen)
    ucsum = checksum(pseudo + struct.pack("!HHHH", sport, dport, ulen, 0) + payload)
    udp = struct.pack("!HHHH", sport, dport, ulen, ucsum or 0xFFFF)  # RFC 768: 0 -> all ones
    total = 20 + ulen
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        _IPTOS_LOWDELAY,
        total,
        ident & 0xFFFF,
        0,
        64,
        _IPPROTO_UDP,
        0,
        src.packed,
        dst.packed,
    )
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + udp + payload


def ipv4_transport(packet: bytes, protocol: int) -> tuple[int, int] | None:
    """(header length, total length) of an IPv4 ``packet`` that carries ``protocol`` and
    holds at least 8 bytes of it; None for anything shorter, malformed or else."""
    if len(packet) < 28 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = int.from_bytes(packet[2:4], "big")
    if ihl < 20 or total > len(packet) or total < ihl + 8 or packet[9] != protocol:
        return None
    return ihl, total


def udp_payload(packet: bytes, dport: int = CLIENT_PORT) -> tuple[IPv4Address, bytes] | None:
    """(source address, UDP payload) if ``packet`` is an unfragmented IPv4/UDP datagram to
    ``dport``; else None. The UDP checksum is not checked: frames seen on a packet socket
    may still carry a partial (offloaded) checksum, e.g. over veth."""
    bounds = ipv4_transport(packet, _IPPROTO_UDP)
    if bounds is None:
        return None
    ihl, total = bounds
    if int.from_bytes(packet[6:8], "big") & 0x3FFF:  # MF flag or a fragment offset
        return None
    _sport, port, ulen = struct.unpack_from("!HHH", packet, ihl)
    if port != dport or ulen < 8 or ihl + ulen > total:
        return None
    return IPv4Address(packet[12:16]), packet[ihl + 8 : ihl + ulen]


BpfProgram = tuple[tuple[int, int, int, int], ...]
_BPF_LOAD = {1: 0x50, 2: 0x48}  # ldb / ldh [x + k]: a byte or a half-word of the transport


def ipv4_filter(protocol: int, field: tuple[int, int], value: int, snap: int) -> BpfProgram:
    """Classic BPF, run on packets starting at the IPv4 header (SOCK_DGRAM packet socket):
    accept (the first ``snap`` bytes of) unfragmented ``protocol`` packets whose transport
    header holds ``value`` in ``field`` (size 1 or 2 bytes, offset); drop the rest."""
    size, offset = field
    return (
        (0x30, 0, 0, 9),  # ldb [9]              protocol
        (0x15, 0, 6, protocol),  # jeq #protocol ? next : drop
        (0x28, 0, 0, 6),  # ldh [6]              flags + fragment offset
        (0x45, 4, 0, 0x1FFF),  # jset #0x1fff ? drop : next
        (0xB1, 0, 0, 0),  # ldxb 4*([0]&0xf)    header length
        (_BPF_LOAD[size], 0, 0, offset),  # ld [x+offset]
        (0x15, 0, 1, value),  # jeq #value ? accept : drop
        (0x06, 0, 0, snap),  # ret #snap (accept)
        (0x06, 0, 0, 0),  # ret #0 (drop)
    )


# unfragmented UDP to port 68, whole packets
_DHCP_CLIENT_FILTER = ipv4_filter(_IPPROTO_UDP, (2, 2), CLIENT_PORT, 0x40000)
_DROP_ALL = ((0x06, 0, 0, 0),)


def attach_filter(sock: socket.socket, program: BpfProgram) -> None:
    """Attach a classic BPF ``program`` of (code, jt, jf, k) instructions to ``sock``."""
    insns = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(insns)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def attach_dhcp_client_filter(sock: socket.socket) -> None:
    attach_filter(sock, _DHCP_CLIENT_FILTER)


def attach_drop_all_filter(sock: socket.socket) -> None:
    attach_filter(sock, _DROP_ALL)
