"""Many mobile nodes in one scenario (issue 19, item 1): a topology template with a count,
a scenario's crowds (one MN agent and one MN-HA security association per node, all of them
in the home agent), probe streams per node or a sample, moves of a group by a pattern,
metric paths per node and over nodes, and the summary's aggregates. No namespaces."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from agents.runtime.config import HaFile, MnFile
from mipbase.specfile import SpecError
from testbed.scenario import crowd, many, metricpath
from testbed.scenario.expect import evaluate
from testbed.scenario.load import load_scenario
from testbed.scenario.model import ExpectSpec, MoveAction, ScenarioSpec
from testbed.scenario.steps import move_schedule
from testbed.summary import RunSummary
from testbed.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]

TOPOLOGY = """\
name: t
networks:
  home: {subnet: 10.1.0.0/24}
  away: {subnet: 10.2.0.0/24}
nodes:
  mn:
    count: 12
    role: agent-host
    links: [{network: home, address: 10.1.0.100}]
  ha: {role: agent-host, links: [{network: home, address: 10.1.0.1}]}
  cn: {links: [{network: home, address: 10.1.0.10}]}
  fw:
    role: firewall
    links: [{network: home}, {network: away}]
    firewall: {rules: [{src: [mn], comment: the group's addresses}]}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_template_with_a_count_is_that_many_nodes(tmp_path: Path) -> None:
    plan = load_topology(write(tmp_path, "t.yaml", TOPOLOGY))
    names = [f"mn{k:02d}" for k in range(1, 13)]
    assert plan.groups == {"mn": names}
    assert [n for n in plan.nodes if n.startswith("mn")] == names
    assert [str(plan.address(n)) for n in names] == [f"10.1.0.{100 + k}" for k in range(12)]
    assert plan.members("mn") == names and plan.members("ha") == ["ha"]
    # a group in a firewall rule stands for every node's address
    assert len(plan.nodes["fw"].firewall.rules[0].src) == 12
    # port names stay short and apart
    assert len({i.port for i in plan.interfaces()}) == len(plan.interfaces())


def test_a_count_that_runs_out_of_addresses_or_name(tmp_path: Path) -> None:
    text = TOPOLOGY.replace("address: 10.1.0.100", "address: 10.1.0.250")
    with pytest.raises(SpecError) as info:
        load_topology(write(tmp_path, "t.yaml", text))
    # the 6th node would be 10.1.0.255: said at the template's line, in its name
    assert "t.yaml:9: nodes.mn.links[0].address: 10.1.0.255 is the network or broadcast" in str(
        info.value
    )
    text = TOPOLOGY.replace("  mn:\n    count: 12", "  mobilenodes:\n    count: 12")
    with pytest.raises(SpecError, match="longer than 12 characters"):
        load_topology(write(tmp_path, "t.yaml", text))


SCENARIO = """\
name: c
topology: t.yaml
mobility: mip
services:
  - {name: ha, node: ha, kind: agent, agent: ha,
     config: {address: 10.1.0.1, home_network: 10.1.0.0/24}}
crowds:
  - nodes: mn
    spi: 2000
    key_seed: s1
    agent: {home_agent: 10.1.0.1, home_router: 10.1.0.1}
probes: {correspondent: cn, mobile: mn, sample: 4}
timeline:
  - {move: {node: mn, to: away, pattern: staggered, every: 10ms}}
  - {wait: {event: registration_accepted, node: mn, timeout: 1s}}
  - {move: {node: [mn03, mn05], to: home}}
expect:
  - {metric: "node[mn03].handoff[0].interruption_ms", below: 500}
  - {metric: over_nodes.unrecovered, equals: 0}
  - {metric: per_node.mn05.final_mode, equals: home}
"""


def test_a_crowd_is_one_mn_agent_and_association_per_node(tmp_path: Path) -> None:
    write(tmp_path, "t.yaml", TOPOLOGY)
    scenario = load_scenario(write(tmp_path, "c.yaml", SCENARIO))
    names = [f"mn{k:02d}" for k in range(1, 13)]
    assert scenario.many and scenario.mobiles == names
    services = {s.label: s for s in scenario.spec.services}
    assert list(services) == ["ha", *names]
    ha = HaFile.model_validate(services["ha"].config)
    assert [str(m.home_address) for m in ha.mobile_nodes] == [
        f"10.1.0.{100 + k}" for k in range(12)
    ]
    assert [m.spi for m in ha.mobile_nodes] == list(range(2000, 2012))
    assert len({m.key for m in ha.mobile_nodes}) == 12  # one key each
    mn3 = MnFile.model_validate(services["mn03"].config)
    entry = ha.mobile_nodes[2]
    assert (str(mn3.home_address), mn3.spi, mn3.key) == ("10.1.0.102", entry.spi, entry.key)
    assert str(mn3.home_network) == "10.1.0.0/24"  # from the node's link
    # deterministic: the same seed and name, the same key; another seed, another key
    assert mn3.key == crowd.sa_key("s1", "mn03") != crowd.sa_key("s2", "mn03")
    # a sample of 4, spread evenly, the first and the last among them
    assert scenario.probed == ["mn01", "mn05", "mn08", "mn12"]
    assert scenario.probe_port("mn05") == 9002 and scenario.probe_dir("mn05") == "mn05"


def test_a_single_mobile_scenario_is_as_before() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "roam-inside.yaml")
    assert not scenario.many and scenario.mobiles == ["mn"] and scenario.mobile == "mn"
    assert scenario.probe_dir("mn") == "" and scenario.probe_port("mn") == 9000


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("nodes", "unknown node or group 'nobody'"),
        ("serve", "no ha or proxy agent service 'fa'"),
        ("cn", "cn is not a mobile node"),
        ("tcp", "the TCP probe serves one mobile node only"),
        ("list", "unknown node 'nobody'"),
    ],
)
def test_what_a_crowd_scenario_may_not_say(tmp_path: Path, change: str, message: str) -> None:
    edits = {
        "nodes": ("nodes: mn\n", "nodes: nobody\n"),
        "serve": ("spi: 2000\n", "spi: 2000\n    serve: [fa]\n"),
        "cn": ("node[mn03].handoff", "node[cn].handoff"),
        "tcp": ("sample: 4}", "sample: 4, tcp: true}"),
        "list": ("node: [mn03, mn05]", "node: [mn03, nobody]"),
    }
    old, new = edits[change]
    write(tmp_path, "t.yaml", TOPOLOGY)
    path = write(tmp_path, "c.yaml", SCENARIO.replace(old, new))
    with pytest.raises(SpecError) as info:
        load_scenario(path)
    assert message in str(info.value)
    assert "c.yaml:" in str(info.value)  # at a line of the scenario


