"""Mobile node state machine, driven by hand with a fake clock."""

from __future__ import annotations

import itertools
import random

import pytest

from agents.mip.actions import (
    CancelTimer,
    Event,
    GratuitousArp,
    Route,
    Send,
    SetTimer,
    TunnelDown,
    TunnelUp,
)
from agents.mip.auth import SecurityAssociation, append_auth
from agents.mip.codec import decode, encode
from agents.mip.constants import AdvFlag
from agents.mip.extensions import (
    AuthExtension,
    ChallengeExtension,
    EncapDeliveryStyle,
    UdpTunnelReply,
    UdpTunnelRequest,
)
from agents.mip.icmp import AgentAdvertisement, AgentSolicitation, MobilityAgentExtension
from agents.mip.ipv4 import parse_ipv4
from agents.mip.messages import RegistrationReply, RegistrationRequest, TunnelData, decode_udp
from agents.mip.mn import Attachment, MnConfig, MobileNode
from agents.mip.replay import ntp_from_unix

WALL = 1_700_000_000.0
HA = "10.1.0.1"
HOME = "10.1.0.7"
FA1, FA2 = "10.2.0.1", "10.3.0.1"
KEY = bytes(range(16))
SA = SecurityAssociation(1000, KEY)


class Clock:
    def __init__(self) -> None:
        self.wall = WALL

    def __call__(self) -> float:
        return self.wall


def make_mn(clock: Clock | None = None, **kw) -> MobileNode:
    defaults = dict(retransmit_initial=0.5, retransmit_max=4.0, solicit_interval=0.2)
    defaults.update(kw)
    cfg = MnConfig(HOME, HA, "10.1.0.0/24", 1000, KEY, **defaults)
    counter = itertools.count(1)
    mn = MobileNode(cfg, wallclock=clock or Clock(), rand32=lambda: next(counter))
    mn.start(0.0)
    mn.link_up("wlan0", 0.0)
    return mn


def adv(
    addr: str = FA1,
    flags: int = AdvFlag.F | AdvFlag.T,
    seq: int = 300,
    lifetime: int = 3,
    reg_life: int = 1800,
    prefix: int = 24,
    coas: list[str] | None = None,
    challenge: bytes | None = None,
) -> bytes:
    return encode(
        AgentAdvertisement(
            lifetime,
            [(addr, 0)],
            MobilityAgentExtension(seq, reg_life, int(flags), [addr] if coas is None else coas),
            [prefix],
            challenge,
        )
    )


def sends(out, kind: str = "udp") -> list[Send]:
    return [a for a in out if isinstance(a, Send) and a.kind == kind]


def names(out) -> list[str]:
    return [a.name for a in out if isinstance(a, Event)]


def request_of(out) -> tuple[Send, RegistrationRequest]:
    (s,) = sends(out)
    req = decode_udp(s.payload)
    assert isinstance(req, RegistrationRequest)
    ext = req.find(32)
    assert isinstance(ext, AuthExtension) and SA.verify(
        s.payload[: ext.offset + 6], ext.authenticator
    )
    return s, req


def reply(
    req: RegistrationRequest, code: int = 0, lifetime: int | None = None, exts=(), sa=SA, ident=None
) -> bytes:
    body = encode(
        RegistrationReply(
            code,
            req.lifetime if lifetime is None else lifetime,
            HOME,
            HA,
            req.identification if ident is None else ident,
            list(exts),
        )
    )
    return append_auth(body, 32, sa) if sa is not None else body


def register_via_fa(mn: MobileNode, now: float = 0.1) -> tuple[Send, RegistrationRequest]:
    out = mn.handle_icmp(adv(), FA1, now, "wlan0")
    return request_of(out)


# --- discovery ----------------------------------------------------------------------------


