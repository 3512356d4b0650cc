"""Ladders (issue 17, items 1 and 5) and the annotation they read (issue 16, item 3): on
synthetic events, what becomes an arrow, a mark or a rule, where a lost or refused message
ends, and the geometry that makes the picture readable."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from testbed.results import figure
from testbed.results.figure import overlapping_texts
from testbed.results.ladder import (
    PAGE_WIDTH_IN,
    build_ladder,
    draw_ladder,
    drawn_ends,
    readability_problems,
    recorded_messages,
)
from testbed.scenario.analyse import annotate
from testbed.scenario.load import load_scenario

ROOT = Path(__file__).resolve().parents[2]
MS = 1_000_000
T0 = 5_000 * MS


@pytest.fixture(autouse=True)
def strict_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(figure, "STRICT", True)


def ev(t_ms: float, node: str, event: str, **fields: object) -> dict:
    return {"t_ns": T0 + int(t_ms * MS), "node": node, "event": event, **fields}


@pytest.fixture(scope="module")
def lab04():  # type: ignore[no-untyped-def]
    return load_scenario(ROOT / "labs" / "04-leaving-the-enterprise-mobike" / "scenario.yaml")


def test_annotation_adds_keys_and_keeps_what_was_recorded(lab04) -> None:  # type: ignore[no-untyped-def]
    events = [
        ev(0, "runner", "move_start", index=0, node_="mn", **{"from": "home", "to": "public"}),
        ev(1, "mn", "dhcp_ack", server="203.0.113.1", address="203.0.113.50", xid=7),
        ev(2, "mn", "registration_sent", to="10.1.0.1", mode="c", identification=1),
        ev(3, "mn", "icmp_error", dst="10.1.0.1", type=3, code=0, reporter="203.0.113.1"),
        ev(4, "mn", "boundary_decision", inside=False, tia="10.10.0.1", mode="mc"),
        ev(
            5,
            "gw",
            "ike_message",
            msg="IKE_AUTH",
            kind="request",
            dir="rx",
            **{"from": "198.51.100.3"},
        ),
        ev(6, "ha", "registration_received", src="10.10.0.1", care_of="10.10.0.1"),
        ev(7, "mn", "registration_accepted", **{"from": "10.1.0.1"}, mode="mc"),
        ev(8, "mn", "movement_detected", **{"from": "c", "to": "mc"}),
    ]
    recorded = [dict(e) for e in events]
    record = SimpleNamespace(move_events=[{"t_ns": T0, "node": "mn", "to": "public"}])
    annotate(events, lab04, record)  # type: ignore[arg-type]
    for before, after in zip(recorded, events, strict=True):
        assert {k: after[k] for k in before} == before  # nothing recorded is replaced
    ack, rrq, icmp, _, ike, binding, rrp, moved = events[1:]
    assert (ack["msg"], ack["dir"], ack["from_node"], ack["from_address"]) == (
        "DHCPACK",
        "rx",
        "isp",
        "203.0.113.1",
    )
    assert (rrq["msg"], rrq["to_node"], rrq["to_address"], rrq["to"]) == (
        "RRQ",
        "ha",
        "10.1.0.1",
        "10.1.0.1",
    )
    assert (icmp["msg"], icmp["from_node"]) == ("ICMP unreachable", "isp")
    assert (ike["from_node"], ike["from_via"], ike["from"]) == ("mn", "nat", "198.51.100.3")
    assert (binding["from_node"], binding["from_via"], binding["src"]) == (
        "mn",
        "alias",
        "10.10.0.1",
    )
    assert "from" not in binding
    assert (rrp["from_node"], rrp["from"]) == ("ha", "10.1.0.1")
    assert "from_node" not in moved and moved["from"] == "c"  # not a message: untouched


def _boundary_test() -> list[dict]:
    """Lab 04's boundary test: the direct RRQ stopped at the ISP router, its ICMP error."""
    return [
        ev(0, "runner", "move_start", index=1, **{"from": "visited", "to": "public"}),
        ev(0, "runner", "link_down"),
        ev(1, "mn", "movement_detected", reason="link_down"),
        ev(2.5, "mn", "boundary_probe", gateway="192.0.2.10"),
        ev(
            3,
            "mn",
            "registration_sent",
            msg="RRQ",
            dir="tx",
            to_node="ha",
            to_address="10.1.0.1",
            to="10.1.0.1",
        ),
        ev(
            5,
            "mn",
            "ike_message",
            msg="IKE_SA_INIT",
            kind="request",
            dir="tx",
            to_node="gw",
            to_address="192.0.2.10",
            msg_id=0,
        ),
        ev(
            23,
            "mn",
            "icmp_error",
            msg="ICMP unreachable",
            dir="rx",
            from_node="isp",
            from_address="203.0.113.1",
            dst="10.1.0.1",
            type=3,
            code=0,
        ),
        ev(23.1, "mn", "home_agent_unreachable", code=0),
        ev(
            38,
            "gw",
            "ike_message",
            msg="IKE_SA_INIT",
            kind="request",
            dir="rx",
            from_node="mn",
            from_address="203.0.113.50",
            from_via="alias",
            msg_id=0,
        ),
        ev(90, "mn", "boundary_decision", inside=False, mode="mc"),
    ]


