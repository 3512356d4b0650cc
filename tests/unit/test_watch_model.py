"""testbed watch's view model (testbed/watch/model.py): events, states and probe records in,
what the page shows out. No I/O, no browser."""

from __future__ import annotations

import itertools

from testbed.scenario.catalogue import MIP_RECEIVED
from testbed.summary import RunSummary
from testbed.watch import model

MS = 1_000_000
T0 = 1_000_000_000_000

PLAN = {
    "networks": {
        "home": {"subnet": "10.1.0.0/24", "trust": "trusted"},
        "visited": {"subnet": "10.2.0.0/24", "trust": "trusted"},
        "office": {"subnet": "10.3.0.0/24", "trust": "trusted"},
        "backbone": {"subnet": "10.0.0.0/24", "trust": "trusted"},
        "dmz": {"subnet": "192.0.2.0/24", "trust": "dmz"},
        "hotspot": {"subnet": "192.168.1.0/24", "trust": "untrusted"},
    },
    "nodes": {
        "mn": {"roles": ["agent-host"], "links": ["home"], "interfaces": [
            {"network": "home", "address": "10.1.0.100/24"}]},
        "ha": {"roles": ["agent-host"], "links": ["home"], "interfaces": [
            {"network": "home", "address": "10.1.0.1/24"}]},
        "core": {"roles": ["router", "dhcp-server"], "links": ["home", "office", "backbone"],
                 "interfaces": [{"network": "home", "address": "10.1.0.254/24"},
                                {"network": "office", "address": "10.3.0.254/24"},
                                {"network": "backbone", "address": "10.0.0.1/24"}]},
        "fa": {"roles": ["router", "agent-host"], "links": ["visited", "backbone"],
               "interfaces": [{"network": "visited", "address": "10.2.0.254/24"},
                              {"network": "backbone", "address": "10.0.0.2/24"}]},
        "gw": {"roles": ["vpn-gateway"], "links": ["dmz", "backbone"], "interfaces": [
            {"network": "dmz", "address": "192.0.2.10/24"},
            {"network": "backbone", "address": "10.0.0.3/24"}]},
        "nat": {"roles": ["nat", "dhcp-server"], "links": ["dmz", "hotspot"], "interfaces": [
            {"network": "dmz", "address": "192.0.2.1/24"},
            {"network": "hotspot", "address": "192.168.1.1/24"}]},
    },
}  # fmt: skip

SCENARIO = {"spec": {"name": "t", "mobility": "mip", "probes": {"mobile": "mn"}}}


def ev(ms: float, node: str, event: str, **fields):
    return {"t_ns": T0 + int(ms * MS), "node": node, "event": event, **fields}


# the event by which a home agent records a request's arrival (the catalogue's table says
# which: the binding events in older logs, registration_received since)
HA_RX = next(name for name, (msg, key) in MIP_RECEIVED.items() if msg == "RRQ" and key == "src")


def ha_received(ms: float, src: str, care_of: str) -> list[dict]:
    if HA_RX.startswith("binding_"):
        return []  # the binding event that follows is the record
    return [ev(ms, "ha", HA_RX, src=src, home_address="10.1.0.100", care_of=care_of)]


