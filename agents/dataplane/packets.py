"""Wire formats of the Mobile IP data plane, sans I/O: build and check headers.

Every ``parse_*``/``check_*`` function takes a buffer and a length and returns either the
offsets the caller needs or a *drop reason*: a ``str`` that is also the name of the counter
the engine increments. They never raise on any input, so a malformed packet can only ever
cost one counter increment (tests feed them arbitrary bytes).

Formats:

* IP in IP, RFC 2003 section 3: an outer IPv4 header with protocol 4 followed by the whole
  inner IPv4 packet.
* MIP Tunnel Data message, RFC 3519 section 3.3, carried in UDP port 434: type (1 byte, 4),
  next header (1 byte: 4 IPv4, 55 minimal encapsulation, 47 GRE), 2 reserved bytes (sent as
  zero, ignored on receipt), then the tunnelled packet. Only next header 4 is supported.
"""

from __future__ import annotations

import struct
from typing import Final

from agents.mip.ipv4 import internet_checksum

IPPROTO_IPIP: Final = 4  # RFC 2003 section 3: outer protocol field for IP in IP
IPPROTO_GRE: Final = 47
IPPROTO_MINENC: Final = 55  # RFC 2004 minimal encapsulation

MIP_PORT: Final = 434
TUNNEL_DATA_TYPE: Final = 4  # RFC 3519 section 3.3
TUNNEL_DATA_LEN: Final = 4
TUNNEL_DATA_HEADER: Final = bytes((TUNNEL_DATA_TYPE, IPPROTO_IPIP, 0, 0))

IPV4_HEADER_LEN: Final = 20
UDP_HEADER_LEN: Final = 8
DEFAULT_TTL: Final = 64  # RFC 2003 section 3.1: "appropriate for delivery to the exit point"

# TUN MTUs that keep the outer packet within a 1500-byte link MTU.
IPIP_MTU: Final = 1500 - IPV4_HEADER_LEN  # 1480
UDP_MTU: Final = 1500 - IPV4_HEADER_LEN - UDP_HEADER_LEN - TUNNEL_DATA_LEN  # 1468

_DF: Final = 0x40  # in byte 6 of an IPv4 header (flags + fragment offset high bits)

# ICMP "fragmentation needed and DF set" (RFC 792; next-hop MTU field: RFC 1191 section 4)
IPPROTO_ICMP: Final = 1
ICMP_UNREACH: Final = 3
ICMP_FRAG_NEEDED: Final = 4
MIN_IPV4_MTU: Final = 68  # RFC 791: every IPv4 link carries 68 bytes unfragmented
ICMP_ERROR_LIMIT: Final = 576  # RFC 1812 4.3.2.3: an ICMP error stays within 576 bytes
_ICMP_ERRORS: Final = frozenset((3, 4, 5, 11, 12))  # types that are themselves errors

# Drop reasons (= counter names). Kept as constants so tests and agents can refer to them.
R_TRUNCATED: Final = "rx_truncated"
R_NOT_IPV4: Final = "rx_not_ipv4"
R_BAD_IHL: Final = "rx_bad_ihl"
R_BAD_LENGTH: Final = "rx_bad_length"
R_NOT_IPIP: Final = "rx_not_ipip"
R_FRAGMENT: Final = "rx_outer_fragment"
R_INNER_TRUNCATED: Final = "rx_inner_truncated"
R_INNER_NOT_IPV4: Final = "rx_inner_not_ipv4"
R_INNER_BAD_IHL: Final = "rx_inner_bad_ihl"
R_INNER_BAD_LENGTH: Final = "rx_inner_bad_length"
R_NOT_TUNNEL_DATA: Final = "rx_udp_not_tunnel_data"
R_BAD_NEXT_HEADER: Final = "rx_udp_bad_next_header"

