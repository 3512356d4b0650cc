"""What the live page shows, computed from a run's files: pure functions, no I/O.

``build_view`` folds a run's events (up to a moment, for replay) with the agents' state
files and the probe records into one JSON-able dict: where the mobile node is attached, its
mode and care-of address, the home agent's bindings and the foreign agent's visitors, the
tunnels that are up (IP-in-IP, RFC 3519 UDP, IPsec with its outer addresses) as paths
through the topology, the signalling of the current handoff as a ladder, the probe
streams' one-way delay and outages, and the phases of the current handoff. ``layout``
places the plan's networks and nodes for the SVG once per run.

Live per-process events are not annotated with node names (the runner annotates the merged
log at the end), so messages are recognised from the catalogue's tables and their peers
found by address: the plan's interface addresses, and the addresses the mobile node took
during the run (leases, the VPN's inner address).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from testbed.scenario import floor
from testbed.scenario.catalogue import (
    DHCP_RECEIVED,
    DHCP_SENT,
    MIP_RECEIVED,
    MIP_SENT,
    PHASE_EVENTS,
)
from testbed.summary import RunSummary

ZONES = ("trusted", "dmz", "untrusted")
ROW = 110  # px between network bars
COL = 150  # px between node columns
LEFT = 150  # room for the networks' names
TOP = 50
HANG = 42  # a single-link node's box centre below its bar
MOBILE_SLOT = 100  # the mobile node's place right of a bar's last node (< COL - 44)
LADDER_MAX = 80  # messages kept on the ladder
PAIR_WINDOW_NS = 3_000_000_000  # a received message pairs with a send this recent
PROBE_WINDOW_NS = 10_000_000_000  # the delay chart's width
PROBE_POINTS = 400  # points per stream on the chart at most
OUTAGE_MIN_NS = 20_000_000  # a gap between received packets counted as an outage
LIVE_LAG_NS = 250_000_000  # probe records reach the disk this late (the probe's flush)

# mode -> what the page calls it
MODE_NAMES = {
    "home": "at home",
    "f": "f: foreign agent care-of address",
    "c": "c: co-located care-of address",
    "mc": "mc: VPN inner address as co-located care-of (RFC 5266)",
    "dual": "dual: internal MIP inside IPsec inside external MIP (RFC 5265)",
    "proxy": "proxy: registered with the MIP proxy",
    "none": "none: no Mobile IP",
}


# --- the topology ---------------------------------------------------------------------------


def _bare(address: Any) -> str:
    return str(address or "").split("/")[0]


def address_book(plan: Mapping[str, Any]) -> dict[str, str]:
    """Interface address -> node, from the plan."""
    book: dict[str, str] = {}
    for name, node in (plan.get("nodes") or {}).items():
        for iface in node.get("interfaces") or []:
            address = _bare(iface.get("address"))
            if address and address[0].isdigit():
                book.setdefault(address, str(name))
    return book


def _zone_rank(trust: str) -> int:
    return ZONES.index(trust) if trust in ZONES else len(ZONES)


def layout(
    plan: Mapping[str, Any], mobile: str | None, crowd: Sequence[str] = ()
) -> dict[str, Any]:
    """Networks as horizontal bars (trusted, DMZ, untrusted, in file order), one column per
    node (sorted by the bars it joins, so routers make a staircase), the mobile node off
    the columns: it is drawn on whichever bar it is attached to, right of that bar's nodes.
    ``crowd``: the other mobile nodes of a run with several, off the columns too (counted
    on the bar they are attached to). Coordinates in SVG pixels."""
    networks: dict[str, Mapping[str, Any]] = dict(plan.get("networks") or {})
    nodes: dict[str, Mapping[str, Any]] = dict(plan.get("nodes") or {})
    for node in nodes.values():
        for net in node.get("links") or []:
            networks.setdefault(net, {"subnet": "", "trust": "untrusted"})
    order = list(networks)
    rows = sorted(order, key=lambda n: (_zone_rank(str(networks[n].get("trust"))), order.index(n)))
    row = {n: i for i, n in enumerate(rows)}
    names = list(nodes)
    fixed = [n for n in names if n != mobile and n not in crowd]

    def column_key(name: str) -> tuple[int, int, int]:
        r = [row[n] for n in nodes[name].get("links") or []] or [len(row)]
        return (min(r), max(r), names.index(name))

    columns = sorted(fixed, key=column_key)
    x_of = {n: LEFT + 60 + i * COL for i, n in enumerate(columns)}
    y_of_row = {n: TOP + row[n] * ROW for n in rows}
    out_nodes = []
    for name in columns:
        links = [n for n in nodes[name].get("links") or [] if n in row]
        ys = sorted(y_of_row[n] for n in links)
        y = (
            (ys[0] + HANG)
            if len(ys) == 1
            else ((ys[0] + ys[1]) / 2 if ys else TOP + len(rows) * ROW)
        )
        addresses = {
            str(i.get("network")): _bare(i.get("address"))
            for i in nodes[name].get("interfaces") or []
        }
        out_nodes.append(
            {
                "name": name,
                "roles": list(nodes[name].get("roles") or []),
                "x": x_of[name],
                "y": y,
                "links": [
                    {"network": n, "y": y_of_row[n], "address": addresses.get(n, "")} for n in links
                ],
            }
        )
    out_networks = []
    for name in rows:
        members = [x_of[n] for n in columns if name in (nodes[n].get("links") or [])]
        x0 = min(members, default=LEFT + 60) - 50
        x1 = max(members, default=LEFT + 60) + 50
        out_networks.append(
            {
                "name": name,
                "subnet": str(networks[name].get("subnet") or ""),
                "trust": str(networks[name].get("trust") or "untrusted"),
                "y": y_of_row[name],
                "x0": x0,
                "x1": x1 - 50 + COL - 10 if mobile else x1,
                "mobile_x": x1 - 50 + MOBILE_SLOT,
            }
        )
    width = max([n["x1"] for n in out_networks] + [x + 60 for x in x_of.values()] + [400]) + 40
    height = TOP + max(len(rows), 1) * ROW + 20
    return {
        "networks": out_networks,
        "nodes": out_nodes,
        "mobile": mobile,
        "crowd": list(crowd),
        "width": width,
        "height": height,
    }


def _graph(plan: Mapping[str, Any]) -> dict[str, set[str]]:
    """node and network names -> neighbours (the bipartite attachment graph)."""
    graph: dict[str, set[str]] = {}
    for name, node in (plan.get("nodes") or {}).items():
        for net in node.get("links") or []:
            graph.setdefault(f"n:{name}", set()).add(f"w:{net}")
            graph.setdefault(f"w:{net}", set()).add(f"n:{name}")
    return graph


def route(
    plan: Mapping[str, Any], a: str, b: str, mobile: str | None, where: str | None
) -> list[str]:
    """The nodes and networks between nodes ``a`` and ``b`` (``n:NAME``, ``w:NET``), the
    mobile node attached to ``where``; [] when there is no way."""
    graph = {k: set(v) for k, v in _graph(plan).items()}
    if mobile:
        for neighbour in graph.pop(f"n:{mobile}", set()):
            graph[neighbour].discard(f"n:{mobile}")
        if where:
            graph.setdefault(f"n:{mobile}", set()).add(f"w:{where}")
            graph.setdefault(f"w:{where}", set()).add(f"n:{mobile}")
    start, goal = f"n:{a}", f"n:{b}"
    if start not in graph or goal not in graph:
        return []
    previous: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for here in frontier:
            for there in sorted(graph.get(here, ())):
                if there in previous:
                    continue
                previous[there] = here
                following.append(there)
        if goal in previous:
            break
        frontier = following
    if goal not in previous:
        return []
    path = [goal]
    while previous[path[-1]] is not None:
        path.append(previous[path[-1]])  # type: ignore[arg-type]
    return list(reversed(path))


def path_points(
    geometry: Mapping[str, Any], hops: Sequence[str], mobile_network: str | None, offset: float = 0
) -> list[list[float]]:
    """SVG points of a route: down from a node's box to a bar, along it, up to the next."""
    nodes = {n["name"]: n for n in geometry["nodes"]}
    bars = {n["name"]: n for n in geometry["networks"]}
    mobile = geometry.get("mobile")

    def node_xy(name: str) -> tuple[float, float] | None:
        if name == mobile:
            bar = bars.get(mobile_network or "")
            return (bar["mobile_x"], bar["y"] + HANG) if bar else None
        node = nodes.get(name)
        return (node["x"], node["y"]) if node else None

    points: list[list[float]] = []
    for i, hop in enumerate(hops):
        kind, name = hop[:1], hop[2:]
        if kind == "n":
            xy = node_xy(name)
            if xy is None:
                return []
            points.append([xy[0] + offset, xy[1]])
        else:
            bar = bars.get(name)
            if bar is None:
                return []
            y = bar["y"] + offset
            before = node_xy(hops[i - 1][2:]) if i > 0 else None
            after = node_xy(hops[i + 1][2:]) if i + 1 < len(hops) else None
            for xy in (before, after):
                if xy is not None:
                    points.append([xy[0] + offset, y])
    return points


