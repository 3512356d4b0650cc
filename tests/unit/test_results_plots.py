"""Figures of a run: valid PNGs from full, partial and empty run directories."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import yaml
from matplotlib.colors import to_hex
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from testbed.results import figure
from testbed.results.figure import lines_through_texts, overlapping_texts
from testbed.results.ladder import build_ladder
from testbed.results.plots import ladder, probe_timeline, timeline_figure, topology_diagram
from testbed.results.rundata import load_events, resolve_handoff
from testbed.results.sample import MS, T0, write_sample_run
from testbed.results.topology import Visit, plan_like, topology_figure
from testbed.scenario import metrics
from testbed.summary import RunSummary, read_summary

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def strict_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """A drawing bug must fail the test, not turn into a placeholder figure."""
    monkeypatch.setattr(figure, "STRICT", True)


def png_size(path: Path, min_bytes: int = 4000) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert len(data) > min_bytes, f"{path} is suspiciously small ({len(data)} bytes)"
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    return width, height


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return write_sample_run(tmp_path / "run")


@pytest.mark.parametrize("index", [0, 1])
def test_timeline_and_ladder_for_each_handoff(run: Path, tmp_path: Path, index: int) -> None:
    timeline = probe_timeline(run, index, tmp_path / f"t{index}.png")
    lad = ladder(run, index, tmp_path / f"l{index}.png")
    width, height = png_size(timeline, 20_000)
    assert width == 1260 and height > 400
    png_size(lad, 20_000)


def test_handoff_can_be_given_as_summary_entry(run: Path, tmp_path: Path) -> None:
    summary = read_summary(run / "summary.json")
    out = probe_timeline(run, summary.handoffs[1], tmp_path / "sub" / "t.png", (-1.0, 3.0))
    png_size(out)


def test_never_recovered_stream_draws(tmp_path: Path) -> None:
    run = write_sample_run(tmp_path / "run", down_recovers=False)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["handoffs"][0]["interruption_down_ms"] is None
    png_size(probe_timeline(run, 0, tmp_path / "t.png"))


def test_no_probe_files(tmp_path: Path) -> None:
    run = write_sample_run(tmp_path / "run", with_probes=False)
    png_size(probe_timeline(run, 0, tmp_path / "t.png"))
    png_size(ladder(run, 0, tmp_path / "l.png"))


def test_stream_with_no_packets_in_window(run: Path, tmp_path: Path) -> None:
    (run / "probes" / "down.csv").write_text("seq,t_send_ns,t_recv_ns,src\n")
    (run / "probes" / "extra.csv").write_text("seq,t_send_ns,t_recv_ns,src\n1,2,garbage\n")
    png_size(probe_timeline(run, 0, tmp_path / "t.png"))


@pytest.mark.parametrize("draw", [probe_timeline, ladder])
def test_empty_run_directory(tmp_path: Path, draw: object) -> None:
    out = draw(tmp_path, 0, tmp_path / "fig.png")  # type: ignore[operator]
    png_size(out, 2000)


def test_summary_without_events(run: Path, tmp_path: Path) -> None:
    (run / "events.jsonl").unlink()
    png_size(ladder(run, 0, tmp_path / "l.png"), 2000)
    png_size(probe_timeline(run, 0, tmp_path / "t.png"))  # move time from the summary


def test_torn_event_lines_are_skipped(run: Path) -> None:
    with (run / "events.jsonl").open("a") as handle:
        handle.write('{"t_ns": 5, "node": "mn"\n[1, 2]\n{"node": "mn", "event": "x"}\n')
    events = load_events(run)
    assert events and all(isinstance(e["t_ns"], int) for e in events)
    assert [e["t_ns"] for e in events] == sorted(e["t_ns"] for e in events)


def test_move_time_falls_back_to_events(tmp_path: Path) -> None:
    events = [{"t_ns": 50, "node": "runner", "event": "move_start", "index": 0}]
    events.append({"t_ns": 90, "node": "runner", "event": "move_start", "index": 1})
    nothing = RunSummary(scenario="")  # a run without a summary
    ref = resolve_handoff(nothing, events, 0)
    assert (ref.t_move_ns, ref.t_next_ns) == (50, 90)
    assert resolve_handoff(nothing, [], 0).t_move_ns is None


def test_timeline_draws_the_summarys_own_outage(run: Path) -> None:
    """One definition of an outage: the shaded span is the summary's recorded bounds, and
    the number on it the summary's interruption (issue 17, item 2)."""
    summary = json.loads((run / "summary.json").read_text())
    h = summary["handoffs"][0]
    last, first = h["outage"]["up"]["last_before_ns"], h["outage"]["up"]["first_after_ns"]
    assert (first - last) / 1e6 == pytest.approx(h["interruption_up_ms"], abs=0.1)
    fig = timeline_figure(run, 0)
    up = next(ax for ax in fig.axes if ax.get_title(loc="left").startswith("up"))
    spans = [p for p in up.patches if p.get_width() > 0]
    assert len(spans) == 1
    x0 = spans[0].get_x()
    assert x0 == pytest.approx((last - h["t_ns"]) / 1e9)
    assert x0 + spans[0].get_width() == pytest.approx((first - h["t_ns"]) / 1e9)
    texts = [t.get_text() for t in up.texts]
    assert f"{h['interruption_up_ms']:g} ms" in texts
    assert not overlapping_texts(fig)


