"""Write classic pcap files of Mobile IP messages (Ethernet / IPv4 / UDP or ICMP).

For looking at what the codec produces in Wireshark, and for the tshark oracle test. All
checksums (IPv4, UDP with pseudo-header, ICMP is the caller's) are computed here.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

from agents.mip.constants import MIP_PORT
from agents.mip.ipv4 import aton, build_ipv4, internet_checksum

__all__ = ["ethernet_frame", "icmp_packet", "udp_packet", "write_pcap"]

_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # LINKTYPE_ETHERNET
_REC = struct.Struct("<IIII")
DEFAULT_SRC_MAC = bytes.fromhex("020000000001")
DEFAULT_DST_MAC = bytes.fromhex("020000000002")


def udp_packet(
    src: str,
    dst: str,
    payload: bytes,
    *,
    sport: int = MIP_PORT,
    dport: int = MIP_PORT,
    ttl: int = 64,
    ident: int = 0,
) -> bytes:
    """IPv4 + UDP packet with both checksums correct."""
    length = 8 + len(payload)
    pseudo = aton(src) + aton(dst) + struct.pack("!BBH", 0, 17, length)
    udp = struct.pack("!HHHH", sport, dport, length, 0) + payload
    csum = internet_checksum(pseudo + udp) or 0xFFFF  # RFC 768: 0 is sent as all ones
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    return build_ipv4(src, dst, 17, udp, ttl=ttl, ident=ident)


def icmp_packet(src: str, dst: str, icmp: bytes, *, ttl: int = 1, ident: int = 0) -> bytes:
    """IPv4 packet carrying an ICMP message (whose checksum the message already has)."""
    return build_ipv4(src, dst, 1, icmp, ttl=ttl, ident=ident)


def ethernet_frame(
    ip_packet: bytes, *, src_mac: bytes = DEFAULT_SRC_MAC, dst_mac: bytes = DEFAULT_DST_MAC
) -> bytes:
    return dst_mac + src_mac + b"\x08\x00" + ip_packet


def write_pcap(path: str | Path, frames: Iterable[bytes], *, start: float = 1_700_000_000.0):
    """Write Ethernet ``frames`` one millisecond apart starting at UNIX time ``start``."""
    with open(path, "wb") as f:
        f.write(_PCAP_HEADER)
        for i, frame in enumerate(frames):
            t = start + i / 1000
            secs = int(t)
            f.write(_REC.pack(secs, round((t - secs) * 1e6), len(frame), len(frame)))
            f.write(frame)