START = [
    ev(0, "runner", "run_start"),
    ev(1, "ha", "agent_started", role="ha"),
    ev(2, "fa", "agent_started", role="fa"),
    ev(3, "mn", "mn_started", home_address="10.1.0.100"),
    ev(4, "mn", "returned_home", iface="eth0"),
]
TO_VISITED = [
    ev(1000, "runner", "move_start", index=0, target="mn", **{"from": "home", "to": "visited"}),
    ev(1000, "runner", "link_down", target="mn", phase="link_down"),
    ev(1050, "runner", "link_up", target="mn", network="visited", phase="link_up"),
    ev(1052, "mn", "dhcp_discover_sent", msg="DHCPDISCOVER", dir="tx"),
    ev(1058, "mn", "agent_discovered", address="10.2.0.254", home=False),
    ev(1059, "mn", "registration_sent", mode="f", to="10.2.0.254", care_of="10.2.0.254"),
    ev(1061, "fa", "request_relayed", home_agent="10.1.0.1", home_address="10.1.0.100"),
    *ha_received(1064.9, "10.0.0.2", "10.2.0.254"),
    ev(1065, "ha", "binding_added", home_address="10.1.0.100", care_of="10.2.0.254",
       peer="10.2.0.254", encapsulation="ipip", src="10.0.0.2", lifetime=600),
    ev(1065.5, "ha", "tunnel_up", home_address="10.1.0.100", peer="10.2.0.254",
       encapsulation="ipip", role="ha"),
    ev(1070, "fa", "tunnel_up", home_address="10.1.0.100", peer="10.1.0.1",
       encapsulation="ipip", role="fa"),
    ev(1070.5, "fa", "visitor_added", home_address="10.1.0.100", home_agent="10.1.0.1",
       care_of="10.2.0.254", iface="eth0", lifetime=600),
    ev(1071, "fa", "reply_relayed", home_address="10.1.0.100"),
    ev(1073, "mn", "registration_accepted", mode="f", care_of="10.2.0.254",
       **{"from": "10.2.0.254"}, udp=False),
]  # fmt: skip
TO_OFFICE = [
    ev(2000, "runner", "move_start", index=1, target="mn", **{"from": "visited", "to": "office"}),
    ev(2050, "runner", "link_up", target="mn", network="office", phase="link_up"),
    ev(2060, "mn", "address_acquired", address="10.3.0.160"),
    ev(2061, "mn", "registration_sent", mode="c", to="10.1.0.1", care_of="10.3.0.160"),
    *ha_received(2063.9, "10.3.0.160", "10.3.0.160"),
    ev(2064, "ha", "binding_updated", home_address="10.1.0.100", care_of="10.3.0.160",
       peer="10.3.0.160", encapsulation="udp", src="10.3.0.160", lifetime=600),
    ev(2064.2, "ha", "tunnel_down", home_address="10.1.0.100", peer="10.2.0.254"),
    ev(2064.5, "ha", "tunnel_up", home_address="10.1.0.100", peer="10.3.0.160",
       encapsulation="udp", role="ha"),
    ev(2066, "mn", "registration_accepted", mode="c", care_of="10.3.0.160",
       **{"from": "10.1.0.1"}, udp=True),
    ev(2066.5, "mn", "tunnel_up", home_address="10.1.0.100", peer="10.1.0.1",
       encapsulation="udp", role="mn"),
]  # fmt: skip


def files(events, **kw) -> model.RunFiles:
    return model.RunFiles(plan=PLAN, events=events, scenario=SCENARIO, **kw)


def test_layout_keeps_the_mobile_node_off_the_columns_and_every_network_gets_a_bar():
    geometry = model.layout(PLAN, "mn")
    assert {n["name"] for n in geometry["nodes"]} == {"ha", "core", "fa", "gw", "nat"}
    bars = {n["name"]: n for n in geometry["networks"]}
    assert set(bars) == set(PLAN["networks"])
    # trusted rows first, then the DMZ, then untrusted
    assert bars["backbone"]["y"] < bars["dmz"]["y"] < bars["hotspot"]["y"]
    for bar in bars.values():
        assert bar["x0"] < bar["mobile_x"] < bar["x1"]
    xs = sorted(n["x"] for n in geometry["nodes"])
    assert all(b - a >= model.COL for a, b in itertools.pairwise(xs))


def test_before_any_move_the_mobile_node_is_at_home():
    view = model.build_view(files(START))
    assert view["mn"]["network"] == "home"
    assert view["mn"]["mode"] == "home"
    assert view["mn"]["tunnel"] == "none"
    assert view["mn"]["home_address"] == "10.1.0.100"
    assert view["tunnels"] == [] and view["handoff"] is None


