"""Evaluating a scenario's expectations against its measured summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from testbed.scenario.metricpath import Missing, resolve
from testbed.scenario.model import ExpectSpec
from testbed.summary import RunSummary

_OPS = {
    "below": ("<", lambda v, x: v < x),
    "at_most": ("<=", lambda v, x: v <= x),
    "above": (">", lambda v, x: v > x),
    "at_least": (">=", lambda v, x: v >= x),
}


def evaluate(expectations: list[ExpectSpec], runs: Sequence[RunSummary]) -> list[dict[str, Any]]:
    """Each expectation over every repetition (``runs``: each one's summary), as the
    summary's ``expectations`` entries."""
    results = []
    for spec in expectations:
        check, limit = spec.check
        for label, value in resolve(spec.metric, runs):
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
