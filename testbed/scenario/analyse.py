"""From a finished repetition's files (probe records, events) to its handoff metrics."""

from __future__ import annotations

import ipaddress
from typing import Any

from mipbase.modes import Mode
from testbed.scenario import floor, metrics
from testbed.scenario.catalogue import DHCP_RECEIVED, DHCP_SENT, MIP_RECEIVED, MIP_SENT
from testbed.scenario.load import Scenario
from testbed.scenario.runner import PROBE_DOWN, PROBE_UP, RunRecord
from testbed.topology.model import Role


def analyse(scenario: Scenario, record: RunRecord, events: list[dict[str, Any]]) -> dict:
    spec = scenario.spec
    probes_dir = record.run_dir / "probes"
    streams = {
        name: stream
        for name in (PROBE_DOWN, PROBE_UP)
        if (stream := metrics.load_stream(probes_dir, name)) is not None
    }
    mobile = scenario.mobile
    # a plain string in the summary, as the modes read from the events
    default_mode = (Mode.NONE if spec.mobility == "none" else Mode.HOME).value
    moves = record.move_events
    handoffs = handoffs_of(record, events, moves, streams, mobile, default_mode)
    _floors(scenario, record, events, handoffs, streams)
    if record.interrupted and handoffs and handoffs[-1]["interruption_ms"] is None:
        # interrupted before the last move's streams came back: perhaps still in progress,
        # not known to be "never recovered" (the handoffs before it are finished)
        handoffs[-1]["cut_short"] = True
    first_move = moves[0]["t_ns"] if moves else record.ended_ns
    stream_info = {}
    for name, stream in streams.items():
        source, target = (
            (
                (spec.probes.correspondent, spec.probes.mobile)
                if name == PROBE_DOWN
                else (spec.probes.mobile, spec.probes.correspondent)
            )
            if spec.probes
            else ("", "")
        )
        stream_info[name] = {
            "from": source,
            "to": target,
            "sent": stream.attempted,
            "received": len(stream.seq),
            "lost": stream.attempted - len(stream.seq),
            "interval_ms": stream.interval_ns / 1e6,
            "owd_ms": {k: _round(v) for k, v in metrics.owd_stats(stream).items()},
        }
    result = {
        "handoffs": handoffs,
        "streams": stream_info,
        # packets still in flight when the first move starts belong to that move's outage
        "loss_before_first_move": sum(
            metrics.lost_before(s, first_move - IN_FLIGHT_NS) for s in streams.values()
        ),
        "final_mode": handoffs[-1]["mode"] if handoffs else default_mode,
        "move_times_ns": [m["t_ns"] for m in moves],
    }
    if spec.probes is not None and spec.probes.tcp:
        samples = metrics.load_tcp(probes_dir / "tcp.csv")
        result["tcp"] = tcp_metrics(samples, events, moves)
        for i, handoff in enumerate(handoffs):
            t_next = moves[i + 1]["t_ns"] if i + 1 < len(moves) else None
            handoff["tcp_stall"] = metrics.tcp_stall(samples, handoff["t_ns"], t_next)
    return result