# --- folding the events ---------------------------------------------------------------------


@dataclass
class Message:
    t_ns: int  # sent (or, when only its arrival is recorded, received)
    sender: str
    receiver: str
    msg: str
    t_rx_ns: int | None = None
    seen: str = "tx"  # tx, rx, both

    def as_dict(self, t0: int) -> dict[str, Any]:
        return {
            "t_ms": round((self.t_ns - t0) / 1e6, 3),
            "rx_ms": None if self.t_rx_ns is None else round((self.t_rx_ns - t0) / 1e6, 3),
            "from": self.sender,
            "to": self.receiver,
            "msg": self.msg,
            "seen": self.seen,
        }


@dataclass
class Folded:
    """The run as its events say it is at one moment."""

    mobile: str
    network: str | None
    attached: bool = True
    mode: str = "home"
    care_of: str | None = None
    external_care_of: str | None = None
    home_address: str | None = None
    lease: str | None = None
    tia: str | None = None
    registered_at_ns: int | None = None
    udp: bool = False  # the accepted registration asked for RFC 3519 UDP tunnelling
    tunnels: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    ipsec: dict[str, dict[str, Any]] = field(default_factory=dict)
    bindings: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # node -> HoA
    visitors: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    changed_ns: dict[str, int] = field(default_factory=dict)  # node -> its last such event
    messages: list[Message] = field(default_factory=list)
    moves: list[dict[str, Any]] = field(default_factory=list)
    paused: bool = False
    step: str | None = None
    ended: bool = False
    agents: dict[str, str] = field(default_factory=dict)  # node -> role


