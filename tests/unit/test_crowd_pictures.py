"""Results, events and pictures keep mobile nodes apart (issue 19, item 1): on fake events of
two mobile nodes moving at once, interleaved as a crowd's are, a handoff's ladder centres on
its own node and leaves the other's signalling out (its own events, the runner's about it,
the agents' naming its home address); with one mobile node nothing is left out; the watch
page counts every mobile node on the network it is attached to."""

from __future__ import annotations

from testbed.results.ladder import build_ladder
from testbed.results.rundata import resolve_handoff
from testbed.summary import Handoff, RunSummary
from testbed.watch import model

MS = 1_000_000
T0 = 7_000 * MS
HOMES = {"mn01": "10.1.0.100", "mn02": "10.1.0.101"}


def ev(t_ms: float, node: str, event: str, **fields: object) -> dict:
    return {"t_ns": T0 + int(t_ms * MS), "node": node, "event": event, **fields}


def registration(node: str, t: float, ident: int) -> list[dict]:
    """One mobile node's move to the FA's network and its registration through the FA, as
    the runner annotates the merged log (``msg``/``dir``/``to_node``/``from_node``)."""
    home = HOMES[node]
    return [
        ev(t, "runner", "move_start", index=0, target=node, **{"from": "home", "to": "visited"}),
        ev(t + 1, "runner", "link_up", target=node, network="visited"),
        ev(t + 3, node, "movement_detected", reason="agent_discovered", to="f"),
        ev(t + 4, node, "registration_sent", to="10.2.0.254", identification=ident,
           msg="RRQ", dir="tx", to_node="fa"),
        ev(t + 6, "fa", "request_relayed", home_address=home, home_agent="10.1.0.1",
           msg="RRQ", dir="tx", to_node="ha"),
        ev(t + 9, "ha", "registration_received", src="10.2.0.254", home_address=home,
           identification=ident, msg="RRQ", dir="rx", from_node="fa"),
        ev(t + 9.5, "ha", "binding_added", home_address=home, care_of="10.2.0.254"),
        ev(t + 10, "ha", "registration_reply_sent", to="10.2.0.254", home_address=home,
           identification=ident, msg="RRP", dir="tx", to_node="fa"),
        ev(t + 13, "fa", "visitor_added", home_address=home),
        ev(t + 13.5, "fa", "reply_relayed", home_address=home, msg="RRP", dir="tx",
           to_node=node),
        ev(t + 16, node, "registration_accepted", mode="f", identification=ident,
           msg="RRP", dir="rx", from_node="fa", **{"from": "10.2.0.254"}),
    ]  # fmt: skip


START = [ev(-500, n, "mn_started", home_address=h) for n, h in HOMES.items()]


def interleaved() -> list[dict]:
    """mn01 and mn02 moving 2 ms apart: every agent message of one between the other's."""
    events = START + registration("mn01", 0, 11) + registration("mn02", 2, 22)
    return sorted(events, key=lambda e: e["t_ns"])


def test_a_crowd_handoff_ladder_draws_its_own_node_only() -> None:
    events = interleaved()
    for node, other, start in (("mn01", "mn02", T0), ("mn02", "mn01", T0 + 2 * MS)):
        order = ["mn01", "mn02", "fa", "ha"]
        lad = build_ladder(events, start, start + 1000 * MS, node, order, [other])
        assert lad.lifelines[0] == node and other not in lad.lifelines, lad.lifelines
        assert {a.src for a in lad.arrows} | {a.dst for a in lad.arrows} == {node, "fa", "ha"}
        # its four messages, each once: RRQ to the FA, relayed to the HA, RRP back, relayed
        hops = [(a.label, a.src, a.dst) for a in lad.arrows]
        assert sorted(hops) == sorted(
            [("RRQ", node, "fa"), ("RRQ", "fa", "ha"), ("RRP", "ha", "fa"), ("RRP", "fa", node)]
        ), hops
        # the HA's reception pairs with this node's relayed request, not the other's
        rrq = next(a for a in lad.arrows if (a.label, a.dst) == ("RRQ", "ha"))
        assert rrq.matched and rrq.t_dst - rrq.t_src == 3 * MS
        # the other's marks and the runner's rules about it are left out
        assert all(t.node in (node, "fa", "ha") for t in lad.ticks)
        assert [r.t - start for r in lad.rules] == [0, 1 * MS]  # its move, its link
        assert sum(1 for t in lad.ticks if t.node == "ha") == 1  # its own binding only
        # what was left out is counted: the other's six message ends
        assert lad.theirs == 6


