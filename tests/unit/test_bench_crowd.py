"""benchmarks/bench_crowd.py's scenarios (issue 19, item 3): crowd-100.yaml cut down to N
mobile nodes is still a valid scenario, with the groups in the same proportions."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from testbed.scenario.load import load_scenario

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_crowd", ROOT / "benchmarks" / "bench_crowd.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_split(bench: ModuleType) -> None:
    assert bench.split(100) == {"mn": 50, "mk": 25, "mp": 25}
    assert bench.split(10) == {"mn": 5, "mk": 2, "mp": 3}
    assert bench.split(1) == {"mn": 1, "mk": 0, "mp": 0}
    assert all(sum(bench.split(n).values()) == n for n in range(1, 120))


@pytest.mark.parametrize("nodes", [1, 2, 10, 100])
def test_cut_down_scenarios_load(bench: ModuleType, tmp_path: Path, nodes: int) -> None:
    path = bench.scenario_for("mixed", nodes, tmp_path, None)
    scenario = load_scenario(path)
    assert len(scenario.mobiles) == nodes
    moved = [s.move.node for s in scenario.spec.timeline if s.move is not None]
    assert moved[0] == "mn" and "after" not in path.read_text().split("timeline:")[1][:40]
    for i, step in enumerate(scenario.spec.timeline):
        if step.wait is not None and step.wait.since_step is not None:
            # counted from a move of the same round: the step right after a wait, or the first
            first = scenario.spec.timeline[step.wait.since_step]
            assert first.move is not None and step.wait.since_step < i
            before = (
                scenario.spec.timeline[step.wait.since_step - 1] if step.wait.since_step else None
            )
            assert before is None or before.wait is not None


def test_one_node_is_inside_only(bench: ModuleType, tmp_path: Path) -> None:
    scenario = load_scenario(bench.scenario_for("mixed", 1, tmp_path, None))
    assert scenario.mobiles == ["mn01"]
    assert [c.nodes for c in scenario.spec.crowds] == ["mn"]
    waits = [s.wait for s in scenario.spec.timeline if s.wait is not None]
    assert [w.event for w in waits] == ["registration_accepted"] * 2 + ["returned_home"]


def test_the_inside_scenario(bench: ModuleType, tmp_path: Path) -> None:
    scenario = load_scenario(bench.scenario_for("inside", 20, tmp_path, 5))
    assert len(scenario.mobiles) == 20 and len(scenario.probed) == 5


def test_the_shipped_hundred() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "crowd-100.yaml")
    assert len(scenario.mobiles) == 100 and len(scenario.probed) == 12
    assert {m[:2] for m in scenario.probed} == {"mn", "mk", "mp"}  # spread over the groups
    services = {s.label: s for s in scenario.spec.services}
    assert len(services["ha"].config["mobile_nodes"]) == 100
    assert len(services["proxy"].config["mobile_nodes"]) == 25
    assert sum(1 for s in services.values() if s.kind == "vpn") == 2 + 50  # gateways, clients