def base_node(node: Any) -> str:
    """``mn.x`` (dual MIP's external core) is the node ``mn``."""
    return str(node or "?").split(".")[0]


class Peers:
    """Who an address is: the plan's interfaces first, then what the mobile node took."""

    def __init__(self, plan: Mapping[str, Any], mobile: str) -> None:
        self.nodes = set((plan.get("nodes") or {}).keys())
        self.static = address_book(plan)
        self.learned: dict[str, str] = {}
        self.mobile = mobile

    def learn(self, address: Any, node: str) -> None:
        address = _bare(address)
        if address and address not in self.static:
            self.learned[address] = node

    def planned(self, value: Any) -> str | None:
        if value in (None, ""):
            return None
        text = str(value)
        if text in self.nodes:  # an older annotated log: already a node's name
            return text
        return self.static.get(_bare(text))

    def who(self, value: Any) -> str | None:
        return self.planned(value) or (
            None if value in (None, "") else self.learned.get(_bare(value))
        )


def _peer(event: Mapping[str, Any], side: str, peers: Peers, fields: Sequence[str]) -> str | None:
    """The node at the other end of a recorded message: by the plan's address in the first
    field that has one, else the annotation (``to_node`` / ``from_node``), else an address
    the mobile node took, else the address itself."""
    values = [event.get(name) for name in fields if event.get(name) not in (None, "")]
    for value in values:
        who = peers.planned(value)
        if who:
            return who
    named = event.get(f"{side}_node")
    if isinstance(named, str) and named:
        return named
    for value in values:
        who = peers.who(value)
        if who:
            return who
    return _bare(values[0]) if values else None


def _dhcp_server(plan: Mapping[str, Any], network: str | None) -> str | None:
    for name, node in (plan.get("nodes") or {}).items():
        if "dhcp-server" in (node.get("roles") or []) and network in (node.get("links") or []):
            return str(name)
    return None


def message_of(
    event: Mapping[str, Any], peers: Peers, plan: Mapping[str, Any], network: str | None
) -> tuple[str, str, str, str] | None:
    """(message, direction, this node, the peer) for an event that records a message."""
    name = str(event.get("event", ""))
    node = base_node(event.get("node"))
    if name in DHCP_SENT:
        peer = _peer(event, "to", peers, ("to_address", "to", "server"))
        return DHCP_SENT[name], "tx", node, peer or _dhcp_server(plan, network) or "DHCP server"
    if name in DHCP_RECEIVED:
        peer = _peer(event, "from", peers, ("from_address", "from", "server"))
        return DHCP_RECEIVED[name], "rx", node, peer or _dhcp_server(plan, network) or "DHCP server"
    if name in MIP_SENT:
        msg, key = MIP_SENT[name]
        peer = _peer(event, "to", peers, ("to_address", key))
        return (msg, "tx", node, peer) if peer else None
    if name in MIP_RECEIVED:
        msg, key = MIP_RECEIVED[name]
        peer = _peer(event, "from", peers, ("from_address", key))
        return (msg, "rx", node, peer) if peer else None
    if name == "ike_message":
        label = str(event.get("msg") or event.get("exchange") or "IKE")
        if event.get("dir") == "tx":
            peer = _peer(event, "to", peers, ("to_address", "to"))
            return (label, "tx", node, peer) if peer else None
        peer = _peer(event, "from", peers, ("from_address", "from"))
        return (label, "rx", node, peer) if peer else None
    if name == "icmp_error":
        peer = _peer(event, "from", peers, ("from_address", "reporter"))
        return ("ICMP unreachable", "rx", node, peer) if peer else None
    if name == "agent_discovered" and not event.get("home"):
        peer = _peer(event, "from", peers, ("address",))
        return ("Agent Adv", "rx", node, peer) if peer else None
    if name == "external_registration":
        peer = _peer(event, "from", peers, ("from_address", "from", "agent"))
        return ("RRP (x-MIP)", "rx", node, peer) if peer else None
    return None


def _add_message(
    messages: list[Message],
    t: int,
    msg: str,
    direction: str,
    node: str,
    peer: str,
    nats: frozenset[str] = frozenset(),
) -> None:
    if direction == "tx":
        messages.append(Message(t, node, peer, msg))
        return
    # a received message: the send of the same message between the same nodes, if recorded
    # (through a NAT it arrives from the NAT's address, or was sent to the NAT's address)
    for m in reversed(messages):
        if t - m.t_ns > PAIR_WINDOW_NS:
            break
        if (
            m.seen == "tx"
            and m.msg == msg
            and (m.sender == peer or peer in nats)
            and (m.receiver == node or m.receiver in nats)
            and m.t_ns <= t
        ):
            # sent to a NAT's public address: it reached this node behind it
            m.t_rx_ns, m.seen, m.receiver = t, "both", node
            return
    messages.append(Message(t, peer, node, msg, t_rx_ns=t, seen="rx"))


