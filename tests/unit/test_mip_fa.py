"""Foreign agent: advertisements, relaying both ways, visitor list, every FA denial code."""

from __future__ import annotations

import itertools
import random

import pytest

from agents.mip.actions import CancelTimer, Event, Route, Send, SetTimer, TunnelDown, TunnelUp
from agents.mip.advert import Advertiser, AdvertisingInterface
from agents.mip.auth import SecurityAssociation, append_auth
from agents.mip.codec import decode, encode
from agents.mip.constants import AdvFlag
from agents.mip.extensions import (
    AuthExtension,
    ChallengeExtension,
    EncapDeliveryStyle,
)
from agents.mip.fa import FaConfig, FaInterface, ForeignAgent
from agents.mip.icmp import AgentAdvertisement, AgentSolicitation, encode_icmp
from agents.mip.messages import RegistrationReply, RegistrationRequest, decode_udp

HA = "10.1.0.1"
HOME = "10.1.0.7"
COA = "10.2.0.1"
MN_SA = SecurityAssociation(1000, b"mn-ha")
MNFA_SA = SecurityAssociation(2000, b"mn-fa")
FAHA_SA = SecurityAssociation(3000, b"fa-ha")


def make_fa(**kw) -> ForeignAgent:
    challenges = (bytes([i]) * 8 for i in itertools.count(1))
    cfg = FaConfig(COA, [FaInterface("eth1", COA, 24)], **kw)
    return ForeignAgent(cfg, challenge_source=lambda: next(challenges))


_ids = itertools.count(0x1000)


def rrq(
    lifetime: int = 600,
    flags: int = 0,
    coa: str = COA,
    fa_tail: bytes = b"",
    mnfa: SecurityAssociation | None = None,
    ident: int | None = None,
) -> bytes:
    ident = ident if ident is not None else (0xE8000000 << 32) | next(_ids)
    data = append_auth(
        encode(RegistrationRequest(HOME, HA, coa, ident, lifetime, flags)), 32, MN_SA
    )
    data += fa_tail
    if mnfa is not None:
        data = append_auth(data, 33, mnfa)
    return data


def hrep(req: bytes, code: int = 0, lifetime: int | None = None, faha=None, ident=None) -> bytes:
    r = decode_udp(req)
    body = encode(
        RegistrationReply(
            code,
            r.lifetime if lifetime is None else lifetime,
            HOME,
            HA,
            r.identification if ident is None else ident,
        )
    )
    data = append_auth(body, 32, MN_SA)
    return append_auth(data, 34, faha) if faha else data


def sends(out) -> list[Send]:
    return [a for a in out if isinstance(a, Send)]


def denial(out) -> RegistrationReply:
    (s,) = sends(out)
    assert (s.dst, s.iface, s.src) == (HOME, "eth1", COA)
    rep = decode_udp(s.payload)
    assert isinstance(rep, RegistrationReply)
    return rep


def relay(fa: ForeignAgent, req: bytes, now: float = 0.0) -> list:
    return fa.handle_datagram(req, HOME, 434, now, "eth1")


# --- advertisements -----------------------------------------------------------------------


def test_advertisements() -> None:
    fa = make_fa(adv_interval=2.0, reverse_tunneling=True, registration_lifetime=900)
    out = fa.start(0.0)
    (s,) = sends(out)
    adv = decode(s.payload)
    assert isinstance(adv, AgentAdvertisement) and adv.agent is not None
    assert (s.dst, s.kind, s.ttl, s.iface, s.src) == ("224.0.0.1", "icmp", 1, "eth1", COA)
    assert adv.agent.flags == AdvFlag.F | AdvFlag.T
    assert adv.agent.care_of_addresses == [COA] and adv.agent.registration_lifetime == 900
    assert adv.routers == [(COA, 0)] and adv.prefix_lengths == [24]
    assert adv.lifetime == 6  # three intervals
    assert SetTimer("fa.advertise.eth1", 2.0) in out
    out = fa.handle_timer("fa.advertise.eth1", 2.0)
    assert decode(sends(out)[0].payload).agent.sequence == 1
    assert SetTimer("fa.advertise.eth1", 4.0) in out


def test_flags_from_config() -> None:
    cfg = FaConfig(COA, [], registration_required=True, busy=True, udp_tunnelling=True)
    assert cfg.flags() == AdvFlag.R | AdvFlag.B | AdvFlag.F | AdvFlag.T | AdvFlag.U


def test_solicitation_is_answered_with_rate_limit() -> None:
    fa = make_fa(min_solicited_interval=1.0)
    fa.start(0.0)  # a periodic advertisement now: it does not hold back answers
    sol = encode_icmp(AgentSolicitation())
    assert sends(fa.handle_icmp(sol, HOME, 0.5, "eth1"))
    out = fa.handle_icmp(sol, HOME, 0.7, "eth1")  # too soon after that answer
    assert out == [SetTimer("fa.solicited.eth1", 1.5)]
    assert fa.handle_icmp(sol, HOME, 0.8, "eth1") == []  # already scheduled
    assert sends(fa.handle_timer("fa.solicited.eth1", 1.5))
    assert fa.handle_icmp(sol, HOME, 2.0, "eth1") == [SetTimer("fa.solicited.eth1", 2.5)]
    assert sends(fa.handle_icmp(sol, HOME, 3.5, "eth1"))