def test_a_move_through_a_foreign_agent():
    view = model.build_view(files(START + TO_VISITED))
    mn = view["mn"]
    assert (mn["network"], mn["mode"], mn["care_of"], mn["tunnel"]) == (
        "visited",
        "f",
        "10.2.0.254",
        "ipip",
    )
    # one HA-FA tunnel, reported by both ends
    assert [(t["kind"], sorted((t["a"], t["b"])), t["half"]) for t in view["tunnels"]] == [
        ("ipip", ["fa", "ha"], False)
    ]
    assert view["bindings"]["ha"]["rows"][0]["care_of"] == "10.2.0.254"
    assert view["bindings"]["ha"]["source"] == "events"
    assert view["visitors"]["fa"]["rows"][0]["home_agent"] == "10.1.0.1"
    # the ladder: peers found by address (live events are not annotated); the FA's relayed
    # request and the HA's binding are one arrow, sent and received
    ladder = [(m["msg"], m["from"], m["to"], m["seen"]) for m in view["ladder"]]
    assert ladder == [
        ("DHCPDISCOVER", "mn", "DHCP server", "tx"),  # no DHCP server on visited
        ("Agent Adv", "fa", "mn", "rx"),
        ("RRQ", "mn", "fa", "tx"),
        ("RRQ", "fa", "ha", "both"),
        ("RRP", "fa", "mn", "both"),
    ]
    rrq = view["ladder"][3]
    assert rrq["t_ms"] == 1061.0 and 1064.8 < rrq["rx_ms"] <= 1065.0
    phases = [p["phase"] for p in view["handoff"]["phases"]]
    assert phases[:2] == ["link_down", "link_up"]
    assert "registration_accepted" in phases
    assert view["handoff"]["to"] == "visited"


def test_while_detached_the_page_says_so():
    view = model.build_view(files(START + TO_VISITED[:2]))
    assert view["mn"]["network"] is None and view["mn"]["attached"] is False


def test_replay_at_a_moment_folds_only_the_events_before_it():
    events = START + TO_VISITED + TO_OFFICE
    before = model.build_view(files(events), at_ns=T0 + 999 * MS)
    assert (before["mn"]["network"], before["mn"]["mode"]) == ("home", "home")
    assert before["replay"] is True and before["at_ms"] == 999.0
    between = model.build_view(files(events), at_ns=T0 + 1500 * MS)
    assert (between["mn"]["network"], between["mn"]["mode"]) == ("visited", "f")
    after = model.build_view(files(events))
    assert (after["mn"]["network"], after["mn"]["mode"], after["mn"]["tunnel"]) == (
        "office",
        "c",
        "udp",
    )


def test_colocated_udp_tunnel_ends_at_the_mobile_node_and_the_fa_keeps_half_of_its_own():
    view = model.build_view(files(START + TO_VISITED + TO_OFFICE))
    tunnels = {(t["kind"], frozenset((t["a"], t["b"]))): t for t in view["tunnels"]}
    udp = tunnels[("udp", frozenset(("ha", "mn")))]
    assert not udp["half"]  # both the HA and the MN have it
    stale = tunnels[("ipip", frozenset(("fa", "ha")))]
    assert stale["half"] and stale["reported_by"] == ["fa"]
    # the ladder shows the current handoff only
    assert [(m["msg"], m["from"], m["to"], m["seen"]) for m in view["ladder"]] == [
        ("RRQ", "mn", "ha", "both"),
        ("RRP", "ha", "mn", "rx"),
    ]