def test_timeline_without_recorded_bounds_draws_no_span(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    for h in summary["handoffs"]:
        h.pop("outage")
    (run / "summary.json").write_text(json.dumps(summary))
    fig = timeline_figure(run, 0)
    up = next(ax for ax in fig.axes if ax.get_title(loc="left").startswith("up"))
    assert not [p for p in up.patches if p.get_width() > 0]
    assert "not drawn" in up.get_title(loc="left")


def test_timeline_labels_never_overlap(run: Path) -> None:
    """Phases a fraction of a millisecond apart stack their numbers; the names are in the
    key beside the plots."""
    summary = json.loads((run / "summary.json").read_text())
    summary["handoffs"][0]["phases_ms"] = {f"phase_{i}": 0.1 * i for i in range(14)}
    (run / "summary.json").write_text(json.dumps(summary))
    fig = timeline_figure(run, 0)
    assert not overlapping_texts(fig)
    keyed = [t.get_text() for t in fig.texts]
    assert any("phase_13 +1.3 ms" in t for t in keyed)


def test_tcp_panel_shows_bytes_and_the_summarys_stall(run: Path) -> None:
    t0 = json.loads((run / "summary.json").read_text())["handoffs"][0]["t_ns"]
    rows = [(t0 + (i - 10) * 50 * MS, 5000 * min(i, 12) + 5000 * max(0, i - 20)) for i in range(40)]
    (run / "probes" / "tcp.csv").write_text("t_ns,bytes\n" + "".join(f"{t},{b}\n" for t, b in rows))
    samples = metrics.load_tcp(run / "probes" / "tcp.csv")
    stall = metrics.tcp_stall(samples, t0, None)
    assert stall == {"from_ns": t0 + 100 * MS, "to_ns": t0 + 550 * MS, "ms": 450.0}
    summary = json.loads((run / "summary.json").read_text())
    summary["handoffs"][0]["tcp_stall"] = stall
    summary["tcp"] = {"bytes": rows[-1][1]}
    (run / "summary.json").write_text(json.dumps(summary))
    fig = timeline_figure(run, 0)
    tcp = next(ax for ax in fig.axes if ax.get_title(loc="left").startswith("tcp"))
    assert "stall 450 ms" in tcp.get_title(loc="left")
    assert tcp.lines and "no data" not in " ".join(t.get_text() for t in tcp.texts)
    assert not overlapping_texts(fig)


def ev(t_ms: float, node: str, event: str, **fields: object) -> dict:
    return {"t_ns": T0 + int(t_ms * MS), "node": node, "event": event, **fields}


def test_ladder_matching_prefers_the_retransmission() -> None:
    events = [
        ev(0, "runner", "move_start", index=0),
        ev(1, "mn", "tx", msg="RRQ", to_node="ha", dir="tx"),
        ev(200, "mn", "tx", msg="RRQ", to_node="ha", dir="tx"),
        ev(202, "ha", "rx", msg="RRQ", dir="rx", from_node="mn"),
        ev(203, "ha", "tx", msg="RRP 0", to_node="mn", dir="tx"),
        ev(205, "zz", "rx", msg="PING", dir="rx", from_node="fa"),
        ev(206, "ha", "binding_added"),
        ev(207, "cn", "not_signalling"),
    ]
    lad = build_ladder(events, T0, T0 + 3000 * MS, "mn", ["mn", "core", "ha"])
    # sender before receiver; core is listed but took no part: no empty column for it
    assert lad.lifelines == ["mn", "ha", "fa", "zz"]
    matched = [a for a in lad.arrows if a.matched]
    assert [(a.label, a.t_src, a.t_dst) for a in matched] == [("RRQ", T0 + 200 * MS, T0 + 202 * MS)]
    flat = {(a.label, a.src, a.dst) for a in lad.arrows if not a.matched}
    assert flat == {("RRQ", "mn", "ha"), ("RRP 0", "ha", "mn"), ("PING", "fa", "zz")}
    assert [t.label for t in lad.ticks] == ["binding_added"]  # cn is not a signalling node
    assert lad.rules[0].t == T0


def test_ladder_leaves_out_the_runners_bookkeeping() -> None:
    events = [
        ev(0, "runner", "move_start", index=0, **{"from": "home", "to": "office"}),
        ev(0, "runner", "link_down", node_="mn"),
        ev(1, "runner", "step", index=1),
        ev(2, "runner", "wait_done"),
        ev(3, "runner", "pause_skipped"),
        ev(4, "mn", "tcp_stopped"),
        ev(5, "mn", "dataplane_applied"),
        ev(6, "mn", "boundary_decision", inside=False),
        ev(7, "mn", "tx", msg="RRQ", to_node="ha", dir="tx"),
    ]
    lad = build_ladder(events, T0, T0 + 3000 * MS, "mn", ["mn", "core", "ha"])
    assert [r.label for r in lad.rules] == ["move home → office, link_down"]  # one per instant
    assert [(t.label, t.kind) for t in lad.ticks] == [("decision: outside", "decision")]
    assert lad.lifelines == ["mn", "ha"]


def test_ladder_identifiers_override_the_guess() -> None:
    events = [
        ev(1, "mn", "tx", msg="RRQ", to_node="ha", id=1),
        ev(2, "mn", "tx", msg="RRQ", to_node="ha", id=2),
        ev(3, "ha", "rx", msg="RRQ", id=1, from_node="mn"),
    ]
    lad = build_ladder(events, T0, T0 + 10 * MS, "mn")
    matched = [a for a in lad.arrows if a.matched]
    assert [a.t_src for a in matched] == [T0 + MS]


def test_ladder_caps_the_number_of_items(run: Path, tmp_path: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    t_move = summary["handoffs"][1]["t_ns"]
    with (run / "events.jsonl").open("a") as handle:
        for i in range(300):
            e = {"t_ns": t_move + 10 * MS + i * MS, "node": "ha", "event": "tick", "n": i}
            handle.write(json.dumps(e) + "\n")
    lad = build_ladder(load_events(run), t_move, t_move + 3000 * MS, "mn", ["mn", "ha"])
    assert lad.dropped > 0
    out = ladder(run, 1, tmp_path / "l.png")
    assert png_size(out)[1] < 5000  # stays a readable size


def test_ladder_linear_scale(run: Path, tmp_path: Path) -> None:
    png_size(ladder(run, 0, tmp_path / "l.png", time_scale="linear"), 10_000)


def test_topology_from_yaml_and_plan_like(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "topologies" / "enterprise.yaml").read_text())
    plan = plan_like(raw)
    assert plan["nodes"]["fw"]["links"] == ["backbone", "dmz", "internet"]
    assert plan["nodes"]["core"]["roles"] == ["router", "dhcp-server"]
    assert plan["networks"]["dmz"]["trust"] == "dmz"
    png_size(topology_diagram(raw, tmp_path / "a.png"), 20_000)
    small = {
        "networks": {"lan": {"subnet": "10.0.0.0/24", "trust": "trusted"}},
        "nodes": {"a": {"roles": ["host"], "links": ["lan", "wan"]}, "b": {"links": []}},
    }
    png_size(topology_diagram(small, tmp_path / "b.png"))


def test_topology_layout_is_deterministic(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "topologies" / "enterprise.yaml").read_text())
    a = topology_diagram(raw, tmp_path / "a.png").read_bytes()
    b = topology_diagram(raw, tmp_path / "b.png").read_bytes()
    assert a == b


