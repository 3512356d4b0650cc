"""MN, FA and HA together on the in-memory network (agents/mip/simnet.py), fake clock."""

from __future__ import annotations

import itertools

from agents.mip.actions import Send, TunnelUp
from agents.mip.advert import AdvertisingInterface
from agents.mip.auth import SecurityAssociation
from agents.mip.fa import FaConfig, FaInterface, ForeignAgent
from agents.mip.ha import HaConfig, HomeAgent, MobileNodeConfig
from agents.mip.messages import decode_udp
from agents.mip.mn import MnConfig, MobileNode
from agents.mip.simnet import SimNetwork

KEY = "00112233445566778899aabbccddeeff"
HOME, HA = "10.1.0.7", "10.1.0.1"


def build(
    *,
    mn_kw=None,
    ha_kw=None,
    fa_kw=None,
    fa2=False,
    replay="timestamp",
    mn_skew=0.0,
    nat=False,
) -> tuple[SimNetwork, MobileNode, ForeignAgent, HomeAgent, ForeignAgent | None]:
    net = SimNetwork(latency=0.002)
    rnd = itertools.count(7)
    r32 = lambda: next(rnd)  # noqa: E731
    ha = HomeAgent(
        HaConfig(
            HA,
            "10.1.0.0/24",
            [MobileNodeConfig(HOME, 1000, KEY, replay=replay)],
            advertise_on=[AdvertisingInterface("eth0", HA, 24)],
            adv_interval=1.0,
            **(ha_kw or {}),
        ),
        wallclock=net.wallclock("ha"),
        rand32=r32,
    )
    fa_defaults = dict(adv_interval=1.0, min_solicited_interval=0.05)
    fa = ForeignAgent(
        FaConfig(
            "10.2.0.1", [FaInterface("eth1", "10.2.0.1", 24)], **{**fa_defaults, **(fa_kw or {})}
        )
    )
    fb = None
    mn_defaults = dict(
        retransmit_initial=0.1, retransmit_max=1.0, solicit_interval=0.1, lifetime=20, replay=replay
    )
    mn = MobileNode(
        MnConfig(HOME, HA, "10.1.0.0/24", 1000, KEY, **{**mn_defaults, **(mn_kw or {})}),
        wallclock=net.wallclock("mn"),
        rand32=r32,
    )
    net.add_node("ha", ha, {"eth0": ("home", HA), "core": ("core", "10.0.0.1")})
    net.add_node("fa", fa, {"eth1": ("visited", "10.2.0.1"), "core": ("core", "10.0.0.2")})
    if fa2:
        fb = ForeignAgent(
            FaConfig("10.3.0.1", [FaInterface("eth1", "10.3.0.1", 24)], **fa_defaults)
        )
        net.add_node("fb", fb, {"eth1": ("office", "10.3.0.1"), "core": ("core", "10.0.0.3")})
    net.add_node(
        "mn",
        mn,
        {"wlan0": ("visited", None)},
        extra_addresses=[HOME],
        wall_offset=mn_skew,
        nat_public="203.0.113.5" if nat else None,
    )
    net.start()
    net.call("mn", "link_up", "wlan0")
    return net, mn, fa, ha, fb


def test_register_through_fa_and_keep_renewing() -> None:
    net, mn, fa, ha, _ = build()
    net.run_until(0.5)
    assert mn.mode == "f" and mn.registered
    (b,) = ha.bindings()
    assert (b.care_of, b.encapsulation) == ("10.2.0.1", "ipip")
    assert HOME in fa.visitors
    acc = net.events("mn", "registration_accepted")[0]
    assert acc.data["latency"] < 0.02  # MN->FA->HA->FA->MN, 4 x 2 ms
    net.run_until(120.0)
    assert mn.registered and len(ha.bindings()) == 1
    # Lifetime 20 s, renewals at 80 %: about 120 / 16 of them.
    assert 6 <= len(net.events("mn", "registration_accepted")) <= 9
    assert not net.events("ha", "binding_expired") and not net.events("fa", "visitor_expired")


def test_move_between_foreign_agents() -> None:
    net, mn, fa, ha, fb = build(fa2=True)
    net.run_until(0.5)
    net.move("mn", "wlan0", "office")
    t_move = net.now
    net.run_until(t_move + 1.0)
    assert mn.registered and mn.care_of == "10.3.0.1"
    assert [b.care_of for b in ha.bindings()] == ["10.3.0.1"]
    acc = [e for e in net.events("mn", "registration_accepted") if e.data["care_of"] == "10.3.0.1"]
    assert acc
    # The old FA's visitor entry goes when its lifetime runs out.
    net.run_until(t_move + 25.0)
    assert HOME not in fa.visitors and fb is not None and HOME in fb.visitors