def test_ipsec_tunnel_with_its_outer_addresses_follows_mobike():
    events = [
        *START,
        ev(1000, "runner", "move_start", index=0, target="mn", **{"from": "home", "to": "hotspot"}),
        ev(1050, "runner", "link_up", target="mn", network="hotspot"),
        ev(1060, "mn", "address_acquired", address="192.168.1.50"),
        ev(1100, "mn", "ike_message", msg="IKE_SA_INIT", dir="tx", to="192.0.2.10"),
        ev(1130, "gw", "ike_message", msg="IKE_SA_INIT", dir="rx", **{"from": "192.0.2.1"}),
        ev(1131, "gw", "ike_message", msg="IKE_SA_INIT", dir="tx", to="192.0.2.1"),
        ev(1160, "mn", "ike_message", msg="IKE_SA_INIT", dir="rx", **{"from": "192.0.2.10"}),
        ev(1200, "mn", "ike_updown", up=True, ike_id=1, local="192.168.1.50", local_port=4500,
           remote="192.0.2.10", remote_port=4500, nat_local=True),
        ev(1210, "mn", "child_updown", up=True, ike_id=1, encap=True,
           local_ts=["10.10.0.1/32"], remote_ts=["10.0.0.0/8"]),
        ev(1300, "ha", "tunnel_up", home_address="10.1.0.100", peer="10.10.0.1",
           encapsulation="ipip", role="ha"),
        ev(1301, "mn", "registration_accepted", mode="mc", care_of="10.10.0.1", udp=False,
           **{"from": "10.1.0.1"}),
    ]  # fmt: skip
    view = model.build_view(files(events))
    assert (view["mn"]["mode"], view["mn"]["tia"], view["mn"]["tunnel"]) == (
        "mc",
        "10.10.0.1",
        "ipip",
    )
    ipsec = next(t for t in view["tunnels"] if t["kind"] == "ipsec")
    assert (ipsec["a"], ipsec["b"]) == ("mn", "gw")
    assert ipsec["outer"] == "192.168.1.50:4500 <-> 192.0.2.10:4500 NAT-T"
    # the HA's tunnel to the VPN inner address ends at the mobile node
    assert any(t["kind"] == "ipip" and {t["a"], t["b"]} == {"ha", "mn"} for t in view["tunnels"])
    # IKE through the NAT: the gateway hears it from the NAT's address and answers to it,
    # still one arrow each way between the mobile node and the gateway
    assert [(m["msg"], m["from"], m["to"], m["seen"]) for m in view["ladder"]][:2] == [
        ("IKE_SA_INIT", "mn", "gw", "both"),
        ("IKE_SA_INIT", "gw", "mn", "both"),
    ]
    moved = [
        *events,
        ev(2000, "mn", "ike_update", ike_id=1, local="192.168.1.77", local_port=4500,
           remote="192.0.2.10", remote_port=4500, nat_local=True),
    ]  # fmt: skip
    ipsec = next(t for t in model.build_view(files(moved))["tunnels"] if t["kind"] == "ipsec")
    assert ipsec["outer"].startswith("192.168.1.77:4500") and ipsec["moved"]
    down = [*moved, ev(3000, "mn", "ike_updown", up=False, ike_id=1)]
    assert not any(t["kind"] == "ipsec" for t in model.build_view(files(down))["tunnels"])


def test_state_files_are_preferred_when_newer_than_the_events():
    events = START + TO_VISITED
    state = {
        "role": "ha",
        "t_ns": T0 + 1500 * MS,
        "bindings": [{"home_address": "10.1.0.100", "care_of": "10.2.0.254", "expires": 1600.0}],
    }
    view = model.build_view(files(events, states={"ha": state}, service_nodes={"ha": "ha"}))
    assert view["bindings"]["ha"]["source"] == "state"
    assert view["bindings"]["ha"]["rows"][0]["expires_in_s"] == 598.5
    old = {**state, "t_ns": T0 + 500 * MS, "bindings": []}
    view = model.build_view(files(events, states={"ha": old}))
    assert view["bindings"]["ha"]["source"] == "events"
    # replay never uses them (they hold only the last moment)
    view = model.build_view(files(events, states={"ha": state}), at_ns=T0 + 1072 * MS)
    assert view["bindings"]["ha"]["source"] == "events"