def test_start_solicits_and_backs_off() -> None:
    cfg = MnConfig(
        HOME,
        HA,
        "10.1.0.0/24",
        1000,
        KEY,
        solicit_interval=1.0,
        solicit_burst=3,
        solicit_max_interval=6.0,
    )
    mn = MobileNode(cfg, wallclock=Clock())
    out = mn.start(0.0)
    (s,) = sends(out, "icmp")
    assert (s.dst, s.ttl) == ("224.0.0.2", 1)
    assert decode(s.payload) == AgentSolicitation()
    times = [0.0]
    t = 0.0
    for _ in range(6):
        t = next(a.at for a in out if isinstance(a, SetTimer) and a.name == "mn.solicit")
        times.append(t)
        out = mn.handle_timer("mn.solicit", t)
        assert sends(out, "icmp")
    # 3 at 1 s, then doubling: 2, 4, then capped at 6.
    assert [round(b - a, 3) for a, b in itertools.pairwise(times)] == [1, 1, 2, 4, 6, 6]


def test_l2_trigger_solicits_at_once_then_rate_limited() -> None:
    mn = make_mn(solicit_interval=1.0)  # solicited at 0.0 (start) -- link_up at 0.0 too
    out = mn.link_down("wlan0", 0.3)
    assert "link_down" in names(out)
    assert not sends(out, "icmp")  # no link up: a solicitation would go nowhere
    # a new link: what was sent before went elsewhere, so solicit at once...
    out = mn.link_up("wlan1", 0.5)
    assert [s.iface for s in sends(out, "icmp")] == ["wlan1"]
    # ...and then keep to the rate limit on that link
    out = mn.handle_timer("mn.solicit", 0.9)
    assert not sends(out, "icmp") and SetTimer("mn.solicit", 1.5) in out


def test_plain_router_advertisement_ignored() -> None:
    mn = make_mn()
    plain = encode(AgentAdvertisement(1800, [("10.2.0.254", 0)]))
    assert mn.handle_icmp(plain, "10.2.0.254", 0.1, "wlan0") == []
    assert mn.mode is None


# --- registration through an FA -----------------------------------------------------------


def test_registration_via_fa() -> None:
    mn = make_mn(reverse_tunnel=True, encapsulating_delivery=True, lifetime=600, nai="mn@lab")
    out = mn.handle_icmp(adv(reg_life=300), FA1, 0.1, "wlan0")
    assert names(out)[:2] == ["agent_discovered", "movement_detected"]
    assert CancelTimer("mn.solicit") in out
    s, req = request_of(out)
    assert (s.dst, s.dst_port, s.src, s.src_port, s.iface) == (FA1, 434, HOME, 434, "wlan0")
    assert (req.home_address, req.home_agent, req.care_of_address) == (HOME, HA, FA1)
    assert req.lifetime == 300  # not more than the FA allows
    assert req.flags == 0x02  # T
    assert [e.type for e in req.extensions] == [131, 32, 130]  # NAI, MN-HA, delivery style
    assert mn.state == "registering" and mn.mode == "f" and not mn.registered

    out = mn.handle_datagram(reply(req), FA1, 434, 0.15)
    assert "registration_accepted" in names(out)
    ev = next(a for a in out if isinstance(a, Event) and a.name == "registration_accepted")
    assert ev.data["latency"] == pytest.approx(0.05) and ev.data["lifetime"] == 300
    assert mn.registered and mn.state == "registered" and mn.care_of == FA1
    assert Route("0.0.0.0/0", FA1, "wlan0", True) in out
    assert SetTimer("mn.renew", 0.1 + 0.8 * 300) in out
    assert SetTimer("mn.expire", 300.1) in out
    assert CancelTimer("mn.retransmit") in out


