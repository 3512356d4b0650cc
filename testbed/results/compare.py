"""Compare a run against a baseline run: per-handoff interruptions, phases, percentiles.

A metric regresses when ``current > baseline * (1 + tolerance/100) + slack_ms``. The slack
(1 ms by default) exists because timings below a millisecond are scheduler noise, so a
0.4 → 0.9 ms phase is not a 125 % regression. A metric that had a number in the baseline
and is null or absent now (a stream that no longer recovers, a phase that no longer
happens) is a regression too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from testbed.results.rundata import fmt_num
from testbed.results.tables import Table, to_text

Value = float | None


@dataclass(frozen=True)
class CompareRow:
    metric: str
    baseline: Value
    current: Value
    status: str  # ok | regression | improved | new | missing
    limit: Value = None  # the regression threshold that was applied

    @property
    def delta(self) -> Value:
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline

    @property
    def delta_pct(self) -> Value:
        if self.delta is None or not self.baseline:
            return None
        return 100.0 * self.delta / self.baseline


@dataclass
class CompareResult:
    rows: list[CompareRow] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)
    improvements: list[str] = field(default_factory=list)
    tolerance_pct: float = 0.0
    slack_ms: float = 1.0

    @property
    def ok(self) -> bool:
        return not self.regressions


def _number(value: Any) -> Value:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def metrics(summary: Mapping[str, Any]) -> dict[str, Value]:
    """The comparable metrics of a summary, in a stable, readable order.

    Keys are present when the summary has the field, even when its value is null, so that
    "measured but never recovered" and "not measured" stay distinct.
    """
    out: dict[str, Value] = {}
    streams = [str(s) for s in summary.get("streams") or {}]
    for h in summary.get("handoffs") or []:
        if not isinstance(h, Mapping):
            continue
        run = h.get("run")
        name = f"handoff[{h.get('index', '?')}]" + (
            f"@run{run}" if isinstance(run, int) and run > 0 else ""
        )
        keys = [k for k in h if k.startswith("interruption_") and k.endswith("_ms")]
        order = ["interruption_ms"] + [f"interruption_{s}_ms" for s in streams]
        keys.sort(key=lambda k: (order.index(k) if k in order else len(order), k))
        for key in keys:
            out[f"{name}.{key}"] = _number(h[key])
        phases = h.get("phases_ms")
        if isinstance(phases, Mapping):
            for phase, value in phases.items():
                out[f"{name}.phases.{phase}"] = _number(value)
    for metric, stats in (summary.get("percentiles") or {}).items():
        if isinstance(stats, Mapping):
            for stat, value in stats.items():
                if stat != "n":  # a sample count is not a timing
                    out[f"percentiles.{metric}.{stat}"] = _number(value)
    return out


def compare(
    baseline: dict, current: dict, tolerance_pct: float, slack_ms: float = 1.0
) -> CompareResult:
    """Compare ``current`` against ``baseline`` (both ``summary.json`` dicts)."""
    base, cur = metrics(baseline), metrics(current)
    result = CompareResult(tolerance_pct=tolerance_pct, slack_ms=slack_ms)
    factor = 1.0 + tolerance_pct / 100.0
    for key in [*base, *(k for k in cur if k not in base)]:
        b, c = base.get(key), cur.get(key)
        limit = b * factor + slack_ms if b is not None else None
        if key not in cur:
            status = "regression" if b is not None else "missing"
            if b is not None:
                result.regressions.append(f"{key}: was {fmt_num(b)} ms, missing now")
        elif key not in base:
            status = "new"
        elif b is None and c is None:
            status = "ok"
        elif b is None:
            status = "improved"
            result.improvements.append(f"{key}: was null, now {fmt_num(c)} ms")
        elif c is None:
            status = "regression"
            result.regressions.append(f"{key}: was {fmt_num(b)} ms, now null (never happened)")
        elif limit is not None and c > limit:
            status = "regression"
            pct = f" ({100.0 * (c - b) / b:+.1f}%)" if b else ""
            result.regressions.append(
                f"{key}: {fmt_num(b)} → {fmt_num(c)} ms{pct}, limit {fmt_num(limit)} ms"
            )
        elif c < b / factor - slack_ms:
            status = "improved"
            result.improvements.append(f"{key}: {fmt_num(b)} → {fmt_num(c)} ms")
        else:
            status = "ok"
        result.rows.append(CompareRow(key, b, c, status, limit))
    return result


def format_table(result: CompareResult) -> str:
    table = Table(
        ["metric", "baseline", "current", "delta", "delta %", "limit", "status"],
        align=list("lrrrrrl"),
    )
    for row in result.rows:
        delta = row.delta
        table.rows.append(
            [
                row.metric,
                "null" if row.baseline is None and row.status != "new" else fmt_num(row.baseline),
                "null" if row.current is None and row.status != "missing" else fmt_num(row.current),
                "-" if delta is None else f"{delta:+.1f}",
                "-" if row.delta_pct is None else f"{row.delta_pct:+.1f}",
                fmt_num(row.limit),
                row.status.upper() if row.status == "regression" else row.status,
            ]
        )
    rule = f"tolerance {fmt_num(result.tolerance_pct)}% + {fmt_num(result.slack_ms)} ms"
    lines = [to_text(table, indent="")] if table.rows else ["no comparable metrics"]
    if result.ok:
        lines.append(f"OK: no regressions ({rule})")
    else:
        lines.append(f"{len(result.regressions)} regression(s) ({rule}):")
        lines += [f"  - {r}" for r in result.regressions]
    return "\n".join(lines)