def test_sequence_wraps_to_256() -> None:
    adv = Advertiser(
        [AdvertisingInterface("e", COA, 24)], flags=0, registration_lifetime=1, interval=1
    )
    adv._state["e"].sequence = 0xFFFF
    assert adv.build("e").agent.sequence == 0xFFFF
    assert adv.build("e").agent.sequence == 256


# --- relaying -----------------------------------------------------------------------------


def test_relay_request_and_reply() -> None:
    fa = make_fa(mn_sas={HOME: MNFA_SA}, ha_sas={HA: FAHA_SA}, pending_timeout=5.0)
    req = rrq(flags=0x02, fa_tail=EncapDeliveryStyle().encode(), mnfa=MNFA_SA)
    out = relay(fa, req, 1.0)
    (s,) = sends(out)
    assert (s.dst, s.dst_port, s.src, s.src_port) == (HA, 434, COA, 434)
    mnha_end = 24 + 22
    # Unchanged through the MN-HA extension; FA-only extensions cut; FA-HA appended.
    assert s.payload[:mnha_end] == req[:mnha_end]
    assert s.payload == append_auth(req[:mnha_end], 34, FAHA_SA)
    timer = next(a for a in out if isinstance(a, SetTimer))
    assert timer.at == 6.0

    out = fa.handle_datagram(hrep(req, faha=FAHA_SA), HA, 434, 1.1, "eth9")
    assert CancelTimer(timer.name) in out
    s = next(a for a in out if isinstance(a, Send))
    assert (s.dst, s.dst_port, s.iface, s.src) == (HOME, 434, "eth1", COA)
    rep = decode_udp(s.payload)
    assert [e.type for e in rep.extensions] == [32, 33]  # FA-HA cut, MN-FA added
    assert MNFA_SA.verify(
        s.payload[: rep.extensions[1].offset + 6], rep.extensions[1].authenticator
    )
    assert Route(f"{HOME}/32", None, "eth1", True) in out
    tun = next(a for a in out if isinstance(a, TunnelUp))
    assert (tun.role, tun.peer, tun.local, tun.reverse) == ("fa", HA, COA, True)
    v = fa.visitors[HOME]
    assert (v.expires, v.lifetime) == (601.1, 600)


def test_reply_matched_on_low_32_bits() -> None:
    """A 133 from the HA changes the high bits; the FA must still relay it."""
    fa = make_fa()
    req = rrq()
    relay(fa, req)
    ident = decode_udp(req).identification
    out = fa.handle_datagram(hrep(req, 133, 0, ident=ident ^ (0x1234 << 32)), HA, 434, 0.1)
    assert decode_udp(sends(out)[0].payload).code == 133
    assert fa.visitors == {}


def test_unmatched_reply_dropped() -> None:
    fa = make_fa()
    out = fa.handle_datagram(hrep(rrq()), HA, 434, 0.0)
    assert [a.name for a in out if isinstance(a, Event)] == ["message_dropped"]


def test_visitor_expiry_and_deregistration() -> None:
    fa = make_fa()
    req = rrq(lifetime=100)
    relay(fa, req)
    fa.handle_datagram(hrep(req), HA, 434, 0.0)
    assert fa.handle_timer(f"fa.visitor.{HOME}", 50.0) == []
    out = fa.handle_timer(f"fa.visitor.{HOME}", 100.0)
    assert fa.visitors == {}
    assert TunnelDown(HOME, COA, HA, "fa") in out
    assert Route(f"{HOME}/32", None, "eth1", False) in out
    # Registration then deregistration through the FA.
    req = rrq()
    relay(fa, req)
    fa.handle_datagram(hrep(req), HA, 434, 200.0)
    dereg = rrq(lifetime=0)
    relay(fa, dereg, 201.0)
    out = fa.handle_datagram(hrep(dereg), HA, 434, 201.0)
    assert fa.visitors == {}
    assert any(isinstance(a, Event) and a.name == "visitor_removed" for a in out)


def test_colocated_via_fa_is_relayed_without_visitor() -> None:
    fa = make_fa(registration_required=True)
    req = rrq(flags=0x20, coa="10.2.0.77")
    assert sends(relay(fa, req))[0].dst == HA
    fa.handle_datagram(hrep(req), HA, 434, 0.0)
    assert fa.visitors == {}


# --- denials ------------------------------------------------------------------------------


