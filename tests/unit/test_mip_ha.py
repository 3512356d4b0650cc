"""Home agent state machine: binding cache, every denial code, NAT/UDP tunnelling, expiry."""

from __future__ import annotations

import itertools
import random

import pytest

from agents.mip.actions import (
    CancelTimer,
    Event,
    GratuitousArp,
    ProxyArp,
    Send,
    SetTimer,
    TunnelDown,
    TunnelUp,
)
from agents.mip.advert import AdvertisingInterface
from agents.mip.auth import SecurityAssociation, append_auth
from agents.mip.codec import decode_icmp, encode
from agents.mip.constants import AdvFlag
from agents.mip.extensions import (
    AuthExtension,
    NaiExtension,
    RawExtension,
    UdpTunnelReply,
    UdpTunnelRequest,
)
from agents.mip.ha import HaConfig, HomeAgent, MobileNodeConfig
from agents.mip.icmp import AgentSolicitation, encode_icmp
from agents.mip.messages import RegistrationReply, RegistrationRequest, decode_udp
from agents.mip.replay import ntp_from_unix

WALL = 1_700_000_000.0
HA = "10.1.0.1"
HOME = "10.1.0.7"
COA = "192.0.2.7"
KEY = bytes(range(16))
SA = SecurityAssociation(1000, KEY)
FA_SA = SecurityAssociation(3000, b"fa-ha-key")


class Clock:
    def __init__(self) -> None:
        self.wall = WALL

    def __call__(self) -> float:
        return self.wall


def make_ha(clock: Clock | None = None, mns=None, **kw) -> HomeAgent:
    mns = mns if mns is not None else [MobileNodeConfig(HOME, 1000, KEY, nai="mn@lab")]
    counter = itertools.count(0x1000)
    return HomeAgent(
        HaConfig(HA, "10.1.0.0/24", mns, **kw),
        wallclock=clock or Clock(),
        rand32=lambda: next(counter),
    )


_idents = itertools.count(1)


def rrq(
    coa: str = COA,
    lifetime: int = 600,
    flags: int = 0,
    ident: int | None = None,
    before=(),
    after=b"",
    ha: str = HA,
    home: str = HOME,
    sa: SecurityAssociation | None = SA,
    wall: float = WALL,
) -> bytes:
    if ident is None:
        ident = ntp_from_unix(wall) + next(_idents)
    data = encode(RegistrationRequest(home, ha, coa, ident, lifetime, flags, list(before)))
    if sa is not None:
        data = append_auth(data, 32, sa)
    return data + after


def sends(actions) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def reply_of(actions, sa: SecurityAssociation | None = SA) -> RegistrationReply:
    (s,) = sends(actions)
    rep = decode_udp(s.payload)
    assert isinstance(rep, RegistrationReply)
    if sa is not None:
        ext = rep.find(32)
        assert isinstance(ext, AuthExtension)
        assert sa.verify(s.payload[: ext.offset + 6], ext.authenticator), "reply not signed"
    return rep


def events(actions, name: str) -> list[Event]:
    return [a for a in actions if isinstance(a, Event) and a.name == name]


# --- acceptance ---------------------------------------------------------------------------


def test_first_registration() -> None:
    ha = make_ha()
    req = rrq(lifetime=600)
    out = ha.handle_datagram(req, COA, 434, now=5.0)
    rep = reply_of(out)
    assert (rep.code, rep.lifetime, rep.home_address, rep.home_agent) == (0, 600, HOME, HA)
    assert rep.identification == decode_udp(req).identification
    (s,) = sends(out)
    assert (s.dst, s.dst_port, s.src, s.src_port) == (COA, 434, HA, 434)
    assert TunnelUp(HOME, COA, COA, HA, "ipip", None, False, None, "ha") in out
    assert ProxyArp(HOME, True, None) in out and GratuitousArp(HOME, None) in out
    assert SetTimer("ha.expire", 605.0) in out
    assert events(out, "binding_added")
    (b,) = ha.bindings()
    assert (b.care_of, b.expires, b.lifetime, b.encapsulation) == (COA, 605.0, 600, "ipip")