def test_topology_from_a_loaded_plan(tmp_path: Path) -> None:
    from testbed.topology import load_topology

    plan = load_topology(ROOT / "topologies" / "enterprise.yaml")
    like = plan_like(plan)
    assert like["nodes"]["core"]["links"] == ["home", "office", "backbone"]
    assert like["networks"]["public"] == {"subnet": "203.0.113.0/24", "trust": "untrusted"}
    assert like["name"] == "enterprise"
    assert like["nodes"]["fw"]["interfaces"][1] == {
        "network": "dmz",
        "name": "eth1",
        "address": "192.0.2.1/24",
        "egress_delay_ms": 1.0,
        "ingress_delay_ms": 1.0,
    }
    png_size(topology_diagram(plan, tmp_path / "p.png"), 20_000)


@pytest.mark.parametrize("name", ["enterprise", "mip-nat", "vpn-roaming"])
def test_topology_reads_clearly(name: str) -> None:
    """Issue 17, item 3: addresses on interfaces, zones as declared with the legend of
    those used, the topology's name as title, the MN's moves on it, no label overlapping
    another or crossed by a line."""
    from testbed.topology import load_topology

    plan = load_topology(ROOT / "topologies" / f"{name}.yaml")
    nets = list(plan.networks)
    moves = [Visit(1, nets[-1], "c, 203.0.113.100"), Visit(2, nets[0], "home")]
    fig = topology_figure(plan, path=moves)
    texts = [t.get_text() for t in fig.findobj(Text)]
    assert name in texts  # the title
    for iface in plan.interfaces():
        if iface.ip is not None:
            assert str(iface.ip) in texts
    zones = {n.trust for n in plan.networks.values()}
    legend = {t.get_text() for t in fig.legends[0].get_texts()}
    assert legend == zones | {"mn's moves, in order"}
    assert "2" in texts and "1" in texts  # the badges
    assert any(t.startswith(f"mn's moves: 1 → {nets[-1]} (c, 203.0.113.100)") for t in texts)
    assert not overlapping_texts(fig)
    assert not lines_through_texts(fig)


