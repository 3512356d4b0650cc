"""Dual MIP (RFC 5265) for real: an external home agent in the DMZ underneath the VPN, the
IPsec tunnel bound to the external home address, the internal registration through it."""

from __future__ import annotations

import pytest
from labtools import ROOT, in_window

from mipbase.events import read_run as read_events

pytestmark = pytest.mark.netns

IKE_SETUP = ("IKE_SA_INIT", "IKE_AUTH", "CREATE_CHILD_SA")
X_HOA, X_HA, I_HA = "192.0.2.100", "192.0.2.11", "10.1.0.1"


def test_dual_mip_nests_three_tunnels_and_moves_outside_with_x_mip_only(run_scenario) -> None:
    outcome = run_scenario(ROOT / "scenarios" / "dual-roam.yaml")
    summary = outcome.summary
    assert outcome.passed, summary["expectations"]
    assert [h["mode"] for h in summary["handoffs"]] == ["f", "dual", "dual", "f", "home"]
    events = read_events(outcome.run_dir)

    # leaving the intranet: x-MIP first (the x-HA binds the x-HoA to the care-of address),
    # then the IPsec tunnel from the x-HoA, then the TIA registered with the i-HA through it
    public = in_window(events, summary, 1)
    x_bind = next(e for e in public if e["node"] == "proxy" and e["event"] == "binding_added")
    assert x_bind["home_address"] == X_HOA and x_bind["care_of"].startswith("203.0.113.")
    up = next(e for e in public if e["node"] == "mn" and e["event"] == "ike_updown" and e["up"])
    assert up["local"] == X_HOA and up["vips"], up
    tia = up["vips"][0]
    inner = next(
        e
        for e in public
        if e["node"] == "mn" and e["event"] == "registration_accepted" and e["mode"] == "dual"
    )
    assert inner["care_of"] == tia
    i_bind = [e for e in public if e["node"] == "ha" and e["event"] == "binding_added"]
    assert i_bind and i_bind[-1]["care_of"] == tia  # i-MIP -> TIA, inside ESP -> x-HoA
    assert x_bind["t_ns"] < up["t_ns"] < inner["t_ns"]

    # public -> hotspot: one x-MIP registration (RFC 3519 UDP through the NAT); no IKE, no
    # i-MIP registration, the i-HA's binding untouched
    hotspot = in_window(events, summary, 2)
    mn = [e for e in hotspot if e["node"] == "mn"]
    assert not [e for e in mn if e["event"] == "ike_message" and e.get("exchange") in IKE_SETUP]
    assert not [e for e in mn if e["event"] in ("ike_updown", "ike_update", "child_updown")]
    assert not [e for e in mn if e["event"] == "registration_sent"]
    assert not [e for e in hotspot if e["node"] == "ha" and e["event"].startswith("binding_")]
    x_moves = [e for e in hotspot if e["node"] == "proxy" and e["event"] == "binding_added"]
    assert x_moves and x_moves[-1]["encapsulation"] == "udp", x_moves
    assert any(e["event"] == "external_registration" and e["udp"] for e in mn)

    # back inside (visited): plain Mobile IP, the VPN closed
    back = in_window(events, summary, 3)
    assert any(e["node"] == "mn" and e["event"] == "ike_updown" and not e["up"] for e in back)
    assert summary["tcp"]["errors"] == 0
