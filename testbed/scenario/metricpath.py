"""Metric paths: what a name like ``handoff[1].interruption_ms.p95`` or ``stream.down.lost``
refers to in summaries. One grammar for the scenario's expectations and the labs' checks.

``handoff[N|*].FIELD[.PHASE|.STAT]`` (STAT p50, p95, p99, max: over the repetitions of that
move), ``interruption_ms.STAT`` (each move's), ``stream.NAME.FIELD``, ``tcp.FIELD``,
``handoffs`` (their number) and any other dotted path into the summary.

Several mobile nodes (issue 19; each handoff names its ``node``, ``index`` is the node's own
N-th move): ``handoff[N]`` is every node's N-th handoff, one value per node (labelled
``node[mn03].handoff[N]...``); ``handoff[*]`` every handoff of every node;
``node[mn03].handoff[N|*]...`` one node's; ``handoff[N].FIELD.STAT`` the statistic over the
nodes and the repetitions of their N-th move (``node[mn03]...STAT`` over that node's
repetitions); ``over_nodes.F...`` and ``per_node.NODE.F...`` the summary's aggregates. A
handoff no probe stream measured (``probed: false``) has no probe fields: it is left out of
what they resolve to. With one mobile node every path means what it always meant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from testbed.scenario import catalogue, metrics

_HANDOFF = re.compile(
    r"^(?:node\[([a-z][a-z0-9_]*)\]\.)?handoff\[(\d+|\*)\]\.([a-z_]+)(?:\.([a-z_0-9]+))?$"
)
# what only a probe stream measures: a handoff of a node without one has none of it
PROBE_FIELDS = frozenset(
    {
        "interruption_ms",
        "interruption_down_ms",
        "interruption_up_ms",
        "lost_packets",
        "lost_down",
        "lost_up",
        "floor_ms",
        "overhead_ms",
    }
)
_SEGMENT = re.compile(r"^([a-z0-9_]+)(?:\[(\d+|\*)\])?$")


def resolve(metric: str, runs: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(label, value) pairs a metric refers to, over every repetition (a value may be
    :class:`Missing`)."""
    match = _HANDOFF.match(metric)
    out: list[tuple[str, Any]] = []
    many = len(runs) > 1
    if match:
        node, which, field, sub = match.groups()
        if sub in catalogue.PERCENTILE_STATS and _is_number(field):  # over one move's repetitions
            return over_repetitions(runs, which, field, sub, node)
        for r, run in enumerate(runs):
            for who, handoffs in by_node(run["handoffs"], node):
                indexes = range(len(handoffs)) if which == "*" else [int(which)]
                for i in indexes:
                    prefix = f"run {r}: " if many else ""
                    prefix += f"node[{who}]." if who else ""
                    label = f"{prefix}handoff[{i}].{field}" + (f".{sub}" if sub else "")
                    if i >= len(handoffs):
                        of = f" of {who}" if who else ""
                        out.append((label, Missing(f"there is no handoff {i}{of}")))
                        continue
                    if field in PROBE_FIELDS and not handoffs[i].get("probed", True):
                        continue  # no probe stream measured it
                    out.append((label, _field(handoffs[i], i, field, sub)))
        return out
    if metric.startswith("interruption_ms."):  # each move's, never pooled over moves
        return over_repetitions(runs, "*", "interruption_ms", metric.split(".")[1])
    if metric.startswith("stream.") and metric.count(".") == 2:
        _, name, field = metric.split(".")
        for r, run in enumerate(runs):
            stream = run["streams"].get(name)
            label = f"run {r}: {metric}" if many else metric
            if stream is None:
                out.append((label, Missing(f"no stream {name}")))
            elif field == "owd_p95_ms":
                out.append((label, (stream.get("owd_ms") or {}).get("p95")))
            else:
                out.append((label, stream.get(field, Missing(f"stream {name} has no {field}"))))
        return out
    if metric.startswith("tcp."):
        field = metric.split(".", 1)[1]
        for r, run in enumerate(runs):
            label = f"run {r}: {metric}" if many else metric
            tcp = run.get("tcp")
            value = tcp.get(field, Missing(f"tcp has no {field}")) if tcp else None
            out.append((label, Missing("no tcp probe (probes.tcp)") if not tcp else value))
        return out
    for r, run in enumerate(runs):
        label = f"run {r}: {metric}" if many else metric
        out.append((label, walk(metric, run)))
    return out