def test_retransmission_backoff_and_new_identification() -> None:
    mn = make_mn(retransmit_initial=0.5, retransmit_max=2.0)
    out = mn.handle_icmp(adv(), FA1, 0.0, "wlan0")
    idents = [request_of(out)[1].identification]
    t = 0.0
    gaps = []
    for _ in range(5):
        at = next(a.at for a in out if isinstance(a, SetTimer) and a.name == "mn.retransmit")
        gaps.append(round(at - t, 3))
        t = at
        out = mn.handle_timer("mn.retransmit", t)
        assert "registration_retransmitted" in names(out)
        idents.append(request_of(out)[1].identification)
    assert gaps == [0.5, 1.0, 2.0, 2.0, 2.0]
    assert len(set(idents)) == len(idents)  # timestamps: a new one every time


def test_give_up_after_max_retransmissions() -> None:
    mn = make_mn(max_retransmissions=1, denied_retry=5.0)
    mn.handle_icmp(adv(), FA1, 0.0, "wlan0")
    assert sends(mn.handle_timer("mn.retransmit", 0.5))
    out = mn.handle_timer("mn.retransmit", 1.5)
    assert "registration_failed" in names(out) and not sends(out)
    assert SetTimer("mn.retry", 6.5) in out


def test_nonce_retransmission_is_unchanged() -> None:
    mn = make_mn(replay="nonce")
    out = mn.handle_icmp(adv(), FA1, 0.0, "wlan0")
    first = sends(out)[0].payload
    out = mn.handle_timer("mn.retransmit", 0.5)
    assert sends(out)[0].payload == first


def test_late_reply_to_earlier_transmission_is_accepted() -> None:
    mn = make_mn()
    _, req1 = register_via_fa(mn, 0.0)
    mn.handle_timer("mn.retransmit", 0.5)
    out = mn.handle_datagram(reply(req1, lifetime=100), FA1, 434, 0.6)
    assert mn.registered
    assert SetTimer("mn.expire", 100.0) in out  # lifetime counted from the first send


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda req: reply(req, sa=SecurityAssociation(1000, b"bad")), "bad MN-HA"),
        (lambda req: reply(req, sa=None), "without MN-HA"),
        (lambda req: reply(req, ident=req.identification + 1), "identification"),
        (lambda req: reply(req)[:-1], "runs past"),
    ],
)
def test_bad_replies_are_dropped(mutate, why: str) -> None:
    mn = make_mn()
    _, req = register_via_fa(mn)
    out = mn.handle_datagram(mutate(req), FA1, 434, 0.2)
    assert names(out) == ["message_dropped"]
    assert why in out[0].data["reason"]
    assert mn.state == "registering" and mn.counters["dropped"] == 1


def test_fa_denial_needs_no_mn_ha() -> None:
    mn = make_mn(denied_retry=10.0)
    _, req = register_via_fa(mn)
    out = mn.handle_datagram(reply(req, 65, 0, sa=None), FA1, 434, 0.2)
    ev = next(a for a in out if isinstance(a, Event) and a.name == "registration_denied")
    assert ev.data["code"] == 65 and ev.data["by"] == "fa"
    assert ev.data["code_name"] == "fa_admin_prohibited"
    assert SetTimer("mn.retry", 10.2) in out
    assert not mn.registered
    assert request_of(mn.handle_timer("mn.retry", 10.2))[1].care_of_address == FA1


def test_133_resynchronises_and_retries() -> None:
    clock = Clock()
    clock.wall = WALL + 5000  # MN an hour and more ahead
    mn = make_mn(clock)
    _, req = register_via_fa(mn)
    ha_ident = (ntp_from_unix(WALL) & ~0xFFFFFFFF) | (req.identification & 0xFFFFFFFF)
    out = mn.handle_datagram(reply(req, 133, 0, ident=ha_ident), FA1, 434, 0.2)
    assert "registration_resync" in names(out)
    _, req2 = request_of(out)
    assert abs((req2.identification >> 32) - (ntp_from_unix(WALL) >> 32)) <= 1


def test_133_loop_is_bounded() -> None:
    mn = make_mn(max_resync=2)
    _, req = register_via_fa(mn)
    for _ in range(2):
        out = mn.handle_datagram(reply(req, 133, 0), FA1, 434, 0.2)
        _, req = request_of(out)
    out = mn.handle_datagram(reply(req, 133, 0), FA1, 434, 0.3)
    assert "registration_denied" in names(out) and not sends(out)