def test_the_ha_records_each_request_on_arrival_and_each_reply_it_sends() -> None:
    """For ladders: the request where it landed, before the tunnel work it causes, and the
    reply with the Identification that pairs it with the MN's reception."""
    ha = make_ha()
    req = rrq(lifetime=600)
    ident = decode_udp(req).identification
    out = ha.handle_datagram(req, COA, 434, now=5.0)
    names = [a.name for a in out if isinstance(a, Event)]
    assert names[0] == "registration_received"
    assert out.index(events(out, "registration_received")[0]) < out.index(
        next(a for a in out if isinstance(a, TunnelUp))
    )
    (received,) = events(out, "registration_received")
    assert (received.data["src"], received.data["identification"]) == (COA, ident)
    (sent,) = events(out, "registration_reply_sent")
    assert (sent.data["to"], sent.data["code"], sent.data["identification"]) == (COA, 0, ident)
    assert out.index(sent) == out.index(sends(out)[0]) - 1  # just before the send itself
    # a denial that is sent is recorded too; one the rate limit holds back is not
    denied = ha.handle_datagram(rrq(sa=SecurityAssociation(1000, b"wrong")), COA, 434, now=6.0)
    (sent,) = events(denied, "registration_reply_sent")
    assert sent.data["code"] == 131 and sends(denied)
    for i in range(40):
        held = ha.handle_datagram(rrq(sa=SecurityAssociation(1000, b"x")), COA, 434, now=6.0)
        if not sends(held):
            assert not events(held, "registration_reply_sent"), i
            break
    else:
        raise AssertionError("the reply rate limit never held a denial back")


def test_lifetime_is_capped() -> None:
    ha = make_ha(max_lifetime=300)
    rep = reply_of(ha.handle_datagram(rrq(lifetime=9000), COA, 434, now=0.0))
    assert (rep.code, rep.lifetime) == (0, 300)


def test_renewal_and_care_of_change() -> None:
    ha = make_ha()
    ha.handle_datagram(rrq(), COA, 434, now=0.0)
    out = ha.handle_datagram(rrq(), COA, 434, now=100.0)
    assert reply_of(out).code == 0
    assert events(out, "binding_renewed")
    assert not [a for a in out if isinstance(a, TunnelUp | ProxyArp)]
    out = ha.handle_datagram(rrq(coa="198.51.100.9"), "198.51.100.9", 434, now=200.0)
    assert TunnelDown(HOME, COA, COA, "ha") in out
    assert any(isinstance(a, TunnelUp) and a.care_of == "198.51.100.9" for a in out)
    assert not [a for a in out if isinstance(a, ProxyArp)]  # still intercepting
    assert [b.care_of for b in ha.bindings()] == ["198.51.100.9"]


def test_deregistration_all_and_one() -> None:
    ha = make_ha(simultaneous_bindings=True)
    ha.handle_datagram(rrq(flags=0x80), COA, 434, now=0.0)
    ha.handle_datagram(rrq(coa="198.51.100.9", flags=0x80), "198.51.100.9", 434, now=0.0)
    assert len(ha.bindings(HOME)) == 2
    out = ha.handle_datagram(rrq(coa=COA, lifetime=0), COA, 434, now=1.0)
    rep = reply_of(out)
    assert (rep.code, rep.lifetime) == (0, 0)
    assert [b.care_of for b in ha.bindings()] == ["198.51.100.9"]
    assert not [a for a in out if isinstance(a, ProxyArp)]
    out = ha.handle_datagram(rrq(coa=HOME, lifetime=0), HOME, 434, now=2.0)
    assert reply_of(out).code == 0
    assert ha.bindings() == []
    assert ProxyArp(HOME, False, None) in out
    assert events(out, "binding_removed")[0].data["reason"] == "deregistered"


