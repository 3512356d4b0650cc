"""MIP proxy (draft-adrangi-mobileip-natvpn-traversal): a real MobileNode outside registers
with the proxy, which registers at a real HomeAgent inside; all on the in-memory network of
agents/mip/simnet.py with a fake clock, plus a few hand-driven checks."""

from __future__ import annotations

import itertools
import random

import pytest

from agents.mip.actions import (
    Event,
    GratuitousArp,
    ProxyArp,
    Send,
    SetTimer,
    TunnelDown,
    TunnelUp,
)
from agents.mip.auth import SecurityAssociation, append_auth
from agents.mip.codec import encode
from agents.mip.constants import RequestFlag
from agents.mip.extensions import AuthExtension, UdpTunnelReply
from agents.mip.ha import HaConfig, HomeAgent, MobileNodeConfig
from agents.mip.messages import RegistrationReply, RegistrationRequest, decode_udp
from agents.mip.mn import Attachment, MnConfig, MobileNode
from agents.mip.proxy import MipProxy, ProxyConfig
from agents.mip.replay import ntp_from_unix
from agents.mip.simnet import SimNetwork

KEY = bytes(range(16))
SPI = 1000
SA = SecurityAssociation(SPI, KEY)
HOME, HA, HOME_NET = "10.1.0.7", "10.1.0.1", "10.1.0.0/24"
EXT, INT = "198.51.100.10", "10.0.5.2"  # the proxy's DMZ addresses: outside, inside
COA1, COA2 = "192.0.2.7", "192.0.2.77"
NAT_PUB = "203.0.113.5"
LIFE = 100


def outside(coa: str = COA1, home_agent: str | None = EXT) -> Attachment:
    return Attachment("c", coa, coa, "wlan0", None, True, home_agent=home_agent)


class World:
    """MN (outside) -- proxy (DMZ) -- HA (inside) on a SimNetwork."""

    def __init__(
        self,
        *,
        replay: str = "timestamp",
        ha_kw=None,
        proxy_kw=None,
        mn_kw=None,
        nat: bool = False,
        ha_skew: float = 0.0,
        allowed: bool = True,
    ) -> None:
        self.net = net = SimNetwork(latency=0.002)
        rnd = itertools.count(7)
        r32 = lambda: next(rnd)  # noqa: E731
        self.ha = HomeAgent(
            HaConfig(
                HA,
                HOME_NET,
                [MobileNodeConfig(HOME, SPI, KEY, replay=replay, allowed=allowed)],
                **(ha_kw or {}),
            ),
            wallclock=net.wallclock("ha"),
            rand32=r32,
        )
        self.proxy = MipProxy(
            ProxyConfig(
                EXT,
                INT,
                HA,
                HOME_NET,
                [MobileNodeConfig(HOME, SPI, KEY, replay=replay)],
                **(proxy_kw or {}),
            ),
            wallclock=net.wallclock("proxy"),
            rand32=r32,
        )
        mn_defaults = dict(lifetime=LIFE, retransmit_initial=1.0, retransmit_max=8.0, replay=replay)
        self.mn = MobileNode(
            MnConfig(HOME, HA, HOME_NET, SPI, KEY, **{**mn_defaults, **(mn_kw or {})}),
            wallclock=net.wallclock("mn"),
            rand32=r32,
        )
        net.add_node("ha", self.ha, {"eth0": ("home", HA)}, wall_offset=ha_skew)
        net.add_node("proxy", self.proxy, {"ext": ("internet", EXT), "int": ("dmz", INT)})
        net.add_node(
            "mn",
            self.mn,
            {"wlan0": ("internet", COA1)},
            extra_addresses=[HOME],
            nat_public=NAT_PUB if nat else None,
        )
        net.start()

    def attach(self, coa: str = COA1, home_agent: str | None = EXT) -> list:
        self.net.nodes["mn"].ifaces["wlan0"] = ("internet", coa)
        return self.net.call("mn", "use_attachment", outside(coa, home_agent))

    def events(self, node: str, name: str) -> list[Event]:
        return self.net.events(node, name)

    def sends(self, node: str, dst: str | None = None) -> list[Send]:
        return [
            a
            for _, n, a in self.net.log
            if n == node and isinstance(a, Send) and a.kind == "udp" and dst in (None, a.dst)
        ]

    def actions(self, node: str, kind: type) -> list:
        return self.net.actions(node, kind)

    def first_time(self, node: str, name: str) -> float:
        return next(t for t, n, a in self.net.log if n == node and getattr(a, "name", "") == name)


def registered_world(**kw) -> World:
    w = World(**kw)
    w.attach()
    w.net.run_for(1.0)
    assert w.mn.registered
    return w


