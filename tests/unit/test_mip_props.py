"""Property tests: every message type round-trips; the decoders raise only MalformedMessage."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.mip.auth import SecurityAssociation
from agents.mip.codec import decode, encode
from agents.mip.errors import MalformedMessage
from agents.mip.extensions import (
    AuthExtension,
    ChallengeExtension,
    EncapDeliveryStyle,
    NaiExtension,
    RawExtension,
    UdpTunnelReply,
    UdpTunnelRequest,
)
from agents.mip.icmp import AgentAdvertisement, AgentSolicitation, MobilityAgentExtension
from agents.mip.jsonview import from_dict, to_dict
from agents.mip.messages import RegistrationReply, RegistrationRequest, TunnelData

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

addr = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
u8, u16, u32, u64 = (st.integers(0, 2**b - 1) for b in (8, 16, 32, 64))
blob = st.binary(max_size=40)

reg_ext = st.one_of(
    st.builds(
        AuthExtension, st.sampled_from([32, 33, 34]), u32, st.binary(min_size=0, max_size=32)
    ),
    st.builds(
        NaiExtension, st.text(min_size=1, max_size=60).filter(lambda s: len(s.encode()) <= 255)
    ),
    st.builds(ChallengeExtension, st.binary(min_size=4, max_size=64)),
    st.just(EncapDeliveryStyle()),
    st.builds(UdpTunnelRequest, u8, st.booleans(), st.booleans(), u8),
    st.builds(UdpTunnelReply, u8, u16, st.booleans(), u8),
    st.builds(
        RawExtension, st.integers(128, 255).filter(lambda t: t not in (130, 131, 132, 144)), blob
    ),
)
request = st.builds(
    RegistrationRequest, addr, addr, addr, u64, u16, u8, st.lists(reg_ext, max_size=6)
)
reply = st.builds(RegistrationReply, u8, u16, addr, addr, u64, st.lists(reg_ext, max_size=6))
tunnel = st.builds(TunnelData, u8, st.binary(min_size=1, max_size=80))
advert = st.builds(
    AgentAdvertisement,
    u16,
    st.shared(
        st.lists(st.tuples(addr, st.integers(-(2**31), 2**31 - 1)), max_size=4), key="routers"
    ),
    st.one_of(
        st.none(), st.builds(MobilityAgentExtension, u16, u16, u16, st.lists(addr, max_size=4))
    ),
    st.one_of(
        st.none(),
        st.shared(st.lists(st.tuples(addr, st.integers()), max_size=4), key="routers").flatmap(
            lambda rs: st.lists(st.integers(0, 32), min_size=len(rs), max_size=len(rs))
        ),
    ),
    st.one_of(st.none(), st.binary(min_size=4, max_size=32)),
    st.lists(st.builds(RawExtension, st.integers(128, 255), blob), max_size=3),
    st.sampled_from([0, 16]),
    st.integers(0, 3),
)
any_message = st.one_of(request, reply, tunnel, advert, st.just(AgentSolicitation()))


@SETTINGS
@given(any_message)
def test_round_trip(msg) -> None:
    wire = encode(msg)
    assert decode(wire) == msg
    assert encode(decode(wire)) == wire


@SETTINGS
@given(any_message)
def test_json_round_trip(msg) -> None:
    assert from_dict(to_dict(msg)) == msg


@SETTINGS
@given(
    st.builds(RegistrationRequest, addr, addr, addr, u64, u16, u8, st.lists(reg_ext, max_size=3))
)
def test_signed_request_verifies_and_tampering_is_caught(req) -> None:
    sa = SecurityAssociation(4096, b"k" * 16)
    req.extensions = [e for e in req.extensions if not isinstance(e, AuthExtension)]
    req.extensions.append(AuthExtension(32, 4096))
    wire = encode(req, {4096: sa})
    ext = decode(wire).extensions[-1]
    assert sa.verify(wire[: ext.offset + 6], ext.authenticator)
    i = random.Random(len(wire)).randrange(ext.offset + 6)
    bad = bytearray(wire)
    bad[i] ^= 0x80
    assert not sa.verify(bytes(bad[: ext.offset + 6]), ext.authenticator)


def _only_documented(data: bytes, **kw) -> None:
    try:
        decode(data, **kw)
    except MalformedMessage as exc:
        assert exc.reason and isinstance(exc.reason, str)
        assert exc.offset is None or 0 <= exc.offset <= len(data)


@settings(max_examples=250, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_random_bytes(data: bytes) -> None:
    _only_documented(data)
    _only_documented(data, icmp=True)
    _only_documented(data, icmp=False)


@settings(max_examples=250, deadline=None)
@given(st.binary(min_size=1, max_size=80), st.sampled_from([1, 3, 4, 9, 10]))
def test_fuzz_random_bytes_with_valid_type(data: bytes, first: int) -> None:
    _only_documented(bytes([first]) + data)


@SETTINGS
@given(any_message, st.data())
def test_fuzz_mutated_messages(msg, data) -> None:
    wire = bytearray(encode(msg))
    op = data.draw(st.sampled_from(["flip", "truncate", "extend", "splice"]))
    if op == "flip" and wire:
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(wire) - 1))
            wire[i] ^= data.draw(st.integers(1, 255))
    elif op == "truncate":
        del wire[data.draw(st.integers(0, len(wire))) :]
    elif op == "extend":
        wire += data.draw(st.binary(min_size=1, max_size=8))
    else:
        i = data.draw(st.integers(0, len(wire)))
        wire[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    _only_documented(bytes(wire))


def test_every_truncation_of_valid_messages_is_malformed() -> None:
    sa = SecurityAssociation(256, b"k")
    samples = [
        encode(
            RegistrationRequest(
                "10.1.0.7",
                "10.1.0.1",
                "10.2.0.1",
                5,
                60,
                0x20,
                [NaiExtension("a@b"), UdpTunnelRequest(), AuthExtension(32, 256)],
            ),
            {256: sa},
        ),
        encode(
            RegistrationReply(
                0, 60, "10.1.0.7", "10.1.0.1", 5, [UdpTunnelReply(0, 110), AuthExtension(32, 256)]
            ),
            {256: sa},
        ),
    ]
    for wire in samples:
        for cut in range(len(wire)):
            try:
                msg = decode(wire[:cut])
            except MalformedMessage:
                continue
            # A cut exactly between extensions is a valid shorter message.
            assert encode(msg) == wire[:cut]