def test_reply_to_a_mobile_node_back_home_goes_out_on_the_home_link() -> None:
    """Issue 15 (b): routed, the reply to the deregistration took the binding's tunnel (its
    route goes only after the reply) and was lost; it must leave on the home link."""
    ha = make_ha(home_iface="eth0")
    ha.handle_datagram(rrq(), COA, 434, now=0.0, iface="eth0")
    (s,) = sends(ha.handle_datagram(rrq(), COA, 434, now=1.0, iface="eth0"))
    assert s.iface is None  # a care-of address away from home: routed as before
    out = ha.handle_datagram(rrq(coa=HOME, lifetime=0), HOME, 434, now=2.0, iface="eth0")
    assert reply_of(out).code == 0 and ha.bindings() == []
    (s,) = sends(out)
    assert (s.dst, s.src, s.iface) == (HOME, HA, "eth0")
    # so are denials (here a replayed identification) to a mobile node at home
    ha.handle_datagram(rrq(), COA, 434, now=3.0, iface="eth0")
    stale = ntp_from_unix(WALL - 3600)
    out = ha.handle_datagram(
        rrq(coa=HOME, lifetime=0, ident=stale), HOME, 434, now=4.0, iface="eth0"
    )
    assert reply_of(out).code == 133 and sends(out)[0].iface == "eth0"
    # the home address coming out of a tunnel (another interface): routed
    (s,) = sends(ha.handle_datagram(rrq(coa=HOME, lifetime=0), HOME, 434, 5.0, iface="mipha0"))
    assert s.iface is None


def test_simultaneous_bindings_unsupported_gives_code_1() -> None:
    ha = make_ha()
    ha.handle_datagram(rrq(flags=0x80), COA, 434, now=0.0)
    out = ha.handle_datagram(rrq(coa="198.51.100.9", flags=0x80), "198.51.100.9", 434, now=0.0)
    assert reply_of(out).code == 1
    assert [b.care_of for b in ha.bindings()] == ["198.51.100.9"]


def test_too_many_simultaneous_bindings() -> None:
    ha = make_ha(simultaneous_bindings=True, max_bindings=2)
    for i in range(2):
        c = f"198.51.100.{i}"
        assert reply_of(ha.handle_datagram(rrq(coa=c, flags=0x80), c, 434, now=0.0)).code == 0
    out = ha.handle_datagram(rrq(coa="198.51.100.5", flags=0x80), "198.51.100.5", 434, now=0.0)
    assert reply_of(out).code == 135


def test_cache_full() -> None:
    mns = [MobileNodeConfig(f"10.1.0.{i}", 1000 + i, KEY) for i in (7, 8)]
    ha = make_ha(mns=mns, max_cache=1)
    sa7 = SecurityAssociation(1007, KEY)
    assert reply_of(ha.handle_datagram(rrq(sa=sa7), COA, 434, now=0.0), sa7).code == 0
    sa8 = SecurityAssociation(1008, KEY)
    out = ha.handle_datagram(rrq(home="10.1.0.8", sa=sa8), COA, 434, now=0.0)
    assert reply_of(out, sa8).code == 130


def test_home_address_from_nai() -> None:
    ha = make_ha()
    out = ha.handle_datagram(rrq(home="0.0.0.0", before=[NaiExtension("mn@lab")]), COA, 434, 0.0)
    rep = reply_of(out)
    assert (rep.code, rep.home_address) == (0, HOME)


# --- denials ------------------------------------------------------------------------------


def test_131_unknown_node_is_answered_unsigned() -> None:
    ha = make_ha()
    out = ha.handle_datagram(rrq(home="10.1.0.99"), COA, 434, now=0.0)
    rep = reply_of(out, sa=None)
    assert rep.code == 131 and rep.find(32) is None


@pytest.mark.parametrize(
    "req",
    [
        rrq(sa=None),  # no MN-HA extension
        rrq(sa=SecurityAssociation(1001, KEY)),  # unknown SPI
        rrq(sa=SecurityAssociation(1000, b"wrong key")),  # bad authenticator
    ],
)
def test_131_authentication(req: bytes) -> None:
    ha = make_ha()
    out = ha.handle_datagram(req, COA, 434, now=0.0)
    rep = reply_of(out, sa=None)
    # never signed with the MN's key: the request did not prove it came from the MN, and its
    # Identification would be signed for whoever sent it (issue 20: a signing oracle)
    assert rep.code == 131 and rep.find(32) is None
    assert ha.bindings() == []
    assert events(out, "registration_denied")[0].data["code"] == 131