def test_one_mobile_node_draws_every_event_as_before() -> None:
    events = sorted(START[:1] + registration("mn01", 0, 11), key=lambda e: e["t_ns"])
    alone = build_ladder(events, T0, T0 + 1000 * MS, "mn01", ["mn01", "fa", "ha"])
    told = build_ladder(events, T0, T0 + 1000 * MS, "mn01", ["mn01", "fa", "ha"], [])
    assert alone == told and alone.theirs == 0
    # without others, an interleaved log draws everyone (what a single-MN run always did)
    both = build_ladder(interleaved(), T0, T0 + 1000 * MS, "mn01", ["mn01", "fa", "ha"])
    assert "mn02" in both.lifelines


def test_an_agent_event_naming_no_node_is_kept_where_it_pairs_with_the_nodes_own() -> None:
    events = [
        *START,
        ev(0, "runner", "move_start", index=0, target="mn02", **{"from": "home", "to": "x"}),
        ev(1, "mn02", "dhcp_ack", address="10.3.0.150", msg="DHCPACK", dir="rx"),
        ev(5, "mn02", "ike_message", msg="IKE_SA_INIT", kind="request", msg_id=0, dir="tx",
           to_node="gw", to="192.0.2.10"),
        # the gateway sees it from a NAT's address: no node named on it
        ev(7, "gw", "ike_message", msg="IKE_SA_INIT", kind="request", msg_id=0, dir="rx",
           from_node="mn02", **{"from": "192.0.2.1"}),
        # another node's exchange at the gateway, named by nothing either
        ev(8, "gw", "ike_message", msg="IKE_SA_INIT", kind="request", msg_id=0, dir="rx",
           from_node="nat", **{"from": "192.0.2.1"}),
        ev(9, "gw", "ike_updown", up=True, remote="192.0.2.1"),
    ]  # fmt: skip
    lad = build_ladder(events, T0, T0 + 100 * MS, "mn02", None, ["mn01"])
    pairs = [(a.src, a.dst, a.matched) for a in lad.arrows]
    assert ("mn02", "gw", True) in pairs and not any(a.src == "nat" for a in lad.arrows), pairs
    assert not any(t.node == "gw" for t in lad.ticks)  # whose SA came up is not known


def test_a_crowd_handoff_window_ends_at_its_own_nodes_next_move() -> None:
    summary = RunSummary(
        scenario="crowd",
        mobiles=["mn01", "mn02"],
        handoffs=[
            Handoff(index=0, node="mn01", t_ns=T0),
            Handoff(index=0, node="mn02", t_ns=T0 + 2 * MS),
            Handoff(index=1, node="mn01", t_ns=T0 + 900 * MS),
        ],
    )
    ref = resolve_handoff(summary, [], summary.handoffs[0])
    assert (ref.t_next_ns, ref.node, ref.label) == (T0 + 900 * MS, "mn01", "mn01-h0")
    single = RunSummary(scenario="one", handoffs=[Handoff(index=0, node="mn", t_ns=T0)])
    assert resolve_handoff(single, [], single.handoffs[0]).label == "h0"


def test_a_crowds_path_without_a_node_is_the_first_nodes_own() -> None:
    """``mobile_path`` with no node named, on a crowd's summary, gave every node's moves as
    one path (``1,2,...,12`` on one network, badges over the labels); it is now the first
    node's own, as ``summary.mobile_node`` names it."""
    from testbed.results.report import mobile_path

    summary = RunSummary(
        scenario="crowd",
        mobile="mn01",
        mobiles=["mn01", "mn02"],
        handoffs=[
            Handoff(index=0, node="mn01", t_ns=T0, to="visited"),
            Handoff(index=0, node="mn02", t_ns=T0 + 2 * MS, to="visited"),
            Handoff(index=1, node="mn01", t_ns=T0 + 900 * MS, to="home"),
        ],
    )
    assert [(v.step, v.network) for v in mobile_path(summary, [])] == [
        (1, "visited"),
        (2, "home"),
    ]
    assert [v.network for v in mobile_path(summary, [], "mn02")] == ["visited"]