def test_67_mn_fa_authentication() -> None:
    fa = make_fa(mn_sas={HOME: MNFA_SA})
    rep = denial(relay(fa, rrq()))
    assert rep.code == 67
    ext = rep.find(33)  # our denial is MN-FA authenticated
    assert isinstance(ext, AuthExtension)
    assert denial(relay(fa, rrq(mnfa=SecurityAssociation(2000, b"bad")))).code == 67
    assert sends(relay(fa, rrq(mnfa=MNFA_SA)))[0].dst == HA
    assert denial(relay(make_fa(require_mn_auth=True), rrq())).code == 67


def test_69_lifetime_too_long_tells_maximum() -> None:
    rep = denial(relay(make_fa(registration_lifetime=300), rrq(lifetime=600)))
    assert (rep.code, rep.lifetime) == (69, 300)


def test_70_unknown_extension() -> None:
    req = rrq() + b"\x63\x00"
    assert denial(relay(make_fa(), req)).code == 70


@pytest.mark.parametrize(
    ("kw", "req", "code"),
    [
        ({}, rrq(flags=0x10), 72),
        ({}, rrq(flags=0x08), 72),
        ({}, rrq(coa="10.9.9.9"), 77),
        ({"reverse_tunneling": False}, rrq(flags=0x02), 74),
        ({"reverse_tunnel_required": True}, rrq(flags=0x00), 75),
        ({}, rrq(fa_tail=EncapDeliveryStyle().encode()), 79),
        (
            {"encapsulating_delivery": False},
            rrq(flags=0x02, fa_tail=EncapDeliveryStyle().encode()),
            79,
        ),
    ],
)
def test_validity_codes(kw, req: bytes, code: int) -> None:
    rep = denial(relay(make_fa(**kw), req))
    assert rep.code == code
    assert rep.identification == decode_udp(req).identification
    assert rep.find(32) is None  # an FA cannot sign with the MN-HA key


def test_66_too_many_visitors() -> None:
    fa = make_fa(max_visitors=0)
    assert denial(relay(fa, rrq())).code == 66


def test_challenges() -> None:
    fa = make_fa(challenge=True, challenge_window=2)
    advs = [decode(sends(fa.handle_timer("fa.advertise.eth1", t))[0].payload) for t in (1, 2, 3)]
    chs = [a.challenge for a in advs]
    assert len(set(chs)) == 3
    assert denial(relay(fa, rrq())).code == 105
    assert denial(relay(fa, rrq(fa_tail=ChallengeExtension(b"\x99" * 8).encode()))).code == 104
    assert denial(relay(fa, rrq(fa_tail=ChallengeExtension(chs[0]).encode()))).code == 106
    assert sends(relay(fa, rrq(fa_tail=ChallengeExtension(chs[2]).encode())))[0].dst == HA


def test_68_bad_fa_ha_on_reply_and_71_poorly_formed_reply() -> None:
    fa = make_fa(ha_sas={HA: FAHA_SA})
    req = rrq()
    relay(fa, req)
    out = fa.handle_datagram(hrep(req), HA, 434, 0.1)  # no FA-HA extension
    assert denial(out).code == 68
    req = rrq()
    relay(fa, req)
    bad = hrep(req, faha=FAHA_SA) + b"\x63\x00"  # unknown non-skippable after everything
    assert denial(fa.handle_datagram(bad, HA, 434, 0.1)).code == 71


def test_78_registration_timeout() -> None:
    fa = make_fa(pending_timeout=3.0)
    out = relay(fa, rrq())
    name = next(a for a in out if isinstance(a, SetTimer)).name
    rep = denial(fa.handle_timer(name, 3.0))
    assert rep.code == 78
    assert fa.handle_timer(name, 3.0) == []


def test_request_on_foreign_interface_dropped() -> None:
    out = make_fa().handle_datagram(rrq(), HOME, 434, 0.0, "eth9")
    assert [a.name for a in out if isinstance(a, Event)] == ["message_dropped"]


def test_garbage_never_raises() -> None:
    fa = make_fa(mn_sas={HOME: MNFA_SA}, ha_sas={HA: FAHA_SA}, challenge=True)
    fa.start(0)
    rnd = random.Random(7)
    seeds = [rrq(), hrep(rrq()), encode_icmp(AgentSolicitation())]
    for i in range(3000):
        data = bytearray(rnd.choice(seeds) if i % 2 else rnd.randbytes(rnd.randrange(40)))
        for _ in range(rnd.randrange(3)):
            if data:
                data[rnd.randrange(len(data))] = rnd.randrange(256)
        fa.handle_datagram(bytes(data), HOME, 434, float(i), "eth1")
        fa.handle_icmp(bytes(data), HOME, float(i), "eth1")
    assert fa.counters["dropped"] > 0


def test_superseded_request_times_out_silently() -> None:
    fa = make_fa(pending_timeout=3.0)
    t1 = next(a for a in relay(fa, rrq(), 0.0) if isinstance(a, SetTimer)).name
    relay(fa, rrq(), 1.0)  # retransmission: new Identification
    out = fa.handle_timer(t1, 3.0)
    assert not sends(out) and [a.name for a in out if isinstance(a, Event)] == [
        "request_superseded"
    ]