def test_tampered_request_fails_authentication() -> None:
    req = bytearray(rrq())
    req[12] ^= 1  # care-of address changed in flight
    out = make_ha().handle_datagram(bytes(req), COA, 434, now=0.0)
    rep = reply_of(out, sa=None)
    assert rep.code == 131 and rep.find(32) is None


def test_132_fa_ha_authentication() -> None:
    fa = "10.2.0.1"
    ha = make_ha(fa_sas={fa: FA_SA})
    out = ha.handle_datagram(rrq(coa=fa), fa, 434, now=0.0)
    assert reply_of(out).code == 132
    good = append_auth(rrq(coa=fa), 34, FA_SA)
    out = ha.handle_datagram(good, fa, 434, now=0.0)
    rep = reply_of(out)
    assert rep.code == 0
    (s,) = sends(out)
    faha = rep.find(34)
    assert isinstance(faha, AuthExtension)
    assert FA_SA.verify(s.payload[: faha.offset + 6], faha.authenticator)
    bad = append_auth(rrq(coa=fa), 34, SecurityAssociation(3000, b"other"))
    assert reply_of(ha.handle_datagram(bad, fa, 434, now=0.0)).code == 132
    # require_fa_auth: an FA we share no SA with cannot get a binding.
    ha2 = make_ha(require_fa_auth=True)
    assert reply_of(ha2.handle_datagram(rrq(coa=fa), fa, 434, now=0.0)).code == 132


def test_133_outside_window_carries_ha_time() -> None:
    clock = Clock()
    ha = make_ha(clock, replay_window=7)
    req = rrq(wall=WALL - 100)
    rep = reply_of(ha.handle_datagram(req, COA, 434, now=0.0))
    sent = decode_udp(req).identification
    assert rep.code == 133
    assert rep.identification >> 32 == ntp_from_unix(WALL) >> 32
    assert rep.identification & 0xFFFFFFFF == sent & 0xFFFFFFFF


def test_133_replayed_request() -> None:
    ha = make_ha()
    req = rrq()
    assert reply_of(ha.handle_datagram(req, COA, 434, now=0.0)).code == 0
    assert reply_of(ha.handle_datagram(req, COA, 434, now=1.0)).code == 133
    assert len(ha.bindings()) == 1


def test_nonce_replay_protection() -> None:
    ha = make_ha(mns=[MobileNodeConfig(HOME, 1000, KEY, replay="nonce")])
    rep = reply_of(ha.handle_datagram(rrq(ident=0x00000000_AAAA0001), COA, 434, 0.0))
    assert rep.code == 133 and rep.identification & 0xFFFFFFFF == 0xAAAA0001
    nonce = rep.identification >> 32
    rep = reply_of(ha.handle_datagram(rrq(ident=(nonce << 32) | 0xAAAA0002), COA, 434, 0.0))
    assert rep.code == 0 and rep.identification & 0xFFFFFFFF == 0xAAAA0002
    assert rep.identification >> 32 != nonce  # a fresh nonce for next time


def test_136_unknown_home_agent_address_tells_ours() -> None:
    ha = make_ha()
    rep = reply_of(ha.handle_datagram(rrq(ha="10.1.0.255"), COA, 434, now=0.0))
    assert (rep.code, rep.home_agent) == (136, HA)


def test_134_poorly_formed() -> None:
    ha = make_ha()
    # Unknown non-skippable extension (type 99): the fixed part still gets an answer.
    req = encode(RegistrationRequest(HOME, HA, COA, 5, 60)) + b"\x63\x00"
    rep = reply_of(ha.handle_datagram(append_auth(req, 32, SA), COA, 434, 0.0), sa=None)
    assert rep.code == 134 and rep.find(32) is None  # the authenticator could not be checked
    # after a valid MN-HA extension (what follows it is not covered): authenticated
    req = append_auth(encode(RegistrationRequest(HOME, HA, COA, 6, 60)), 32, SA) + b"\x63\x00"
    assert reply_of(ha.handle_datagram(req, COA, 434, 0.0)).code == 134
    # A non-zero lifetime with the home address as care-of address (RFC 5944 3.6.1.2).
    assert reply_of(ha.handle_datagram(rrq(coa=HOME), HOME, 434, 0.0)).code == 134


