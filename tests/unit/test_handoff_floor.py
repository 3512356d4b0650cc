"""Each handoff against its floor (issue 17, item 4): messages paired by content, the
critical path back from the end of the outage, each message at its path's one-way delay."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.scenario import floor
from testbed.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]
MS = 1_000_000
T0 = 10_000 * MS


@pytest.fixture(scope="module")
def plan():  # type: ignore[no-untyped-def]
    return load_topology(ROOT / "topologies" / "enterprise.yaml")


def ev(t_ms: float, node: str, msg: str, direction: str, peer: str, **fields: object) -> dict:
    key = "to_node" if direction == "tx" else "from_node"
    return {"t_ns": T0 + int(t_ms * MS), "node": node, "msg": msg, "dir": direction, key: peer}


def test_path_delays_follow_the_links_and_the_moves(plan) -> None:  # type: ignore[no-untyped-def]
    home = floor.attachments(plan, [], T0)
    assert floor.path_delay_ms(plan, "mn", "cn", home) == 2.0
    moves = [{"t_ns": T0, "node": "mn", "to": "public"}]
    public = floor.attachments(plan, moves, T0 + 1)
    # mn -> isp 5+5, isp -> fw 10+10, fw -> gw 1+1: the seed's "33 ms one way", less ARP
    assert floor.path_delay_ms(plan, "mn", "gw", public) == 32.0
    assert floor.path_delay_ms(plan, "gw", "mn", public) == 32.0
    assert floor.path_delay_ms(plan, "mn", "nowhere", public) is None


def test_messages_are_paired_by_content_not_by_order() -> None:
    events = [
        ev(1, "mn", "RRQ", "tx", "ha") | {"identification": 1},
        ev(2, "mn", "RRQ", "tx", "ha") | {"identification": 2},
        ev(3, "ha", "RRQ", "rx", "mn") | {"identification": 1},
        ev(4, "mn", "RRP", "rx", "ha"),
    ]
    messages = floor.match_messages(events)
    paired = [(m.msg, m.t_send, m.t_recv) for m in messages if m.t_send and m.t_recv]
    assert paired == [("RRQ", T0 + MS, T0 + 3 * MS)]
    lost = [m for m in messages if m.t_recv is None]
    assert [(m.msg, m.t_send) for m in lost] == [("RRQ", T0 + 2 * MS)]
    only_received = [m for m in messages if m.t_send is None]
    assert [(m.msg, m.src, m.dst) for m in only_received] == [("RRP", "ha", "mn")]


def test_the_floor_is_the_critical_path_at_the_links_delays(plan) -> None:  # type: ignore[no-untyped-def]
    moves = [{"t_ns": T0, "node": "mn", "to": "office"}]
    events = [
        ev(10, "mn", "DHCPDISCOVER", "tx", "core"),
        ev(20, "mn", "DHCPACK", "rx", "core"),
        ev(21, "mn", "RRQ", "tx", "ha"),
        ev(24, "ha", "RRQ", "rx", "mn"),
        ev(25, "mn", "DHCPRELEASE", "tx", "core"),  # not on the way to recovery
        ev(28, "mn", "RRP", "rx", "ha"),
        ev(29, "fa", "RRQ", "rx", "mn"),  # another node's: not on the MN's path
    ]
    handoff = {
        "t_ns": T0,
        "mode": "c",
        "interruption_ms": 40.0,
        "outage": {
            "up": {"last_before_ns": T0, "first_after_ns": T0 + 40 * MS},
            "down": {"last_before_ns": T0, "first_after_ns": T0 + 30 * MS},
        },
    }
    result = floor.handoff_floor(
        plan,
        floor.match_messages(events),
        moves,
        handoff,
        mobile="mn",
        correspondent="cn",
        home_agent="ha",
        interval_ms=2.0,
    )
    assert result is not None
    path = [
        (e["msg"], e.get("from"), e.get("to"), e["one_way_ms"]) for e in result["critical_path"]
    ]
    # office <-> core 2, mn on office -> ha 4 (core, home), first packet mn -> ha -> cn 4 + 2
    assert path == [
        ("DHCPDISCOVER", "mn", "core", 2.0),
        ("DHCPACK", "core", "mn", 2.0),
        ("RRQ", "mn", "ha", 4.0),
        ("RRP", "ha", "mn", 4.0),
        ("first up packet", "mn", "cn", 6.0),
        ("probe interval", None, None, 2.0),
    ]
    assert result["floor_ms"] == 20.0 and result["overhead_ms"] == 20.0


def test_no_floor_for_an_outage_without_end(plan) -> None:  # type: ignore[no-untyped-def]
    handoff = {"t_ns": T0, "outage": {"up": {"last_before_ns": T0, "first_after_ns": None}}}
    kwargs = {"mobile": "mn", "correspondent": "cn", "home_agent": "ha", "interval_ms": 2.0}
    assert floor.handoff_floor(plan, [], [], handoff, **kwargs) is None


def test_the_report_shows_measured_floor_and_overhead_side_by_side() -> None:
    from testbed.results.report import floor_table
    from testbed.summary import RunSummary

    path = [{"msg": "RRQ", "from": "mn", "to": "ha", "one_way_ms": 4.0}]
    path.append({"msg": "probe interval", "one_way_ms": 2.0})
    handoff = {"index": 0, "from": "home", "to": "office", "mode": "c", "interruption_ms": 30.5}
    handoff |= {"floor_ms": 6.0, "overhead_ms": 24.5, "critical_path": path}
    table = floor_table(RunSummary.model_validate({"scenario": "s", "handoffs": [handoff]}))
    assert table.rows == [
        ["0", "home → office", "c", "30.5", "6", "24.5", "RRQ mn→ha 4, probe interval 2"]
    ]