def test_69_retries_with_the_fa_maximum() -> None:
    mn = make_mn(lifetime=1000)
    _, req = register_via_fa(mn)
    out = mn.handle_datagram(reply(req, 69, 120, sa=None), FA1, 434, 0.2)
    assert request_of(out)[1].lifetime == 120


def test_136_switches_home_agent() -> None:
    mn = make_mn()
    out = mn.address_acquired("192.0.2.7", 24, "192.0.2.1", 0.1, "wlan0")
    _, req = request_of(out)
    body = encode(RegistrationReply(136, 0, HOME, "10.1.0.2", req.identification))
    out = mn.handle_datagram(append_auth(body, 32, SA), HA, 434, 0.2)
    assert "home_agent_changed" in names(out)
    s, req = request_of(out)
    assert s.dst == "10.1.0.2" and req.home_agent == "10.1.0.2"


def test_renewal_and_expiry() -> None:
    mn = make_mn(lifetime=100)
    _, req = register_via_fa(mn, 0.0)
    mn.handle_datagram(reply(req), FA1, 434, 0.1)
    out = mn.handle_timer("mn.renew", 80.0)
    request_of(out)
    assert "registration_sent" in names(out)
    assert next(a for a in out if isinstance(a, Event)).data["reason"] == "renewal"
    assert mn.registered  # still registered while renewing
    out = mn.handle_timer("mn.expire", 100.0)
    assert "registration_expired" in names(out) and not mn.registered


# --- movement -----------------------------------------------------------------------------


def test_agent_lifetime_expiry_means_movement() -> None:
    mn = make_mn()
    _, req = register_via_fa(mn, 0.0)
    mn.handle_datagram(reply(req), FA1, 434, 0.1)
    out = mn.handle_icmp(adv(seq=301), FA1, 2.0, "wlan0")
    assert SetTimer(f"mn.agent.{FA1}", 5.0) in out
    assert mn.handle_timer(f"mn.agent.{FA1}", 4.0) == []  # re-armed, not expired
    out = mn.handle_timer(f"mn.agent.{FA1}", 5.0)
    assert names(out)[:2] == ["agent_lost", "movement_detected"]
    assert mn.mode is None and not mn.registered
    assert Route("0.0.0.0/0", FA1, "wlan0", False) in out
    assert sends(out, "icmp")  # soliciting again


def test_prefix_change_moves_to_new_agent() -> None:
    mn = make_mn()
    _, req = register_via_fa(mn, 0.0)
    mn.handle_datagram(reply(req), FA1, 434, 0.1)
    # Same agent address family, same prefix: no move.
    out = mn.handle_icmp(adv(addr="10.2.0.2"), "10.2.0.2", 0.5, "wlan0")
    assert "movement_detected" not in names(out)
    out = mn.handle_icmp(adv(addr=FA2), FA2, 0.6, "wlan0")
    assert "agent_lost" in names(out)
    ev = next(a for a in out if isinstance(a, Event) and a.name == "movement_detected")
    assert ev.data["reason"] == "prefix_changed"
    s, req = request_of(out)
    assert s.dst == FA2 and req.care_of_address == FA2


def test_agent_reboot_triggers_reregistration() -> None:
    mn = make_mn()
    _, req = register_via_fa(mn, 0.0)
    mn.handle_datagram(reply(req), FA1, 434, 0.1)
    assert not sends(mn.handle_icmp(adv(seq=301), FA1, 1.0, "wlan0"))
    out = mn.handle_icmp(adv(seq=0), FA1, 2.0, "wlan0")
    assert "agent_rebooted" in names(out)
    assert request_of(out)[1].care_of_address == FA1


def test_busy_agent_not_used() -> None:
    mn = make_mn()
    out = mn.handle_icmp(adv(flags=AdvFlag.F | AdvFlag.B), FA1, 0.1, "wlan0")
    assert mn.mode is None and not sends(out)