def test_move_patterns() -> None:
    nodes = ["a", "b", "c", "d"]
    together = MoveAction(node="g", to="x")
    assert move_schedule(together, nodes) == [(0.0, n) for n in nodes]
    staggered = MoveAction(node="g", to="x", pattern="staggered", every=100)
    assert move_schedule(staggered, nodes) == [(0.0, "a"), (100.0, "b"), (200.0, "c"), (300.0, "d")]
    random7 = MoveAction(node="g", to="x", pattern="random", within=1000, seed=7)
    first = move_schedule(random7, nodes)
    assert first == move_schedule(random7, nodes)  # the same seed, the same times
    assert sorted(n for _, n in first) == nodes and all(0 <= t < 1000 for t, _ in first)
    assert [t for t, _ in first] == sorted(t for t, _ in first)
    assert first != move_schedule(random7.model_copy(update={"seed": 8}), nodes)
    with pytest.raises(ValueError, match="needs every"):
        MoveAction(node="g", to="x", pattern="staggered")
    with pytest.raises(ValueError, match="needs within"):
        MoveAction(node="g", to="x", pattern="random")


def handoff(node: str, index: int, ms: float | None, mode: str = "f", **extra) -> dict:
    return {
        "node": node,
        "index": index,
        "t_ns": index * 10**9 + (int(node[-1]) if node[-1].isdigit() else 0) * 10**6,
        "from": "home",
        "to": "away",
        "mode": mode,
        "interruption_ms": ms,
        "phases_ms": {"registration_accepted": (ms or 0) / 2},
        "probed": True,
        **extra,
    }


