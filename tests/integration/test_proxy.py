"""The MIP proxy of seed 003 for real: the proxy in the DMZ (two boxes, and one box on the VPN
gateway), the IPsec tunnel bound to the home address inside the Mobile IP tunnel."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from labtools import ROOT

pytestmark = pytest.mark.netns

IKE_SETUP = ("IKE_SA_INIT", "IKE_AUTH", "CREATE_CHILD_SA")


def events_of(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]


def in_window(events: list[dict], summary: dict, index: int) -> list[dict]:
    moves = summary["move_times_ns"]
    end = moves[index + 1] if index + 1 < len(moves) else float("inf")
    return [e for e in events if moves[index] <= e["t_ns"] < end]


def ike_setup(events: list[dict]) -> list[dict]:
    return [
        e
        for e in events
        if (e["event"] == "ike_message" and e.get("exchange") in IKE_SETUP)
        or (e["event"] in ("ike_updown", "child_updown", "ike_update", "child_rekey"))
    ]


def test_two_box_proxy_keeps_the_stream_and_renegotiates_nothing_outside(run_scenario) -> None:
    outcome = run_scenario(ROOT / "scenarios" / "proxy-roam.yaml")
    summary = outcome.summary
    assert outcome.passed, summary["expectations"]
    assert [h["mode"] for h in summary["handoffs"]] == ["f", "proxy", "proxy", "f", "home"]
    events = events_of(outcome.run_dir)
    # leaving the intranet: the proxy registers once at the real HA (care-of = its address)
    public = in_window(events, summary, 1)
    upstream = [
        e for e in public if e["node"] == "proxy" and e["event"] == "proxy_upstream_accepted"
    ]
    assert upstream, [e["event"] for e in public if e["node"] == "proxy"]
    ha_bindings = [e for e in public if e["node"] == "ha" and e["event"].startswith("binding_")]
    assert any(e.get("care_of") == "192.0.2.11" for e in ha_bindings), ha_bindings
    # nothing reaches the correspondent around the VPN: the proxy forwards only IKE and ESP
    phases = summary["handoffs"][1]["phases_ms"]
    assert phases["first_packet_up"] > phases["ike_established"], phases
    # the IPsec tunnel is bound to the home address
    up = next(e for e in public if e["node"] == "mn" and e["event"] == "ike_updown" and e["up"])
    assert up["local"] == "10.1.0.100" and up["remote"] == "192.0.2.10"
    # public -> hotspot (behind the NAT): one registration with the proxy, RFC 3519 UDP
    # tunnelling, and no IKE exchange or IPsec SA change at all; the HA is not involved
    hotspot = in_window(events, summary, 2)
    assert ike_setup(hotspot) == []
    assert not [e for e in hotspot if e["node"] == "ha" and e["event"].startswith("binding_")]
    front = [
        e
        for e in hotspot
        if e["node"] == "proxy" and e["event"] in ("binding_updated", "binding_added")
    ]
    assert front and front[-1]["encapsulation"] == "udp", front
    assert not [e for e in hotspot if e["node"] == "proxy" and e["event"] == "proxy_upstream_sent"]
    # back inside: a direct registration replaces the proxy's binding at the HA
    assert summary["tcp"]["errors"] == 0


def test_one_box_proxy_keeps_mobile_ip_control_out_of_the_vpn(run_scenario) -> None:
    outcome = run_scenario(ROOT / "tests" / "scenarios" / "proxy-onebox.yaml")
    summary = outcome.summary
    assert outcome.passed, summary["expectations"]
    events = events_of(outcome.run_dir)
    hotspot = in_window(events, summary, 1)
    assert ike_setup(hotspot) == []
    # what the gateway decrypted and encrypted (its ipsec0): the probe streams, and not one
    # Mobile IP message (UDP 434) although the MN registered twice with the proxy on gw
    capture = (outcome.run_dir / "logs" / "vpn-capture.log").read_text()
    packets = [line for line in capture.splitlines() if re.match(r"\d\d:\d\d:\d\d\.\d+ IP", line)]
    assert len(packets) > 100, capture[-2000:]
    assert any("10.1.0.100" in line for line in packets)
    assert not [line for line in packets if re.search(r"\.434[ :]", line)], packets[:5]
    registrations = [
        e for e in events if e["node"] == "mn" and e["event"] == "registration_accepted"
    ]
    assert sum(1 for e in registrations if e.get("mode") == "proxy") >= 2