def test_link_down_detaches() -> None:
    mn = make_mn()
    register_via_fa(mn)
    out = mn.link_down("wlan0", 0.3)
    assert mn.mode is None and mn.agents == {}
    assert CancelTimer("mn.retransmit") in out


def test_advertisement_from_before_a_move_is_not_news_of_the_new_link() -> None:
    """Issue 15 (a): the home agent's advertisement arrived at home just before the move and
    was read only on the FA's network; it must neither send the MN home nor hide the FA."""
    home_adv = adv(addr=HA, flags=AdvFlag.H, coas=[])
    mn = make_mn()
    mn.handle_icmp(home_adv, HA, 0.1, "wlan0")
    assert mn.mode == "home"
    mn.link_down("wlan0", 10.0)
    mn.link_up("wlan0", 10.001)
    # received at home (9.99), read after the move (10.005): dropped
    out = mn.handle_icmp(home_adv, HA, 10.005, "wlan0", received=9.99)
    assert mn.mode is None and HA not in mn.agents
    assert "returned_home" not in names(out)
    assert next(a for a in out if isinstance(a, Event)).data["reason"] == (
        "advertisement from before the link went down"
    )
    # the FA's answer to the solicitation is taken
    out = mn.handle_icmp(adv(), FA1, 10.006, "wlan0", received=10.004)
    assert mn.mode == "f"
    s, req = request_of(out)
    assert (s.dst, req.care_of_address) == (FA1, FA1)
    # frames that arrived after the move are news (a real home agent there would count)
    out = mn.handle_icmp(home_adv, HA, 10.2, "wlan0", received=10.1)
    assert mn.mode == "home" and "returned_home" in names(out)


# --- co-located care-of address and UDP tunnelling ----------------------------------------


def test_colocated_with_udp_tunnel() -> None:
    mn = make_mn()
    out = mn.address_acquired("192.168.1.10", 24, "192.168.1.1", 0.1, "wlan0")
    s, req = request_of(out)
    assert (s.dst, s.src, s.src_port) == (HA, "192.168.1.10", 434)
    assert req.care_of_address == "192.168.1.10" and req.flags & 0x20
    assert req.authenticated_extensions() == [UdpTunnelRequest(4, force=False, via_fa=False)]
    assert mn.mode == "c"
    out = mn.handle_datagram(reply(req, exts=[UdpTunnelReply(0, 20)]), HA, 434, 0.2)
    tun = next(a for a in out if isinstance(a, TunnelUp))
    assert (tun.encapsulation, tun.peer, tun.peer_port, tun.keepalive, tun.role) == (
        "udp",
        HA,
        434,
        20,
        "mn",
    )
    assert SetTimer("mn.keepalive", 20.2) in out
    out = mn.handle_timer("mn.keepalive", 20.2)
    (s,) = sends(out)
    td = decode_udp(s.payload)
    assert isinstance(td, TunnelData) and td.next_header == 4
    src, dst, proto, icmp = parse_ipv4(td.payload)  # type: ignore[misc]
    assert (src, dst, proto, icmp[0]) == (HOME, HA, 1, 8)  # ICMP echo request inside
    assert (s.dst, s.src, s.src_port) == (HA, "192.168.1.10", 434)
    assert SetTimer("mn.keepalive", 40.2) in out
    (sent,) = [a for a in out if isinstance(a, Event) and a.name == "keepalive_sent"]
    assert sent.data["to"] == HA and sent.data["seq"] == 1


@pytest.mark.parametrize(("mode", "exts"), [("off", []), ("force", [UdpTunnelRequest(force=True)])])
def test_udp_tunnel_modes(mode: str, exts) -> None:
    mn = make_mn(udp_tunnel=mode)
    _, req = request_of(mn.address_acquired("192.0.2.7", 24, None, 0.1, "wlan0"))
    assert req.authenticated_extensions() == exts


