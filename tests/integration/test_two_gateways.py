"""Two VPN gateways, for real (issue 19, items 2 and 4; RFC 5266 section 5: "If the MN
connects to a new VPN GW, the MN must send a registration request"): scenarios/
mc-two-gateways.yaml, the MN outside in mode mc through gw, then on the hotspot that gw2
serves: a new IKE SA with gw2, its tunnel inner address registered with the HA."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from labtools import ROOT

pytestmark = pytest.mark.netns


def test_a_new_gateway_is_a_new_registration(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("scenarios need root (network namespaces)")
    from testbed.scenario.execute import run_scenario
    from testbed.scenario.runner import RunOptions

    options = RunOptions(results=tmp_path / "results", progress=lambda _: None, figures=False)
    outcome = run_scenario(ROOT / "scenarios" / "mc-two-gateways.yaml", options)
    summary = outcome.summary
    assert outcome.passed, summary["reasons"]
    assert [h["mode"] for h in summary["handoffs"]] == ["mc", "mc", "home"]
    events = [
        json.loads(line) for line in (outcome.run_dir / "events.jsonl").read_text().splitlines()
    ]
    changed = [e for e in events if e["event"] == "vpn_gateway_changed"]
    assert [(e["gateway"], e["ike"]) for e in changed] == [("192.0.2.20", "home2")], changed
    # each gateway brought one IKE SA up, the second after the change
    ups = [e for e in events if e["event"] == "ike_updown" and e.get("up")]
    gw_up = next(e for e in ups if e["node"] == "gw")
    gw2_up = next(e for e in ups if e["node"] == "gw2")
    assert gw_up["t_ns"] < changed[0]["t_ns"] < gw2_up["t_ns"]
    # the MN closed its SA with gw (connection home) and registered gw2's TIA as care-of
    downs = [e for e in events if e["node"] == "mn" and e["event"] == "ike_updown"]
    assert any(e.get("ike") == "home" and not e.get("up") for e in downs), downs
    accepted = [
        e["care_of"]
        for e in events
        if e["node"] == "mn" and e["event"] == "registration_accepted" and e.get("mode") == "mc"
    ]
    assert len(accepted) == 2 and accepted[0].startswith("10.10.0.")
    assert accepted[1].startswith("10.11.0."), accepted  # gw2's pool: a new registration
    bound = [e["care_of"] for e in events if e["node"] == "ha" and e["event"] == "binding_added"]
    assert bound[-1] == accepted[1]