# --- first registration -------------------------------------------------------------------


def test_first_registration_is_held_until_the_home_agent_accepts() -> None:
    w = World()
    w.attach()
    w.net.run_for(1.0)
    assert w.mn.registered and w.mn.binding_info()["home_agent"] == EXT

    # The MN registered with the proxy: request to EXT, Home Agent field EXT, D flag.
    (req_send,) = w.sends("mn", EXT)
    req = decode_udp(req_send.payload)
    assert isinstance(req, RegistrationRequest)
    assert (req.home_agent, req.care_of_address, req.lifetime) == (EXT, COA1, LIFE)

    # The proxy registered at the real HA from its internal address, as a co-located MN.
    (up_send,) = w.sends("proxy", HA)
    assert (up_send.src, up_send.src_port, up_send.dst_port) == (INT, 434, 434)
    up = decode_udp(up_send.payload)
    assert isinstance(up, RegistrationRequest)
    assert (up.home_address, up.home_agent, up.care_of_address) == (HOME, HA, INT)
    assert (
        up.lifetime == LIFE and up.flags == RequestFlag.D | RequestFlag.T
    )  # reverse: both ways via the HA
    ext = up.find(32)
    assert isinstance(ext, AuthExtension) and SA.verify(
        up_send.payload[: ext.offset + 6], ext.authenticator
    )
    (hb,) = w.ha.bindings(HOME)
    assert (hb.care_of, hb.peer, hb.encapsulation) == (INT, INT, "ipip")

    # The front reply went out only after the HA accepted.
    assert w.first_time("proxy", "proxy_reply_held") < w.first_time("ha", "binding_added")
    assert w.first_time("ha", "binding_added") < w.first_time("mn", "registration_accepted")
    (released,) = w.events("proxy", "proxy_reply_released")
    assert released.data["home_address"] == HOME and released.data["held_ms"] == pytest.approx(4)
    (sent,) = w.events("proxy", "proxy_upstream_sent")
    assert sent.data | {"identification": 0} == {
        "home_address": HOME,
        "lifetime": LIFE,
        "attempt": 1,
        "reason": "first",
        "identification": 0,
        "resync": 0,
        "bytes": len(up_send.payload),
        "to": HA,
    }
    (acc,) = w.events("proxy", "proxy_upstream_accepted")
    assert acc.data["lifetime"] == LIFE and acc.data["rtt_ms"] == pytest.approx(4)

    # Data plane: front tunnel (role proxy) to the MN, back tunnel (proxy-back) to the HA.
    tunnels = w.actions("proxy", TunnelUp)
    assert TunnelUp(HOME, COA1, COA1, EXT, "ipip", None, False, None, "proxy") in tunnels
    back = TunnelUp(HOME, INT, HA, INT, "ipip", None, False, None, "proxy-back")
    assert back in tunnels and len(tunnels) == 2
    assert not w.actions("proxy", ProxyArp) and not w.actions("proxy", GratuitousArp)
    (fb,) = w.proxy.bindings(HOME)
    assert fb.care_of == COA1
    info = w.proxy.upstream(HOME)
    assert info is not None
    assert info["state"] == "registered" and info["lifetime"] == LIFE and not info["held"]
    assert info["expires"] == pytest.approx(LIFE, abs=0.01)
    assert w.proxy.upstream("10.1.0.99") is None


def test_retransmission_replaces_the_held_reply() -> None:
    w = World()
    lost = itertools.count()
    # The first two upstream requests are lost: the MN retransmits meanwhile.
    w.net.drop = lambda src, s: src == "proxy" and s.dst == HA and next(lost) < 2
    w.attach()
    w.net.run_for(3.0)
    assert w.mn.registered
    held = w.events("proxy", "proxy_reply_held")
    assert [e.data["replaced"] for e in held] == [False, True]
    assert len(w.events("proxy", "proxy_reply_released")) == 1
    # Only the proxy's own retransmissions went upstream (not one per MN retransmission).
    assert [e.data["attempt"] for e in w.events("proxy", "proxy_upstream_sent")] == [1, 2, 3]
    replies = [s for s in w.sends("proxy", COA1)]
    assert len(replies) == 1
    (mn_req2,) = [e for e in w.events("mn", "registration_retransmitted")]
    rep = decode_udp(replies[0].payload)
    assert rep.identification == mn_req2.data["identification"]


# --- fast path, renewal -------------------------------------------------------------------