def test_prefer_c_and_registration_required() -> None:
    mn = make_mn(prefer="c")
    mn.address_acquired("10.2.0.77", 24, "10.2.0.254", 0.0, "wlan0")
    out = mn.handle_icmp(adv(), FA1, 0.1, "wlan0")
    assert mn.mode == "c" and not sends(out)  # already registering directly
    out = mn.handle_icmp(adv(flags=AdvFlag.F | AdvFlag.R), FA1, 0.2, "wlan0")
    s, req = request_of(out)
    assert mn.mode == "c" and s.dst == FA1 and req.care_of_address == "10.2.0.77"
    assert req.authenticated_extensions() == [UdpTunnelRequest(via_fa=True)]


def test_prefer_f_with_colocated_address() -> None:
    mn = make_mn()
    mn.address_acquired("10.2.0.77", 24, None, 0.0, "wlan0")
    assert mn.mode == "c"
    out = mn.handle_icmp(adv(), FA1, 0.1, "wlan0")
    assert mn.mode == "f" and request_of(out)[0].dst == FA1


def test_challenge_and_mn_fa_authentication() -> None:
    mnfa = SecurityAssociation(2000, b"mn-fa")
    mn = make_mn(mn_fa_sas={FA1: mnfa})
    out = mn.handle_icmp(adv(challenge=b"\x42" * 8), FA1, 0.1, "wlan0")
    s, req = request_of(out)
    assert [type(e) for e in req.extensions[1:]] == [ChallengeExtension, AuthExtension]
    assert req.extensions[1] == ChallengeExtension(b"\x42" * 8)
    ext = req.extensions[2]
    assert mnfa.verify(s.payload[: ext.offset + 6], ext.authenticator)
    # Replies must then carry a valid MN-FA authenticator.
    out = mn.handle_datagram(reply(req), FA1, 434, 0.2)
    assert names(out) == ["message_dropped"]
    out = mn.handle_datagram(append_auth(reply(req), 33, mnfa), FA1, 434, 0.2)
    assert mn.registered


def test_reverse_delivery_style_only_with_t() -> None:
    mn = make_mn(encapsulating_delivery=True)  # reverse_tunnel off
    _, req = register_via_fa(mn)
    assert EncapDeliveryStyle() not in req.extensions


# --- home ---------------------------------------------------------------------------------


def test_return_home_deregisters() -> None:
    mn = make_mn()
    _, req = register_via_fa(mn, 0.0)
    mn.handle_datagram(reply(req), FA1, 434, 0.1)
    out = mn.handle_icmp(adv(addr=HA, flags=AdvFlag.H, coas=[]), HA, 1.0, "wlan0")
    assert mn.mode == "home"
    assert GratuitousArp(HOME, "wlan0") in out
    assert "returned_home" in names(out)
    s, dreq = request_of(out)
    assert (s.dst, s.src, dreq.lifetime, dreq.care_of_address, dreq.flags) == (HA, HOME, 0, HOME, 0)
    out = mn.handle_datagram(reply(dreq), HA, 434, 1.01)
    assert "deregistered" in names(out)
    assert mn.state == "home" and not mn.registered and mn.binding_info() is None


def test_home_at_boot_deregisters_once() -> None:
    mn = make_mn()
    out = mn.address_acquired(HOME, 24, "10.1.0.254", 0.1, "wlan0")
    assert mn.mode == "home" and request_of(out)[1].lifetime == 0
    mn2 = make_mn(deregister_at_boot=False)
    assert not sends(mn2.address_acquired(HOME, 24, None, 0.1, "wlan0"))


def test_shutdown_deregisters() -> None:
    mn = make_mn()
    _, req = register_via_fa(mn, 0.0)
    mn.handle_datagram(reply(req), FA1, 434, 0.1)
    out = mn.shutdown(5.0)
    _, dreq = request_of(out)
    assert (dreq.lifetime, dreq.care_of_address) == (0, FA1)
    mn.handle_datagram(reply(dreq), FA1, 434, 5.1)
    assert mn.binding_info() is None
    assert not sends(mn.handle_icmp(adv(addr=FA2), FA2, 6.0, "wlan0"))