def fold(
    events: Iterable[Mapping[str, Any]],
    plan: Mapping[str, Any],
    mobile: str,
    *,
    mode: str = "home",
    at_ns: int | None = None,
    others: Sequence[str] = (),
) -> Folded:
    """The run's state after its events up to ``at_ns`` (all of them when None).
    ``others``: the other mobile nodes of a crowd, whose signalling is left off the
    ladder (``floor.whose``: their events, the agents' naming their home addresses)."""
    mobiles = {mobile, *others}
    held = floor.mobile_addresses(list(events), mobile, others) if others else {}
    links = list(((plan.get("nodes") or {}).get(mobile) or {}).get("links") or [])
    out = Folded(mobile=mobile, network=links[0] if links else None, mode=mode)
    peers = Peers(plan, mobile)
    nats = frozenset(
        str(n)
        for n, spec in (plan.get("nodes") or {}).items()
        if "nat" in (spec.get("roles") or [])
    )
    last_network = out.network
    for event in events:
        t = int(event.get("t_ns", 0))
        if at_ns is not None and t > at_ns:
            break
        name = str(event.get("event", ""))
        raw_node = str(event.get("node", "?"))
        node = base_node(raw_node)
        # -- the runner: moves, pauses
        if raw_node == "runner":
            target = event.get("target")
            if name == "move_start" and target == mobile:
                out.moves.append(
                    {
                        "index": event.get("index", len(out.moves)),
                        "t_ns": t,
                        "from": event.get("from"),
                        "to": event.get("to"),
                        "gap_ms": event.get("gap_ms"),
                    }
                )
                out.network, out.attached = None, False
            elif name == "link_down" and target == mobile:
                out.attached = False
                if out.network:
                    last_network = out.network
            elif name == "link_up" and target == mobile:
                out.network = str(event.get("network") or out.network or last_network or "") or None
                last_network = out.network
                out.attached = True
                if out.moves and out.moves[-1].get("t_up_ns") is None:
                    out.moves[-1]["t_up_ns"] = t
            elif name == "pause":
                out.paused = True
            elif name == "resume":
                out.paused = False
            elif name == "step":
                out.step = str(event.get("text") or event.get("action") or "")
            elif name in ("run_end", "run_error", "run_interrupted"):
                out.ended = True
            elif name == "service_started" and event.get("kind") in (None, "agent"):
                out.agents.setdefault(str(target or event.get("service")), "agent")
            continue
        if name == "agent_started":
            out.agents[node] = str(event.get("role") or "agent")
        # -- the mobile node: mode, addresses
        if node == mobile:
            if name == "mn_started" and event.get("home_address"):
                out.home_address = str(event["home_address"])
                peers.learn(out.home_address, mobile)
            elif name == "registration_accepted" and raw_node == mobile:
                out.mode = str(event.get("mode") or out.mode)
                out.care_of = event.get("care_of")
                out.registered_at_ns = t
                out.udp = bool(event.get("udp"))
                if out.mode in ("c", "mc", "dual"):
                    peers.learn(out.care_of, mobile)
            elif name == "external_registration":
                out.mode = str(event.get("mode") or out.mode)
                out.external_care_of = event.get("care_of")
                peers.learn(out.external_care_of, mobile)
            elif name in ("returned_home", "deregistered") and raw_node == mobile:
                out.mode, out.care_of, out.external_care_of = "home", None, None
            elif name in ("address_acquired", "dhcp_bound") and event.get("address"):
                out.lease = str(event["address"])
                peers.learn(out.lease, mobile)
            elif name in ("address_lost", "dhcp_unbound"):
                out.lease = None
            elif name == "tia_changed" and event.get("address"):
                out.tia = str(event["address"])
                peers.learn(out.tia, mobile)
            elif name == "child_updown" and event.get("up"):
                for ts in event.get("local_ts") or []:
                    if str(ts).endswith("/32"):
                        out.tia = _bare(ts)
                        peers.learn(out.tia, mobile)
            if name in ("ike_updown", "ike_update", "child_updown"):
                _ipsec(out, event, peers, t)
        # -- tunnels, bindings, visitors
        if name in ("tunnel_up", "tunnel_down"):
            _tunnel(out, event, peers, node, t)
        elif name in ("binding_added", "binding_updated", "binding_renewed"):
            entry = {
                k: event.get(k)
                for k in (
                    "home_address",
                    "care_of",
                    "peer",
                    "peer_port",
                    "encapsulation",
                    "reverse",
                    "lifetime",
                    "src",
                )
            }
            out.bindings.setdefault(node, {})[str(event.get("home_address"))] = entry
            out.changed_ns[node] = t
        elif name in ("binding_removed", "binding_expired"):
            # a "replaced" binding is followed by the new one; removing it first is harmless
            out.bindings.setdefault(node, {}).pop(str(event.get("home_address")), None)
            out.changed_ns[node] = t
        elif name in ("visitor_added", "visitor_updated"):
            entry = {
                k: event.get(k)
                for k in ("home_address", "home_agent", "iface", "care_of", "lifetime", "reverse")
            }
            out.visitors.setdefault(node, {})[str(event.get("home_address"))] = entry
            out.changed_ns[node] = t
        elif name in ("visitor_removed", "visitor_expired"):
            out.visitors.setdefault(node, {}).pop(str(event.get("home_address")), None)
            out.changed_ns[node] = t
        # the MN may speak on the new link before the runner records it there
        heading = out.network or (out.moves[-1].get("to") if out.moves else None)
        if others and floor.whose(event, mobiles, held) not in (mobile, None):
            continue  # another mobile node's message
        found = message_of(event, peers, plan, heading)
        if found is not None:
            _add_message(out.messages, t, *found, nats=nats)
    return out


