"""Handoff metrics of a scenario with several mobile nodes (issue 19), kept apart per node.

Each mobile node's handoffs are its own moves (``index``: its N-th, from 0), measured on its
own probe streams (``probes/NODE/down.csv``, ``up.csv``), with the phases, mode and tunnel
read from its own events (the other mobile nodes' events, and the runner's about them, are
not this node's phases). Every handoff names its ``node``. A node the probes do not serve
(``probes.sample``) has handoffs with ``probed: false`` and no interruption.

:func:`aggregate` gives the summary's ``per_node`` (each node over the repetitions) and
``over_nodes`` (percentiles over every handoff of every node, and over the nodes of each
node's median and worst handoff), which expectations check as ``per_node.mn03.recovered``
or ``over_nodes.interruption_ms.p95``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from mipbase.modes import Mode
from testbed.scenario import floor, metrics
from testbed.scenario.analyse import IN_FLIGHT_NS, handoffs_of
from testbed.scenario.load import Scenario
from testbed.scenario.record import PROBE_DOWN, PROBE_UP, RunRecord

STATS = ("p50", "p95", "max")
POOLED_STATS = ("p50", "p95", "p99", "max")


def analyse_many(
    scenario: Scenario, record: RunRecord, events: list[dict[str, Any]]
) -> dict[str, Any]:
    """One repetition's metrics, per mobile node (see the module)."""
    spec = scenario.spec
    # a plain string in the summary, as the modes read from the events
    default_mode = (Mode.NONE if spec.mobility == "none" else Mode.HOME).value
    probes_dir = record.run_dir / "probes"
    mobiles = scenario.mobiles
    messages = floor.match_messages(events)
    home_agent = floor.home_agent_of(events)
    correspondent = spec.probes.correspondent if spec.probes else None
    handoffs: list[dict[str, Any]] = []
    streams_of: dict[str, dict[str, metrics.Stream]] = {}
    loss_before = 0
    for node in mobiles:
        moves = [m for m in record.move_events if m["node"] == node]
        streams: dict[str, metrics.Stream] = {}
        if node in scenario.probed:
            folder = probes_dir / scenario.probe_dir(node)
            for name in (PROBE_DOWN, PROBE_UP):
                stream = metrics.load_stream(folder, name)
                if stream is not None:
                    streams[name] = stream
        streams_of[node] = streams
        others = frozenset(mobiles) - {node}
        mine = handoffs_of(record, events, moves, streams, node, default_mode, others)
        interval = max((s.interval_ns for s in streams.values()), default=0) / 1e6
        home = _home(scenario, node)
        node_messages = [m for m in messages if _concerns(m, node, home)]
        for handoff in mine:
            if node not in scenario.probed:
                handoff.update(probed=False, interruption_ms=None, lost_packets=None)
                handoff.update(floor_ms=None, overhead_ms=None, critical_path=[])
                continue
            result = floor.handoff_floor(
                scenario.plan,
                node_messages,
                record.move_events,
                handoff,
                mobile=node,
                correspondent=correspondent,
                home_agent=home_agent,
                interval_ms=interval,
            )
            handoff.update(result or {"floor_ms": None, "overhead_ms": None, "critical_path": []})
        if record.interrupted and mine and mine[-1]["interruption_ms"] is None:
            mine[-1]["cut_short"] = True
        first_move = moves[0]["t_ns"] if moves else record.ended_ns
        loss_before += sum(
            metrics.lost_before(s, first_move - IN_FLIGHT_NS) for s in streams.values()
        )
        handoffs += mine
    handoffs.sort(key=lambda h: h["t_ns"])
    finals = {_final(handoffs, node, default_mode) for node in mobiles}
    node_streams = {
        node: {name: _stream_info(s) for name, s in streams.items()}
        for node, streams in streams_of.items()
        if streams
    }
    # this repetition's aggregates, which its expectations check (the run's summary has
    # them over every repetition)
    per_node, over_nodes = aggregate(handoffs, mobiles, node_streams)
    return {
        "handoffs": handoffs,
        "streams": _pooled_streams(streams_of, correspondent),
        "node_streams": node_streams,
        "per_node": per_node,
        "over_nodes": over_nodes,
        "loss_before_first_move": loss_before,
        "final_mode": finals.pop() if len(finals) == 1 else "mixed",
        "move_times_ns": [m["t_ns"] for m in record.move_events],
        "mobiles": list(mobiles),
    }


def _home(scenario: Scenario, node: str) -> str | None:
    try:
        return str(scenario.plan.address(node))
    except KeyError:
        return None


def _concerns(message: floor.Message, node: str, home: str | None) -> bool:
    """Whether a signalling message is this mobile node's: it sent or received it, or an
    agent relayed it for its home address (FA -> HA)."""
    if node in (message.src, message.dst):
        return True
    if home is None:
        return False
    for event in (message.send_event, message.recv_event):
        if event and home in (event.get("home_address"), event.get("home")):
            return True
    return False


def _final(handoffs: list[dict[str, Any]], node: str, default_mode: str) -> str:
    mine = [h for h in handoffs if h.get("node") == node]
    return str(mine[-1]["mode"]) if mine else default_mode


def _stream_info(stream: metrics.Stream) -> dict[str, Any]:
    return {
        "sent": stream.attempted,
        "received": len(stream.seq),
        "lost": stream.attempted - len(stream.seq),
        "interval_ms": stream.interval_ns / 1e6,
        "owd_ms": {k: _round(v) for k, v in metrics.owd_stats(stream).items()},
    }