def _crowd_plan(count: int) -> dict:
    """enterprise.yaml with its MN as ``count`` numbered MNs (as a crowd's plan has them)."""
    from testbed.topology import load_topology

    plan = plan_like(load_topology(ROOT / "topologies" / "enterprise.yaml"))
    mn = plan["nodes"].pop("mn")
    for i in range(count):
        iface = mn["interfaces"][0] | {"address": f"10.1.0.{100 + i}/24"}
        plan["nodes"][f"mn{i + 1:02d}"] = mn | {"interfaces": [iface]}
    return plan


def test_a_crowd_is_one_box_in_the_topology() -> None:
    """Issue 19's weak point: a crowd's hundred MNs were a hundred boxes (a picture ten
    pages wide). Numbered nodes alike (stem, roles, networks) from three on are one box,
    ``mn01-mn100``, with their count and address range; two stay two boxes."""
    single = topology_figure(_crowd_plan(1))
    fig = topology_figure(_crowd_plan(100), path=[Visit(1, "visited", "f")], mobile="mn01-mn100")
    texts = [t.get_text() for t in fig.findobj(Text)]
    assert "mn01-mn100" in texts and "100 nodes" in texts and "10.1.0.100-199" in texts
    assert not any(t in texts for t in ("mn01", "mn02", "mn100"))
    assert fig.get_size_inches()[0] < 1.5 * single.get_size_inches()[0]  # was 8 times
    assert not overlapping_texts(fig)
    assert not lines_through_texts(fig)
    marked = [to_hex(p.get_edgecolor()) for p in fig.axes[0].patches if p.get_linewidth() == 2]
    assert marked == ["#6a3d9a"]  # the crowd's moves: its one box marked
    two = [t.get_text() for t in topology_figure(_crowd_plan(2)).findobj(Text)]
    assert "mn01" in two and "mn02" in two


def test_topology_zone_defaults_as_the_model_does() -> None:
    """A network that declares no trust is untrusted (the model's default), not grey."""
    raw = {"name": "t", "networks": {"a": {"subnet": "10.0.0.0/24"}}, "nodes": {}}
    assert plan_like(raw)["networks"]["a"]["trust"] == "untrusted"
    fig = topology_figure(raw)
    bar = next(p for p in fig.axes[0].patches if isinstance(p, Rectangle))
    assert to_hex(bar.get_facecolor()) == figure.TRUST_COLOURS["untrusted"][0]


@pytest.mark.parametrize("plan", [{}, {"networks": {}, "nodes": {}}, None])
def test_topology_empty(tmp_path: Path, plan: object) -> None:
    png_size(topology_diagram(plan, tmp_path / "e.png"), 2000)


def test_unexpected_failure_becomes_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(figure, "STRICT", False)
    out = topology_diagram({"networks": ["not", "a", "mapping"]}, tmp_path / "x.png")
    png_size(out, 2000)