def test_outside_handoff_is_answered_at_once_without_upstream_signalling() -> None:
    w = registered_world()
    w.net.run_until(10.0)
    upstream_before = len(w.sends("proxy", HA))
    out = w.attach(COA2)
    w.net.run_for(0.01)
    assert w.mn.registered and w.mn.care_of == COA2
    assert len(w.sends("proxy", HA)) == upstream_before == 1
    assert len(w.events("proxy", "proxy_reply_held")) == 1  # only the first registration
    (fb,) = w.proxy.bindings(HOME)
    assert fb.care_of == COA2
    (hb,) = w.ha.bindings(HOME)
    assert hb.care_of == INT
    # The reply to the move came one round trip after the request: MN <-> proxy only.
    acc = w.events("mn", "registration_accepted")[-1]
    assert acc.data["care_of"] == COA2 and acc.data["latency"] == pytest.approx(0.004)
    assert out  # the MN's request
    assert TunnelDown(HOME, COA1, COA1, "proxy") in w.actions("proxy", TunnelDown)
    assert TunnelUp(HOME, COA2, COA2, EXT, "ipip", None, False, None, "proxy") in w.actions(
        "proxy", TunnelUp
    )


def test_renewal_triggers_an_upstream_renewal_without_holding() -> None:
    w = registered_world()
    w.net.run_until(79.0)
    assert len(w.sends("proxy", HA)) == 1
    w.net.run_until(81.0)  # the MN renews at 0.8 * 100 s
    sent = w.events("proxy", "proxy_upstream_sent")
    assert [e.data["reason"] for e in sent] == ["first", "renew"]
    assert len(w.events("proxy", "proxy_reply_held")) == 1
    # The renewal reply to the MN did not wait for the HA.
    mn_acc = [
        t
        for t, n, a in w.net.log
        if n == "mn" and getattr(a, "name", "") == "registration_accepted"
    ]
    up_acc = [
        t
        for t, n, a in w.net.log
        if n == "proxy" and getattr(a, "name", "") == "proxy_upstream_accepted"
    ]
    assert mn_acc[1] == pytest.approx(80.004) and up_acc[1] == pytest.approx(80.006)
    assert w.proxy.upstream(HOME)["expires"] == pytest.approx(180.0, abs=0.01)
    w.net.run_until(400.0)
    assert w.mn.registered and w.ha.bindings(HOME)[0].care_of == INT
    # The back tunnel went up once, not on every renewal; it never went down.
    assert len([t for t in w.actions("proxy", TunnelUp) if t.role == "proxy-back"]) == 1
    assert not [t for t in w.actions("proxy", TunnelDown) if t.role == "proxy-back"]
    assert not w.events("proxy", "proxy_upstream_expired")


def test_proxy_renews_on_its_own_only_while_the_front_binding_needs_it() -> None:
    # The HA grants 30 s where the front granted 100 s.
    w = registered_world(ha_kw=dict(max_lifetime=30))
    assert w.proxy.upstream(HOME)["lifetime"] == 30
    w.net.run_until(79.0)
    renews = [e for e in w.events("proxy", "proxy_upstream_sent") if e.data["reason"] == "renew"]
    assert renews and not w.events("proxy", "proxy_upstream_expired")
    assert w.ha.bindings(HOME)
    # The MN falls silent after its renewal at 80 s: its front binding ends at ~180 s.
    w.net.run_until(81.0)
    front_end = w.proxy.bindings(HOME)[0].expires
    w.net.drop = lambda src, s: src == "mn"
    w.net.run_until(front_end - 0.01)
    assert w.proxy.upstream(HOME)["expires"] <= front_end + 0.01
    w.net.run_until(300.0)
    assert not w.ha.bindings(HOME) and not w.proxy.bindings(HOME)
    assert w.proxy.upstream(HOME)["state"] == "idle"
    last = max(t for t, n, a in w.net.log if n == "proxy" and isinstance(a, Send) and a.dst == HA)
    assert last == pytest.approx(front_end, abs=0.01)  # the deregistration, nothing later


# --- failures upstream --------------------------------------------------------------------


def test_home_agent_denial_reaches_the_mobile_node() -> None:
    w = World(allowed=False)  # the real HA says 129
    w.attach()
    w.net.run_for(1.0)
    assert not w.mn.registered
    (denied,) = w.events("mn", "registration_denied")
    assert denied.data["code"] == 129 and denied.data["by"] == "ha"
    (pd,) = w.events("proxy", "proxy_upstream_denied")
    assert pd.data["code"] == 129
    (rd,) = w.events("proxy", "proxy_reply_denied")
    assert rd.data["code"] == 129 and rd.data["care_of"] == COA1
    assert not w.proxy.bindings(HOME)
    assert TunnelDown(HOME, COA1, COA1, "proxy") in w.actions("proxy", TunnelDown)
    assert not [t for t in w.actions("proxy", TunnelUp) if t.role == "proxy-back"]
    assert not w.events("proxy", "proxy_reply_released")
    # The denial: authenticated, Home Agent field = the proxy, the MN's identification.
    (rep_send,) = w.sends("proxy", COA1)
    rep = decode_udp(rep_send.payload)
    assert isinstance(rep, RegistrationReply)
    (req_send,) = w.sends("mn", EXT)
    assert (rep.code, rep.home_agent, rep.lifetime) == (129, EXT, 0)
    assert rep.identification == decode_udp(req_send.payload).identification
    assert (rep_send.src, rep_send.src_port) == (EXT, 434)


