"""DHCPv4 codec: round trips, known bytes, and 'malformed input raises only DhcpMalformed'."""

from __future__ import annotations

import contextlib
import struct
from ipaddress import IPv4Address

import pytest

from agents.dhcp.codec import (
    BOOTREPLY,
    BOOTREQUEST,
    MAGIC_COOKIE,
    DhcpMalformed,
    DhcpMessage,
    MessageType,
    Opt,
    decode,
    encode,
)
from agents.dhcp.frames import checksum, ipv4_udp, udp_payload

hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")
given, settings, HealthCheck = hypothesis.given, hypothesis.settings, hypothesis.HealthCheck

MAC = bytes.fromhex("02aabbccddee")


def _ack() -> DhcpMessage:
    return DhcpMessage(
        op=BOOTREPLY,
        xid=0x12345678,
        chaddr=MAC,
        flags=0x8000,
        yiaddr=IPv4Address("10.9.0.123"),
        siaddr=IPv4Address("10.9.0.1"),
        options=(
            (Opt.MESSAGE_TYPE, bytes([MessageType.ACK])),
            (Opt.SERVER_ID, IPv4Address("10.9.0.1").packed),
            (Opt.LEASE_TIME, struct.pack("!I", 3600)),
            (Opt.T1, struct.pack("!I", 1800)),
            (Opt.T2, struct.pack("!I", 3150)),
            (Opt.SUBNET_MASK, IPv4Address("255.255.255.0").packed),
            (Opt.ROUTER, IPv4Address("10.9.0.1").packed + IPv4Address("10.9.0.2").packed),
        ),
    )


def test_known_layout_and_accessors() -> None:
    wire = encode(_ack())
    assert len(wire) == 300  # RFC 1542 minimum
    assert wire[0] == BOOTREPLY and wire[2] == 6
    assert wire[4:8] == bytes.fromhex("12345678")
    assert wire[10:12] == b"\x80\x00"
    assert wire[16:20] == bytes([10, 9, 0, 123])
    assert wire[28:34] == MAC
    assert wire[236:240] == MAGIC_COOKIE
    assert wire[240:243] == bytes([53, 1, 5])
    msg = decode(wire)
    assert msg == _ack()
    assert msg.message_type == MessageType.ACK
    assert msg.server_id == IPv4Address("10.9.0.1")
    assert (msg.lease_time, msg.t1, msg.t2) == (3600, 1800, 3150)
    assert msg.subnet_mask == IPv4Address("255.255.255.0")
    assert msg.routers == (IPv4Address("10.9.0.1"), IPv4Address("10.9.0.2"))
    assert msg.requested_ip is None and msg.client_id is None


def test_pad_long_options_and_overload() -> None:
    # PADs between options, one option split in two (RFC 3396), options in 'file' (52 = 1).
    header = bytearray(encode(_ack())[:236])
    file_opts = bytes([Opt.SERVER_ID, 4, 10, 0, 0, 1, 255])
    header[108 : 108 + len(file_opts)] = file_opts
    opts = bytes([0, 0, 53, 1, 2, 52, 1, 1, 12, 2]) + b"ab" + bytes([12, 1]) + b"c" + b"\xff"
    msg = decode(bytes(header) + MAGIC_COOKIE + opts)
    assert msg.message_type == MessageType.OFFER
    assert msg.option(12) == b"abc"
    assert msg.server_id == IPv4Address("10.0.0.1")
    assert msg.file == b"" and msg.option(Opt.OVERLOAD) is None
    long = DhcpMessage(op=BOOTREQUEST, xid=1, chaddr=MAC, options=((77, bytes(600)),))
    wire = encode(long)
    assert wire.count(bytes([77, 255])) == 2
    assert decode(wire) == long


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda w: w[:239], "too short"),
        (lambda w: w[:236] + b"\0\0\0\0" + w[240:], "magic cookie"),
        (lambda w: w[:2] + b"\x11" + w[3:], "hlen"),
        (lambda w: w[:240] + bytes([53]), "no length byte"),
        (lambda w: w[:240] + bytes([53, 5, 1]), "runs past the end"),
        (lambda w: w[:240] + bytes([53, 2, 1, 1, 255]), "bad length"),
        (lambda w: w[:240] + bytes([54, 3, 1, 2, 3, 255]), "bad length"),
        (lambda w: w[:240] + bytes([3, 6, 1, 2, 3, 4, 5, 6, 255]), "bad length"),
        (lambda w: w[:240] + bytes([52, 1, 7, 255]), "overload"),
        (lambda w: w[:240] + bytes([80, 1, 0, 255]), "bad length"),
    ],
)
def test_malformed_examples(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DhcpMalformed, match=reason):
        decode(mutate(encode(_ack())))