def handoffs_of(
    record: RunRecord,
    events: list[dict[str, Any]],
    moves: list[dict[str, Any]],
    streams: dict[str, metrics.Stream],
    mobile: str,
    default_mode: str,
    others: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """The handoffs of ``mobile`` at ``moves`` (its own), from its ``streams`` and the events
    (``others``: the other mobile nodes, whose events are not this one's phases)."""
    handoffs = []
    for i, move in enumerate(moves):
        t_move = move["t_ns"]
        t_next = moves[i + 1]["t_ns"] if i + 1 < len(moves) else None
        t_up = move.get("t_up_ns")
        per_stream = {
            name: metrics.interruption(s, t_move, t_next, t_up) for name, s in streams.items()
        }
        down = per_stream.get(PROBE_DOWN)
        up = per_stream.get(PROBE_UP)
        values = [x.ms for x in per_stream.values()]
        interruption = None if not values or any(v is None for v in values) else max(values)
        phases = metrics.phases(events, t_move, t_next, mobile, others)
        for name, result in per_stream.items():
            if result.first_after_ns is not None:
                phases[f"first_packet_{name}"] = round((result.first_after_ns - t_move) / 1e6, 3)
        handoffs.append(
            {
                "index": i,
                "node": move.get("node", mobile),
                "probed": True,  # several mobile nodes: false for one no stream serves
                "t_s": round((t_move - record.started_ns) / 1e9, 3),
                "t_ns": t_move,
                "from": move["from"],
                "to": move["to"],
                "gap_ms": move["gap_ms"],
                "mode": metrics.mode_at(events, t_move, t_next, mobile, default_mode),
                "tunnel": metrics.tunnel_at(events, t_move, t_next, mobile),
                "interruption_ms": _round(interruption),
                "interruption_down_ms": _round(down.ms) if down else None,
                "interruption_up_ms": _round(up.ms) if up else None,
                "lost_packets": sum(x.lost for x in per_stream.values()),
                "lost_down": down.lost if down else None,
                "lost_up": up.lost if up else None,
                "phases_ms": dict(sorted(phases.items(), key=lambda kv: kv[1])),
                # the bounds of each stream's outage, which the timeline draws
                "outage": {name: metrics.outage_bounds(r) for name, r in per_stream.items()},
                "run": record.index,
            }
        )
    return handoffs


def _floors(
    scenario: Scenario,
    record: RunRecord,
    events: list[dict[str, Any]],
    handoffs: list[dict[str, Any]],
    streams: dict[str, metrics.Stream],
) -> None:
    """Each handoff against its floor: ``floor_ms``, ``overhead_ms``, ``critical_path``."""
    spec = scenario.spec
    messages = floor.match_messages(events)
    interval = max((s.interval_ns for s in streams.values()), default=0) / 1e6
    for handoff in handoffs:
        result = floor.handoff_floor(
            scenario.plan,
            messages,
            record.move_events,
            handoff,
            mobile=scenario.mobile,
            correspondent=spec.probes.correspondent if spec.probes else None,
            home_agent=floor.home_agent_of(events),
            interval_ms=interval,
        )
        handoff.update(result or {"floor_ms": None, "overhead_ms": None, "critical_path": []})


def tcp_metrics(
    samples: list[tuple[int, int]], events: list[dict[str, Any]], moves: list[dict]
) -> dict[str, Any]:
    """Did the TCP connection survive? Errors, bytes, the longest stall, progress at the end."""
    stall = 0
    last_progress = samples[0][0] if samples else 0
    previous = samples[0][1] if samples else 0
    for t_ns, total in samples:
        if total > previous:
            last_progress, previous = t_ns, total
        stall = max(stall, t_ns - last_progress)
    last_move = moves[-1]["t_ns"] if moves else 0
    at_last_move = max((b for t, b in samples if t <= last_move), default=0)
    return {
        "connected": any(e.get("event") == "tcp_connected" for e in events),
        "errors": sum(1 for e in events if e.get("event") == "tcp_error"),
        "bytes": samples[-1][1] if samples else 0,
        "max_stall_ms": round(stall / 1e6, 1),
        "bytes_after_last_move": (samples[-1][1] - at_last_move) if samples else 0,
    }


# packets sent this shortly before a move may still be in flight on the old link when it
# goes down: they count against the move, not as loss before it
IN_FLIGHT_NS = 100_000_000


def annotate(events: list[dict[str, Any]], scenario: Scenario, record: RunRecord) -> None:
    """Name the peers of signalling events for ladders and the floor, in added keys only.

    Agents record addresses; a ladder wants nodes. What an event recorded stays as it was
    (``to``, ``from``, ``src``, ``server``, ``reporter``: the addresses on the wire); the
    annotation adds ``msg`` and ``dir`` where the event does not record them, and for the
    peer ``to_node``/``from_node`` (the node behind the address: the plan maps addresses
    to nodes, the run's moves say which network, so which DHCP server, a node was on),
    ``to_address``/``from_address`` (the recorded address it was named from) and
    ``to_via``/``from_via`` when the address is not the node's own interface's: ``alias``
    (an address the mobile node held: a DHCP lease, the VPN tunnel's inner address, a
    care-of address) or ``nat`` (a NAT router's address, standing for the host behind it).
    An ICMP error (``icmp_error``) is a message from the router that reported it.
    """
    plan = scenario.plan
    owner = {str(i.ip): i.node for i in plan.interfaces() if i.ip is not None}
    moves = sorted(record.move_events, key=lambda m: m["t_ns"])
    mobile = scenario.mobile
    mobiles = scenario.mobiles if scenario.many else [mobile]
    pools = [(int(n.dhcp.first), int(n.dhcp.last)) for n in plan.networks.values() if n.dhcp]

    def leased(address: str) -> bool:
        try:
            value = int(ipaddress.IPv4Address(address))
        except ValueError:
            return False
        return any(first <= value <= last for first, last in pools)

    def network_of(node: str, t_ns: int) -> str | None:
        current = plan.nodes[node].interfaces[0].network if node in plan.nodes else None
        for move in moves:
            if move["node"] == node and move["t_ns"] <= t_ns:
                current = move["to"]
        return current

    # addresses the mobile node held besides its home address (DHCP leases, the VPN tunnel's
    # inner address, care-of addresses) and what a NAT router shows of the hosts behind it:
    # a peer seen by such an address is the mobile node
    aliases: dict[str, str] = {}  # address -> the mobile node that held it
    for event in events:
        if event.get("node") in mobiles:
            for key in ("address", "tia", "care_of", "local"):
                value = event.get(key)
                if isinstance(value, str) and value not in owner:
                    aliases[value] = str(event["node"])
    natted = {
        str(i.ip)
        for node in plan.nodes.values()
        if Role.NAT in node.roles and node.name != mobile
        for i in node.interfaces
        if i.ip is not None
    }

    def peer(address: str, msg: str, node: str) -> tuple[str | None, str | None]:
        """The node behind ``address`` as ``node`` saw it, and how (None: its own)."""
        if address in aliases or (msg.startswith("RR") and leased(address)):
            return aliases.get(address, mobile), "alias"  # a leased care-of address, a TIA
        if (
            address in natted
            and node not in (owner[address], *mobiles)
            and not msg.startswith(("ICMP", "DHCP"))  # the router itself, not behind it
        ):
            # behind the NAT (the only node that moves there; one of several: not known)
            return (mobile if len(mobiles) == 1 else None), "nat"
        return owner.get(address), None

    for event in events:
        name = event.get("event", "")
        node = str(event.get("node", ""))
        found = _message_of(event)
        if found is None:
            continue
        msg, direction, address = found
        added: dict[str, Any] = {}
        if "msg" not in event:
            added["msg"] = msg
        if "dir" not in event:
            added["dir"] = direction
        side = "to" if direction == "tx" else "from"
        if name in DHCP_SENT:  # sent to the server of the network the node was on
            network = network_of(node, event["t_ns"])
            dhcp = plan.networks[network].dhcp if network in plan.networks else None
            if dhcp is not None:
                added["to_node"] = dhcp.server
        elif address is not None:
            who, via = peer(address, msg, node)
            added[f"{side}_address"] = address
            if who is not None:
                added[f"{side}_node"] = who
            if via is not None:
                added[f"{side}_via"] = via
        for key, value in added.items():  # added keys only: nothing recorded is replaced
            event.setdefault(key, value)


ICMP_TYPES = {3: "unreachable", 11: "time exceeded", 12: "parameter problem"}


def _message_of(event: dict[str, Any]) -> tuple[str, str, str | None] | None:
    """(message, tx/rx, the peer's recorded address) of a signalling event, else None."""
    name = event.get("event", "")

    def text(key: str) -> str | None:
        value = event.get(key)
        return str(value) if isinstance(value, str) and value else None

    if name in DHCP_SENT:
        return DHCP_SENT[name], "tx", None
    if name in DHCP_RECEIVED:
        return DHCP_RECEIVED[name], "rx", text("server")
    if name in MIP_SENT and text(MIP_SENT[name][1]):
        return MIP_SENT[name][0], "tx", text(MIP_SENT[name][1])
    if name in MIP_RECEIVED and text(MIP_RECEIVED[name][1]):
        return MIP_RECEIVED[name][0], "rx", text(MIP_RECEIVED[name][1])
    if name == "registration_denied":
        # the MN's (a reply it got, with "by") or an agent's (the request it refused)
        if "by" in event and text("from"):
            return "RRP", "rx", text("from")
        if "by" not in event and text("src"):
            return "RRQ", "rx", text("src")
        return None
    if name == "icmp_error" and text("reporter"):
        kind = ICMP_TYPES.get(event.get("type"), f"type {event.get('type')}")  # type: ignore[arg-type]
        return f"ICMP {kind}", "rx", text("reporter")
    if name == "ike_message" and event.get("dir") in ("tx", "rx") and event.get("msg"):
        direction = str(event["dir"])
        return str(event["msg"]), direction, text("to" if direction == "tx" else "from")
    return None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def signalling_nodes(events: list[dict[str, Any]], mobile: str) -> list[str]:
    order = [mobile]
    for event in events:
        for key in ("node", "to_node", "from_node"):
            node = event.get(key)
            if (
                isinstance(node, str)
                and node not in order
                and node != "runner"
                and ("msg" in event or key == "node")
            ):
                order.append(node)
    return order