def test_upstream_timeout_denies_with_128() -> None:
    w = World()
    w.net.drop = lambda src, s: s.dst == HA  # the HA is unreachable
    w.attach()
    w.net.run_for(20.0)
    sent = w.events("proxy", "proxy_upstream_sent")
    assert [e.data["attempt"] for e in sent] == [1, 2, 3, 4, 5]  # 1 + max_retransmissions
    times = [t for t, n, a in w.net.log if n == "proxy" and isinstance(a, Send) and a.dst == HA]
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert gaps == [0.5, 1.0, 2.0, 4.0]
    (to,) = w.events("proxy", "proxy_upstream_timeout")
    assert to.data["attempts"] == 5
    assert w.first_time("proxy", "proxy_upstream_timeout") == pytest.approx(times[0] + 11.5)
    # The MN retransmitted meanwhile (held replies replaced); it gets a 128 for its newest.
    assert len(w.events("proxy", "proxy_reply_held")) > 1
    (denied,) = w.events("mn", "registration_denied")
    assert denied.data["code"] == 128
    assert not w.mn.registered and not w.proxy.bindings(HOME)
    assert w.proxy.counters["upstream_timeouts"] == 1
    assert w.proxy.upstream(HOME)["state"] == "idle"


def test_133_resynchronises_upstream() -> None:
    w = World(ha_skew=1000.0)  # the HA's clock is 1000 s ahead of the proxy's
    w.attach()
    w.net.run_for(1.0)
    assert w.mn.registered and w.ha.bindings(HOME)
    assert len(w.events("proxy", "proxy_upstream_resync")) == 1
    sent = w.events("proxy", "proxy_upstream_sent")
    assert [e.data["resync"] for e in sent] == [0, 1]
    (acc,) = w.events("proxy", "proxy_upstream_accepted")
    assert acc.data["rtt_ms"] == pytest.approx(8)  # two round trips, from the first send
    assert len(w.events("ha", "registration_denied")) == 1
    # Later upstream requests use the learnt offset: no more 133.
    w.net.run_until(200.0)
    assert len(w.events("ha", "registration_denied")) == 1
    assert len(w.events("proxy", "proxy_upstream_accepted")) >= 3


def test_nonce_replay_protection_on_both_sides() -> None:
    w = World(replay="nonce")
    w.attach()
    w.net.run_for(3.0)
    assert w.mn.registered and w.ha.bindings(HOME)
    assert len(w.events("proxy", "proxy_upstream_resync")) == 1  # learns the HA's nonce
    w.net.run_until(200.0)
    assert w.mn.registered and w.ha.bindings(HOME)[0].care_of == INT
    assert len(w.events("proxy", "proxy_upstream_resync")) == 1


# --- deregistration and expiry ------------------------------------------------------------


def test_mn_deregistration_deregisters_upstream() -> None:
    w = registered_world()
    w.net.run_until(10.0)
    w.net.call("mn", "shutdown")
    w.net.run_for(1.0)
    assert w.events("mn", "deregistered")
    assert not w.proxy.bindings(HOME) and not w.ha.bindings(HOME)
    dereg = [e for e in w.events("proxy", "proxy_upstream_sent") if e.data["reason"] == "dereg"]
    assert len(dereg) == 1 and dereg[0].data["lifetime"] == 0
    up = decode_udp(w.sends("proxy", HA)[-1].payload)
    assert (up.lifetime, up.care_of_address, up.flags) == (0, INT, 0)
    assert w.events("proxy", "proxy_upstream_deregistered")
    (removed,) = w.events("ha", "binding_removed")
    assert removed.data == {"home_address": HOME, "care_of": INT, "reason": "deregistered"}
    assert TunnelDown(HOME, INT, HA, "proxy-back") in w.actions("proxy", TunnelDown)
    assert w.proxy.upstream(HOME)["state"] == "idle"
    # The MN's deregistration was answered at once (not held).
    assert len(w.events("proxy", "proxy_reply_held")) == 1