def _tunnel(out: Folded, event: Mapping[str, Any], peers: Peers, node: str, t: int) -> None:
    peer_address = _bare(event.get("peer"))
    key = (node, str(event.get("home_address")), peer_address)
    if event.get("event") == "tunnel_down":
        out.tunnels.pop(key, None)
        return
    other = peers.who(peer_address)
    via = None
    if node != out.mobile and other not in out.agents:
        # the far end is no agent: the mobile node itself (its co-located address, its
        # VPN inner address, or a NAT's public address in front of it)
        via = other if other not in (None, out.mobile) else None
        other = out.mobile
    out.tunnels[key] = {
        "kind": "udp" if event.get("encapsulation") == "udp" else "ipip",
        "a": node,
        "b": other or peer_address,
        "peer": peer_address,
        "via": via,
        "home_address": event.get("home_address"),
        "since_ns": t,
    }


def _ipsec(out: Folded, event: Mapping[str, Any], peers: Peers, t: int) -> None:
    name = event.get("event")
    ike = str(event.get("ike_id", event.get("ike", "?")))
    if name == "ike_updown" and not event.get("up"):
        out.ipsec.pop(ike, None)
        return
    if name == "child_updown":
        sa = out.ipsec.get(ike)
        if sa is not None:
            sa["child_up"] = bool(event.get("up"))
            sa["nat_t"] = bool(event.get("encap", sa.get("nat_t")))
        return
    if name == "ike_update" and ike not in out.ipsec:
        return  # an SA being set up moves too (NAT detection): it counts once it is up
    sa = out.ipsec.setdefault(ike, {"since_ns": t})
    local, remote = _bare(event.get("local")), _bare(event.get("remote"))
    sa.update(
        local=local,
        remote=remote,
        local_port=event.get("local_port"),
        remote_port=event.get("remote_port"),
        nat_t=bool(event.get("nat_local") or event.get("nat_remote") or event.get("nat_any")),
        peer=peers.who(remote) or remote,
        moved_ns=t if name == "ike_update" else sa.get("moved_ns"),
    )
    peers.learn(local, out.mobile)


# --- probes -----------------------------------------------------------------------------------


@dataclass
class ProbeStream:
    """One direction's received packets in the order they arrived."""

    name: str
    interval_ns: int = 2_000_000
    t_send: list[int] = field(default_factory=list)
    t_recv: list[int] = field(default_factory=list)

    def add(self, rows: Iterable[tuple[int, int]]) -> None:
        for t_send, t_recv in rows:
            if self.t_recv and t_recv < self.t_recv[-1]:
                i = bisect.bisect_right(self.t_recv, t_recv)
                self.t_recv.insert(i, t_recv)
                self.t_send.insert(i, t_send)
            else:
                self.t_recv.append(t_recv)
                self.t_send.append(t_send)