RUN = {
    "handoffs": [
        handoff("mn1", 0, 100.0),
        handoff("mn2", 0, 200.0),
        handoff("mn3", 0, None, probed=False),
        handoff("mn1", 1, 50.0, mode="home"),
        handoff("mn2", 1, 60.0, mode="home"),
        handoff("mn3", 1, None, mode="home", probed=False),
    ]
}


def summary_of(run: dict) -> RunSummary:
    """A repetition as the metric paths read it: its summary."""
    return RunSummary.model_validate({"scenario": "c", **run})


def values(metric: str, runs: list[dict] | None = None) -> list[tuple[str, object]]:
    return metricpath.resolve(metric, [summary_of(run) for run in runs or [RUN]])


def test_metric_paths_per_node_and_over_nodes() -> None:
    # handoff[N]: each node's N-th, one value per node, labelled with the node
    assert values("handoff[1].mode") == [
        ("node[mn1].handoff[1].mode", "home"),
        ("node[mn2].handoff[1].mode", "home"),
        ("node[mn3].handoff[1].mode", "home"),
    ]
    # a node no stream measured has no interruption: left out, not a failure
    assert [v for _, v in values("handoff[*].interruption_ms")] == [100.0, 50.0, 200.0, 60.0]
    assert values("node[mn2].handoff[0].interruption_ms") == [
        ("node[mn2].handoff[0].interruption_ms", 200.0)
    ]
    missing = values("node[mn2].handoff[5].mode")[0][1]
    assert isinstance(missing, metricpath.Missing) and "mn2" in missing.why
    # .STAT over the nodes (and repetitions) of that move, or one node's repetitions
    ((label, p50),) = values("handoff[0].interruption_ms.max")
    assert p50 == 200.0 and "n=2" in label
    assert values("node[mn1].handoff[0].interruption_ms.max", [RUN, RUN])[0][1] == 100.0
    # one mobile node: the same paths as always, no node in the labels
    single = {"handoffs": [handoff("mn", 0, 80.0), handoff("mn", 1, 90.0)]}
    assert values("handoff[1].interruption_ms", [single]) == [("handoff[1].interruption_ms", 90.0)]
    assert values("handoff[0].mode", [{"handoffs": [{"index": 0, "mode": "f"}]}]) == [
        ("handoff[0].mode", "f")
    ]