def test_front_expiry_deregisters_upstream() -> None:
    w = World()
    lost = itertools.count()
    # The first upstream request is lost, so the HA's binding outlives the front's a bit:
    # the upstream deregistration (not the HA's own expiry) must remove it.
    w.net.drop = lambda src, s: src == "proxy" and s.dst == HA and next(lost) < 1
    w.attach()
    w.net.run_for(1.0)
    assert w.mn.registered
    w.net.drop = lambda src, s: src == "mn"  # the MN disappears
    front_end = w.proxy.bindings(HOME)[0].expires
    w.net.run_until(front_end + 0.1)
    assert not w.proxy.bindings(HOME)
    assert w.events("proxy", "binding_expired")
    assert not w.ha.bindings(HOME)
    (removed,) = w.events("ha", "binding_removed")
    assert removed.data["reason"] == "deregistered"
    assert not w.events("ha", "binding_expired")
    assert TunnelDown(HOME, INT, HA, "proxy-back") in w.actions("proxy", TunnelDown)
    sent = w.events("proxy", "proxy_upstream_sent")
    assert sent[-1].data["reason"] == "dereg"


def test_clear_takes_everything_down() -> None:
    w = registered_world()
    out = w.proxy.clear(5.0)
    assert TunnelDown(HOME, COA1, COA1, "proxy") in out
    assert TunnelDown(HOME, INT, HA, "proxy-back") in out
    (s,) = [a for a in out if isinstance(a, Send)]
    req = decode_udp(s.payload)
    assert (s.dst, s.src, req.lifetime, req.care_of_address) == (HA, INT, 0, INT)
    assert not [a for a in out if isinstance(a, (ProxyArp, GratuitousArp))]
    assert not w.proxy.bindings()


# --- NAT ----------------------------------------------------------------------------------


def test_mn_behind_nat_gets_a_udp_tunnel_from_the_proxy() -> None:
    w = World(nat=True)
    w.attach()
    w.net.run_for(1.0)
    assert w.mn.registered and w.mn.binding_info()["udp"]
    assert w.events("proxy", "nat_detected")
    (fb,) = w.proxy.bindings(HOME)
    assert (fb.encapsulation, fb.peer, fb.peer_port) == ("udp", NAT_PUB, 40000)
    front = [t for t in w.actions("proxy", TunnelUp) if t.role == "proxy"]
    assert front == [TunnelUp(HOME, COA1, NAT_PUB, EXT, "udp", 40000, False, 110, "proxy")]
    (rep_send,) = w.sends("proxy", NAT_PUB)
    rep = decode_udp(rep_send.payload)
    assert any(isinstance(e, UdpTunnelReply) for e in rep.extensions)
    # The MN's own tunnel ends at the proxy; the back tunnel stays IP-in-IP.
    (mt,) = w.actions("mn", TunnelUp)
    assert (mt.peer, mt.encapsulation) == (EXT, "udp")
    back = [t for t in w.actions("proxy", TunnelUp) if t.role == "proxy-back"]
    assert back == [TunnelUp(HOME, INT, HA, INT, "ipip", None, False, None, "proxy-back")]


def test_proxy_without_udp_tunnelling_denies_142() -> None:
    w = World(nat=True, proxy_kw=dict(udp_tunnelling=False))
    w.attach()
    w.net.run_for(0.5)
    assert [e.data["code"] for e in w.events("mn", "registration_denied")] == [142]
    assert not w.sends("proxy", HA)


# --- hand-driven: bad replies, bounded 133 ------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.wall = 1_700_000_000.0

    def __call__(self) -> float:
        return self.wall


def held_proxy(**kw) -> tuple[MipProxy, RegistrationRequest, Send]:
    """A proxy holding the reply to a real MobileNode's first request."""
    clock = Clock()
    counter = itertools.count(1)
    mn = MobileNode(
        MnConfig(HOME, HA, HOME_NET, SPI, KEY, lifetime=LIFE),
        wallclock=clock,
        rand32=lambda: next(counter),
    )
    mn.start(0.0)
    (s,) = [a for a in mn.use_attachment(outside(), 0.0) if isinstance(a, Send)]
    proxy = MipProxy(
        ProxyConfig(EXT, INT, HA, HOME_NET, [MobileNodeConfig(HOME, SPI, KEY)], **kw),
        wallclock=clock,
        rand32=lambda: next(counter),
    )
    out = proxy.handle_datagram(s.payload, COA1, 434, 0.01)
    assert any(isinstance(a, Event) and a.name == "proxy_reply_held" for a in out)
    assert not [a for a in out if isinstance(a, Send) and a.dst == COA1]
    (up,) = [a for a in out if isinstance(a, Send)]
    req = decode_udp(up.payload)
    assert isinstance(req, RegistrationRequest)
    return proxy, req, up