DROP_REASONS: Final = (
    R_TRUNCATED,
    R_NOT_IPV4,
    R_BAD_IHL,
    R_BAD_LENGTH,
    R_NOT_IPIP,
    R_FRAGMENT,
    R_INNER_TRUNCATED,
    R_INNER_NOT_IPV4,
    R_INNER_BAD_IHL,
    R_INNER_BAD_LENGTH,
    R_NOT_TUNNEL_DATA,
    R_BAD_NEXT_HEADER,
)

Buffer = bytes | bytearray | memoryview
_HDR = struct.Struct("!BBHHHBBH4s4s")


def check_inner(buf: Buffer, off: int, end: int) -> int | str:
    """Validate the IPv4 packet in ``buf[off:end]``; return where it really ends.

    The inner total length may be shorter than what carried it (never longer): the packet
    written to TUN is cut to ``buf[off:result]`` so trailing padding never reaches the stack.
    """
    avail = end - off
    if avail < IPV4_HEADER_LEN:
        return R_INNER_TRUNCATED
    b0 = buf[off]
    if b0 >> 4 != 4:
        return R_INNER_NOT_IPV4
    ihl = (b0 & 0x0F) << 2
    if ihl < IPV4_HEADER_LEN or ihl > avail:
        return R_INNER_BAD_IHL
    total = buf[off + 2] << 8 | buf[off + 3]
    if total < ihl or total > avail:
        return R_INNER_BAD_LENGTH
    return off + total


def parse_ipip(buf: Buffer, n: int) -> tuple[int, int] | str:
    """Check an outer IPv4 header with protocol 4 in ``buf[:n]`` (as a raw socket gets it).

    Returns ``(inner_offset, inner_end)`` with the inner packet validated by
    :func:`check_inner`, or a drop reason. The outer source is at ``buf[12:16]``.
    """
    if n < IPV4_HEADER_LEN or len(buf) < n:
        return R_TRUNCATED
    b0 = buf[0]
    if b0 >> 4 != 4:
        return R_NOT_IPV4
    ihl = (b0 & 0x0F) << 2
    if ihl < IPV4_HEADER_LEN or ihl > n:
        return R_BAD_IHL
    total = buf[2] << 8 | buf[3]
    if total < ihl or total > n:
        return R_BAD_LENGTH
    if buf[9] != IPPROTO_IPIP:
        return R_NOT_IPIP
    # The kernel reassembles before raw delivery; a fragment here means something is off.
    if buf[6] & 0x3F or buf[7]:  # MF or a fragment offset
        return R_FRAGMENT
    end = check_inner(buf, ihl, total)
    if end.__class__ is str:
        return end  # type: ignore[return-value]
    return ihl, end  # type: ignore[return-value]


_CSUM_OFFSET: Final = {17: 6, 6: 16}  # UDP, TCP: where the checksum field is


def complete_partial_checksum(buf: bytearray, off: int, end: int) -> bool:
    """Finish a transport checksum the sending kernel left to "hardware"; True if it did.

    A kernel's IP-in-IP over veth keeps checksum offload: the inner UDP/TCP checksum field
    still holds only the pseudo-header sum (``CHECKSUM_PARTIAL``), and the raw socket hands
    it to us so. Written to our TUN as it is, the receiving stack drops it as corrupt. The
    seed is recognised by value (a finished checksum equals it once in 65,536: finishing
    that one again gives the same bytes), so nothing is computed for ordinary packets.
    ``buf[off:end]`` is an inner packet that :func:`check_inner` accepted.
    """
    ihl = (buf[off] & 0x0F) << 2
    field = _CSUM_OFFSET.get(buf[off + 9])
    if field is None or buf[off + 6] & 0x3F or buf[off + 7]:  # not UDP/TCP, or a fragment
        return False
    at = off + ihl + field
    if at + 2 > end:
        return False
    length = end - off - ihl
    pseudo = (
        (buf[off + 12] << 8 | buf[off + 13])
        + (buf[off + 14] << 8 | buf[off + 15])
        + (buf[off + 16] << 8 | buf[off + 17])
        + (buf[off + 18] << 8 | buf[off + 19])
        + buf[off + 9]
        + length
    )
    pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
    pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
    if (buf[at] << 8 | buf[at + 1]) != pseudo:
        return False
    # the seed in the field stands for the pseudo header: the sum over the segment as it is
    checksum = internet_checksum(buf[off + ihl : end])
    if checksum == 0 and buf[off + 9] == 17:
        checksum = 0xFFFF  # RFC 768: zero means "no checksum"
    buf[at], buf[at + 1] = checksum >> 8, checksum & 0xFF
    return True


