"""Header building and parsing of the data plane (agents/dataplane/packets.py), no I/O."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.dataplane import packets as P

SRC = bytes((10, 1, 0, 10))
DST = bytes((10, 1, 0, 100))
HA = bytes((10, 2, 0, 1))
COA = bytes((10, 3, 0, 10))


def inner(payload: bytes = b"x" * 32, **kw: object) -> bytes:
    return P.ipv4_packet(SRC, DST, 17, payload, **kw)  # type: ignore[arg-type]


# --- building --------------------------------------------------------------------------


def test_tunnel_data_header_layout() -> None:
    # RFC 3519 section 3.3: type 4, next header 4 (IPv4), reserved 0
    assert P.TUNNEL_DATA_HEADER == b"\x04\x04\x00\x00"
    assert P.tunnel_data_header() == P.TUNNEL_DATA_HEADER
    assert P.tunnel_data_header(P.IPPROTO_GRE) == b"\x04\x2f\x00\x00"
    assert P.encapsulate_udp(b"abc") == b"\x04\x04\x00\x00abc"


def test_mtus_keep_outer_packet_within_1500() -> None:
    assert P.IPIP_MTU + 20 == 1500
    assert P.UDP_MTU + 20 + 8 + 4 == 1500


def test_outer_header_copies_tos_and_df() -> None:
    pkt = inner(tos=0xB8, df=True)
    key = P.outer_header_key(pkt)
    hdr = P.ipip_outer_header(HA, COA, key, ttl=33)
    ver_ihl, tos, total, ident, frag, ttl, proto, csum, src, dst = struct.unpack(
        "!BBHHHBBH4s4s", hdr
    )
    assert (ver_ihl, tos, frag, ttl, proto) == (0x45, 0xB8, 0x4000, 33, 4)
    # left for the kernel to fill (IP_HDRINCL): length, ID, checksum
    assert (total, ident, csum) == (0, 0, 0)
    assert (src, dst) == (HA, COA)
    no_df = P.ipip_outer_header(HA, COA, P.outer_header_key(inner(df=False)))
    assert struct.unpack_from("!H", no_df, 6)[0] == 0  # inner DF clear -> outer clear


def test_encapsulate_ipip_is_complete_and_checksummed() -> None:
    pkt = inner()
    wire = P.encapsulate_ipip(pkt, HA, COA, ident=7)
    assert len(wire) == 20 + len(pkt)
    assert P.ipv4_checksum(wire[:20]) == 0  # checksum over a correct header folds to 0
    assert struct.unpack_from("!H", wire, 2)[0] == len(wire)
    assert P.parse_ipip(wire, len(wire)) == (20, len(wire))


def test_scapy_agrees_on_ipip_and_tunnel_data() -> None:
    scapy_all = pytest.importorskip("scapy.all")
    from scapy.layers.mobileip import MobileIP, MobileIPTunnelData

    pkt = inner(b"hello", tos=0x10, df=True)
    outer = scapy_all.IP(P.encapsulate_ipip(pkt, HA, COA))
    assert outer.proto == 4 and outer.tos == 0x10 and outer.flags.DF
    assert bytes(outer.payload) == pkt
    assert outer.payload.src == "10.1.0.10" and outer.payload.dst == "10.1.0.100"
    built = bytes(MobileIP(type=4) / MobileIPTunnelData(nexthdr=4) / scapy_all.IP(pkt))
    assert built == P.encapsulate_udp(pkt)


# --- parsing ---------------------------------------------------------------------------


def test_check_inner_trims_padding() -> None:
    pkt = inner(b"abcd")
    buf = b"\0" * 4 + pkt + b"PADDING"
    assert P.check_inner(buf, 4, len(buf)) == 4 + len(pkt)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", P.R_INNER_TRUNCATED),
        (b"\x45" + bytes(10), P.R_INNER_TRUNCATED),
        (b"\x60" + bytes(39), P.R_INNER_NOT_IPV4),
        (b"\x44" + bytes(19), P.R_INNER_BAD_IHL),
        (b"\x4f" + bytes(19), P.R_INNER_BAD_IHL),  # 60-byte header in 20 bytes
        (b"\x45\x00\x00\x13" + bytes(16), P.R_INNER_BAD_LENGTH),  # total < header
        (b"\x45\x00\x05\xdc" + bytes(16), P.R_INNER_BAD_LENGTH),  # total > what came
    ],
)
def test_check_inner_reasons(data: bytes, reason: str) -> None:
    assert P.check_inner(data, 0, len(data)) == reason


def _outer(inner_pkt: bytes, **patch: int) -> bytearray:
    wire = bytearray(P.encapsulate_ipip(inner_pkt, COA, HA))
    for off, value in patch.items():
        wire[int(off[1:])] = value
    return wire


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"", P.R_TRUNCATED),
        (bytes(19), P.R_TRUNCATED),
        (_outer(inner(), b0=0x65), P.R_NOT_IPV4),
        (_outer(inner(), b0=0x43), P.R_BAD_IHL),
        (_outer(inner(b""), b0=0x4F), P.R_BAD_IHL),  # 60-byte header in 40 bytes
        (_outer(inner(), b2=0xFF), P.R_BAD_LENGTH),
        (_outer(inner(), b9=17), P.R_NOT_IPIP),
        (_outer(inner(), b6=0x20), P.R_FRAGMENT),
        (_outer(inner(), b7=0x01), P.R_FRAGMENT),
        (P.encapsulate_ipip(b"", COA, HA), P.R_INNER_TRUNCATED),
        (P.encapsulate_ipip(b"\x60" + bytes(39), COA, HA), P.R_INNER_NOT_IPV4),
    ],
)
def test_parse_ipip_reasons(wire: bytes, reason: str) -> None:
    assert P.parse_ipip(wire, len(wire)) == reason


def test_parse_ipip_with_options_and_short_read() -> None:
    pkt = inner()
    hdr = bytearray(P.ipip_outer_header(COA, HA, 0, total_length=24 + len(pkt)))
    hdr[0] = 0x46
    wire = bytes(hdr) + b"\x01\x01\x01\x00" + pkt  # one 4-byte option (NOPs, EOL)
    assert P.parse_ipip(wire, len(wire)) == (24, len(wire))
    assert P.parse_ipip(wire, 23) == P.R_BAD_IHL  # n smaller than the header
    assert P.parse_ipip(wire, len(wire) + 10) == P.R_TRUNCATED  # n larger than the buffer


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", P.R_TRUNCATED),
        (b"\x04\x04\x00", P.R_TRUNCATED),
        (b"\x01\x04\x00\x00" + inner(), P.R_NOT_TUNNEL_DATA),
        (b"\x04\x37\x00\x00" + inner(), P.R_BAD_NEXT_HEADER),  # 55 minimal encapsulation
        (b"\x04\x2f\x00\x00" + inner(), P.R_BAD_NEXT_HEADER),  # 47 GRE
        (b"\x04\x04\x00\x00", P.R_INNER_TRUNCATED),
        (b"\x04\x04\x00\x00" + b"\x60" + bytes(40), P.R_INNER_NOT_IPV4),
    ],
)
def test_parse_tunnel_data_reasons(payload: bytes, reason: str) -> None:
    assert P.parse_tunnel_data(payload, len(payload)) == reason


def test_parse_tunnel_data_ignores_reserved_bytes() -> None:
    pkt = inner()
    payload = b"\x04\x04\xff\xff" + pkt  # reserved: "ignored on receipt"
    assert P.parse_tunnel_data(payload, len(payload)) == (4, 4 + len(pkt))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120), st.integers(min_value=0, max_value=200))
def test_parsers_never_raise(data: bytes, n: int) -> None:
    n = min(n, len(data))
    for result in (P.parse_ipip(data, n), P.parse_tunnel_data(data, n)):
        if isinstance(result, str):
            assert result in P.DROP_REASONS
        else:
            off, end = result
            assert 0 < off < end <= n
            assert data[off] >> 4 == 4


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=64), st.integers(0, 255), st.booleans())
def test_ipip_roundtrip(payload: bytes, tos: int, df: bool) -> None:
    pkt = P.ipv4_packet(SRC, DST, 6, payload, tos=tos, df=df)
    wire = P.encapsulate_ipip(pkt, HA, COA)
    off, end = P.parse_ipip(wire, len(wire))  # type: ignore[misc]
    assert wire[off:end] == pkt
    assert wire[1] == tos and bool(wire[6] & 0x40) == df
    udp = P.encapsulate_udp(pkt)
    off, end = P.parse_tunnel_data(udp, len(udp))  # type: ignore[misc]
    assert udp[off:end] == pkt


# --- ICMP "fragmentation needed" (RFC 2003 section 4.1) ---------------------------------


def test_frag_needed_refuses_a_packet_to_its_source() -> None:
    pkt = inner(b"t" * 1400, df=True)
    icmp = P.frag_needed(pkt, 1380)
    assert icmp is not None and len(icmp) == P.ICMP_ERROR_LIMIT  # quote cut at 576 bytes
    ver, tos, total, _id, frag, _ttl, proto, _csum, src, dst = struct.unpack_from(
        "!BBHHHBBH4s4s", icmp
    )
    assert (ver, tos, total, frag, proto) == (0x45, 0xC0, len(icmp), 0, P.IPPROTO_ICMP)
    assert src == bytes(4) and dst == SRC  # the kernel fills in our source address
    kind, code, _csum, unused, mtu = struct.unpack_from("!BBHHH", icmp, 20)
    assert (kind, code, unused, mtu) == (3, 4, 0, 1380)
    assert P.ipv4_checksum(icmp[20:]) == 0  # the ICMP checksum covers the message
    assert icmp[28:] == pkt[: P.ICMP_ERROR_LIMIT - 28]  # header and the start of the data
    small = inner(b"s" * 8, df=True)
    assert P.frag_needed(small, 1000)[28:] == small  # type: ignore[index]


def test_scapy_reads_frag_needed() -> None:
    scapy_all = pytest.importorskip("scapy.all")
    pkt = inner(b"u" * 100, df=True)
    icmp = scapy_all.IP(P.frag_needed(pkt, 1360))
    assert icmp.proto == 1 and icmp[scapy_all.ICMP].type == 3 and icmp[scapy_all.ICMP].code == 4
    assert icmp[scapy_all.ICMP].nexthopmtu == 1360
    assert bytes(icmp[scapy_all.IPerror])[:20] == pkt[:20]


@pytest.mark.parametrize(
    "pkt",
    [
        b"",
        b"\x45" + bytes(10),  # truncated
        b"\x60" + bytes(39),  # IPv6
        P.ipv4_packet(SRC, DST, 1, b"\x03\x04" + bytes(30), df=True),  # an ICMP error
        P.ipv4_packet(SRC, DST, 1, b"\x0b\x00" + bytes(30), df=True),  # time exceeded
        P.ipv4_packet(bytes(4), DST, 17, b"x", df=True),  # from 0.0.0.0
        P.ipv4_packet(bytes((127, 0, 0, 1)), DST, 17, b"x", df=True),  # from loopback
        P.ipv4_packet(bytes((224, 0, 0, 5)), DST, 17, b"x", df=True),  # from multicast
        P.ipv4_packet(SRC, bytes((255, 255, 255, 255)), 17, b"x", df=True),  # broadcast
        P.ipv4_packet(SRC, bytes((239, 1, 1, 1)), 17, b"x", df=True),  # multicast
    ],
)
def test_frag_needed_is_not_sent_where_icmp_errors_are_forbidden(pkt: bytes) -> None:
    assert P.frag_needed(pkt, 1380) is None


def test_frag_needed_only_for_a_first_fragment() -> None:
    pkt = bytearray(inner(b"f" * 64))
    pkt[6:8] = struct.pack("!H", 0x2000)  # MF, offset 0: the first fragment
    assert P.frag_needed(bytes(pkt), 1380) is not None
    pkt[6:8] = struct.pack("!H", 0x0010)  # offset 128: a later one
    assert P.frag_needed(bytes(pkt), 1380) is None
    echo = P.ipv4_packet(SRC, DST, 1, b"\x08\x00" + bytes(30), df=True)  # echo: not an error
    assert P.frag_needed(echo, 1380) is not None


# --- checksums a kernel IP-in-IP peer left to offload ------------------------------------


def _partial(packet: bytes, field: int) -> bytearray:
    """What a kernel with checksum offload puts on the wire (CHECKSUM_PARTIAL): the
    transport checksum field holds only the folded pseudo-header sum."""
    from scapy.layers.inet import IP

    ip = IP(packet)
    length = len(packet) - 20
    pseudo = sum(struct.unpack("!4H", packet[12:20])) + ip.proto + length
    pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
    out = bytearray(packet)
    struct.pack_into("!H", out, 20 + field, (pseudo & 0xFFFF) + (pseudo >> 16))
    return out


@pytest.mark.parametrize("proto", ["udp", "tcp"])
@pytest.mark.parametrize("size", [0, 1, 33, 1400])
def test_partial_transport_checksum_is_finished_as_scapy_computes_it(proto: str, size: int):
    from scapy.layers.inet import IP, TCP, UDP

    layer = UDP(sport=4000, dport=5000) if proto == "udp" else TCP(sport=4000, dport=5000)
    good = bytes(IP(src="10.1.0.10", dst="10.1.0.100") / layer / (b"\xa5" * size))
    field = 6 if proto == "udp" else 16
    buf = _partial(good, field)
    assert buf != bytearray(good)  # the unfinished form differs on the wire
    assert P.complete_partial_checksum(buf, 0, len(buf))
    assert bytes(buf) == good
    # a finished checksum is left alone
    again = bytearray(good)
    assert not P.complete_partial_checksum(again, 0, len(again)) or bytes(again) == good
    assert bytes(again) == good


def test_partial_checksum_inside_a_larger_buffer_and_not_for_others() -> None:
    from scapy.layers.inet import ICMP, IP, UDP

    good = bytes(IP(src="10.1.0.10", dst="10.1.0.100") / UDP(sport=1, dport=2) / b"data")
    buf = bytearray(b"\0" * 20) + _partial(good, 6) + b"\0\0"  # outer header, trailing pad
    assert P.complete_partial_checksum(buf, 20, 20 + len(good))
    assert bytes(buf[20 : 20 + len(good)]) == good
    icmp = bytearray(bytes(IP(src="10.1.0.10", dst="10.1.0.100") / ICMP() / b"x"))
    assert not P.complete_partial_checksum(icmp, 0, len(icmp))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=20, max_size=120))
def test_partial_checksum_never_raises_on_accepted_inner_packets(data: bytes) -> None:
    buf = bytearray(data)
    end = P.check_inner(buf, 0, len(buf))
    if isinstance(end, int):
        P.complete_partial_checksum(buf, 0, end)