def ha_reply(
    req: RegistrationRequest,
    code: int = 0,
    *,
    sa: SecurityAssociation | None = SA,
    ident: int | None = None,
    home: str = HOME,
) -> bytes:
    body = encode(
        RegistrationReply(
            code,
            req.lifetime if code in (0, 1) else 0,
            home,
            HA,
            req.identification if ident is None else ident,
        )
    )
    return append_auth(body, 32, sa) if sa is not None else body


def test_bad_replies_are_counted_and_dropped() -> None:
    proxy, req, _ = held_proxy()
    good = ha_reply(req)
    flipped = good[:-1] + bytes([good[-1] ^ 1])
    cases = [  # payload, source, what the drop reason says
        (b"\x03\x00\x00", HA, "truncated"),
        (good, EXT, "not from the home agent"),
        (ha_reply(req, home="10.1.0.99"), HA, "unknown home address"),
        (ha_reply(req, ident=req.identification + 1), HA, "identification does not match"),
        (ha_reply(req, sa=None), HA, "without MN-HA"),
        (ha_reply(req, sa=SecurityAssociation(SPI, b"wrong key")), HA, "bad MN-HA"),
        (ha_reply(req, sa=SecurityAssociation(SPI + 1, KEY)), HA, "bad MN-HA"),
        (flipped, HA, "bad MN-HA"),
        (good[:-1], HA, "runs past the end"),  # authenticator cut short
        (good + b"\x07", HA, "truncated"),  # an extension without its length byte
        (bytes([9, 0, 0, 0]), HA, "neither a request nor a reply"),
        (b"", HA, "empty"),
    ]
    for i, (payload, src, why) in enumerate(cases):
        out = proxy.handle_datagram(payload, src, 434, 0.02)
        (ev,) = out
        assert isinstance(ev, Event) and ev.name == "message_dropped", why
        assert why in ev.data["reason"], (why, ev.data)
        assert proxy.counters["dropped"] == i + 1
    assert proxy.upstream(HOME)["state"] == "registering"
    assert proxy.upstream(HOME)["held"]
    out = proxy.handle_datagram(good, HA, 434, 0.03)
    assert any(isinstance(a, Event) and a.name == "proxy_reply_released" for a in out)
    # A duplicate of the accepted reply: nothing pending any more.
    (ev,) = proxy.handle_datagram(good, HA, 434, 0.04)
    assert ev.data["reason"] == "no upstream registration pending"
    assert proxy.counters["dropped"] == len(cases) + 1


def test_garbage_never_raises() -> None:
    proxy, req, _ = held_proxy()
    rnd = random.Random(3)
    good = ha_reply(req)
    for n in range(2000):
        if n % 2:
            data = bytearray(good)
            for _ in range(rnd.randint(1, 4)):
                data[rnd.randrange(len(data))] = rnd.randrange(256)
            payload = bytes(data)
        else:
            payload = bytes([rnd.choice([1, 3, 4])]) + rnd.randbytes(rnd.randint(0, 60))
        proxy.handle_datagram(payload, rnd.choice([HA, COA1]), 434, 0.02)
    for name in ("proxy.retx.10.1.0.7", "proxy.expire.10.9.9.9", "proxy.bogus", "ha.expire"):
        proxy.handle_timer(name, 1.0)
    assert proxy.handle_icmp(b"\x0a\x00\x00\x00", COA1, 1.0) == []
    assert proxy.counters["dropped"] > 0


def test_tunnel_data_is_the_data_planes() -> None:
    proxy, _, _ = held_proxy()
    assert proxy.handle_datagram(bytes([4, 4, 0, 0]) + b"\x45" * 20, NAT_PUB, 40000, 1.0) == []
    assert proxy.handle_icmp(b"", COA1, 1.0) == []


def test_133_loop_upstream_is_bounded() -> None:
    proxy, req, _ = held_proxy(max_resync=2)
    for _ in range(2):
        out = proxy.handle_datagram(ha_reply(req, 133), HA, 434, 0.02)
        assert any(isinstance(a, Event) and a.name == "proxy_upstream_resync" for a in out)
        (s,) = [a for a in out if isinstance(a, Send)]
        req = decode_udp(s.payload)
    out = proxy.handle_datagram(ha_reply(req, 133), HA, 434, 0.03)
    denied = [a for a in out if isinstance(a, Event) and a.name == "proxy_upstream_denied"]
    assert denied and denied[0].data["code"] == 133
    (s,) = [a for a in out if isinstance(a, Send)]
    rep = decode_udp(s.payload)
    # The MN is told 128, not 133 (its own Identification was fine).
    assert (s.dst, rep.code, rep.home_agent) == (COA1, 128, EXT)
    assert TunnelDown(HOME, COA1, COA1, "proxy") in out
    assert not proxy.bindings(HOME)


