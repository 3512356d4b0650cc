"""The MIP proxy of seed 003 for real: the proxy in the DMZ (two boxes, and one box on the VPN
gateway), the IPsec tunnel bound to the home address inside the Mobile IP tunnel."""

from __future__ import annotations

import re

import pytest
from labtools import ROOT, in_window

from mipbase.events import read_run as read_events

pytestmark = pytest.mark.netns

IKE_SETUP = ("IKE_SA_INIT", "IKE_AUTH", "CREATE_CHILD_SA")


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
    events = read_events(outcome.run_dir)
    # leaving the intranet: the proxy registers once at the real HA (care-of = its address)
    public = in_window(events, summary, 1)
    upstream = [
        e for e in public if e["node"] == "proxy" and e["event"] == "proxy_upstream_accepted"
    ]
    assert upstream, [e["event"] for e in public if e["node"] == "proxy"]
    ha_bindings = [e for e in public if e["node"] == "ha" and e["event"].startswith("binding_")]
    assert any(e.get("care_of") == "192.0.2.11" for e in ha_bindings), ha_bindings
    # the ISP's "net unreachable" for the direct registration decides "outside" at once,
    # before the 300 ms decision timer would have
    mn_public = [e for e in public if e["node"] == "mn"]
    acquired = next(e["t_ns"] for e in mn_public if e["event"] == "address_acquired")
    unreachable = next(e["t_ns"] for e in mn_public if e["event"] == "home_agent_unreachable")
    decided = next(
        e["t_ns"]
        for e in mn_public
        if e["event"] == "boundary_decision" and e.get("inside") is False
    )
    assert acquired < unreachable <= decided < acquired + 300_000_000
    # nothing reaches the correspondent around the VPN: the proxy forwards only IKE and ESP
    # (the IKE_AUTH response is when the SA exists; charon's up event may come later)
    auth = next(
        e["t_ns"]
        for e in public
        if e["node"] == "mn"
        and e["event"] == "ike_message"
        and e.get("msg") == "IKE_AUTH"
        and e.get("kind") == "response"
    )
    t_move = summary["move_times_ns"][1]
    first_up = t_move + summary["handoffs"][1]["phases_ms"]["first_packet_up"] * 1e6
    assert first_up > auth
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
    events = read_events(outcome.run_dir)
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
    # one box: the MN's IKE and ESP (from its home address) never leave outside the Mobile IP
    # tunnel, although its host route to the proxy is a route to the gateway's address
    leaks = (outcome.run_dir / "logs" / "bare-home.log").read_text()
    assert not [line for line in leaks.splitlines() if " IP 10.1.0.100" in line], leaks[-800:]


def test_proxy_twice_outside_and_correspondent_opened_traffic(run_scenario) -> None:
    import time

    offset = time.time_ns() - time.monotonic_ns()  # ping -D prints wall-clock times
    outcome = run_scenario(ROOT / "tests" / "scenarios" / "proxy-twice.yaml")
    summary = outcome.summary
    assert outcome.passed, summary["expectations"]
    events = read_events(outcome.run_dir)
    # back inside, the MN deregistered from the proxy, so the second trip registers anew at
    # the HA instead of being answered from the first trip's (replaced) binding
    inside = in_window(events, summary, 1)
    assert any(e["node"] == "mn" and e["event"] == "deregistration_sent" for e in inside)
    second = in_window(events, summary, 2)
    assert any(e["node"] == "proxy" and e["event"] == "proxy_upstream_accepted" for e in second), [
        e["event"] for e in second if e["node"] == "proxy"
    ]
    # the correspondent's own pings are answered outside: the replies return through the
    # proxy and the HA (reverse tunnelling), the way the firewall saw the requests go
    log = (outcome.run_dir / "logs" / "ping-home.log").read_text()
    replies = [
        int(float(m.group(1)) * 1e9) - offset
        for m in re.finditer(r"^\[(\d+\.\d+)\] \d+ bytes from", log, re.M)
    ]
    moves = summary["move_times_ns"]
    ups = [
        e["t_ns"] for e in events if e["node"] == "mn" and e["event"] == "ike_updown" and e["up"]
    ]
    assert len(ups) == 2
    for up, end in ((ups[0], moves[1]), (ups[1], moves[3])):
        answered = [t for t in replies if up + 300_000_000 <= t <= end]
        assert len(answered) >= 10, (len(answered), len(replies))
