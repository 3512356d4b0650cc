"""tshark as an independent oracle for the wire format.

Every message type (and every extension) is encoded, written into ONE pcap with correct
Ethernet/IPv4/UDP/ICMP headers, and dissected by Wireshark's ``mip``/``icmp`` dissectors in two
tshark calls: one ``-T json -x`` to compare field values, one with the malformed/expert filter,
which must print nothing. Messages produced by the state machines themselves (a simulated
registration through an FA, a NAT'd co-located registration with a keepalive) go into the same
pcap. Skipped only when tshark is not installed.

Known tshark limitation, not tested here: its ICMP dissector reports unknown *skippable*
advertisement extensions (e.g. type 200) as malformed, although RFC 5944 section 1.9 says to
skip them; our decoder does skip them (see test_mip_codec).
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agents.mip.actions import Send
from agents.mip.advert import AdvertisingInterface
from agents.mip.auth import SecurityAssociation
from agents.mip.codec import encode
from agents.mip.extensions import (
    AuthExtension,
    ChallengeExtension,
    EncapDeliveryStyle,
    NaiExtension,
    RawExtension,
    UdpTunnelReply,
    UdpTunnelRequest,
)
from agents.mip.fa import FaConfig, FaInterface, ForeignAgent
from agents.mip.ha import HaConfig, HomeAgent, MobileNodeConfig
from agents.mip.icmp import AgentAdvertisement, AgentSolicitation, MobilityAgentExtension
from agents.mip.ipv4 import build_ipv4, icmp_echo_request
from agents.mip.messages import RegistrationReply, RegistrationRequest, TunnelData
from agents.mip.mn import MnConfig, MobileNode
from agents.mip.pcap import ethernet_frame, icmp_packet, udp_packet, write_pcap
from agents.mip.simnet import SimNetwork

TSHARK = shutil.which("tshark") or ("/usr/bin/tshark" if Path("/usr/bin/tshark").exists() else None)
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")

SA_HA = SecurityAssociation(0x100, bytes(range(16)))
SA_FA = SecurityAssociation(0x200, b"mn-fa-key")
SA_FH = SecurityAssociation(0x300, b"fa-ha-key")
SAS = {s.spi: s for s in (SA_HA, SA_FA, SA_FH)}
IDENT = 0xE8A1B2C301020304

INNER = build_ipv4("10.1.0.7", "10.1.0.1", 1, icmp_echo_request(0x4D49, 3), ident=3)

# (message, src, dst, sport, dport)
HAND: list[tuple[Any, str, str, int, int]] = [
    (
        RegistrationRequest(
            "10.1.0.7",
            "10.1.0.1",
            "10.2.0.1",
            IDENT,
            1800,
            0xE2,  # S B D T
            [
                NaiExtension("mn@example.com"),
                UdpTunnelRequest(4, force=True, via_fa=True),
                AuthExtension(32, 0x100),
                EncapDeliveryStyle(),
                ChallengeExtension(b"\x01\x02\x03\x04\x05\x06\x07\x08"),
                AuthExtension(33, 0x200),
                RawExtension(200, b"skip me"),
            ],
        ),
        "10.1.0.7",
        "10.2.0.1",
        434,
        434,
    ),
    (
        RegistrationRequest(
            "10.1.0.7", "10.1.0.1", "10.1.0.7", IDENT + 1, 0, 0, [AuthExtension(32, 0x100)]
        ),
        "10.1.0.7",
        "10.1.0.1",
        40123,
        434,
    ),
    (
        RegistrationReply(
            0,
            600,
            "10.1.0.7",
            "10.1.0.1",
            IDENT,
            [
                UdpTunnelReply(0, 110, forced=True),
                AuthExtension(32, 0x100),
                AuthExtension(34, 0x300),
            ],
        ),
        "10.1.0.1",
        "10.2.0.1",
        434,
        434,
    ),
    (
        RegistrationReply(
            133, 0, "10.1.0.7", "10.1.0.1", 0xE8A1B2D0_01020304, [AuthExtension(32, 0x100)]
        ),
        "10.1.0.1",
        "203.0.113.5",
        434,
        40001,
    ),
    (TunnelData(4, INNER), "192.168.1.10", "10.1.0.1", 434, 434),
    (
        AgentAdvertisement(
            30,
            [("10.2.0.1", 0)],
            MobilityAgentExtension(300, 1800, 0x9180, ["10.2.0.1", "10.2.0.2"]),
            [24],
            b"\xca\xfe\xba\xbe\x00\x01\x02\x03",
            [],
            16,
            1,
        ),
        "10.2.0.1",
        "224.0.0.1",
        0,
        0,
    ),
    (
        AgentAdvertisement(
            9,
            [("10.1.0.1", 5), ("10.1.0.2", -1)],
            MobilityAgentExtension(7, 600, 0x2000, []),
            [24, 16],
        ),
        "10.1.0.1",
        "255.255.255.255",
        0,
        0,
    ),
    (AgentSolicitation(), "0.0.0.0", "224.0.0.2", 0, 0),
]


def machine_traffic() -> list[tuple[bytes, str, str, int, int, str]]:
    """Messages the state machines emit in two short simulated runs."""
    out: list[tuple[bytes, str, str, int, int, str]] = []
    key = "00112233445566778899aabbccddeeff"
    for nat in (False, True):
        net = SimNetwork()
        rnd = itertools.count(5)
        ha = HomeAgent(
            HaConfig(
                "10.1.0.1",
                "10.1.0.0/24",
                [MobileNodeConfig("10.1.0.7", 1000, key)],
                advertise_on=[AdvertisingInterface("eth0", "10.1.0.1", 24)],
                keepalive_interval=5,
            ),
            wallclock=net.wallclock(),
            rand32=rnd.__next__,
        )
        fa = ForeignAgent(
            FaConfig("10.2.0.1", [FaInterface("eth1", "10.2.0.1", 24)], advertise=not nat),
        )
        mn = MobileNode(
            MnConfig("10.1.0.7", "10.1.0.1", "10.1.0.0/24", 1000, key, reverse_tunnel=True),
            wallclock=net.wallclock(),
            rand32=rnd.__next__,
        )
        net.add_node("ha", ha, {"eth0": ("home", "10.1.0.1")})
        net.add_node("fa", fa, {"eth1": ("visited", "10.2.0.1")})
        net.add_node(
            "mn",
            mn,
            {"wlan0": ("hotspot", "192.168.1.10") if nat else ("visited", None)},
            extra_addresses=["10.1.0.7"],
            nat_public="203.0.113.5" if nat else None,
        )
        net.start()
        net.call("mn", "link_up", "wlan0")
        if nat:
            net.call("mn", "address_acquired", "192.168.1.10", 24, None, iface="wlan0")
        net.run_until(6.0)
        assert mn.registered
        for _, node, a in net.log:
            if isinstance(a, Send):
                src = a.src or net.nodes[node].ifaces.get(a.iface or "", ("", "10.9.9.9"))[1]
                out.append(
                    (a.payload, src or "10.9.9.9", a.dst, a.src_port or 434, a.dst_port, a.kind)
                )
    return out


def _pairs(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return items  # keep duplicate keys (several extensions of one kind)


def _flatten(node: Any, into: dict[str, list[Any]]) -> dict[str, list[Any]]:
    if isinstance(node, list) and node and all(isinstance(x, tuple) and len(x) == 2 for x in node):
        for k, v in node:
            if isinstance(v, list) and v and all(isinstance(x, tuple) for x in v):
                into.setdefault(k, [])
                _flatten(v, into)
            else:
                into.setdefault(k, []).append(v)
    return into


@pytest.fixture(scope="module")
def dissected(tmp_path_factory: pytest.TempPathFactory):
    frames = []
    for msg, src, dst, sport, dport in HAND:
        data = encode(msg, SAS)
        if isinstance(msg, AgentAdvertisement | AgentSolicitation):
            frames.append(ethernet_frame(icmp_packet(src, dst, data)))
        else:
            frames.append(ethernet_frame(udp_packet(src, dst, data, sport=sport, dport=dport)))
    traffic = machine_traffic()
    for payload, src, dst, sport, dport, kind in traffic:
        if kind == "icmp":
            frames.append(ethernet_frame(icmp_packet(src, dst, payload)))
        else:
            frames.append(ethernet_frame(udp_packet(src, dst, payload, sport=sport, dport=dport)))
    pcap = tmp_path_factory.mktemp("mip") / "all.pcap"
    write_pcap(pcap, frames)
    gate = subprocess.run(
        [
            TSHARK,
            "-n",
            "-r",
            str(pcap),
            "-o",
            "udp.check_checksum:TRUE",
            "-Y",
            "_ws.malformed || _ws.expert.severity >= warning",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    js = subprocess.run(
        [TSHARK, "-n", "-r", str(pcap), "-o", "udp.check_checksum:TRUE", "-T", "json", "-x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    packets = json.loads(js.stdout, object_pairs_hook=_pairs)
    layers = [_flatten(dict(p)["_source"], {}) for p in packets]
    return {"gate": gate.stdout, "layers": layers, "n": len(frames), "traffic": traffic}


def raw(f: dict[str, list[Any]], name: str) -> list[str]:
    return [v[0] for v in f.get(name + "_raw", [])]


def test_no_malformed_or_warning(dissected) -> None:
    assert dissected["gate"].strip() == ""
    assert len(dissected["layers"]) == dissected["n"]
    assert len(dissected["traffic"]) > 15


def test_every_frame_dissected_with_good_checksums(dissected) -> None:
    for f in dissected["layers"]:
        assert "mip" in f or "icmp" in f, list(f)
        if "udp" in f:
            assert f["udp.checksum.status"] == ["1"]
        if f.get("icmp.type", ["0"])[0] in ("9", "10"):
            assert f["icmp.checksum.status"][0] == "1"
        assert "_ws.malformed" not in f
        # Notes are fine (e.g. "TTL only 1" on advertisements, which RFC 5944 2.1 requires).
        assert all(int(s) < 0x00600000 for s in f.get("_ws.expert.severity", [])), f.get(
            "_ws.expert.message"
        )


def test_registration_request_fields(dissected) -> None:
    f = dissected["layers"][0]
    msg = HAND[0][0]
    wire = encode(msg, SAS)
    assert f["mip.type"] == ["1"] and f["mip.flags"] == ["0xe2"]
    assert f["mip.s"] == ["1"] and f["mip.b"] == ["1"] and f["mip.d"] == ["1"]
    assert f["mip.t"] == ["1"] and f["mip.m"] == ["0"]
    assert (f["mip.life"], f["mip.homeaddr"], f["mip.haaddr"], f["mip.coa"]) == (
        ["1800"],
        ["10.1.0.7"],
        ["10.1.0.1"],
        ["10.2.0.1"],
    )
    assert raw(f, "mip.ident") == [f"{IDENT:016x}"]
    assert f["mip.ext.type"] == ["131", "144", "32", "130", "132", "33", "200"]
    assert f["mip.ext.len"] == ["14", "6", "20", "0", "8", "20", "7"]
    assert f["mip.nai"] == ["mn@example.com"]
    assert (f["mip.ext.utrq.f"], f["mip.ext.utrq.r"], f["mip.ext.utrq.encaptype"]) == (
        ["1"],
        ["1"],
        ["4"],
    )
    assert f["mip.auth.spi"] == ["0x00000100", "0x00000200"]
    auths = [
        e.authenticator.hex() for e in _decoded(wire).extensions if isinstance(e, AuthExtension)
    ]
    assert raw(f, "mip.auth.auth") == auths


def _decoded(wire: bytes):
    from agents.mip.codec import decode

    return decode(wire)


def test_registration_reply_fields(dissected) -> None:
    f = dissected["layers"][2]
    assert (f["mip.type"], f["mip.code"], f["mip.life"]) == (["3"], ["0"], ["600"])
    assert raw(f, "mip.ident") == [f"{IDENT:016x}"]
    assert f["mip.ext.type"] == ["44", "32", "34"]
    assert (f["mip.ext.utrp.code"], f["mip.ext.utrp.keepalive"], f["mip.ext.utrp.f"]) == (
        ["0"],
        ["110"],
        ["1"],
    )
    assert f["mip.auth.spi"] == ["0x00000100", "0x00000300"]
    g = dissected["layers"][3]
    assert g["mip.code"] == ["133"] and raw(g, "mip.ident") == ["e8a1b2d001020304"]


def test_tunnel_data_fields(dissected) -> None:
    f = dissected["layers"][4]
    assert f["mip.type"] == ["4"] and f["mip.nattt.nexthdr"] == ["4"]
    assert f["ip.src"] == ["192.168.1.10", "10.1.0.7"]  # outer, then the carried packet
    assert f["icmp.type"] == ["8"]


def test_advertisement_fields(dissected) -> None:
    f = dissected["layers"][5]
    assert (f["icmp.type"], f["icmp.code"], f["icmp.lifetime"]) == (["9"], ["16"], ["30"])
    assert f["icmp.router_address"] == ["10.2.0.1"] and f["icmp.pref_level"] == ["0"]
    assert f["icmp.mip.type"] == ["16", "19", "24", "0"]
    assert (f["icmp.mip.seq"], f["icmp.mip.life"], f["icmp.mip.flags"]) == (
        ["300"],
        ["1800"],
        ["0x9180"],
    )
    assert f["icmp.mip.r"] == ["1"] and f["icmp.mip.f"] == ["1"] and f["icmp.mip.h"] == ["0"]
    assert f["icmp.mip.rt"] == ["1"] and f["icmp.mip.u"] == ["1"]
    assert f["icmp.mip.coa"] == ["10.2.0.1", "10.2.0.2"]
    assert f["icmp.mip.prefixlength"] == ["24"]
    assert raw(f, "icmp.mip.challenge") == ["cafebabe00010203"]
    g = dissected["layers"][6]
    assert g["icmp.router_address"] == ["10.1.0.1", "10.1.0.2"]
    assert g["icmp.pref_level"] == ["5", "-1"]
    assert g["icmp.mip.h"] == ["1"] and g["icmp.mip.prefixlength"] == ["24", "16"]
    assert "icmp.mip.coa" not in g


def test_solicitation(dissected) -> None:
    f = dissected["layers"][7]
    assert f["icmp.type"] == ["10"] and f["icmp.code"] == ["0"]


def test_machine_traffic_is_understood(dissected) -> None:
    kinds = set()
    for f in dissected["layers"][len(HAND) :]:
        if "mip.type" in f:
            kinds.add(("mip", f["mip.type"][0]))
            if f["mip.type"][0] == "3":
                assert f["mip.code"] == ["0"]
        else:
            kinds.add(("icmp", f["icmp.type"][0]))
    assert {("mip", "1"), ("mip", "3"), ("mip", "4"), ("icmp", "9"), ("icmp", "10")} <= kinds
