"""Just enough IPv4 to build inner packets (RFC 3519 keepalives) and test captures.

The Internet checksum (RFC 1071) is shared by the ICMP codec and the pcap writer.
"""

from __future__ import annotations

import socket
import struct

__all__ = [
    "aton",
    "build_ipv4",
    "icmp_echo_request",
    "internet_checksum",
    "not_unicast",
    "ntoa",
    "parse_ipv4",
]

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
ntoa = socket.inet_ntoa


def aton(address: str) -> bytes:
    """Dotted quad to 4 bytes; strict (``socket.inet_aton`` also takes "10.1" and the like)."""
    parts = address.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        raise ValueError(f"not an IPv4 address: {address!r}")
    return bytes(int(p) for p in parts)


def not_unicast(address: str) -> str | None:
    """Why ``address`` is no single remote host's address, or ``None`` when it is one:
    "unspecified" (0.0.0.0/8, RFC 1122 "this network"), "loopback" (127/8), "multicast"
    (224/4), "broadcast" (255.255.255.255) or "reserved" (240/4); ``"invalid"`` when it is
    not a dotted quad at all."""
    try:
        first = aton(address)[0]
    except ValueError:
        return "invalid"
    if first == 0:
        return "unspecified"
    if first == 127:
        return "loopback"
    if 224 <= first <= 239:
        return "multicast"
    if address == "255.255.255.255":
        return "broadcast"
    if first >= 240:
        return "reserved"
    return None


def internet_checksum(data: bytes | bytearray) -> int:
    """One's complement of the one's complement sum of 16-bit words (RFC 1071)."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_ipv4(
    src: str, dst: str, proto: int, payload: bytes, *, ttl: int = 64, ident: int = 0
) -> bytes:
    """An IPv4 header (no options, DF clear) with a correct checksum, followed by ``payload``."""
    total = 20 + len(payload)
    hdr = _IPV4.pack(0x45, 0, total, ident & 0xFFFF, 0, ttl, proto, 0, aton(src), aton(dst))
    csum = internet_checksum(hdr)
    return hdr[:10] + struct.pack("!H", csum) + hdr[12:] + payload


def parse_ipv4(packet: bytes) -> tuple[str, str, int, bytes] | None:
    """(src, dst, protocol, payload) of an IPv4 packet, or ``None`` if it is not one."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    if ihl < 20 or total < ihl or total > len(packet):
        return None
    return ntoa(packet[12:16]), ntoa(packet[16:20]), packet[9], packet[ihl:total]


def icmp_echo_request(ident: int, seq: int, data: bytes = b"") -> bytes:
    """ICMP Echo Request (type 8) with checksum."""
    body = struct.pack("!BBHHH", 8, 0, 0, ident & 0xFFFF, seq & 0xFFFF) + data
    csum = internet_checksum(body)
    return body[:2] + struct.pack("!H", csum) + body[4:]
