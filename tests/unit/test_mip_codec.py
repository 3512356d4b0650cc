"""Wire formats of agents/mip: hand-built vectors for every message type, and malformed input."""

from __future__ import annotations

import struct

import pytest

from agents.mip.codec import decode, encode
from agents.mip.constants import AdvFlag, RequestFlag
from agents.mip.errors import MalformedMessage, UnknownExtension
from agents.mip.extensions import (
    AuthExtension,
    ChallengeExtension,
    EncapDeliveryStyle,
    NaiExtension,
    RawExtension,
    UdpTunnelReply,
    UdpTunnelRequest,
)
from agents.mip.icmp import (
    AgentAdvertisement,
    AgentSolicitation,
    MobilityAgentExtension,
    decode_icmp,
    encode_icmp,
)
from agents.mip.ipv4 import internet_checksum
from agents.mip.messages import RegistrationReply, RegistrationRequest, TunnelData, decode_udp

# RFC 5944 3.3: type 1, flags S+T (0x82), lifetime 1800, home 10.1.0.7, HA 10.1.0.1,
# CoA 10.2.0.1, identification 0xe8a1b2c3_01020304.
RRQ_FIXED = bytes.fromhex("01 82 0708 0a010007 0a010001 0a020001 e8a1b2c301020304")
MNHA = bytes.fromhex("20 14 00000100") + bytes(range(16))  # type 32, len 20, SPI 256


def test_request_fixed_part_vector() -> None:
    msg = decode_udp(RRQ_FIXED)
    assert msg == RegistrationRequest(
        "10.1.0.7", "10.1.0.1", "10.2.0.1", 0xE8A1B2C301020304, 1800, 0x82, []
    )
    assert msg.has_flag(RequestFlag.S) and msg.has_flag(RequestFlag.T)
    assert not msg.has_flag(RequestFlag.D)
    assert encode(msg) == RRQ_FIXED


def test_request_with_every_registration_extension() -> None:
    wire = (
        RRQ_FIXED
        + bytes.fromhex("83 0e")
        + b"mn@example.com"  # NAI (RFC 2794)
        + bytes.fromhex("90 06 00 00 c0 04 0000")  # UDP tunnel request F+R, IP-in-IP
        + MNHA
        + bytes.fromhex("82 00")  # encapsulating delivery style
        + bytes.fromhex("84 04 61626364")  # MN-FA challenge "abcd"
        + bytes.fromhex("21 14 00000200")
        + b"\x11" * 16  # MN-FA auth, SPI 512
        + bytes.fromhex("c8 02 7879")  # unknown skippable 200
    )
    msg = decode_udp(wire)
    assert isinstance(msg, RegistrationRequest)
    assert msg.extensions == [
        NaiExtension("mn@example.com"),
        UdpTunnelRequest(4, force=True, via_fa=True),
        AuthExtension(32, 256, bytes(range(16))),
        EncapDeliveryStyle(),
        ChallengeExtension(b"abcd"),
        AuthExtension(33, 512, b"\x11" * 16),
        RawExtension(200, b"xy"),
    ]
    assert msg.extensions[2].offset == 24 + 16 + 8  # type: ignore[union-attr]
    assert msg.authenticated_extensions() == msg.extensions[:2]
    assert encode(msg) == wire


def test_reply_vector() -> None:
    wire = (
        bytes.fromhex("03 00 0258 0a010007 0a010001 e8a1b2c301020304")
        + bytes.fromhex("2c 06 00 00 8000 006e")  # UDP tunnel reply: code 0, F, keepalive 110
        + MNHA
    )
    msg = decode_udp(wire)
    assert msg == RegistrationReply(
        0,
        600,
        "10.1.0.7",
        "10.1.0.1",
        0xE8A1B2C301020304,
        [UdpTunnelReply(0, 110, forced=True), AuthExtension(32, 256, bytes(range(16)))],
    )
    assert encode(msg) == wire


def test_tunnel_data_vector() -> None:
    inner = bytes.fromhex("4500001c0000000040010000c0000201c0000202") + b"\x08" * 8
    wire = bytes.fromhex("04 04 0000") + inner
    msg = decode_udp(wire)
    assert msg == TunnelData(4, inner)
    assert encode(msg) == wire
    # Reserved bits are ignored on reception (RFC 3519 3.3) and sent as zero.
    assert decode_udp(bytes.fromhex("04 04 ffff") + inner) == msg


def test_solicitation_vector() -> None:
    wire = bytes.fromhex("0a 00 f5ff 00000000")
    assert internet_checksum(wire) == 0
    assert decode(wire) == AgentSolicitation()
    assert encode(AgentSolicitation()) == wire


