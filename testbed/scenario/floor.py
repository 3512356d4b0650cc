"""Each handoff against its floor: what the links alone impose on the exchanges that
actually happened.

The signalling messages of a run (annotated events: ``msg``, ``dir``, ``to_node``/
``from_node``, the peers' node names added beside the recorded addresses) are paired
send-to-receive by content (:func:`match_messages`). The critical path of a handoff is
walked backwards from the end of its outage: the first data packet of the worse stream
needed the last signalling message that reached the node it depends on (the mobile node
for the upstream, the home agent for the downstream when tunnelled), that message needed
the last one its sender had received before sending it, and so on back to the move. Each
message on it costs the one-way delay of its path in the topology
(:func:`path_delay_ms`: the least delay through forwarding nodes over the links'
configured delays, with the mobile node where the run's moves had put it), the first
data packet the delay of its path (through the home agent when the mode tunnels), and
one probe interval (the probes are what sees the gap). The floor is their sum; the
overhead, what the measured interruption spends on top (processing, timers,
retransmissions). An ICMP error (annotated as a message from the router that reported
it) marks the message it answered as stopped there (``Message.stopped_at``).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from mipbase.modes import Mode
from testbed.topology.plan import TopologyPlan

MATCH_WINDOW_NS = 5_000_000_000  # a reception later than this is not the same message
# fields that identify one message on both ends, when both ends log them
ID_FIELDS = ("xid", "identification", "msg_id", "kind", "exchange", "id", "seq")


@dataclass(frozen=True)
class Message:
    """One protocol message: sent by ``src`` at ``t_send``, received by ``dst`` at
    ``t_recv`` (None: that end was not recorded, e.g. it was lost). ``stopped_at``: the
    node whose ICMP error said it went no further (the message was lost there)."""

    msg: str
    src: str
    dst: str
    t_send: int | None
    t_recv: int | None
    send_event: Mapping[str, Any] | None = None
    recv_event: Mapping[str, Any] | None = None
    stopped_at: str | None = None

    @property
    def t(self) -> int:
        return self.t_send if self.t_send is not None else self.t_recv  # type: ignore[return-value]


def direction(event: Mapping[str, Any]) -> str:
    d = event.get("dir")
    if d in ("tx", "rx"):
        return str(d)
    return "tx" if event.get("to_node") else "rx"


def is_message(event: Mapping[str, Any]) -> bool:
    """An annotated message with a known peer (``to_node`` or ``from_node``)."""
    return bool(event.get("msg")) and bool(event.get("to_node") or event.get("from_node"))


def _same_content(tx: Mapping[str, Any], rx: Mapping[str, Any]) -> bool:
    """The same message: identifiers logged on both ends agree."""
    return all(tx[k] == rx[k] for k in ID_FIELDS if k in tx and k in rx)


def match_messages(events: Iterable[Mapping[str, Any]]) -> list[Message]:
    """Pair each reception with the sender's transmission of the same message: same
    sender, receiver and message, the identifiers both ends log equal, sent before it was
    received; of several candidates the latest (a retransmission is what got through).
    What stays unpaired is a message with one end (``t_send`` or ``t_recv`` None)."""
    tx: list[Mapping[str, Any]] = []
    rx: list[Mapping[str, Any]] = []
    for e in events:
        if is_message(e):
            (tx if direction(e) == "tx" else rx).append(e)
    out: list[Message] = []
    used: set[int] = set()
    for r in rx:
        src, dst, msg = str(r.get("from_node") or "?"), str(r.get("node", "?")), str(r["msg"])
        match = None
        for i in range(len(tx) - 1, -1, -1):
            s = tx[i]
            if (
                i not in used
                and str(s.get("node")) == src
                and str(s.get("to_node")) == dst
                and str(s.get("msg")) == msg
                and 0 <= r["t_ns"] - s["t_ns"] <= MATCH_WINDOW_NS
                and _same_content(s, r)
            ):
                match = i
                break
        if match is None:
            out.append(Message(msg, src, dst, None, r["t_ns"], None, r))
        else:
            used.add(match)
            out.append(Message(msg, src, dst, tx[match]["t_ns"], r["t_ns"], tx[match], r))
    for i, s in enumerate(tx):
        if i not in used:
            dst = str(s["to_node"])
            out.append(Message(str(s["msg"]), str(s.get("node", "?")), dst, s["t_ns"], None, s))
    out.sort(key=lambda m: m.t)
    return _stopped(out)


# -- whose is it: several mobile nodes (issue 19) -------------------------------------------

# the fields of an agent's event that name an address, most telling first
_ADDRESS_FIELDS = ("src", "dst", "to", "from", "remote", "peer", "care_of")
# a mobile node's own events that name an address it held: its home address, a lease, the
# VPN's inner address, its IKE end (a care-of address may be an FA's, shared: not these)
_HELD = {
    "mn_started": ("home_address",),
    "address_acquired": ("address",),
    "dhcp_bound": ("address",),
    "dhcp_ack": ("address",),
    "tia_changed": ("tia", "address"),
    "boundary_decision": ("tia",),
    "ike_updown": ("local",),
    "ike_update": ("local",),
}


def mobile_addresses(events: list[dict], mobile: str, others: Collection[str]) -> dict[str, str]:
    """Address -> the mobile node (``mobile`` or one of ``others``) that held it during the
    run; an address two of them held (a lease handed on) is nobody's."""
    mobiles = {mobile, *others}
    held: dict[str, set[str]] = {}
    for e in events:
        node = str(e.get("node", "")).split(".")[0]
        if node not in mobiles:
            continue
        for key in _HELD.get(str(e.get("event")), ()):
            value = e.get(key)
            if isinstance(value, str) and value:
                held.setdefault(value.split("/")[0], set()).add(node)
    return {address: next(iter(nodes)) for address, nodes in held.items() if len(nodes) == 1}