def resolve_one(metric: str, summary: Mapping[str, Any]) -> Any:
    """The one value ``metric`` names in a summary (labcheck's terms), or Missing."""
    found = resolve(metric, [dict(summary)])
    if len(found) == 1:
        return found[0][1]
    if metric.startswith("interruption_ms."):
        return Missing(f"{len(found)} moves: name one, handoff[N].{metric}")
    return Missing(f"{metric} names {len(found)} values")


def walk(path: str, summary: Mapping[str, Any]) -> Any:
    """Any dotted path into summary.json, with the short names (``handoffs`` is their
    number, ``handoff[N]``, ``stream.X``)."""
    if path == "handoffs":
        return len(summary.get("handoffs") or [])
    segments = path.split(".")
    value: Any = summary
    for n, segment in enumerate(segments):
        match = _SEGMENT.match(segment)
        if match is None:
            return Missing(f"bad path {path}")
        name, index = match.groups()
        key = {"handoff": "handoffs", "stream": "streams"}.get(name, name) if n == 0 else name
        so_far = ".".join([*segments[:n], name])
        if not isinstance(value, Mapping) or key not in value:
            return Missing(f"no {so_far}")
        value = value[key]
        if index is not None:
            if index == "*":
                return Missing("[*] must be expanded first")
            if not isinstance(value, list) or int(index) >= len(value):
                return Missing(f"no {so_far}[{index}]")
            value = value[int(index)]
    return value


def _field(handoff: Mapping[str, Any], i: int, field: str, sub: str | None) -> Any:
    value = handoff.get(field, Missing(f"no field {field}"))
    if value is None and handoff.get("cut_short"):
        value = Missing("the run was cut short before this handoff recovered")
    if sub is not None:
        value = (
            value.get(sub, Missing(f"handoff {i} has no phase {sub}"))
            if isinstance(value, dict)
            else Missing(f"{field} has no {sub}")
        )
    return value


def by_node(
    handoffs: list[dict[str, Any]], node: str | None = None
) -> list[tuple[str | None, list[dict[str, Any]]]]:
    """A repetition's handoffs per mobile node, each node's in order: ``(None, all)`` when
    they are one node's (or name none) and no ``node`` is asked for."""
    if node is not None:
        return [(node, [h for h in handoffs if h.get("node") == node])]
    nodes = list(dict.fromkeys(h.get("node") for h in handoffs))
    if len(nodes) <= 1:
        return [(None, handoffs)]
    return [(n, [h for h in handoffs if h.get("node") == n]) for n in nodes]


def over_repetitions(
    runs: list[dict[str, Any]], which: str, field: str, stat: str, node: str | None = None
) -> list[tuple[str, Any]]:
    """``stat`` (p50, p95, p99, max) of ``field`` over every repetition of a move (``which``:
    its index or ``*`` for each move): one value per move, labelled with its kind. Several
    mobile nodes: over the nodes too (their N-th moves together), or ``node``'s alone."""
    handoffs = [h for run in runs for h in run["handoffs"]]
    if node is not None:
        handoffs = [h for h in handoffs if h.get("node") == node]
    if field in PROBE_FIELDS:
        handoffs = [h for h in handoffs if h.get("probed", True)]
    moves = metrics.per_move(handoffs)
    prefix = f"node[{node}]." if node else ""
    if which != "*":
        moves = [m for m in moves if m[0].get("index", 0) == int(which)]
        if not moves:
            of = f" of {node}" if node else ""
            return [
                (
                    f"{prefix}handoff[{which}].{field}.{stat}",
                    Missing(f"there is no handoff {which}{of}"),
                )
            ]
    out: list[tuple[str, Any]] = []
    for move in moves:
        first = move[0]
        label = (
            f"{prefix}handoff[{first.get('index', 0)}].{field}.{stat}"
            f" ({first.get('from', '?')}->{first.get('to', '?')}, n={len(move)})"
        )
        values = [h.get(field) for h in move]
        if any(v is None for v in values):
            why = "no value (a repetition never recovered)"
            if any(h.get("cut_short") for h in move):
                why = "a repetition was cut short before this handoff recovered"
            out.append((label, Missing(why)))
        else:
            out.append((label, metrics.stat(values, stat)))
    return out


def _is_number(field: str) -> bool:
    return catalogue.HANDOFF_FIELDS.get(field, ("",))[0] == "number"


class Missing:
    """A metric that has no value, and why."""

    def __init__(self, why: str) -> None:
        self.why = why

    def __repr__(self) -> str:
        return f"<{self.why}>"