def test_reverse_tunnel_codes() -> None:
    assert (
        reply_of(make_ha(reverse_tunneling=False).handle_datagram(rrq(flags=2), COA, 434, 0)).code
        == 137
    )
    ha = make_ha(reverse_tunnel_required=True)
    assert reply_of(ha.handle_datagram(rrq(flags=0), COA, 434, 0)).code == 138
    out = ha.handle_datagram(rrq(flags=2), COA, 434, 0)
    assert reply_of(out).code == 0
    assert next(a for a in out if isinstance(a, TunnelUp)).reverse
    # Deregistration needs no T bit.
    assert reply_of(ha.handle_datagram(rrq(lifetime=0), COA, 434, 1)).code == 0


@pytest.mark.parametrize("flags", [0x10, 0x08])
def test_139_minimal_or_gre(flags: int) -> None:
    assert reply_of(make_ha().handle_datagram(rrq(flags=flags), COA, 434, 0)).code == 139


# --- NAT traversal (RFC 3519) -------------------------------------------------------------


def test_nat_detected_gives_udp_tunnel() -> None:
    ha = make_ha(keepalive_interval=25)
    req = rrq(coa="192.168.1.10", flags=0x20, before=[UdpTunnelRequest()])
    out = ha.handle_datagram(req, "203.0.113.5", 40001, now=0.0)
    rep = reply_of(out)
    assert rep.code == 0
    assert rep.authenticated_extensions() == [UdpTunnelReply(0, 25, forced=False)]
    (s,) = sends(out)
    assert (s.dst, s.dst_port) == ("203.0.113.5", 40001)
    tun = next(a for a in out if isinstance(a, TunnelUp))
    assert (tun.care_of, tun.peer, tun.peer_port, tun.encapsulation, tun.keepalive) == (
        "192.168.1.10",
        "203.0.113.5",
        40001,
        "udp",
        25,
    )
    assert events(out, "nat_detected")[0].data["src"] == "203.0.113.5"
    # The NAT mapping changes (new port): the binding follows.
    out = ha.handle_datagram(
        rrq(coa="192.168.1.10", flags=0x20, before=[UdpTunnelRequest()]), "203.0.113.5", 40002, 1
    )
    assert events(out, "binding_updated")
    assert ha.bindings()[0].peer_port == 40002


def test_nat_without_udp_support_is_142() -> None:
    ha = make_ha(udp_tunnelling=False)
    req = rrq(coa="192.168.1.10", flags=0x20, before=[UdpTunnelRequest()])
    assert reply_of(ha.handle_datagram(req, "203.0.113.5", 40001, 0.0)).code == 142


def test_forced_udp_without_nat() -> None:
    req = rrq(flags=0x20, before=[UdpTunnelRequest(force=True)])
    rep = reply_of(make_ha().handle_datagram(req, COA, 434, 0.0))
    assert rep.code == 0 and rep.find(44) == UdpTunnelReply(0, 110, forced=True)
    req = rrq(flags=0x20, before=[UdpTunnelRequest(force=True)])
    assert reply_of(make_ha(allow_forced_udp=False).handle_datagram(req, COA, 434, 0)).code == 142


def test_udp_request_without_nat_stays_ipip() -> None:
    out = make_ha().handle_datagram(rrq(flags=0x20, before=[UdpTunnelRequest()]), COA, 434, 0)
    rep = reply_of(out)
    assert rep.code == 0 and rep.find(44) is None
    assert next(a for a in out if isinstance(a, TunnelUp)).encapsulation == "ipip"


def test_gre_inside_udp_is_142() -> None:
    req = rrq(coa="192.168.1.10", before=[UdpTunnelRequest(encapsulation=47)])
    assert reply_of(make_ha().handle_datagram(req, "203.0.113.5", 1, 0)).code == 142


def test_extensions_after_mn_ha_are_not_trusted() -> None:
    # A UDP tunnel request appended after the authenticator (e.g. by an attacker) is ignored.
    req = rrq(coa="192.168.1.10", after=UdpTunnelRequest().encode())
    out = make_ha().handle_datagram(req, "203.0.113.5", 40001, 0.0)
    assert reply_of(out).find(44) is None
    assert next(a for a in out if isinstance(a, TunnelUp)).encapsulation == "ipip"
    assert events(out, "nat_detected")[0].data["udp_requested"] is False