def test_a_stopped_message_ends_where_it_stopped_and_the_icmp_error_comes_back() -> None:
    lad = build_ladder(_boundary_test(), T0, T0 + 3000 * MS, "mn", ["mn", "ha", "gw"])
    assert lad.lifelines == ["mn", "gw", "isp"]  # the HA never got it: no column
    stopped = [a for a in lad.arrows if a.stopped]
    icmp = [a for a in lad.arrows if a.icmp]
    assert [(a.src, a.dst, a.label) for a in stopped] == [("mn", "isp", "RRQ")]
    assert "to 10.1.0.1" in stopped[0].note and "stopped at isp" in stopped[0].note
    assert [(a.src, a.dst, a.label) for a in icmp] == [("isp", "mn", "ICMP net unreachable")]
    # the error leaves from where the request ended, and arrives when it was recorded
    assert icmp[0].t_src == stopped[0].t_dst and icmp[0].t_dst == T0 + 23 * MS
    assert stopped[0].t_src < stopped[0].t_dst < icmp[0].t_dst
    ike = next(a for a in lad.arrows if a.label.startswith("IKE"))
    assert ike.matched and (ike.src, ike.dst) == ("mn", "gw")
    assert "from 203.0.113.50" in ike.note  # the address the gateway saw, on the arrow


def test_decisions_are_labelled_marks() -> None:
    lad = build_ladder(_boundary_test(), T0, T0 + 3000 * MS, "mn")
    decisions = [t.label for t in lad.ticks if t.kind == "decision"]
    assert decisions == [
        "movement detected (link_down)",
        "boundary test: direct RRQ and the VPN gateway at once",
        "HA unreachable directly: outside",
        "decision: outside, mode mc",
    ]


def test_a_refused_request_ends_at_the_agent_that_refused_it() -> None:
    events = [
        ev(0, "runner", "move_start", index=0),
        ev(1, "mn", "registration_sent", msg="RRQ", dir="tx", to_node="fa", identification=5),
        ev(
            2,
            "fa",
            "registration_denied",
            msg="RRQ",
            dir="rx",
            from_node="mn",
            code=70,
            reason="poorly formed",
            src="10.2.0.100",
            identification=5,
        ),
        ev(3, "mn", "registration_denied", msg="RRP", dir="rx", from_node="fa", code=70, by="fa"),
    ]
    lad = build_ladder(events, T0, T0 + 100 * MS, "mn")
    refused = [a for a in lad.arrows if a.refused]
    assert [(a.src, a.dst, a.matched, a.label) for a in refused] == [
        ("mn", "fa", True, "RRQ refused 70 (poorly formed)")
    ]
    assert any(a.label == "RRP denied 70" for a in lad.arrows)


def test_a_nodes_second_process_shares_its_column_and_repeats_are_counted() -> None:
    events = [
        ev(0, "runner", "move_start", index=0),
        ev(1, "mn.x", "registration_sent", msg="RRQ", dir="tx", to_node="proxy"),
        ev(2, "proxy", "binding_added", msg="RRQ", dir="rx", from_node="mn"),
        ev(3, "mn.x", "registration_accepted", msg="RRP", dir="rx", from_node="proxy"),
        *(
            ev(
                10 + i,
                "ha",
                "icmp_error",
                msg="ICMP unreachable",
                dir="rx",
                from_node="nat",
                dst="198.51.100.3",
                type=3,
                code=3,
            )
            for i in range(6)
        ),
    ]
    lad = build_ladder(events, T0, T0 + 100 * MS, "mn")
    assert lad.lifelines == ["mn", "proxy", "nat", "ha"]
    assert [(a.src, a.dst, a.matched) for a in lad.arrows[:1]] == [("mn", "proxy", True)]
    icmp = [a for a in lad.arrows if a.label.startswith("ICMP")]
    assert [(a.count, a.label) for a in icmp] == [(6, "ICMP port unreachable")]
    assert drawn_ends(lad) == recorded_messages(events, T0, T0 + 100 * MS) == 9