def _pooled_streams(
    streams_of: dict[str, dict[str, metrics.Stream]], correspondent: str | None
) -> dict[str, dict[str, Any]]:
    """``down`` and ``up`` over every mobile node: packets summed, one-way delays pooled."""
    out: dict[str, dict[str, Any]] = {}
    for name in (PROBE_DOWN, PROBE_UP):
        streams = [s[name] for s in streams_of.values() if name in s]
        if not streams:
            continue
        nodes = [node for node, s in streams_of.items() if name in s]
        delays = [(r - t) / 1e6 for s in streams for t, r in zip(s.t_send, s.t_recv, strict=True)]
        sent = sum(s.attempted for s in streams)
        received = sum(len(s.seq) for s in streams)
        ends = (correspondent or "", ",".join(nodes))
        out[name] = {
            "from": ends[0] if name == PROBE_DOWN else ends[1],
            "to": ends[1] if name == PROBE_DOWN else ends[0],
            "sent": sent,
            "received": received,
            "lost": sent - received,
            "interval_ms": streams[0].interval_ns / 1e6,
            "owd_ms": {
                "p50": _round(metrics.percentile(delays, 50)),
                "p95": _round(metrics.percentile(delays, 95)),
            },
            "nodes": len(streams),
        }
    return out


# -- aggregates over nodes (the summary's per_node and over_nodes) --------------------------


def aggregate(
    handoffs: Sequence[dict[str, Any]],
    mobiles: Sequence[str],
    node_streams: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``per_node`` and ``over_nodes`` of every repetition's handoffs (see the module).

    A handoff is recovered when its streams came back (``interruption_ms`` known),
    unrecovered when they did not (a run cut short aside), unprobed when no stream served its
    node. Interruption percentiles are null while any probed handoff never recovered: an
    outage without end has no percentile.
    """
    per_node: dict[str, Any] = {}
    medians: list[float] = []
    worsts: list[float] = []
    for node in mobiles:
        mine = [h for h in handoffs if h.get("node") == node]
        stats = _counts(mine)
        values = _interruptions(mine)
        stats["interruption_ms"] = _stats(values, STATS)
        stats["registration_ms"] = _stats(_phase(mine, "registration_accepted"), STATS)
        stats["final_mode"] = mine[-1].get("mode") if mine else None
        stats["modes"] = [h.get("mode") for h in mine]
        if node_streams and node in node_streams:
            stats["streams"] = node_streams[node]
        if values:
            medians.append(metrics.stat(values, "p50"))  # type: ignore[arg-type]
            worsts.append(max(values))
        per_node[node] = stats
    over = _counts(handoffs)
    moving = {h.get("node") for h in handoffs}
    over.update(
        nodes=len(mobiles),
        moving=len([n for n in mobiles if n in moving]),
        interruption_ms=_stats(_interruptions(handoffs), POOLED_STATS),
        registration_ms=_stats(_phase(handoffs, "registration_accepted"), POOLED_STATS),
        node_p50_ms=_stats(medians if len(medians) == over["nodes_recovered"] else None, STATS),
        node_max_ms=_stats(worsts if len(worsts) == over["nodes_recovered"] else None, STATS),
        concurrent=concurrency(handoffs),
    )
    return per_node, over


def _counts(handoffs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    probed = [h for h in handoffs if h.get("probed", True)]
    recovered = [h for h in probed if h.get("interruption_ms") is not None]
    cut = [h for h in probed if h.get("interruption_ms") is None and h.get("cut_short")]
    nodes = {h.get("node") for h in probed}
    failed = {h.get("node") for h in probed if h.get("interruption_ms") is None}
    return {
        "handoffs": len(handoffs),
        "recovered": len(recovered),
        "unrecovered": len(probed) - len(recovered) - len(cut),
        "cut_short": len(cut),
        "unprobed": len(handoffs) - len(probed),
        "nodes_recovered": len(nodes - failed),
    }


def _interruptions(handoffs: Iterable[dict[str, Any]]) -> list[float] | None:
    """The probed handoffs' interruptions; None when one never recovered (or none)."""
    values = [h.get("interruption_ms") for h in handoffs if h.get("probed", True)]
    if not values or any(v is None for v in values):
        return None
    return [float(v) for v in values if v is not None]


def _phase(handoffs: Iterable[dict[str, Any]], phase: str) -> list[float] | None:
    values = [(h.get("phases_ms") or {}).get(phase) for h in handoffs]
    known = [float(v) for v in values if v is not None]
    return known or None


def _stats(values: Sequence[float] | None, names: Sequence[str]) -> dict[str, float | None]:
    return {name: _round(metrics.stat(values, name)) if values else None for name in names} | {
        "n": len(values) if values else 0
    }


def concurrency(handoffs: Iterable[dict[str, Any]]) -> int:
    """The most handoffs in progress at one moment: each from its move to the end of its
    outage (or its registration's acceptance when it was not probed)."""
    edges: list[tuple[int, int]] = []
    for h in handoffs:
        start = h.get("t_ns")
        if start is None:
            continue
        length = h.get("interruption_ms")
        if length is None:
            length = (h.get("phases_ms") or {}).get("registration_accepted")
        if length is None:
            continue
        edges += [(int(start), 1), (int(start + float(length) * 1e6), -1)]
    most = current = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        current += step
        most = max(most, current)
    return most


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