# --- expiry -------------------------------------------------------------------------------


def test_binding_expiry_and_lazy_heap() -> None:
    ha = make_ha()
    ha.handle_datagram(rrq(lifetime=100), COA, 434, now=0.0)
    ha.handle_datagram(rrq(lifetime=100), COA, 434, now=50.0)  # renewed: expires at 150
    out = ha.handle_timer("ha.expire", 100.0)
    assert ha.bindings() and SetTimer("ha.expire", 150.0) in out
    out = ha.handle_timer("ha.expire", 150.0)
    assert ha.bindings() == []
    assert TunnelDown(HOME, COA, COA, "ha") in out
    assert ProxyArp(HOME, False, None) in out
    assert events(out, "binding_expired")
    assert CancelTimer("ha.expire") in out
    assert ha.counters["expired"] == 1


def test_infinite_lifetime_never_expires() -> None:
    ha = make_ha(max_lifetime=0xFFFF)
    out = ha.handle_datagram(rrq(lifetime=0xFFFF), COA, 434, now=0.0)
    assert reply_of(out).lifetime == 0xFFFF
    assert not [a for a in out if isinstance(a, SetTimer)]


def test_clear() -> None:
    ha = make_ha()
    ha.handle_datagram(rrq(), COA, 434, 0)
    out = ha.clear(1)
    assert ha.bindings() == [] and ProxyArp(HOME, False, None) in out


# --- robustness ---------------------------------------------------------------------------


def test_garbage_never_raises() -> None:
    ha = make_ha()
    rnd = random.Random(4)
    valid = rrq(before=[UdpTunnelRequest(), RawExtension(200, b"x")])
    for i in range(3000):
        data = bytearray(valid if i % 2 else rnd.randbytes(rnd.randrange(40)))
        for _ in range(rnd.randrange(4)):
            if data:
                data[rnd.randrange(len(data))] = rnd.randrange(256)
        if i % 3 == 0:
            del data[rnd.randrange(len(data) + 1) :]
        out = ha.handle_datagram(bytes(data), COA, 434, now=float(i))
        assert isinstance(out, list)
    assert ha.counters["dropped"] > 0


def test_non_request_messages() -> None:
    ha = make_ha()
    out = ha.handle_datagram(b"\x04\x04\x00\x00E", COA, 434, 0)
    assert out == [] and ha.counters["tunnel_data"] == 1
    out = ha.handle_datagram(encode(RegistrationReply(0, 0, HOME, HA, 1)), COA, 434, 0)
    assert events(out, "message_dropped")


def test_home_agent_advertises_with_h_bit() -> None:
    ha = make_ha(advertise_on=[AdvertisingInterface("eth0", HA, 24)], adv_interval=2.0)
    out = ha.start(0.0)
    (s,) = sends(out)
    adv = decode_icmp(s.payload)
    assert adv.agent is not None and adv.agent.flags & AdvFlag.H
    assert (s.kind, s.ttl, s.iface) == ("icmp", 1, "eth0")
    assert SetTimer("ha.advertise.eth0", 2.0) in out
    assert sends(ha.handle_icmp(encode_icmp(AgentSolicitation()), "0.0.0.0", 1.5, "eth0"))


def test_129_administratively_prohibited() -> None:
    ha = make_ha(mns=[MobileNodeConfig(HOME, 1000, KEY, allowed=False)])
    assert reply_of(ha.handle_datagram(rrq(), COA, 434, 0.0)).code == 129
    assert ha.bindings() == []


def test_config_checks_home_addresses_and_odd_care_of() -> None:
    with pytest.raises(ValueError, match=r"not in 10\.1\.0\.0/24"):
        make_ha(mns=[MobileNodeConfig("10.9.0.7", 1000, KEY)])
    ha = make_ha()
    assert reply_of(ha.handle_datagram(rrq(coa="0.0.0.0"), COA, 434, 0.0)).code == 134