def test_aggregates_over_nodes() -> None:
    per_node, over = many.aggregate(RUN["handoffs"], ["mn1", "mn2", "mn3", "mn4"])
    assert per_node["mn1"]["interruption_ms"] == {"p50": 75.0, "p95": 97.5, "max": 100.0, "n": 2}
    assert per_node["mn1"]["modes"] == ["f", "home"] and per_node["mn1"]["final_mode"] == "home"
    assert per_node["mn3"]["unprobed"] == 2 and per_node["mn3"]["interruption_ms"]["p50"] is None
    assert per_node["mn4"]["handoffs"] == 0
    assert (over["nodes"], over["moving"], over["handoffs"]) == (4, 3, 6)
    assert (over["recovered"], over["unrecovered"], over["unprobed"]) == (4, 0, 2)
    assert over["nodes_recovered"] == 2
    assert over["interruption_ms"]["max"] == 200.0 and over["interruption_ms"]["n"] == 4
    assert over["node_max_ms"]["max"] == 200.0 and over["node_p50_ms"]["p50"] == 102.5
    assert over["concurrent"] == 2  # mn1 and mn2 moved 1 ms apart
    # a handoff that never recovered: no percentile over them, and counted
    broken = [*RUN["handoffs"], handoff("mn4", 0, None)]
    _, over = many.aggregate(broken, ["mn1", "mn2", "mn3", "mn4"])
    assert over["unrecovered"] == 1 and over["interruption_ms"]["p95"] is None
    # the summary takes them, and expectations check them
    summary = RunSummary.model_validate(
        {"scenario": "c", "handoffs": RUN["handoffs"], "per_node": per_node, "over_nodes": over}
    )
    assert summary.handoffs[0].node == "mn1" and summary.over_nodes.unrecovered == 1
    run = summary_of({**RUN, "over_nodes": over, "per_node": per_node})
    checks = evaluate(
        [
            ExpectSpec(metric="over_nodes.unrecovered", equals=0),
            ExpectSpec(metric="per_node.mn1.final_mode", equals="home"),
            ExpectSpec(metric="over_nodes.interruption_ms.max", below=300),
        ],
        [run],
    )
    assert [c["passed"] for c in checks] == [False, True, False]  # p95/max null: unrecovered


def test_wait_for_a_group_needs_every_node(tmp_path: Path) -> None:
    import json
    import time

    from mipbase import events as eventlog
    from mipbase.events import EventWriter
    from testbed.scenario.model import WaitAction
    from testbed.scenario.runner import _Run
    from testbed.scenario.steps import wait

    plan = load_topology(write(tmp_path, "t.yaml", TOPOLOGY))
    run = object.__new__(_Run)
    run.sc = SimpleNamespace(plan=plan)
    run.events_dir = tmp_path
    run.events = EventWriter.open(str(tmp_path / "runner.jsonl"), "runner")
    run.record = SimpleNamespace(failures=[])
    run._events_tail = eventlog.Tail(tmp_path)
    run.events_read = []
    now = time.monotonic_ns()
    run.step_starts = [now - 10_000_000, now]
    run._watched, run.vpn_nodes, run.lab = {}, {}, None
    with (tmp_path / "mns.jsonl").open("w") as handle:
        for node in ["mn01", "mn02", *[f"mn{k:02d}" for k in range(4, 13)]]:  # not mn03
            event = {"t_ns": now, "node": node, "event": "registration_accepted"}
            handle.write(json.dumps(event) + "\n")
    wait(run, WaitAction(event="registration_accepted", node="mn", timeout=50), 1)
    (failure,) = run.record.failures
    assert "from mn03 within" in failure["detail"]
    run.record.failures = []
    wait(run, WaitAction(event="registration_accepted", node=["mn01", "mn02"], timeout=50), 1)
    assert run.record.failures == []


def test_the_shipped_crowd_scenario() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "crowd.yaml")
    assert len(scenario.mobiles) >= 10 and scenario.probed == scenario.mobiles
    ha = next(s for s in scenario.spec.services if s.label == "ha")
    assert len(ha.config["mobile_nodes"]) == len(scenario.mobiles)
    assert isinstance(scenario.spec, ScenarioSpec)


def test_progress_line_of_an_unprobed_handoff() -> None:
    """Issue 19, item 3: a sampled crowd's unprobed handoffs were "never recovered" in the
    progress lines (264 of 300 at 100 MNs); they show where their signalling ended."""
    from testbed.scenario.execute import _outage_text

    assert _outage_text(None, False, {"registration_accepted": 103.0}) == (
        "not probed, registration_accepted at 103.0 ms"
    )
    assert _outage_text(None, False, {"link_up": 9.0, "mobike_update": 553.5}) == (
        "not probed, mobike_update at 553.5 ms"
    )
    assert _outage_text(None, False, {"link_up": 9.0}) == "not probed"
    assert _outage_text(52.25, True, {}) == "52.2 ms"
    assert _outage_text(None, True, {"returned_home": 4.0}) == "never recovered"