def whose(
    event: Mapping[str, Any], mobiles: Collection[str], held: Mapping[str, str]
) -> str | None:
    """The mobile node an event is about, of ``mobiles`` (None: none known): its own
    events; the runner's about it (``target``); an agent's per-message and binding events
    by the home address they name (the HA, FA and proxy record it with each request and
    reply); else by the peer the runner annotated, else by an address it held."""
    node = str(event.get("node", "")).split(".")[0]
    if node in mobiles:
        return node
    if node == "runner":
        target = event.get("target")
        return str(target) if target in mobiles else None
    home = event.get("home_address")
    if isinstance(home, str) and home:
        return held.get(home)
    for key in ("to_node", "from_node"):
        peer = str(event.get(key) or "").split(".")[0]
        if peer in mobiles:
            return peer
    for key in _ADDRESS_FIELDS:
        value = event.get(key)
        if isinstance(value, str) and value.split("/")[0] in held:
            return held[value.split("/")[0]]
    return None


def _stopped(messages: list[Message]) -> list[Message]:
    """Mark each message that an ICMP error answered (the latest one, not received, that
    its receiver had sent to the address the error names, before it) as stopped at the
    router that reported it."""
    out = list(messages)
    for icmp in messages:
        event = icmp.recv_event or {}
        if not icmp.msg.startswith("ICMP") or event.get("event") != "icmp_error":
            continue
        for i in range(len(out) - 1, -1, -1):
            m = out[i]
            sent = m.send_event or {}
            if (
                m.t_recv is None
                and m.stopped_at is None
                and m.src == icmp.dst
                and m.t_send is not None
                and 0 <= icmp.t_recv - m.t_send <= MATCH_WINDOW_NS  # type: ignore[operator]
                and event.get("dst") in (sent.get("to_address"), sent.get("to"))
            ):
                out[i] = replace(m, stopped_at=icmp.src)
                break
    return out


def attachments(
    plan: TopologyPlan, moves: Iterable[Mapping[str, Any]], t_ns: int
) -> dict[str, str]:
    """Node -> the network its first interface was on at ``t_ns`` (after the moves)."""
    where = {
        name: node.interfaces[0].network for name, node in plan.nodes.items() if node.interfaces
    }
    for move in sorted(moves, key=lambda m: m["t_ns"]):
        if move["t_ns"] <= t_ns and move.get("node") in where and move.get("to"):
            where[str(move["node"])] = str(move["to"])
    return where


def path_delay_ms(plan: TopologyPlan, src: str, dst: str, where: Mapping[str, str]) -> float | None:
    """The least one-way delay from node ``src`` to node ``dst``: over networks, through
    forwarding nodes only, each hop costing the sender's egress delay onto the network and
    the receiver's ingress delay from it (jitter, loss and rate aside). None: no path."""
    if src == dst:
        return 0.0
    if src not in plan.nodes or dst not in plan.nodes:
        return None

    def links(node: str) -> list[tuple[str, float, float]]:
        """(network, egress ms, ingress ms) of each interface of ``node``, moved or not."""
        out = []
        for i, iface in enumerate(plan.nodes[node].interfaces):
            network = where.get(node, iface.network) if i == 0 else iface.network
            if network not in plan.networks:
                continue
            egress, ingress = (
                plan.impairment_on(iface, network)
                if network != iface.network
                else (iface.egress, iface.ingress)
            )
            out.append((network, egress.delay_ms, ingress.delay_ms))
        return out

    members: dict[str, list[tuple[str, float]]] = {}  # network -> (node, ingress ms)
    for node in plan.nodes:
        for network, _, ingress in links(node):
            members.setdefault(network, []).append((node, ingress))
    best = {src: 0.0}
    queue = [(0.0, src)]
    while queue:
        cost, node = heapq.heappop(queue)
        if node == dst:
            return round(cost, 3)
        if cost > best.get(node, float("inf")):
            continue
        if node != src and not plan.nodes[node].forwarding:
            continue  # a host does not forward
        for network, egress, _ in links(node):
            for other, ingress in members.get(network, []):
                total = cost + egress + ingress
                if other != node and total < best.get(other, float("inf")):
                    best[other] = total
                    heapq.heappush(queue, (total, other))
    return None