def test_advertisement_vector() -> None:
    body = bytearray(
        bytes.fromhex("09 10 0000 01 02 001e")  # type 9, code 16, 1 address, size 2, life 30
        + bytes.fromhex("0a020001 00000000")  # router 10.2.0.1, preference 0
        + bytes.fromhex("10 0a 012c 0708 9180 0a020001")  # MA ext: seq 300, 1800 s, R F T U
        + bytes.fromhex("13 01 18")  # prefix lengths: /24
        + bytes.fromhex("00")  # one byte of padding
    )
    csum = internet_checksum(body)
    body[2:4] = struct.pack("!H", csum)
    wire = bytes(body)
    adv = decode(wire)
    assert adv == AgentAdvertisement(
        30,
        [("10.2.0.1", 0)],
        MobilityAgentExtension(300, 1800, 0x9180, ["10.2.0.1"]),
        [24],
        None,
        [],
        16,
        1,
    )
    assert adv.agent is not None
    assert adv.agent.has_flag(AdvFlag.F) and adv.agent.has_flag(AdvFlag.U)
    assert not adv.agent.has_flag(AdvFlag.H)
    assert encode(adv) == wire


def test_plain_router_advertisement_has_no_agent() -> None:
    adv = AgentAdvertisement(1800, [("192.0.2.1", 5), ("192.0.2.2", -1)])
    got = decode_icmp(encode_icmp(adv))
    assert got == adv and got.agent is None


def test_icmp_extensions_and_challenge_round_trip() -> None:
    adv = AgentAdvertisement(
        9,
        [],
        MobilityAgentExtension(0, 0xFFFF, 0x2000, []),
        [],
        b"\x01\x02\x03\x04\x05",
        [RawExtension(150, b"abc")],
    )
    assert decode_icmp(encode_icmp(adv)) == adv


# --- malformed input ----------------------------------------------------------------------


def _raises(data: bytes, match: str, **kw) -> MalformedMessage:
    with pytest.raises(MalformedMessage, match=match) as info:
        decode(data, **kw)
    return info.value


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"\x02" + bytes(30), "unknown Mobile IP message type 2"),
        (RRQ_FIXED[:23], "registration request truncated: 23 of 24"),
        (bytes.fromhex("03 00 0000") + bytes(15), "reply truncated: 19 of 20"),
        (b"\x04\x04\x00", "tunnel data truncated"),
        (b"\x04\x04\x00\x00", "without a payload"),
        (RRQ_FIXED + b"\x20", "truncated before its length byte"),
        (RRQ_FIXED + MNHA[:-1], "runs past the end"),
        (RRQ_FIXED + b"\xc8\x05ab", "length 5 runs past the end"),
        (RRQ_FIXED + b"\x20\x03abc", "authentication extension 32 length 3 < 4"),
        (RRQ_FIXED + b"\x83\x00", "NAI extension with length 0"),
        (RRQ_FIXED + b"\x83\x02\xff\xfe", "NAI is not UTF-8"),
        (RRQ_FIXED + b"\x84\x03abc", "challenge length 3 < 4"),
        (RRQ_FIXED + b"\x82\x01x", "delivery style length 1 != 0"),
        (RRQ_FIXED + b"\x90\x04\x00\x00\x00\x04", "UDP tunnel request length 4 != 6"),
        (RRQ_FIXED + b"\x2c\x08" + bytes(8), "UDP tunnel reply length 8 != 6"),
    ],
)
def test_malformed_udp(data: bytes, match: str) -> None:
    _raises(data, match)


def test_trailing_garbage_is_an_extension_that_does_not_fit() -> None:
    # Registration messages have no length field: bytes after the last extension are read as
    # another extension, and garbage never fits (here: type 0xde, length 0xad).
    exc = _raises(RRQ_FIXED + MNHA + b"\xde\xad", "runs past the end")
    assert exc.offset == 24 + 22


def test_offsets_point_at_the_problem() -> None:
    exc = _raises(RRQ_FIXED + b"\x83\x02\xff\xfe", "UTF-8")
    assert exc.offset == 26
    assert exc.reason.startswith("NAI is not UTF-8")


def test_unknown_non_skippable_extension_carries_codes_and_partial_message() -> None:
    data = RRQ_FIXED + b"\x83\x01a" + b"\x30\x02xy" + MNHA
    with pytest.raises(UnknownExtension) as info:
        decode_udp(data)
    exc = info.value
    assert isinstance(exc, MalformedMessage)
    assert (exc.ext_type, exc.offset, exc.fa_code, exc.ha_code) == (48, 27, 70, 134)
    assert isinstance(exc.message, RegistrationRequest)
    assert exc.message.home_address == "10.1.0.7"
    assert exc.message.extensions == [NaiExtension("a")]


