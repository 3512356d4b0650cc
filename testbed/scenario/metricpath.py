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

Paths are read from :class:`testbed.summary.RunSummary` (a run's, or one repetition's) by
the names summary.json uses; a value that is itself a record (``handoff[0].outage.down``)
comes back as its JSON data, as the file holds it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from testbed.scenario import catalogue, metrics
from testbed.summary import Handoff, RunSummary, SummaryRecord

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


def resolve(metric: str, runs: Sequence[RunSummary]) -> list[tuple[str, Any]]:
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
            for who, handoffs in by_node(run.handoffs, node):
                indexes = range(len(handoffs)) if which == "*" else [int(which)]
                for i in indexes:
                    prefix = f"run {r}: " if many else ""
                    prefix += f"node[{who}]." if who else ""
                    label = f"{prefix}handoff[{i}].{field}" + (f".{sub}" if sub else "")
                    if i >= len(handoffs):
                        of = f" of {who}" if who else ""
                        out.append((label, Missing(f"there is no handoff {i}{of}")))
                        continue
                    if field in PROBE_FIELDS and not handoffs[i].probed:
                        continue  # no probe stream measured it
                    out.append((label, _field(handoffs[i], i, field, sub)))
        return out
    if metric.startswith("interruption_ms."):  # each move's, never pooled over moves
        return over_repetitions(runs, "*", "interruption_ms", metric.split(".")[1])
    if metric.startswith("stream.") and metric.count(".") == 2:
        _, name, field = metric.split(".")
        for r, run in enumerate(runs):
            stream = run.streams.get(name)
            label = f"run {r}: {metric}" if many else metric
            if stream is None:
                out.append((label, Missing(f"no stream {name}")))
            elif field == "owd_p95_ms":
                out.append((label, stream.owd_ms.get("p95")))
            else:
                out.append((label, _json(_child(stream, field, f"stream {name} has no {field}"))))
        return out
    if metric.startswith("tcp."):
        field = metric.split(".", 1)[1]
        for r, run in enumerate(runs):
            label = f"run {r}: {metric}" if many else metric
            if run.tcp is None:
                out.append((label, Missing("no tcp probe (probes.tcp)")))
            else:
                out.append((label, _json(_child(run.tcp, field, f"tcp has no {field}"))))
        return out
    for r, run in enumerate(runs):
        label = f"run {r}: {metric}" if many else metric
        out.append((label, walk(metric, run)))
    return out


def resolve_one(metric: str, summary: RunSummary) -> Any:
    """The one value ``metric`` names in a summary (labcheck's terms), or Missing."""
    found = resolve(metric, [summary])
    if len(found) == 1:
        return found[0][1]
    if metric.startswith("interruption_ms."):
        return Missing(f"{len(found)} moves: name one, handoff[N].{metric}")
    return Missing(f"{metric} names {len(found)} values")


def walk(path: str, summary: RunSummary) -> Any:
    """Any dotted path into summary.json, with the short names (``handoffs`` is their
    number, ``handoff[N]``, ``stream.X``)."""
    if path == "handoffs":
        return len(summary.handoffs)
    segments = path.split(".")
    value: Any = summary
    for n, segment in enumerate(segments):
        match = _SEGMENT.match(segment)
        if match is None:
            return Missing(f"bad path {path}")
        name, index = match.groups()
        key = {"handoff": "handoffs", "stream": "streams"}.get(name, name) if n == 0 else name
        so_far = ".".join([*segments[:n], name])
        value = _child(value, key, f"no {so_far}")
        if isinstance(value, Missing):
            return value
        if index is not None:
            if index == "*":
                return Missing("[*] must be expanded first")
            if not isinstance(value, list) or int(index) >= len(value):
                return Missing(f"no {so_far}[{index}]")
            value = value[int(index)]
    return _json(value)


def _child(value: Any, name: str, missing: str) -> Any:
    """``value``'s member ``name`` as summary.json names it (a record's field or a key a tool
    added, a mapping's key); Missing(``missing``) when it has none."""
    try:
        if isinstance(value, SummaryRecord):
            return value.value_of(name)
        if isinstance(value, Mapping):
            return value[name]
    except KeyError:
        pass
    return Missing(missing)


def _json(value: Any) -> Any:
    """What a path resolves to, as summary.json holds it: labs and expectations compare and
    print a record (``handoff[0].outage.down``) as the file has it, not as a model."""
    if isinstance(value, SummaryRecord):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


def _field(handoff: Handoff, i: int, field: str, sub: str | None) -> Any:
    value = _json(_child(handoff, field, f"no field {field}"))
    if value is None and handoff.cut_short:
        value = Missing("the run was cut short before this handoff recovered")
    if sub is not None:
        value = (
            value.get(sub, Missing(f"handoff {i} has no phase {sub}"))
            if isinstance(value, dict)
            else Missing(f"{field} has no {sub}")
        )
    return value


def by_node(
    handoffs: list[Handoff], node: str | None = None
) -> list[tuple[str | None, list[Handoff]]]:
    """A repetition's handoffs per mobile node, each node's in order: ``(None, all)`` when
    they are one node's (or name none) and no ``node`` is asked for."""
    if node is not None:
        return [(node, [h for h in handoffs if h.node == node])]
    nodes = list(dict.fromkeys(h.node for h in handoffs))
    if len(nodes) <= 1:
        return [(None, handoffs)]
    return [(n, [h for h in handoffs if h.node == n]) for n in nodes]


def over_repetitions(
    runs: Sequence[RunSummary], which: str, field: str, stat: str, node: str | None = None
) -> list[tuple[str, Any]]:
    """``stat`` (p50, p95, p99, max) of ``field`` over every repetition of a move (``which``:
    its index or ``*`` for each move): one value per move, labelled with its kind. Several
    mobile nodes: over the nodes too (their N-th moves together), or ``node``'s alone."""
    handoffs = [h for run in runs for h in run.handoffs]
    if node is not None:
        handoffs = [h for h in handoffs if h.node == node]
    if field in PROBE_FIELDS:
        handoffs = [h for h in handoffs if h.probed]
    moves = metrics.per_move(handoffs, lambda h: h.index)
    prefix = f"node[{node}]." if node else ""
    if which != "*":
        moves = [m for m in moves if m[0].index == int(which)]
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
            f"{prefix}handoff[{first.index}].{field}.{stat}"
            f" ({first.from_}->{first.to}, n={len(move)})"
        )
        values = [h.value_of(field) for h in move]
        if any(v is None for v in values):
            why = "no value (a repetition never recovered)"
            if any(h.cut_short for h in move):
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