def test_retransmit_timer_backoff() -> None:
    proxy, _, _ = held_proxy()
    at = [0.01]
    for _ in range(4):
        out = proxy.handle_timer(f"proxy.retx.{HOME}", at[-1] + 100)  # late timers are fine
        (t,) = [a for a in out if isinstance(a, SetTimer)]
        at.append(t.at - (at[-1] + 100))
    assert at[1:] == [1.0, 2.0, 4.0, 4.0]
    out = proxy.handle_timer(f"proxy.retx.{HOME}", 500.0)
    assert any(isinstance(a, Event) and a.name == "proxy_upstream_timeout" for a in out)


# --- the MN's Attachment.home_agent -------------------------------------------------------


def test_attachment_home_agent_redirects_the_registration() -> None:
    assert outside() != outside(home_agent=None)
    assert outside() == outside()
    clock = Clock()
    counter = itertools.count(1)
    mn = MobileNode(
        MnConfig(HOME, HA, HOME_NET, SPI, KEY, lifetime=LIFE),
        wallclock=clock,
        rand32=lambda: next(counter),
    )
    mn.start(0.0)
    (s,) = [a for a in mn.use_attachment(outside(), 0.1) if isinstance(a, Send)]
    req = decode_udp(s.payload)
    assert (s.dst, req.home_agent, mn.home_agent) == (EXT, EXT, HA)
    # A 136 from the proxy does not move a pinned home agent (no request loop).
    body = encode(RegistrationReply(136, 0, HOME, "10.9.9.9", req.identification))
    out = mn.handle_datagram(append_auth(body, 32, SA), EXT, 434, 0.2)
    assert not [a for a in out if isinstance(a, Send)]
    assert [
        a.data["code"] for a in out if isinstance(a, Event) and a.name == "registration_denied"
    ] == [136]
    assert mn.home_agent == HA
    # Registered with the proxy: the reply comes from it, the tunnel ends there.
    (s,) = [a for a in mn.handle_timer("mn.retry", 40.0) if isinstance(a, Send)]
    req = decode_udp(s.payload)
    rep = append_auth(encode(RegistrationReply(0, LIFE, HOME, EXT, req.identification)), 32, SA)
    out = mn.handle_datagram(rep, EXT, 434, 40.1)
    assert mn.registered and mn.binding_info()["home_agent"] == EXT
    (t,) = [a for a in out if isinstance(a, TunnelUp)]
    assert (t.peer, t.care_of) == (EXT, COA1)
    # Same care-of address without the pinned home agent is a move: straight to the real HA.
    out = mn.use_attachment(outside(home_agent=None), 41.0)
    (s,) = [a for a in out if isinstance(a, Send)]
    req = decode_udp(s.payload)
    assert (s.dst, req.home_agent) == (HA, HA)
    assert any(isinstance(a, Event) and a.name == "movement_detected" for a in out)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        ProxyConfig(EXT, INT, HA, HOME_NET, [], renew_fraction=1.0)
    with pytest.raises(ValueError):
        MipProxy(
            ProxyConfig(EXT, INT, HA, HOME_NET, [MobileNodeConfig("10.9.0.1", SPI, KEY)]),
            wallclock=Clock(),
        )


def test_deregistration_while_held_discards_the_reply_and_deregisters_upstream() -> None:
    proxy, _, _ = held_proxy()
    ident = ntp_from_unix(1_700_000_001.0)
    dereg = append_auth(encode(RegistrationRequest(HOME, EXT, COA1, ident, 0, 0)), 32, SA)
    out = proxy.handle_datagram(dereg, COA1, 434, 0.5)
    names = [a.name for a in out if isinstance(a, Event)]
    assert "proxy_reply_discarded" in names and "proxy_reply_released" not in names
    (rep_send, up_send) = [a for a in out if isinstance(a, Send)]
    rep = decode_udp(rep_send.payload)
    assert (rep_send.dst, rep.code, rep.lifetime, rep.identification) == (COA1, 0, 0, ident)
    up = decode_udp(up_send.payload)
    assert (up_send.dst, up.lifetime, up.care_of_address) == (HA, 0, INT)
    assert not proxy.bindings(HOME)
    assert proxy.upstream(HOME)["state"] == "deregistering"
    # Sent at most twice, then given up without anything for the MN.
    out = proxy.handle_timer(f"proxy.retx.{HOME}", 1.0)
    assert len([a for a in out if isinstance(a, Send)]) == 1
    out = proxy.handle_timer(f"proxy.retx.{HOME}", 2.0)
    assert not [a for a in out if isinstance(a, Send)]
    assert proxy.upstream(HOME)["state"] == "idle"