def test_unknown_skippable_extension_is_skipped_and_kept() -> None:
    msg = decode_udp(RRQ_FIXED + b"\xfa\x03abc" + MNHA)
    assert isinstance(msg, RegistrationRequest)
    assert msg.extensions[0] == RawExtension(250, b"abc")
    assert msg.find(32) == AuthExtension(32, 256, bytes(range(16)))


def _icmp(body: bytes) -> bytes:
    b = bytearray(body)
    b[2:4] = b"\0\0"
    b[2:4] = struct.pack("!H", internet_checksum(b))
    return bytes(b)


ADV_HEAD = bytes.fromhex("09 00 0000 01 02 001e 0a020001 00000000")
MAE = bytes.fromhex("10 0a 0001 0708 1000 0a020001")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (bytes(7), "ICMP message truncated: 7 of 8"),
        (bytes.fromhex("0a00f5ff00000001"), "bad ICMP checksum"),
        (_icmp(bytes.fromhex("0a01000000000000")), "solicitation code 1"),
        (_icmp(bytes.fromhex("0a00000000000000") + b"\0\0"), "2 trailing bytes"),
        (_icmp(bytes.fromhex("0800000000000000")), "ICMP type 8 is not router discovery"),
        (_icmp(bytes.fromhex("09 05 0000 01 02 001e") + bytes(8)), "advertisement code 5"),
        (_icmp(bytes.fromhex("09 00 0000 01 03 001e") + bytes(12)), "address entry size 3"),
        (_icmp(bytes.fromhex("09 00 0000 02 02 001e") + bytes(8)), "2 router addresses need"),
        (_icmp(ADV_HEAD + bytes.fromhex("10 07") + bytes(7)), "not 6\\+4N"),
        (_icmp(ADV_HEAD + MAE + MAE), "second mobility agent"),
        (_icmp(ADV_HEAD + MAE + bytes.fromhex("13 02 1818")), "2 entries for 1 router"),
        (_icmp(ADV_HEAD + MAE + bytes.fromhex("13 01 21")), "prefix length above 32"),
        (_icmp(ADV_HEAD + MAE + bytes.fromhex("18 02 0102")), "challenge length 2 < 4"),
        (_icmp(ADV_HEAD + MAE + bytes.fromhex("00 13 01 18")), "extension after padding"),
        (_icmp(ADV_HEAD + MAE + bytes.fromhex("c8 09 00")), "runs past the end"),
        (_icmp(ADV_HEAD + MAE + bytes.fromhex("13")), "truncated before its length"),
    ],
)
def test_malformed_icmp(data: bytes, match: str) -> None:
    _raises(data, match, icmp=True)


def test_unknown_non_skippable_icmp_extension() -> None:
    with pytest.raises(UnknownExtension) as info:
        decode_icmp(_icmp(ADV_HEAD + MAE + bytes.fromhex("11 00")))
    assert info.value.ext_type == 17
    assert isinstance(info.value.message, AgentAdvertisement)


def test_checksum_can_be_ignored() -> None:
    assert decode_icmp(bytes.fromhex("0a00000000000000"), verify_checksum=False)


def test_decode_rejects_non_bytes_with_the_documented_exception() -> None:
    with pytest.raises(MalformedMessage):
        decode(None)  # type: ignore[arg-type]
    with pytest.raises(MalformedMessage):
        decode_udp(12)  # type: ignore[arg-type]
    assert decode(bytearray(RRQ_FIXED)) == decode(RRQ_FIXED)
    assert decode(memoryview(RRQ_FIXED)) == decode(RRQ_FIXED)


# --- encoding errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "msg",
    [
        RegistrationRequest("10.1.0.7", "10.1.0.1", "10.2.0.1", 1, 70000),
        RegistrationRequest("10.1.0.7", "10.1.0.1", "10.2.0.1", 2**64, 1),
        RegistrationRequest("10.1.0", "10.1.0.1", "10.2.0.1", 1, 1),
        RegistrationRequest("10.1.0.7", "10.1.0.1", "10.2.0.1", 1, 1, 0, [NaiExtension("")]),
        RegistrationRequest("10.1.0.7", "10.1.0.1", "1.1.1.1", 1, 1, 0, [AuthExtension(32, 300)]),
        RegistrationReply(256, 0, "10.1.0.7", "10.1.0.1", 1),
        AgentAdvertisement(30, [("10.0.0.1", 0)], prefix_lengths=[24, 24]),
    ],
)
def test_encode_rejects_values_that_do_not_fit(msg) -> None:
    with pytest.raises(ValueError):
        encode(msg)