def critical_path(messages: list[Message], t_move: int, end_node: str, t_end: int) -> list[Message]:
    """The chain of messages that led to ``end_node`` at ``t_end``, earliest first: the last
    message it received before then, the last its sender had received before sending it,
    ... back to the move."""
    chain: list[Message] = []
    node, t = end_node, t_end
    seen = {i for i, m in enumerate(messages) if any(w in m.msg for w in _TEARDOWN)}
    # a registration, when the anchor got one, is what re-enabled its data
    registrations = [
        m
        for m in messages
        if m.msg.startswith("RR") and m.dst == end_node and t_move <= _arrival(m) <= t_end
    ]
    if registrations:
        last = max(registrations, key=_arrival)
        t = _arrival(last)
    while True:
        candidates = [
            (i, m)
            for i, m in enumerate(messages)
            if i not in seen and m.dst == node and m.src != node and t_move <= _arrival(m) <= t
        ]
        if not candidates:
            break
        i, m = max(candidates, key=lambda p: _arrival(p[1]))
        seen.add(i)
        chain.append(m)
        node = m.src
        t = m.t_send if m.t_send is not None else m.t_recv  # type: ignore[assignment]
        if t < t_move:
            break
    return chain[::-1]


_TEARDOWN = ("DELETE", "DHCPRELEASE")  # tearing state down never re-enables data


def _arrival(m: Message) -> int:
    """When ``m`` reached its receiver; its send time when only that end was recorded."""
    return m.t_recv if m.t_recv is not None else m.t_send  # type: ignore[return-value]


def handoff_floor(
    plan: TopologyPlan,
    messages: list[Message],
    moves: list[Mapping[str, Any]],
    handoff: Mapping[str, Any],
    *,
    mobile: str,
    correspondent: str | None,
    home_agent: str | None,
    interval_ms: float,
) -> dict[str, Any] | None:
    """``floor_ms``, ``overhead_ms`` and ``critical_path`` of one handoff (the summary's
    entry, with its ``outage`` bounds); None when its outage has no end."""
    t_move = handoff["t_ns"]
    worst = None
    for stream, bounds in (handoff.get("outage") or {}).items():
        first, last = bounds.get("first_after_ns"), bounds.get("last_before_ns")
        if first is None or last is None:
            return None
        if worst is None or first - last > worst[1]:
            worst = (stream, first - last, first)
    if worst is None or correspondent is None:
        return None
    stream, _, t_end = worst
    where = attachments(plan, moves, t_move + 1)
    tunnelled = handoff.get("mode") not in (Mode.HOME, Mode.NONE, None) and home_agent is not None
    upstream = stream == "up"
    # the first data packet after the outage depends on the last message that reached the
    # mobile node (upstream), or the home agent's binding (downstream, tunnelled)
    anchor = home_agent if (tunnelled and not upstream) else mobile
    chain = critical_path(messages, t_move, anchor, t_end)  # type: ignore[arg-type]
    entries: list[dict[str, Any]] = []
    total = 0.0
    for m in chain:
        ms = path_delay_ms(plan, m.src, m.dst, attachments(plan, moves, m.t))
        entries.append(
            {
                "msg": m.msg,
                "from": m.src,
                "to": m.dst,
                "t_ms": round((m.t - t_move) / 1e6, 3),
                "one_way_ms": ms,
            }
        )
        total += ms or 0.0
    src, dst = (mobile, correspondent) if upstream else (correspondent, mobile)
    hops = [src, home_agent, dst] if tunnelled else [src, dst]
    data_ms = 0.0
    for a, b in itertools.pairwise(hops):
        data_ms += path_delay_ms(plan, a, b, where) or 0.0  # type: ignore[arg-type]
    entries.append(
        {"msg": f"first {stream} packet", "from": src, "to": dst, "one_way_ms": round(data_ms, 3)}
    )
    entries.append({"msg": "probe interval", "one_way_ms": interval_ms})
    floor = round(total + data_ms + interval_ms, 3)
    measured = handoff.get("interruption_ms")
    return {
        "floor_ms": floor,
        "overhead_ms": round(measured - floor, 3) if isinstance(measured, int | float) else None,
        "critical_path": entries,
    }


def home_agent_of(events: Iterable[Mapping[str, Any]]) -> str | None:
    """The node that accepted the mobile node's registrations (its binding events)."""
    for e in events:
        if e.get("event") in ("binding_added", "binding_updated", "binding_renewed"):
            return str(e.get("node"))
    return None
