"""Evaluating a scenario's expectations against its measured summary."""

from __future__ import annotations

import re
from typing import Any

from testbed.scenario import catalogue, metrics
from testbed.scenario.model import ExpectSpec

_HANDOFF = re.compile(r"^handoff\[(\d+|\*)\]\.([a-z_]+)(?:\.([a-z_0-9]+))?$")
_OPS = {
    "below": ("<", lambda v, x: v < x),
    "at_most": ("<=", lambda v, x: v <= x),
    "above": (">", lambda v, x: v > x),
    "at_least": (">=", lambda v, x: v >= x),
}


def _resolve(metric: str, runs: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(label, value) pairs a metric refers to, over every repetition."""
    match = _HANDOFF.match(metric)
    out: list[tuple[str, Any]] = []
    many = len(runs) > 1
    if match:
        which, field, sub = match.groups()
        if sub in catalogue.PERCENTILE_STATS and _is_number(field):  # over one move's repetitions
            return over_repetitions(runs, which, field, sub)
        for r, run in enumerate(runs):
            handoffs = run["handoffs"]
            indexes = range(len(handoffs)) if which == "*" else [int(which)]
            for i in indexes:
                prefix = f"run {r}: " if many else ""
                label = f"{prefix}handoff[{i}].{field}" + (f".{sub}" if sub else "")
                if i >= len(handoffs):
                    out.append((label, Missing(f"there is no handoff {i}")))
                    continue
                value = handoffs[i].get(field, Missing(f"no field {field}"))
                if value is None and handoffs[i].get("cut_short"):
                    value = Missing("the run was cut short before this handoff recovered")
                if sub is not None:
                    value = (
                        value.get(sub, Missing(f"no phase {sub}"))
                        if isinstance(value, dict)
                        else Missing(f"{field} has no {sub}")
                    )
                out.append((label, value))
        return out
    if metric.startswith("interruption_ms."):  # each move's, never pooled over moves
        return over_repetitions(runs, "*", "interruption_ms", metric.split(".")[1])
    if metric.startswith("stream."):
        _, name, field = metric.split(".")
        for r, run in enumerate(runs):
            stream = run["streams"].get(name)
            label = f"run {r}: {metric}" if many else metric
            if stream is None:
                out.append((label, Missing(f"no stream {name}")))
            elif field == "owd_p95_ms":
                out.append((label, stream["owd_ms"]["p95"]))
            else:
                out.append((label, stream[field]))
        return out
    if metric.startswith("tcp."):
        field = metric.split(".", 1)[1]
        for r, run in enumerate(runs):
            label = f"run {r}: {metric}" if many else metric
            tcp = run.get("tcp")
            out.append((label, tcp[field] if tcp else Missing("no tcp probe (probes.tcp)")))
        return out
    key = {"handoffs": None}.get(metric, metric)
    for r, run in enumerate(runs):
        label = f"run {r}: {metric}" if many else metric
        out.append((label, len(run["handoffs"]) if key is None else run.get(key)))
    return out


def over_repetitions(
    runs: list[dict[str, Any]], which: str, field: str, stat: str
) -> list[tuple[str, Any]]:
    """``stat`` (p50, p95, p99, max) of ``field`` over every repetition of a move (``which``:
    its index or ``*`` for each move): one value per move, labelled with its kind."""
    moves = metrics.per_move(h for run in runs for h in run["handoffs"])
    if which != "*":
        moves = [m for m in moves if m[0].get("index", 0) == int(which)]
        if not moves:
            return [(f"handoff[{which}].{field}.{stat}", Missing(f"there is no handoff {which}"))]
    out: list[tuple[str, Any]] = []
    for move in moves:
        first = move[0]
        label = (
            f"handoff[{first.get('index', 0)}].{field}.{stat}"
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


def evaluate(expectations: list[ExpectSpec], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results = []
    for spec in expectations:
        check, limit = spec.check
        for label, value in _resolve(spec.metric, runs):
            name = spec.name or f"{label} {check.replace('_', ' ')} {limit}"
            if spec.name and len(runs) > 1:
                name = f"{spec.name} ({label})"
            result: dict[str, Any] = {"name": name, "metric": spec.metric, "limit": limit}
            if isinstance(value, Missing):
                result.update(value=None, passed=False, detail=value.why)
            elif check == "is_null":
                result.update(value=value, passed=(value is None) == bool(limit))
            elif check == "equals":
                result.update(value=value, passed=value == limit)
            elif value is None:
                result.update(value=None, passed=False, detail="no value (stream never recovered)")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                # validation refuses numeric checks on text metrics; this is a safety net
                result.update(value=value, passed=False, detail=f"{value!r} is not a number")
            else:
                symbol, op = _OPS[check]
                result.update(
                    value=value, passed=bool(op(value, limit)), detail=f"{value} {symbol} {limit}"
                )
            results.append(result)
    return results