def _crowded() -> list[dict]:
    """Six nodes, long labels, messages a few µs apart, marks at one instant, an idle
    stretch: everything that used to overprint."""
    nodes = ["mn", "fa", "ha", "gw", "isp", "nat"]
    events = [
        ev(0, "runner", "move_start", index=0, **{"from": "home", "to": "hotspot"}),
        ev(0, "runner", "link_down"),
    ]
    t = 0.0
    for i in range(24):
        src, dst = nodes[i % 6], nodes[(i * 5 + 1) % 6]
        if src == dst:
            dst = nodes[(i + 3) % 6]
        t += 0.004 if i % 5 else 0.7
        label = "INFORMATIONAL/UPDATE_SA_ADDRESSES" if i % 3 == 0 else "RRQ"
        events.append(
            ev(
                t,
                src,
                "tx",
                msg=label,
                dir="tx",
                to_node=dst,
                msg_id=i,
                to_address=f"203.0.113.{100 + i}",
            )
        )
        events.append(
            ev(
                t + 0.01,
                dst,
                "rx",
                msg=label,
                dir="rx",
                from_node=src,
                msg_id=i,
                from_address="198.51.100.3",
                from_via="nat",
            )
        )
        events.append(ev(t + 0.01, dst, "carrier_up"))
        events.append(ev(t + 0.01, dst, "tunnel_up, binding_added, visitor_added, more"))
    events.append(ev(t + 900, "mn", "boundary_decision", inside=True))
    events.append(ev(t + 900, "nat", "boundary_decision", inside=True))
    return events


@pytest.mark.parametrize("scale", ["compressed", "linear"])
def test_crowded_ladder_reads_clearly(scale: str) -> None:
    events = _crowded()
    lad = build_ladder(events, T0, T0 + 3000 * MS, "mn")
    fig = draw_ladder(lad, T0, "a crowded handoff: " + "x" * 80, scale)
    assert fig.get_size_inches()[0] == PAGE_WIDTH_IN
    assert not overlapping_texts(fig)
    assert readability_problems(fig, lad, recorded_messages(events, T0, T0 + 3000 * MS)) == []
    assert len(lad.lifelines) == 6


def test_idle_stretches_are_compressed_and_marked() -> None:
    events = [
        ev(0, "runner", "move_start", index=0),
        ev(1, "mn", "tx", msg="RRQ", dir="tx", to_node="ha"),
        ev(2, "ha", "rx", msg="RRQ", dir="rx", from_node="mn"),
        ev(1502, "mn", "tx", msg="RRQ", dir="tx", to_node="ha", retry=1),
    ]
    lad = build_ladder(events, T0, T0 + 3000 * MS, "mn")
    fig = draw_ladder(lad, T0, "idle")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "≈ 1500 ms" in texts
    assert fig.get_size_inches()[1] < 4  # 1.5 s of nothing is not a page of nothing
    assert not overlapping_texts(fig)


def test_the_readability_check_finds_what_is_wrong() -> None:
    lad = build_ladder(_boundary_test(), T0, T0 + 3000 * MS, "mn")
    fig = draw_ladder(lad, T0, "t")
    assert (
        readability_problems(fig, lad, recorded_messages(_boundary_test(), T0, T0 + 3000 * MS))
        == []
    )
    lad.lifelines.append("cn")
    fig.axes[0].text(1.0, 1.0, "on top")
    fig.axes[0].text(1.0, 1.0, "on top too")
    problems = " | ".join(readability_problems(fig, lad, 99))
    assert "empty columns: ['cn']" in problems
    assert "overlapping labels" in problems
    assert "not 99" in problems


def test_a_wrapped_mark_label_stays_on_its_side_of_the_node() -> None:
    """Nine events at one instant on the MN (lab 02's return home, when the ARP gate
    withheld a request at the move) make a label that wraps. Its first line used to be
    measured without the comma that ends it, came out wider than the room right of the
    MN, and was moved across the MN's own tick: a line through a label (a suite flake)."""
    names = [
        "arp_withheld",
        "carrier_down",
        "dhcp_link_down",
        "link_down",
        "tunnel_down",
        "carrier_up",
        "link_up",
        "agent_solicitation_sent",
        "dhcp_discover",
    ]
    for count in range(1, len(names) + 1):
        events = [
            ev(0, "runner", "move_start", index=1, **{"from": "office", "to": "home"}),
            ev(0, "runner", "link_down"),
            *(ev(0.7, "mn", name) for name in names[:count]),
            ev(1.5, "runner", "link_up"),
            ev(9.7, "mn", "tx", msg="RRQ", dir="tx", to_node="ha", msg_id=1),
            ev(13.5, "ha", "rx", msg="RRQ", dir="rx", from_node="mn", msg_id=1),
        ]
        lad = build_ladder(events, T0, T0 + 3000 * MS, "mn")
        fig = draw_ladder(lad, T0, "lab 02, office -> home")
        recorded = recorded_messages(events, T0, T0 + 3000 * MS)
        assert readability_problems(fig, lad, recorded) == [], count
        mark = next(t for t in fig.axes[0].texts if t.get_text().startswith(names[0]))
        assert mark.get_position()[0] > PAGE_WIDTH_IN / 4, count  # right of the MN's column