def parse_tunnel_data(buf: Buffer, n: int) -> tuple[int, int] | str:
    """Check a MIP Tunnel Data message (UDP payload) in ``buf[:n]`` (RFC 3519 section 3.3).

    Returns ``(inner_offset, inner_end)`` or a drop reason. Next header 55 (minimal
    encapsulation) and 47 (GRE) are legal on the wire but not supported here: they are
    refused with :data:`R_BAD_NEXT_HEADER`, like any other value.
    """
    if n < TUNNEL_DATA_LEN or len(buf) < n:
        return R_TRUNCATED
    if buf[0] != TUNNEL_DATA_TYPE:
        return R_NOT_TUNNEL_DATA
    if buf[1] != IPPROTO_IPIP:
        return R_BAD_NEXT_HEADER
    end = check_inner(buf, TUNNEL_DATA_LEN, n)
    if end.__class__ is str:
        return end  # type: ignore[return-value]
    return TUNNEL_DATA_LEN, end  # type: ignore[return-value]


def tunnel_data_header(next_header: int = IPPROTO_IPIP) -> bytes:
    """The 4-byte MIP Tunnel Data header (RFC 3519 section 3.3); reserved bytes zero."""
    return bytes((TUNNEL_DATA_TYPE, next_header & 0xFF, 0, 0))


def outer_header_key(inner: Buffer, off: int = 0) -> int:
    """The inner fields copied to the outer header (RFC 2003 section 3.1), as one small int.

    TOS is copied; DF is copied when set in the inner header (when clear, the outer one is
    left clear too, so the packet may still be fragmented on the way, as for the original).
    """
    return inner[off + 1] << 1 | (inner[off + 6] >> 6 & 1)


def ipip_outer_header(
    src: bytes, dst: bytes, key: int, ttl: int = DEFAULT_TTL, total_length: int = 0,
    ident: int = 0,
) -> bytes:  # fmt: skip
    """The outer IPv4 header of RFC 2003 section 3.1 for a raw ``IP_HDRINCL`` socket.

    ``src``/``dst`` are 4 bytes (``src`` all zero lets the kernel choose by route); ``key``
    comes from :func:`outer_header_key`. With total length, ID and checksum left 0, the
    Linux raw socket fills in the total length, a fresh ID and the checksum (raw(7)); pass
    ``total_length`` to get a complete header (tests, other senders).
    """
    tos = key >> 1
    frag = _DF << 8 if key & 1 else 0
    hdr = _HDR.pack(0x45, tos, total_length, ident, frag, ttl, IPPROTO_IPIP, 0, src, dst)
    if total_length:
        hdr = hdr[:10] + struct.pack("!H", ipv4_checksum(hdr)) + hdr[12:]
    return hdr