def stream(gap_from_ms: float, gap_to_ms: float, until_ms: float) -> model.ProbeStream:
    s = model.ProbeStream("down", interval_ns=2 * MS)
    rows = []
    t = 0.0
    while t <= until_ms:
        if not gap_from_ms < t < gap_to_ms:
            rows.append((T0 + int(t * MS), T0 + int((t + 3) * MS)))
        t += 2
    s.add(rows)
    return s


def test_probe_outages_and_one_going_on():
    s = stream(1000, 1100, 3000)
    view = model.probe_view(s, T0, T0 + 3003 * MS, live=False)
    assert [round(o["ms"]) for o in view["outages"]] == [100]
    assert view["ongoing"] is None
    assert view["owd_ms"] == 3.0
    assert len(view["points"]) <= model.PROBE_POINTS
    # replayed in the middle of the gap: the outage is going on, so far this long
    middle = model.probe_view(s, T0, T0 + 1053 * MS, live=False)
    assert middle["ongoing"] is not None and 45 <= middle["ongoing"]["ms"] <= 55
    # live: silence shorter than the probe's flush delay is no outage yet; longer is
    live = stream(10_000, 10_000, 1000)
    assert model.probe_view(live, T0, T0 + 1100 * MS, live=True)["ongoing"] is None
    going = model.probe_view(live, T0, T0 + 1600 * MS, live=True)["ongoing"]
    assert going is not None and going["ms"] > 500


def test_out_of_order_probe_rows_are_kept_in_arrival_order():
    s = model.ProbeStream("up")
    s.add([(1, 10), (2, 30)])
    s.add([(3, 20)])
    assert s.t_recv == [10, 20, 30] and s.t_send == [1, 3, 2]


def test_handoff_first_packets_and_summary_figures_once_over():
    events = START + TO_VISITED
    s = stream(999, 1080, 2000)
    handoff = {"index": 0, "t_ns": T0 + 1000 * MS, "mode": "f", "tunnel": "ipip"}
    summary = RunSummary.model_validate(
        {"scenario": "s", "verdict": "passed", "handoffs": [{**handoff, "interruption_ms": 84}]}
    )
    view = model.build_view(files(events, probes={"down": s}, summary=summary))
    assert view["finished"] and not view["live"] and view["verdict"] == "passed"
    assert 80 <= view["handoff"]["first_packet_ms"]["down"] <= 85
    assert view["handoff"]["summary"]["interruption_ms"] == 84


def test_paused_at_the_cli_and_resumed():
    events = [*START, ev(500, "runner", "pause", reason="--cli")]
    assert model.build_view(files(events))["paused"] is True
    assert model.build_view(files([*events, ev(600, "runner", "resume")]))["paused"] is False


def test_tunnel_paths_run_through_the_topology_to_where_the_mobile_node_is():
    geometry = model.layout(PLAN, "mn")
    view = model.build_view(files(START + TO_VISITED + TO_OFFICE))
    view_paths = model.tunnel_paths(geometry, PLAN, view)
    udp = next(p for p in view_paths if p["kind"] == "udp")
    office = next(n for n in geometry["networks"] if n["name"] == "office")
    ends = [udp["points"][0], udp["points"][-1]]
    # one end at the mobile node's place on the office bar (offset aside)
    assert any(abs(x - office["mobile_x"]) <= 12 and y == office["y"] + model.HANG for x, y in ends)
    assert model.route(PLAN, "ha", "mn", "mn", "office") == [
        "n:ha",
        "w:home",
        "n:core",
        "w:office",
        "n:mn",
    ]
    assert model.route(PLAN, "ha", "mn", "mn", None) == []


def test_annotated_node_names_and_older_logs_holding_names_in_to():
    event = ev(5, "mn", "registration_sent", mode="f", to="fa", msg="RRQ")
    peers = model.Peers(PLAN, "mn")
    assert model.message_of(event, peers, PLAN, "visited") == ("RRQ", "tx", "mn", "fa")
    annotated = ev(5, "mn", "registration_sent", to="10.9.9.9", to_node="ha")
    assert model.message_of(annotated, peers, PLAN, "visited")[3] == "ha"