def test_rapid_commit_round_trip() -> None:
    # RFC 4039 section 4: code 80, length 0, no value -- a flag that is present or absent.
    discover = DhcpMessage(
        op=BOOTREQUEST,
        xid=7,
        chaddr=MAC,
        options=(
            (Opt.MESSAGE_TYPE, bytes([MessageType.DISCOVER])),
            (Opt.RAPID_COMMIT, b""),
        ),
    )
    wire = encode(discover)
    assert wire[240:246] == bytes([53, 1, 1, 80, 0, 255])
    msg = decode(wire)
    assert msg == discover and msg.rapid_commit
    assert encode(msg) == wire
    assert not _ack().rapid_commit and not decode(encode(_ack())).rapid_commit


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(DhcpMalformed):
        decode("not bytes")  # type: ignore[arg-type]


# --- property tests -----------------------------------------------------------------------

_ips = st.integers(0, 2**32 - 1).map(IPv4Address)
_u32 = st.integers(0, 2**32 - 1).map(lambda v: struct.pack("!I", v))
_ip_list = st.lists(_ips, min_size=1, max_size=4).map(lambda ips: b"".join(a.packed for a in ips))
_known = {
    Opt.SUBNET_MASK: _ips.map(lambda a: a.packed),
    Opt.ROUTER: _ip_list,
    Opt.DNS: _ip_list,
    Opt.MAX_SIZE: st.binary(min_size=2, max_size=2),
    Opt.REQUESTED_IP: _ips.map(lambda a: a.packed),
    Opt.LEASE_TIME: _u32,
    Opt.MESSAGE_TYPE: st.integers(0, 255).map(lambda v: bytes([v])),
    Opt.SERVER_ID: _ips.map(lambda a: a.packed),
    Opt.PARAM_REQUEST: st.binary(min_size=1, max_size=40),
    Opt.T1: _u32,
    Opt.T2: _u32,
    Opt.CLIENT_ID: st.binary(min_size=2, max_size=300),
    Opt.RAPID_COMMIT: st.just(b""),
}
_other_codes = st.integers(1, 254).filter(lambda c: c not in _known and c != Opt.OVERLOAD)
_option = st.one_of(
    *(st.tuples(st.just(int(code)), values) for code, values in _known.items()),
    st.tuples(_other_codes, st.binary(max_size=300)),
)
_cstring = st.binary(max_size=64).filter(lambda b: b"\0" not in b)
messages = st.builds(
    DhcpMessage,
    op=st.integers(0, 255),
    xid=st.integers(0, 2**32 - 1),
    chaddr=st.binary(max_size=16),
    htype=st.integers(0, 255),
    hops=st.integers(0, 255),
    secs=st.integers(0, 0xFFFF),
    flags=st.integers(0, 0xFFFF),
    ciaddr=_ips,
    yiaddr=_ips,
    siaddr=_ips,
    giaddr=_ips,
    sname=_cstring,
    file=st.binary(max_size=128).filter(lambda b: b"\0" not in b),
    options=st.lists(_option, max_size=8, unique_by=lambda o: o[0]).map(tuple),
)


@given(messages)
def test_round_trip(msg: DhcpMessage) -> None:
    wire = encode(msg)
    assert len(wire) >= 300
    assert decode(wire) == msg
    assert encode(decode(wire)) == wire


@given(st.binary(max_size=700))
def test_random_bytes_raise_only_malformed(data: bytes) -> None:
    with contextlib.suppress(DhcpMalformed):
        decode(data)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(messages, st.data())
def test_mutated_messages_raise_only_malformed(msg: DhcpMessage, data: st.DataObject) -> None:
    wire = bytearray(encode(msg))
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(wire) - 1))
        wire[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    try:
        decoded = decode(bytes(wire[:cut]))
    except DhcpMalformed:
        return
    # Anything accepted must re-encode (it is a valid message by construction).
    assert isinstance(encode(decoded), bytes)


# --- IPv4/UDP framing used by the driver ---------------------------------------------------


@given(st.binary(max_size=600), _ips, _ips)
def test_frame_round_trip(payload: bytes, src: IPv4Address, dst: IPv4Address) -> None:
    packet = ipv4_udp(src, dst, 67, 68, payload, ident=7)
    assert checksum(packet[:20]) == 0
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, 17, 8 + len(payload))
    assert checksum(pseudo + packet[20:]) == 0
    assert udp_payload(packet) == (src, payload)
    assert udp_payload(packet, dport=67) is None


@given(st.binary(max_size=100))
def test_frame_parser_never_raises(data: bytes) -> None:
    assert udp_payload(data) is None or isinstance(udp_payload(data), tuple)


def test_strategy_covers_every_checked_option() -> None:
    from agents.dhcp import codec

    assert set(codec._LENGTHS) == set(_known)
