"""RFC 5266 for real: the MN crosses the enterprise boundary through the strongSwan VPN gateway
(mode mc), moves between foreign networks with MOBIKE, and comes back inside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from labtools import ROOT

pytestmark = pytest.mark.netns


def events_of(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]


def in_window(events: list[dict], summary: dict, index: int) -> list[dict]:
    moves = summary["move_times_ns"]
    end = moves[index + 1] if index + 1 < len(moves) else float("inf")
    return [e for e in events if moves[index] <= e["t_ns"] < end]


def test_roam_nat_crosses_the_boundary_both_ways(run_scenario) -> None:
    outcome = run_scenario(ROOT / "scenarios" / "roam-nat.yaml")
    summary = outcome.summary
    assert outcome.passed, summary["expectations"]
    assert [h["mode"] for h in summary["handoffs"]] == ["f", "mc", "mc", "f", "home"]
    events = events_of(outcome.run_dir)
    decisions = [
        [
            e.get("inside")
            for e in in_window(events, summary, i)
            if e["node"] == "mn" and e["event"] == "boundary_decision"
        ]
        for i in range(5)
    ]
    # outside: only the gateway answered; inside: the home agent did
    assert decisions[1][-1] is False and decisions[2][-1] is False, decisions
    assert decisions[3][-1] is True and decisions[4][-1] is True, decisions
    # the outside move into the NAT is a MOBIKE update of the same IKE SA, no new one
    hotspot = [e for e in in_window(events, summary, 2) if e["node"] == "mn"]
    assert any(e["event"] == "ike_update" for e in hotspot)
    assert not any(e["event"] == "ike_updown" and e.get("up") for e in hotspot)
    assert not any(e["event"] == "registration_sent" and e.get("mode") == "mc" for e in hotspot)
    # back inside, the VPN is closed: the intranet traffic does not use it
    back = in_window(events, summary, 3)
    assert any(e["node"] == "mn" and e["event"] == "ike_updown" and not e.get("up") for e in back)
    assert summary["tcp"]["errors"] == 0
    assert "boundary_decision" in summary["handoffs"][1]["phases_ms"]


def test_without_mobike_each_outside_move_needs_a_new_ike_sa(run_scenario) -> None:
    outcome = run_scenario(ROOT / "scenarios" / "roam-nat-nomobike.yaml")
    summary = outcome.summary
    assert outcome.passed, summary["expectations"]
    events = events_of(outcome.run_dir)
    hotspot = [e for e in in_window(events, summary, 2) if e["node"] == "mn"]
    assert any(e["event"] == "ike_updown" and e.get("up") for e in hotspot)
    assert not any(e["event"] == "ike_update" for e in hotspot)


def test_outside_mn_survives_nat_rebind_and_gateway_restart(run_scenario) -> None:
    import csv

    outcome = run_scenario(ROOT / "tests" / "scenarios" / "vpn-faults.yaml")
    summary = outcome.summary
    assert outcome.passed, summary["expectations"]
    events = events_of(outcome.run_dir)
    t_rebind = next(e["t_ns"] for e in events if e["event"] == "nat_rebind")
    t_restart = next(e["t_ns"] for e in events if e["event"] == "service_restart")
    dead = [e["t_ns"] for e in events if e["node"] == "mn" and e["event"] == "vpn_path_dead"]
    t_up = max(
        e["t_ns"]
        for e in events
        if e["node"] == "mn" and e["event"] == "ike_updown" and e.get("up")
    )
    assert t_up > t_restart  # the tunnel came back after the gateway's restart
    # the downstream ESP kept going to the old port: the MN's tunnel echo found the path dead
    assert any(t_rebind < t < t_restart for t in dead), dead
    with (outcome.run_dir / "probes" / "down.csv").open() as handle:
        received = sorted(int(r["t_recv_ns"]) for r in csv.DictReader(handle))
    # the stream flows again through the new IKE SA before the restart, and after it
    assert any(t_restart - 1_000_000_000 < t < t_restart for t in received)
    assert any(t > t_up + 200_000_000 for t in received)
    assert summary["tcp"]["errors"] == 0