def frag_needed(pkt: Buffer, mtu: int, ttl: int = DEFAULT_TTL) -> bytes | None:
    """The ICMP "fragmentation needed" (type 3 code 4, next-hop MTU ``mtu``) that refuses
    ``pkt``, addressed to its source, as a whole IPv4 packet with source address 0 (a raw
    ``IP_HDRINCL`` socket fills in the address of the outgoing route, and the IP checksum).

    None where RFC 1122 3.2.2 / RFC 1812 4.3.2.7 forbid an ICMP error: ``pkt`` too short
    or not IPv4, not a first fragment, itself an ICMP error, from an address that does not
    name one host (0/8, 127/8, multicast, broadcast) or to a multicast or broadcast one.
    The quote is the IP header and as much data as fits in 576 bytes.
    """
    n = len(pkt)
    if n < IPV4_HEADER_LEN or pkt[0] >> 4 != 4:
        return None
    ihl = (pkt[0] & 0x0F) << 2
    if ihl < IPV4_HEADER_LEN or ihl > n or (pkt[6] & 0x1F) or pkt[7]:
        return None
    src, dst = pkt[12], pkt[16]
    if src in (0, 127) or src >= 224 or dst >= 224:
        return None
    if pkt[9] == IPPROTO_ICMP and (n <= ihl or pkt[ihl] in _ICMP_ERRORS):
        return None
    quote = bytes(pkt[: min(n, ICMP_ERROR_LIMIT - IPV4_HEADER_LEN - 8)])
    icmp = bytearray(struct.pack("!BBHHH", ICMP_UNREACH, ICMP_FRAG_NEEDED, 0, 0, mtu) + quote)
    icmp[2:4] = struct.pack("!H", internet_checksum(icmp))
    # TOS 0xc0: internetwork control precedence, as Linux marks its ICMP errors
    hdr = _HDR.pack(0x45, 0xC0, IPV4_HEADER_LEN + len(icmp), 0, 0, ttl, IPPROTO_ICMP, 0,
                    b"\0\0\0\0", bytes(pkt[12:16]))  # fmt: skip
    return hdr + bytes(icmp)


def ipv4_checksum(header: Buffer) -> int:
    """RFC 1071 checksum over an IPv4 header (checksum field included as stored)."""
    return internet_checksum(bytes(header))


def encapsulate_ipip(
    inner: bytes, src: bytes, dst: bytes, ttl: int = DEFAULT_TTL, ident: int = 0
) -> bytes:
    """A complete IP-in-IP packet (outer checksum included), for tests and injectors.

    ``inner`` may be anything (malformed input for tests): TOS/DF come from it only when it
    is long enough to have them."""
    key = outer_header_key(inner) if len(inner) >= IPV4_HEADER_LEN else 0
    return ipip_outer_header(src, dst, key, ttl, IPV4_HEADER_LEN + len(inner), ident) + inner


def encapsulate_udp(inner: bytes) -> bytes:
    """The UDP payload carrying ``inner`` in a MIP Tunnel Data message."""
    return TUNNEL_DATA_HEADER + inner


def ipv4_packet(
    src: bytes, dst: bytes, proto: int, payload: bytes, *, tos: int = 0, df: bool = False,
    ttl: int = 64, ident: int = 0,
) -> bytes:  # fmt: skip
    """A plain IPv4 packet with a correct header checksum (tests, injectors)."""
    frag = _DF << 8 if df else 0
    hdr = bytearray(_HDR.pack(0x45, tos, 20 + len(payload), ident, frag, ttl, proto, 0, src, dst))
    hdr[10:12] = struct.pack("!H", ipv4_checksum(hdr))
    return bytes(hdr) + payload


__all__ = [
    "DEFAULT_TTL",
    "DROP_REASONS",
    "ICMP_FRAG_NEEDED",
    "ICMP_UNREACH",
    "IPIP_MTU",
    "IPPROTO_GRE",
    "IPPROTO_ICMP",
    "IPPROTO_IPIP",
    "IPPROTO_MINENC",
    "MIN_IPV4_MTU",
    "MIP_PORT",
    "TUNNEL_DATA_HEADER",
    "TUNNEL_DATA_LEN",
    "TUNNEL_DATA_TYPE",
    "UDP_MTU",
    "check_inner",
    "encapsulate_ipip",
    "encapsulate_udp",
    "frag_needed",
    "ipip_outer_header",
    "ipv4_checksum",
    "ipv4_packet",
    "outer_header_key",
    "parse_ipip",
    "parse_tunnel_data",
    "tunnel_data_header",
]