PLAN = {
    "networks": {
        "home": {"subnet": "10.1.0.0/24", "trust": "trusted"},
        "visited": {"subnet": "10.2.0.0/24", "trust": "trusted"},
    },
    "nodes": {
        **{
            name: {"roles": ["agent-host"], "links": ["home"],
                   "interfaces": [{"network": "home", "address": f"{home}/24"}]}
            for name, home in {**HOMES, "mn03": "10.1.0.102"}.items()
        },
        "ha": {"roles": ["agent-host"], "links": ["home"],
               "interfaces": [{"network": "home", "address": "10.1.0.1/24"}]},
        "fa": {"roles": ["router", "agent-host"], "links": ["visited", "home"],
               "interfaces": [{"network": "visited", "address": "10.2.0.254/24"},
                              {"network": "home", "address": "10.1.0.253/24"}]},
    },
}  # fmt: skip
CROWD = {"spec": {"name": "crowd", "crowds": [{"nodes": "mn"}], "probes": {"mobile": "mn"}}}


def test_watch_counts_every_mobile_node_where_it_is_attached() -> None:
    run = model.RunFiles(plan=PLAN, events=interleaved(), scenario=CROWD)
    assert model.mobiles_of(run) == ["mn01", "mn02", "mn03"]
    assert model.mobile_of(run)[0] == "mn01"  # the one detailed: the group's first
    geometry = model.layout(PLAN, "mn01", ["mn02", "mn03"])
    assert {n["name"] for n in geometry["nodes"]} == {"ha", "fa"}  # no column per node
    view = model.build_view(run)
    where = {m["node"]: (m["network"], m["mode"]) for m in view["crowd"]}
    assert where == {"mn01": ("visited", "f"), "mn02": ("visited", "f"), "mn03": ("home", "home")}
    # mn01's ladder: none of mn02's messages
    assert all("mn02" not in (m["from"], m["to"]) for m in view["ladder"]), view["ladder"]
    assert sum(1 for m in view["ladder"] if (m["from"], m["to"]) == ("ha", "fa")) == 1
    # replayed between the two moves: mn02 still at home, mn01 detached
    early = model.build_view(run, at_ns=T0)
    assert {m["node"]: m["attached"] for m in early["crowd"]}["mn01"] is False
    assert {m["node"]: m["network"] for m in early["crowd"]}["mn02"] == "home"


def test_a_single_mobile_node_page_has_no_crowd() -> None:
    events = sorted(START[:1] + registration("mn01", 0, 11), key=lambda e: e["t_ns"])
    plan = {**PLAN, "nodes": {k: v for k, v in PLAN["nodes"].items() if k in ("mn01", "ha", "fa")}}
    run = model.RunFiles(
        plan=plan, events=events, scenario={"spec": {"probes": {"mobile": "mn01"}}}
    )
    assert model.build_view(run)["crowd"] == []


def test_watch_details_the_node_asked_for() -> None:
    # both nodes moved by one step: their handoffs start at the same moment
    events = sorted(
        START + registration("mn01", 0, 11) + registration("mn02", 0, 22),
        key=lambda e: e["t_ns"],
    )
    summary = RunSummary(
        scenario="crowd",
        mobiles=["mn01", "mn02"],
        handoffs=[
            Handoff(index=0, node="mn01", t_ns=T0, mode="f", interruption_ms=10.0),
            Handoff(index=0, node="mn02", t_ns=T0, mode="f", interruption_ms=20.0),
        ],
    )
    run = model.RunFiles(plan=PLAN, events=events, scenario=CROWD, summary=summary)
    assert model.mobile_of(run, "mn02")[0] == "mn02"
    assert model.mobile_of(run, "ha")[0] == "mn01"  # not a mobile node: the first
    for node, other, interruption in (("mn01", "mn02", 10.0), ("mn02", "mn01", 20.0)):
        view = model.build_view(run, focus=node)
        assert view["mn"]["node"] == node and view["mn"]["mode"] == "f"
        assert view["mn"]["home_address"] == HOMES[node]
        assert all(other not in (m["from"], m["to"]) for m in view["ladder"]), view["ladder"]
        assert any(node in (m["from"], m["to"]) for m in view["ladder"])
        # the summary's handoff of this node, not the other's that began with it
        assert view["handoff"]["summary"]["interruption_ms"] == interruption