# --- several home agents (issue 19, item 2) ------------------------------------------------

HOME2, HA2, HOME_NET2 = "10.4.0.7", "10.4.0.1", "10.4.0.0/24"
SPI2, KEY2 = 1001, bytes(range(16, 32))


def test_one_proxy_serves_mobile_nodes_of_two_home_agents() -> None:
    """Seed 003: the proxy "can serve multiple MNs and HAs". A mobile node of each home
    network registers with the proxy; each registration goes upstream to its own HA, and a
    reply from the other HA for it is dropped."""
    net = SimNetwork(latency=0.002)
    rnd = itertools.count(7)
    r32 = lambda: next(rnd)  # noqa: E731
    ha1 = HomeAgent(
        HaConfig(HA, HOME_NET, [MobileNodeConfig(HOME, SPI, KEY)]),
        wallclock=net.wallclock("ha1"),
        rand32=r32,
    )
    ha2 = HomeAgent(
        HaConfig(HA2, HOME_NET2, [MobileNodeConfig(HOME2, SPI2, KEY2)]),
        wallclock=net.wallclock("ha2"),
        rand32=r32,
    )
    config = ProxyConfig(
        EXT,
        INT,
        HA,
        HOME_NET,
        [MobileNodeConfig(HOME, SPI, KEY), MobileNodeConfig(HOME2, SPI2, KEY2)],
        other_home_agents=[(HA2, HOME_NET2)],
    )
    assert config.home_agent_of(HOME) == HA and config.home_agent_of(HOME2) == HA2
    proxy = MipProxy(config, wallclock=net.wallclock("proxy"), rand32=r32)
    mns = {}
    for name, home, ha, net_, spi, key, coa in (
        ("mn1", HOME, HA, HOME_NET, SPI, KEY, COA1),
        ("mn2", HOME2, HA2, HOME_NET2, SPI2, KEY2, COA2),
    ):
        mns[name] = MobileNode(
            MnConfig(home, ha, net_, spi, key, lifetime=LIFE, retransmit_initial=1.0),
            wallclock=net.wallclock(name),
            rand32=r32,
        )
        net.add_node(name, mns[name], {"wlan0": ("internet", coa)}, extra_addresses=[home])
    net.add_node("ha1", ha1, {"eth0": ("home", HA)})
    net.add_node("ha2", ha2, {"eth0": ("home", HA2)})
    net.add_node("proxy", proxy, {"ext": ("internet", EXT), "int": ("dmz", INT)})
    net.start()
    net.call("mn1", "use_attachment", outside(COA1))
    net.call("mn2", "use_attachment", outside(COA2))
    net.run_for(1.0)
    assert mns["mn1"].registered and mns["mn2"].registered
    # each upstream registration at its own HA, with that HA in its Home Agent field
    upstream = {
        e.data["home_address"]: e.data["to"] for e in net.events("proxy", "proxy_upstream_sent")
    }
    assert upstream == {HOME: HA, HOME2: HA2}
    for ha, home in ((ha1, HOME), (ha2, HOME2)):
        (binding,) = ha.bindings(home)
        assert binding.care_of == INT
    assert not ha1.bindings(HOME2) and not ha2.bindings(HOME)
    accepted = {
        e.data["home_address"]: e.data["from"]
        for e in net.events("proxy", "proxy_upstream_accepted")
    }
    assert accepted == {HOME: HA, HOME2: HA2}
    back = {
        (t.home_address, t.peer) for t in net.actions("proxy", TunnelUp) if t.role == "proxy-back"
    }
    assert back == {(HOME, HA), (HOME2, HA2)}
    assert proxy.upstream(HOME2)["home_agent"] == HA2
    # a reply for HOME2 from HA (not its home agent) is dropped, not taken
    reply = RegistrationReply(0, LIFE, HOME2, HA, 1)
    out = proxy.handle_datagram(
        append_auth(encode(reply), 32, SecurityAssociation(SPI2, KEY2)), HA, 434, 5.0
    )
    assert [e.data["reason"] for e in out if isinstance(e, Event)] == [
        f"reply for {HOME2} not from its home agent"
    ]
    # a mobile node on neither home network is refused by the configuration
    with pytest.raises(ValueError):
        MipProxy(
            ProxyConfig(EXT, INT, HA, HOME_NET, [MobileNodeConfig("10.9.0.1", SPI, KEY)]),
            wallclock=net.wallclock("x"),
        )