def probe_view(
    stream: ProbeStream, t0: int, at_ns: int, *, live: bool, window_ns: int = PROBE_WINDOW_NS
) -> dict[str, Any]:
    """The stream up to ``at_ns``: one-way delay points in the window before it (the
    largest per pixel-sized bucket), the outages so far, and one going on at ``at_ns``."""
    end = bisect.bisect_right(stream.t_recv, at_ns)
    start = bisect.bisect_left(stream.t_recv, at_ns - window_ns)
    bucket = max(window_ns // PROBE_POINTS, 1)
    points: dict[int, tuple[int, float]] = {}
    for i in range(start, end):
        r = stream.t_recv[i]
        owd = (r - stream.t_send[i]) / 1e6
        b = r // bucket
        if b not in points or owd > points[b][1]:
            points[b] = (r, owd)
    threshold = max(OUTAGE_MIN_NS, 5 * stream.interval_ns)
    outages = []
    for i in range(1, end):
        gap = stream.t_recv[i] - stream.t_recv[i - 1]
        if gap > threshold:
            outages.append(
                {
                    "start_ms": round((stream.t_recv[i - 1] - t0) / 1e6, 1),
                    "end_ms": round((stream.t_recv[i] - t0) / 1e6, 1),
                    "ms": round(gap / 1e6, 1),
                }
            )
    ongoing = None
    if end:
        last = stream.t_recv[end - 1]
        silent = at_ns - last
        # live, records reach the disk up to LIVE_LAG_NS late: a silence that short is no outage
        if silent > threshold + (LIVE_LAG_NS if live else 0) and (live or end < len(stream.t_recv)):
            ongoing = {"start_ms": round((last - t0) / 1e6, 1), "ms": round(silent / 1e6, 1)}
    return {
        "name": stream.name,
        "received": end,
        "points": [[round((r - t0) / 1e6, 1), round(owd, 3)] for r, owd in sorted(points.values())],
        "outages": outages[-20:],
        "ongoing": ongoing,
        "owd_ms": round((stream.t_recv[end - 1] - stream.t_send[end - 1]) / 1e6, 3)
        if end
        else None,
    }


# --- the view ---------------------------------------------------------------------------------


def _phases(
    events: Sequence[Mapping[str, Any]], t_move: int, at_ns: int | None, mobile: str
) -> list[dict[str, Any]]:
    """The current handoff's phases, in order, ms after the move (as the summary counts)."""
    found: dict[str, float] = {}
    for event in events:
        t = int(event.get("t_ns", 0))
        if at_ns is not None and t > at_ns:
            break
        if t < t_move:
            continue
        name = event.get("phase") or PHASE_EVENTS.get(str(event.get("event", "")))
        if not name or name in found:
            continue
        if event.get("event") == "ike_updown" and not event.get("up", True):
            continue
        if event.get("node") not in (mobile, "runner") and "phase" not in event:
            continue
        found[str(name)] = round((t - t_move) / 1e6, 3)
    return [{"phase": k, "ms": v} for k, v in sorted(found.items(), key=lambda kv: kv[1])]


def _state_rows(
    states: Mapping[str, Mapping[str, Any]],
    role_key: str,
    folded: dict[str, dict[str, dict[str, Any]]],
    changed: Mapping[str, int],
    service_nodes: Mapping[str, str],
) -> dict[str, dict[str, Any]]:
    """Per agent node: its rows from its state file when that is newer than its last event
    about them, else from the events (replay, or a file not rewritten yet)."""
    out: dict[str, dict[str, Any]] = {}
    for node, rows in folded.items():
        out[node] = {"rows": list(rows.values()), "source": "events"}
    for service, data in states.items():
        if role_key not in data:
            continue
        node = service_nodes.get(service, service)
        t_state = data.get("t_ns") if isinstance(data.get("t_ns"), int) else 0
        if t_state >= changed.get(node, 0):
            rows = [dict(r) for r in data.get(role_key) or [] if isinstance(r, Mapping)]
            for r in rows:
                if isinstance(r.get("expires"), int | float):
                    r["expires_in_s"] = round(r["expires"] - t_state / 1e9, 1)
            out[node] = {"rows": rows, "source": "state", "counters": data.get("counters")}
    return out


def tunnel_list(folded: Folded) -> list[dict[str, Any]]:
    """Tunnels that are up, once each (both ends report an HA-FA tunnel)."""
    seen: dict[tuple[str, frozenset[str]], dict[str, Any]] = {}
    for t in folded.tunnels.values():
        key = (t["kind"], frozenset((t["a"], t["b"])))
        entry = seen.setdefault(key, {**t, "ends": sorted({t["a"], t["b"]})})
        entry.setdefault("reported_by", set()).add(t["a"])
    out = []
    for (kind, _), t in seen.items():
        label = "IP-in-IP" if kind == "ipip" else "IP-in-UDP (RFC 3519)"
        outer = f"{t['a']} -> {t['peer']}" + (f" (via {t['via']})" if t.get("via") else "")
        out.append(
            {
                "kind": kind,
                "label": label,
                "a": t["a"],
                "b": t["b"],
                "outer": outer,
                "home_address": t.get("home_address"),
                "reported_by": sorted(t["reported_by"]),
                # only one end still has it (an FA's visitor entry outliving the move)
                "half": len(t["reported_by"]) < 2,
            }
        )
    for ike, sa in folded.ipsec.items():
        nat = " NAT-T" if sa.get("nat_t") else ""
        out.append(
            {
                "kind": "ipsec",
                "label": "IPsec (ESP" + (" in UDP 4500)" if sa.get("nat_t") else ")"),
                "a": folded.mobile,
                "b": sa.get("peer") or sa.get("remote"),
                "outer": f"{sa.get('local')}:{sa.get('local_port')} <-> "
                f"{sa.get('remote')}:{sa.get('remote_port')}{nat}",
                "ike": ike,
                "moved": sa.get("moved_ns") is not None,
            }
        )
    order = {"ipsec": 0, "udp": 1, "ipip": 2}
    out.sort(key=lambda t: (order.get(t["kind"], 3), t["a"], str(t["b"])))
    return out


def mobile_tunnel(folded: Folded) -> str:
    """The tunnel of the MN's registration as the summary names it (its accepted
    registration's encapsulation): ipip, udp, or none at home."""
    if folded.mode in ("home", "none") or folded.registered_at_ns is None:
        return "none"
    return "udp" if folded.udp else "ipip"


@dataclass
class RunFiles:
    """What the server read from a run directory (the model needs no paths)."""

    plan: Mapping[str, Any]
    events: Sequence[Mapping[str, Any]]
    states: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    probes: Mapping[str, ProbeStream] = field(default_factory=dict)
    summary: RunSummary | None = None  # the run is over once it has one
    scenario: Mapping[str, Any] | None = None
    service_nodes: Mapping[str, str] = field(default_factory=dict)


def _group(plan: Mapping[str, Any], name: Any) -> list[str]:
    """The plan's nodes a scenario's name stands for: the node, or a group's (``mn`` with
    ``count: 12``: mn01 ... mn12; the plan keeps the nodes, not the template)."""
    names = [name] if isinstance(name, str) else list(name or [])
    nodes = list(plan.get("nodes") or {})
    out: list[str] = []
    for n in names:
        n = str(n)
        found = [n] if n in nodes else []
        found = found or [
            m for m in nodes if m.startswith(n) and m[len(n) :].isdigit() and len(m) - len(n) >= 2
        ]
        out += [m for m in found if m not in out]
    return out


def mobiles_of(files: RunFiles) -> list[str]:
    """Every mobile node of the run, in order (the summary's, else the scenario's crowds,
    probed and moved nodes, as the runner counts them); one for most runs."""
    if files.summary is not None and files.summary.mobiles:
        return list(files.summary.mobiles)
    spec = (files.scenario or {}).get("spec") or files.scenario or {}
    names: list[Any] = [c.get("nodes") for c in spec.get("crowds") or [] if isinstance(c, dict)]
    names.append((spec.get("probes") or {}).get("mobile"))
    for step in spec.get("timeline") or []:
        if isinstance(step, dict) and isinstance(step.get("move"), dict):
            names.append(step["move"].get("node"))
    out: list[str] = []
    for name in names:
        out += [m for m in _group(files.plan, name) if m not in out]
    return out


def mobile_of(files: RunFiles, focus: str | None = None) -> tuple[str, str]:
    """(the mobile node the page details, its mode before any registration): ``focus`` when
    it is one of the run's mobile nodes, else the scenario's: with several, the first (as
    the summary's ``mobile``)."""
    spec = (files.scenario or {}).get("spec") or files.scenario or {}
    mode = "none" if spec.get("mobility") == "none" else "home"
    if focus is not None and focus in mobiles_of(files):
        return focus, mode
    probes = spec.get("probes") or {}
    mobile = probes.get("mobile") or (files.summary.mobile if files.summary else None)
    if isinstance(mobile, str) and mobile and files.plan.get("nodes"):
        mobile = (_group(files.plan, mobile) or [mobile])[0]  # a group: its first node
    if not isinstance(mobile, str) or not mobile:
        nodes = files.plan.get("nodes") or {}
        mobile = "mn" if "mn" in nodes else next(iter(nodes), "mn")
    return mobile, mode


def crowd_view(
    events: Iterable[Mapping[str, Any]],
    plan: Mapping[str, Any],
    mobiles: Sequence[str],
    at_ns: int | None = None,
) -> list[dict[str, Any]]:
    """Where each of several mobile nodes is at ``at_ns`` (one pass over the events: a
    fold per node would be that many passes, at every push): its network (None while a
    move has it detached), mode and care-of address."""
    nodes = plan.get("nodes") or {}
    state: dict[str, dict[str, Any]] = {}
    for m in mobiles:
        links = list((nodes.get(m) or {}).get("links") or [])
        state[m] = {"node": m, "network": links[0] if links else None, "attached": True,
                    "mode": "home", "care_of": None}  # fmt: skip
    for event in events:
        if at_ns is not None and int(event.get("t_ns", 0)) > at_ns:
            break
        name = event.get("event")
        if event.get("node") == "runner":
            node = state.get(str(event.get("target")))
            if node is None:
                continue
            if name in ("move_start", "link_down"):
                node["attached"] = False
                if name == "move_start":
                    node["network"] = None
            elif name == "link_up":
                node["network"] = event.get("network") or node["network"]
                node["attached"] = True
            continue
        node = state.get(str(event.get("node")))
        if node is None:
            continue
        if name == "registration_accepted":
            node["mode"], node["care_of"] = event.get("mode") or node["mode"], event.get("care_of")
        elif name in ("returned_home", "deregistered"):
            node["mode"], node["care_of"] = "home", None
    return list(state.values())


def build_view(
    files: RunFiles,
    *,
    at_ns: int | None = None,
    now_ns: int | None = None,
    focus: str | None = None,
) -> dict[str, Any]:
    """The page's state: live (``at_ns`` None: everything so far, state files preferred
    where newer, ``now_ns`` for outages going on) or replayed at ``at_ns`` (events only);
    with several mobile nodes, ``focus`` is the one detailed (default: the first)."""
    mobile, mode = mobile_of(files, focus)
    mobiles = mobiles_of(files)
    others = [m for m in mobiles if m != mobile] if len(mobiles) > 1 else []
    events = files.events
    t0 = int(events[0]["t_ns"]) if events else (now_ns or 0)
    t_last = int(events[-1]["t_ns"]) if events else t0
    t_last = max([t_last] + [s.t_recv[-1] for s in files.probes.values() if s.t_recv])
    finished = files.summary is not None
    live = at_ns is None and not finished
    moment = at_ns if at_ns is not None else (now_ns if live and now_ns else t_last)
    folded = fold(events, files.plan, mobile, mode=mode, at_ns=at_ns, others=others)
    current = folded.moves[-1] if folded.moves else None
    messages = folded.messages
    if current is not None:
        messages = [m for m in messages if (m.t_rx_ns or m.t_ns) >= current["t_ns"]]
    messages = messages[-LADDER_MAX:]
    states = files.states if at_ns is None else {}
    handoff = None
    if current is not None:
        handoff = {
            "index": current.get("index"),
            "from": current.get("from"),
            "to": current.get("to"),
            "t_ms": round((current["t_ns"] - t0) / 1e6, 1),
            "phases": _phases(events, current["t_ns"], at_ns, mobile),
            "elapsed_ms": round((moment - current["t_ns"]) / 1e6, 1),
        }
        summary_handoffs = files.summary.handoffs if files.summary else []
        if at_ns is None or at_ns >= t_last:
            for h in summary_handoffs:
                # a group moved together: each node's handoff starts at the same moment
                if h.t_ns == current["t_ns"] and h.node in (None, mobile):
                    handoff["summary"] = {
                        "mode": h.mode,
                        "tunnel": h.tunnel,
                        "interruption_ms": h.interruption_ms,
                        "lost_packets": h.lost_packets,
                    }
    probes = {
        name: probe_view(stream, t0, moment, live=live) for name, stream in files.probes.items()
    }
    if handoff is not None:
        for name, stream in files.probes.items():
            i = bisect.bisect_right(stream.t_recv, current["t_ns"])
            # the first packet sent after the move that arrived (by the moment shown)
            j = next(
                (
                    k
                    for k in range(i, bisect.bisect_right(stream.t_recv, moment))
                    if stream.t_send[k] >= current["t_ns"]
                ),
                None,
            )
            handoff.setdefault("first_packet_ms", {})[name] = (
                None if j is None else round((stream.t_recv[j] - current["t_ns"]) / 1e6, 1)
            )
    mn_state = next(
        (
            d
            for s, d in states.items()
            if d.get("role") == "mn" and files.service_nodes.get(s, s) == mobile
        ),
        None,
    )
    mn = {
        "node": mobile,
        "network": folded.network,
        "attached": folded.attached,
        "mode": folded.mode,
        "mode_text": MODE_NAMES.get(folded.mode, folded.mode),
        "care_of": folded.care_of,
        "external_care_of": folded.external_care_of,
        "home_address": folded.home_address,
        "lease": folded.lease,
        "tia": folded.tia,
        "tunnel": mobile_tunnel(folded),
        "state": (mn_state or {}).get("state"),
        "registered": (mn_state or {}).get("registered"),
    }
    return {
        "t0_ns": t0,
        "t_end_ns": t_last,
        "at_ms": round((moment - t0) / 1e6, 1),
        "end_ms": round((t_last - t0) / 1e6, 1),
        "live": live,
        "replay": at_ns is not None,
        "finished": finished,
        "paused": folded.paused and not folded.ended and not finished,
        "step": folded.step,
        "verdict": files.summary.verdict if files.summary else None,
        "events": sum(1 for e in events if at_ns is None or int(e["t_ns"]) <= at_ns),
        "mn": mn,
        # several mobile nodes: each one's network, mode, care-of address (the page counts
        # them on the bars); [] with one, whose page is as it always was
        "crowd": crowd_view(events, files.plan, mobiles, at_ns) if others else [],
        "bindings": _state_rows(
            states, "bindings", folded.bindings, folded.changed_ns, files.service_nodes
        ),
        "visitors": _state_rows(
            states, "visitors", folded.visitors, folded.changed_ns, files.service_nodes
        ),
        "tunnels": tunnel_list(folded),
        "ladder": [m.as_dict(t0) for m in messages],
        "handoff": handoff,
        "moves": [
            {"index": m.get("index"), "t_ms": round((m["t_ns"] - t0) / 1e6, 1), "to": m.get("to")}
            for m in folded.moves
        ],
        "probes": probes,
    }


def tunnel_paths(
    geometry: Mapping[str, Any], plan: Mapping[str, Any], view: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Each tunnel's route through the topology as SVG points (offset so that tunnels
    sharing links stay apart)."""
    mobile = geometry.get("mobile")
    where = view["mn"]["network"]
    out = []
    for i, t in enumerate(view["tunnels"]):
        hops = route(plan, t["a"], str(t["b"]), mobile, where)
        points = path_points(geometry, hops, where, offset=(i - (len(view["tunnels"]) - 1) / 2) * 6)
        if points:
            out.append(
                {
                    "kind": t["kind"],
                    "label": t["label"],
                    "points": points,
                    "half": bool(t.get("half")),
                    "ends": [t["a"], t["b"]],
                }
            )
    return out
