"""A lab keeps its changes to itself: the topology's plan it was built from stays as loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import netns
from testbed.lab.lab import Lab
from testbed.lab.state import LabState
from testbed.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]


def test_impairment_changes_stay_in_the_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15: a scenario's repetitions are labs built from one plan; a move in one
    changed the plan's impairments, and the next began with the last network's delays (the
    MN's home attachment at 10 ms instead of 400: the stale-advertisement repetitions)."""
    monkeypatch.setattr(netns, "run", lambda *args, **kwargs: None)  # no tc here
    plan = load_topology(ROOT / "topologies" / "enterprise.yaml")
    loaded = plan.nodes["mn"].interfaces[0]
    before = (loaded.egress, loaded.ingress)
    lab = Lab(LabState("t-plan", "enterprise.yaml", impairment_path="netem"), plan)
    lab.set_impairment("mn", loaded.egress.overlaid(delay_ms=40), None)
    assert lab.interface("mn").egress.delay_ms == 40
    assert (loaded.egress, loaded.ingress) == before