def test_return_home_deregisters() -> None:
    net, mn, _, ha, _ = build()
    net.run_until(0.5)
    net.move("mn", "wlan0", "home")
    net.run_until(net.now + 1.5)
    assert mn.mode == "home" and ha.bindings() == []
    assert net.events("mn", "deregistered")
    assert net.events("ha", "binding_removed")


def test_lossy_path_retransmits_with_backoff() -> None:
    net, mn, *_ = build()
    lost = {"n": 0}

    def drop(node: str, s: Send) -> bool:
        if node == "mn" and s.kind == "udp" and lost["n"] < 3:
            lost["n"] += 1
            return True
        return False

    net.drop = drop
    net.run_until(3.0)
    assert mn.registered
    wanted = ("registration_sent", "registration_retransmitted")
    sent = [e for e in net.events("mn") if e.name in wanted]
    assert len(sent) == 4
    times = [t for t, n, a in net.log if n == "mn" and isinstance(a, Send) and a.kind == "udp"]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    assert gaps == [0.1, 0.2, 0.4]


def test_clock_skew_is_resynchronised() -> None:
    net, mn, *_ = build(mn_skew=3600.0)
    net.run_until(1.0)
    assert mn.registered
    assert net.events("ha", "registration_denied")[0].data["code"] == 133
    assert net.events("mn", "registration_resync")


def test_nonce_replay_protection_end_to_end() -> None:
    net, mn, *_ = build(replay="nonce")
    net.run_until(1.0)
    assert mn.registered
    assert [e.data["code"] for e in net.events("ha", "registration_denied")] == [133]
    net.run_until(60.0)  # renewals keep working with rolling nonces
    assert mn.registered and len(net.events("mn", "registration_accepted")) >= 3


def test_colocated_behind_nat_uses_udp_tunnel() -> None:
    net, mn, _, ha, _ = build(nat=True, fa_kw=dict(advertise=False), mn_kw=dict(lifetime=600))
    net.nodes["mn"].ifaces["wlan0"] = ("hotspot", "192.168.1.10")
    net.call("mn", "address_acquired", "192.168.1.10", 24, "192.168.1.1", iface="wlan0")
    net.run_until(1.0)
    assert mn.mode == "c" and mn.registered
    (b,) = ha.bindings()
    assert (b.care_of, b.peer, b.encapsulation) == ("192.168.1.10", "203.0.113.5", "udp")
    assert net.events("ha", "nat_detected")
    mn_tunnel = [a for a in net.actions("mn", TunnelUp)][-1]
    assert mn_tunnel.encapsulation == "udp"
    # Keepalives flow to the HA inside the tunnel at the interval the HA gave (110 s);
    # renewals (at 480 s here) also refresh the NAT mapping and restart the interval.
    net.run_until(240.0)
    assert ha.counters.get("tunnel_data", 0) == 2
    assert mn.registered


def test_fa_challenge_with_mn_fa_and_fa_ha_authentication() -> None:
    mnfa = SecurityAssociation(2000, b"mn-fa")
    faha = SecurityAssociation(3000, b"fa-ha")
    net, mn, *_ = build(
        mn_kw=dict(mn_fa_sas={"10.2.0.1": mnfa}),
        fa_kw=dict(challenge=True, mn_sas={HOME: mnfa}, ha_sas={HA: faha}),
        ha_kw=dict(fa_sas={"10.2.0.1": faha}),
    )
    net.run_until(0.5)
    assert mn.registered
    relayed = [a for t, n, a in net.log if n == "fa" and isinstance(a, Send) and a.dst == HA]
    assert [e.type for e in decode_udp(relayed[0].payload).extensions] == [32, 34]


def test_reverse_tunnel_required_by_ha() -> None:
    net, mn, *_ = build(ha_kw=dict(reverse_tunnel_required=True), mn_kw=dict(denied_retry=None))
    net.run_until(1.0)
    assert not mn.registered
    assert net.events("mn", "registration_denied")[0].data["code"] == 138
    net2, mn2, *_ = build(ha_kw=dict(reverse_tunnel_required=True), mn_kw=dict(reverse_tunnel=True))
    net2.run_until(1.0)
    assert mn2.registered


def test_shutdown_removes_binding() -> None:
    net, _, fa, ha, _ = build()
    net.run_until(0.5)
    net.call("mn", "shutdown")
    net.run_until(1.0)
    assert ha.bindings() == [] and HOME not in fa.visitors
