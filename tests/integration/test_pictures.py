"""Pictures looked at, not only rendered (issue 17, item 5): shipped labs run for real and
their ladders, timelines and topology are checked for what makes them readable: no
overlapping labels, no line through a label, one column per node and none empty, one
page wide, an arrow for every recorded message end; and lab 04's boundary test is drawn
as it happened (the direct registration stopped short of the HA, the ICMP error back)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.results import figure
from testbed.results.figure import lines_through_texts, overlapping_texts
from testbed.results.gallery import draw_lab
from testbed.results.ladder import ladder_figure, readability_problems, recorded_messages
from testbed.results.plots import timeline_figure
from testbed.results.report import mobile_path
from testbed.results.rundata import LADDER_DEFAULT_SPAN_NS, load_events, resolve_handoff
from testbed.results.topology import topology_figure
from testbed.summary import read_summary

ROOT = Path(__file__).resolve().parents[2]
LABS = {
    "02": ROOT / "labs" / "02-colocated-and-parallel-dhcp" / "scenario.yaml",
    "04": ROOT / "labs" / "04-leaving-the-enterprise-mobike" / "scenario.yaml",
}


@pytest.fixture(autouse=True)
def strict_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(figure, "STRICT", True)


def _check_run(run_dir: Path) -> dict[int, object]:
    summary = read_summary(run_dir / "summary.json")
    events = load_events(run_dir, summary)
    plan = json.loads((run_dir / "plan.json").read_text())
    ladders = {}
    assert summary.handoffs
    for h in summary.handoffs:
        ref = resolve_handoff(summary, events, h)
        t_end = (
            ref.t_next_ns if ref.t_next_ns is not None else ref.t_move_ns + LADDER_DEFAULT_SPAN_NS
        )
        fig, lad = ladder_figure(run_dir, h)
        recorded = recorded_messages(events, ref.t_move_ns, t_end)
        assert readability_problems(fig, lad, recorded) == [], f"handoff {h.index}"
        assert set(lad.lifelines) <= set(plan["nodes"])  # columns are nodes, not addresses
        ladders[h.index] = lad
        timeline = timeline_figure(run_dir, h)
        assert not overlapping_texts(timeline), f"timeline of handoff {h.index}"
    name = Path(str(summary.topology)).stem
    topo = topology_figure(plan, name, mobile_path(summary, events), summary.mobile_node)
    assert not overlapping_texts(topo)
    assert not lines_through_texts(topo)
    return ladders


@pytest.mark.netns
@pytest.mark.slow
def test_lab_04_pictures_read_clearly_and_show_the_boundary_test(
    run_scenario, tmp_path: Path
) -> None:
    outcome = run_scenario(LABS["04"], pcap="none")
    assert outcome.run_summary.error is None, outcome.run_summary.error
    ladders = _check_run(outcome.run_dir)
    # visited -> public: the direct RRQ never reaches the HA; it ends at the router that
    # answered with an ICMP error, drawn back to the MN; the decision is a labelled mark
    boundary = ladders[1]
    stopped = [a for a in boundary.arrows if a.stopped]  # type: ignore[attr-defined]
    assert stopped and all(a.label == "RRQ" and a.dst not in ("ha", "mn") for a in stopped)
    icmp = [a for a in boundary.arrows if a.icmp]  # type: ignore[attr-defined]
    assert [(a.src, a.dst) for a in icmp] == [(s.dst, s.src) for s in stopped]
    decisions = [t.label for t in boundary.ticks if t.kind == "decision"]  # type: ignore[attr-defined]
    assert any(d.startswith("decision: outside") for d in decisions), decisions
    # the gallery's drawing of this run: three pictures, small, no problems
    entry = draw_lab(outcome.run_dir, "04", tmp_path)
    assert entry.problems == []
    assert entry.handoff == 1  # the handoff with a stopped message
    for name in entry.pictures.values():
        assert 10_000 < (tmp_path / name).stat().st_size <= 150_000


@pytest.mark.netns
def test_lab_02_pictures_read_clearly(run_scenario) -> None:
    outcome = run_scenario(LABS["02"], pcap="none")
    assert outcome.run_summary.error is None, outcome.run_summary.error
    ladders = _check_run(outcome.run_dir)
    dhcp = [a for a in ladders[0].arrows if a.label.startswith("DHCP")]  # type: ignore[attr-defined]
    assert dhcp and {a.dst for a in dhcp if a.src == "mn"} == {"core"}  # the office's server


@pytest.mark.netns
def test_a_crowd_handoffs_pictures_are_its_own_nodes(run_scenario) -> None:  # type: ignore[no-untyped-def]
    """Issue 19, item 1: scenarios/crowd.yaml with two mobile nodes (their moves 2 ms apart,
    then 100 ms, then at random): the report draws each handoff's ladder and timeline for
    its own node (figures named by node, none overwritten), and the later node's ladders
    have its column first and no column of the other, every recorded message end drawn or
    counted as the other's."""
    outcome = run_scenario(
        ROOT / "scenarios" / "crowd.yaml",
        pcap="none",
        overrides=[
            "topology.overrides.nodes.mn.count=2",
            "expect=[{metric: over_nodes.unrecovered, equals: 0}]",
        ],
    )
    summary = outcome.run_summary
    assert outcome.passed, summary.reasons
    assert summary.mobiles == ["mn01", "mn02"]
    run_dir = outcome.run_dir
    figures = {p.name for p in (run_dir / "figures").glob("*.png")}
    for h in summary.handoffs:
        assert f"{h.node}-h{h.index}-ladder.png" in figures, figures
        assert f"{h.node}-h{h.index}-timeline.png" in figures, figures
    report = (run_dir / "report.md").read_text()
    assert "Handoff 1 of mn02: visited → office" in report
    events = load_events(run_dir, summary)
    later = [h for h in summary.handoffs if h.node == "mn02"]
    assert len(later) == 3
    for h in later:
        ref = resolve_handoff(summary, events, h)
        assert ref.node == "mn02"
        fig, lad = ladder_figure(run_dir, h)
        assert lad.lifelines[0] == "mn02" and "mn01" not in lad.lifelines, lad.lifelines
        assert any("mn02" in (a.src, a.dst) for a in lad.arrows)  # its own registration
        t_end = ref.t_next_ns or ref.t_move_ns + LADDER_DEFAULT_SPAN_NS
        recorded = recorded_messages(events, ref.t_move_ns, t_end)
        assert readability_problems(fig, lad, recorded) == [], f"mn02 handoff {h.index}"
    # the first move was both at once: mn01's messages were in mn02's window, left out
    first = ladder_figure(run_dir, later[0])[1]
    assert first.theirs > 0