def test_override_attachment_for_other_modes() -> None:
    mn = make_mn()
    att = Attachment("mc", "172.16.0.5", "172.16.0.5", "ipsec0", None, True)
    out = mn.use_attachment(att, 0.1)
    s, req = request_of(out)
    assert mn.mode == "mc" and s.iface == "ipsec0" and req.care_of_address == "172.16.0.5"
    mn.handle_datagram(reply(req), HA, 434, 0.2)
    assert mn.registered
    out = mn.use_attachment(None, 0.3)
    assert mn.mode is None
    assert any(isinstance(a, TunnelDown) for a in out)


def test_set_home_reregisters() -> None:
    mn = make_mn()
    _, req = register_via_fa(mn, 0.0)
    mn.handle_datagram(reply(req), FA1, 434, 0.1)
    s, req = request_of(mn.set_home(1.0, home_agent="10.1.0.2"))
    assert s.dst == FA1 and req.home_agent == "10.1.0.2"


def test_config_validation() -> None:
    for bad in (dict(prefer="x"), dict(udp_tunnel="yes"), dict(renew_fraction=1.0)):
        with pytest.raises(ValueError):
            MnConfig(HOME, HA, "10.1.0.0/24", 1000, KEY, **bad)


def test_garbage_never_raises() -> None:
    mn = make_mn()
    _, req = register_via_fa(mn)
    rnd = random.Random(11)
    seeds = [reply(req), adv(), adv(challenge=b"abcd")]
    for i in range(3000):
        data = bytearray(rnd.choice(seeds) if i % 2 else rnd.randbytes(rnd.randrange(30)))
        for _ in range(rnd.randrange(3)):
            if data:
                data[rnd.randrange(len(data))] = rnd.randrange(256)
        mn.handle_datagram(bytes(data), FA1, 434, 0.2 + i * 1e-4, "wlan0")
        mn.handle_icmp(bytes(data), FA1, 0.2 + i * 1e-4, "wlan0")
    assert mn.counters["dropped"] > 0


def test_leaving_mode_mc_for_an_fa_sends_the_request_before_the_tunnel_goes() -> None:
    mn = make_mn()
    att = Attachment("mc", "172.16.0.5", "172.16.0.5", "ipsec0", None, True)
    _, req = request_of(mn.use_attachment(att, 0.1))
    mn.handle_datagram(reply(req), HA, 434, 0.2)
    assert mn.registered and mn.mode == "mc"
    mn.handle_icmp(adv(addr=FA1), FA1, 0.3, "wlan0")  # an FA heard while the override holds
    out = mn.use_attachment(None, 0.4)  # the VPN controller lets go: through the FA now
    kinds = [type(a).__name__ for a in out]
    assert mn.mode == "f" and "TunnelDown" in kinds
    assert kinds.index("Send") < kinds.index("TunnelDown")
    s, req = request_of(out)
    assert s.dst == FA1 and s.iface == "wlan0"  # bound to the link: the TUN cannot take it


def test_a_route_via_the_old_fa_goes_before_the_request_to_the_new_one() -> None:
    mn = make_mn()
    _, req = register_via_fa(mn, 0.0)
    mn.handle_datagram(reply(req), FA1, 434, 0.1)
    assert mn.mode == "f" and mn.registered
    # to another FA on the same link without carrier loss: the default route via the first
    # one would carry the request (to the wrong router), so it goes first
    other = Attachment("f", FA2, HOME, "wlan0", FA2, router=FA2)
    out = mn.use_attachment(other, 0.2)
    kinds = [type(a).__name__ for a in out]
    assert "Route" in kinds and "Send" in kinds
    assert kinds.index("Route") < kinds.index("Send")
