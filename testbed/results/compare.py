"""Compare a batch of runs against a baseline batch: distributions per move, never run #k
against run #k.

Samples are grouped per move of the timeline: its index and kind (``from->to``; the mode
each run took is checked apart). Per move and metric (``interruption_ms``, each stream's
``interruption_<stream>_ms``, each ``phases_ms.<phase>``), every repetition's value is one
sample. A metric

* **regresses** when the current batch is slower than the baseline by more than the
  tolerance, ``max(ms, pct % of the baseline median)``, with confidence: the one-sided lower
  confidence bound of the shift (Hodges-Lehmann, Moses' distribution-free bound from the
  Mann-Whitney U distribution; see ``testbed.results.stats``) is above the tolerance. The
  bound widens with either batch's spread, so a noisy baseline needs a larger shift;
* **fails** when it stops happening: a stream that never recovered (``null``) where the
  baseline always recovered, or more often than in the baseline (Fisher's exact test); a
  phase that no longer happens, or a move taking a mode the baseline never took, as often as
  that is significant (the most extreme case always: 1 vs 1, present then gone);
* is **insufficient** (reported, not a regression) when either batch has fewer than
  ``min_samples`` values; single-run summaries compare their failures only, unless
  ``min_samples`` is 1 (then every pair of values must differ by more than the tolerance).

A move the baseline had and the current batch has not is a regression (``missing``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from testbed.results import stats
from testbed.results.rundata import fmt_num
from testbed.results.tables import Table, to_text
from testbed.summary import Handoff, RunSummary

DEFAULT_TOLERANCE_PCT = 10.0
DEFAULT_TOLERANCE_MS = 2.0
DEFAULT_MIN_SAMPLES = 5
DEFAULT_CONFIDENCE = 0.99

Value = float | None


@dataclass(frozen=True)
class Tolerance:
    """What counts as a regression: a shift beyond ``max(ms, pct % of the baseline
    median)``, at ``confidence`` (one-sided), with ``min_samples`` values a side."""

    pct: float = DEFAULT_TOLERANCE_PCT
    ms: float = DEFAULT_TOLERANCE_MS
    min_samples: int = DEFAULT_MIN_SAMPLES
    confidence: float = DEFAULT_CONFIDENCE

    def __post_init__(self) -> None:
        if not self.pct >= 0:
            raise ValueError(f"the tolerance must be a percentage of 0 or more, got {self.pct}")
        if not self.ms >= 0:
            raise ValueError(f"the absolute tolerance must be 0 ms or more, got {self.ms}")
        if isinstance(self.min_samples, bool) or not (
            isinstance(self.min_samples, int) and self.min_samples >= 1
        ):
            raise ValueError(f"the minimum sample count must be 1 or more, got {self.min_samples}")
        if not 0.5 < self.confidence < 1.0:
            raise ValueError(f"the confidence must be between 0.5 and 1, got {self.confidence}")

    @property
    def alpha(self) -> float:
        return 1.0 - self.confidence

    def threshold(self, baseline_median: float) -> float:
        return max(self.ms, self.pct / 100.0 * abs(baseline_median))

    def describe(self) -> str:
        return (
            f"tolerance max({fmt_num(self.ms)} ms, {fmt_num(self.pct)} % of the baseline "
            f"median) at {fmt_num(100 * self.confidence)} % confidence, "
            f"{self.min_samples}+ runs a side"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "tolerance_pct": self.pct,
            "tolerance_ms": self.ms,
            "min_samples": self.min_samples,
            "confidence": self.confidence,
        }


MoveKey = tuple[int, str, str]  # timeline index, from, to


@dataclass
class MoveSamples:
    """One move of the timeline over a batch: each repetition's value per metric (None:
    the stream never recovered, the phase did not happen)."""

    index: int
    source: str
    target: str
    modes: Counter = field(default_factory=Counter)
    values: dict[str, list[Value]] = field(default_factory=dict)
    runs: int = 0

    @property
    def label(self) -> str:
        return f"handoff[{self.index}]"

    @property
    def kind(self) -> str:
        return f"{self.source}->{self.target}"


def _number(value: Any) -> Value:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _metric_order(name: str) -> tuple[int, str]:
    if name == "interruption_ms":
        return (0, "")
    if name.startswith("interruption_"):
        return (1, name)
    return (2, name)


def _interruptions(handoff: Handoff) -> dict[str, float | None]:
    """The handoff's outage, the worse direction's and each stream's, by metric name."""
    streams = handoff.interruptions()
    return {"interruption_ms": handoff.interruption_ms} | {
        f"interruption_{stream}_ms": value for stream, value in streams.items()
    }


def samples(summary: RunSummary) -> dict[MoveKey, MoveSamples]:
    """The summary's handoffs grouped per move (every repetition's, in ``handoffs``).
    Handoffs cut short by an interrupted run are left out: not known to have failed."""
    moves: dict[MoveKey, MoveSamples] = {}
    rows: dict[MoveKey, list[Handoff]] = {}
    for h in summary.handoffs:
        if h.cut_short:
            continue
        key = (h.index, str(h.from_), str(h.to))
        move = moves.setdefault(key, MoveSamples(h.index, key[1], key[2]))
        move.runs += 1
        move.modes[str(h.mode)] += 1
        rows.setdefault(key, []).append(h)
    for key, move in moves.items():
        handoffs = rows[key]
        measured = [_interruptions(h) for h in handoffs]
        names = {name for values in measured for name in values}
        for name in sorted(names, key=_metric_order):
            move.values[name] = [_number(values.get(name)) for values in measured]
        for phase in sorted({phase for h in handoffs for phase in h.phases_ms}):
            move.values[f"phases_ms.{phase}"] = [_number(h.phases_ms.get(phase)) for h in handoffs]
    return dict(sorted(moves.items()))


@dataclass(frozen=True)
class Figures:
    """A batch's distribution of one metric of one move."""

    n: int
    p50: float
    p95: float
    spread: float  # p75 - p25

    @classmethod
    def of(cls, values: list[float]) -> Figures | None:
        if not values:
            return None
        return cls(
            len(values),
            stats.percentile(values, 50),  # type: ignore[arg-type]
            stats.percentile(values, 95),  # type: ignore[arg-type]
            stats.spread(values),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class CompareRow:
    move: str  # handoff[N]
    kind: str  # from->to
    modes: str  # the modes the runs took: "f", "f/c", "f -> c" when they changed
    metric: str  # interruption_ms, phases_ms.X, mode
    status: str  # ok | regression | failure | insufficient | improved | new | missing
    baseline: Figures | None = None
    current: Figures | None = None
    failed: tuple[int, int, int, int] = (0, 0, 0, 0)  # baseline failed/runs, current ...
    shift: stats.Shift | None = None
    limit: Value = None  # the tolerance applied, ms
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.move}.{self.metric}"

    @property
    def flagged(self) -> bool:
        return self.status in ("regression", "failure", "missing")


@dataclass
class CompareResult:
    rows: list[CompareRow] = field(default_factory=list)
    tolerance: Tolerance = field(default_factory=Tolerance)

    @property
    def regressions(self) -> list[str]:
        """One line per flagged metric, ``KEY: what changed`` (JUnit takes KEY)."""
        return [f"{r.key}: {r.note}" for r in self.rows if r.flagged]

    @property
    def improvements(self) -> list[str]:
        return [f"{r.key}: {r.note}" for r in self.rows if r.status == "improved"]

    @property
    def insufficient(self) -> list[str]:
        return [f"{r.key}: {r.note}" for r in self.rows if r.status == "insufficient"]

    @property
    def ok(self) -> bool:
        return not any(r.flagged for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        """For the summary's ``baseline`` entry."""
        return {
            **self.tolerance.as_dict(),
            "method": "per move: Hodges-Lehmann shift, one-sided Moses bound vs the tolerance",
            "compared": sum(1 for r in self.rows if r.status not in ("insufficient", "new")),
            "regressions": self.regressions,
            "insufficient": self.insufficient,
            "improvements": self.improvements,
        }


def _ms(value: Value) -> str:
    return fmt_num(value, 1)


def _signed(value: float) -> str:
    return f"{value:+.1f}"


def _modes(counts: Counter) -> str:
    return "/".join(mode for mode, _ in counts.most_common())


def _failures(metric: str) -> str:
    return "never recovered" if metric.startswith("interruption") else "did not happen"


def _judge(
    metric: str,
    base_values: list[Value],
    cur_values: list[Value],
    tolerance: Tolerance,
) -> tuple[str, str, dict[str, Any]]:
    """(status, note, details) of one metric of one move present in both batches."""
    b = [v for v in base_values if v is not None]
    c = [v for v in cur_values if v is not None]
    fb, nb = len(base_values) - len(b), len(base_values)
    fc, nc = len(cur_values) - len(c), len(cur_values)
    details: dict[str, Any] = {
        "baseline": Figures.of(b),
        "current": Figures.of(c),
        "failed": (fb, nb, fc, nc),
    }
    what = _failures(metric)
    if not b and not c:
        return "ok", f"{what} in any run of either batch", details
    if not b:
        return "new", f"{what} in the baseline's {nb} runs, now in {nc - fc} of {nc}", details
    if fc > fb * nc / nb:  # fails more often than the baseline
        p = stats.fisher_greater(fc, nc, fb, nb)
        stopped = metric.startswith("interruption") and fb == 0  # never recovered: a failure
        if stopped or p <= tolerance.alpha or stats.most_extreme(fc, nc, fb):
            note = f"{what} in {fc} of {nc} runs (baseline {fb} of {nb}"
            note += ")" if stopped else f", Fisher p {p:.2g})"
            return "failure", note, details
    if not c:
        return "ok", f"{what} in any current run (baseline {fb} of {nb})", details
    if min(len(b), len(c)) < tolerance.min_samples:
        return (
            "insufficient",
            f"{len(b)} baseline and {len(c)} current values, fewer than "
            f"{tolerance.min_samples}: not judged",
            details,
        )
    base_median = stats.percentile(b, 50)
    limit = tolerance.threshold(base_median)  # type: ignore[arg-type]
    s = stats.shift(b, c, tolerance.confidence)
    details.update(shift=s, limit=limit)
    level = f"{fmt_num(100 * s.confidence)} %" if s.exact_level else "every pair"
    median = f"median {_ms(base_median)} -> {_ms(stats.percentile(c, 50))} ms"
    where = f"n {len(b)}/{len(c)}"
    if s.slower(limit):
        note = (
            f"{median} (shift {_signed(s.estimate)} ms, at least {_signed(s.lower)} at {level}),"
            f" tolerance +{_ms(limit)} ms, {where}"
        )
        return "regression", note, details
    if s.faster(limit):
        note = f"{median} (shift {_signed(s.estimate)} ms, at most {_signed(s.upper)} at {level})"
        return "improved", note, details
    return "ok", f"{median} (shift {_signed(s.estimate)} ms), {where}", details


def compare(
    baseline: RunSummary,
    current: RunSummary,
    tolerance: Tolerance | float | None = None,
) -> CompareResult:
    """Compare ``current`` against ``baseline`` (both summaries, one run or a batch).
    ``tolerance``: a Tolerance, or a percentage with the other defaults."""
    if tolerance is None:
        tolerance = Tolerance()
    elif not isinstance(tolerance, Tolerance):
        tolerance = Tolerance(pct=float(tolerance))
    base, cur = samples(baseline), samples(current)
    result = CompareResult(tolerance=tolerance)
    for key in sorted({*base, *cur}):
        b, c = base.get(key), cur.get(key)
        if c is None:
            assert b is not None
            result.rows.append(
                CompareRow(
                    b.label,
                    b.kind,
                    _modes(b.modes),
                    "move",
                    "missing",
                    note=f"{b.kind} in {b.runs} baseline runs, in no current run",
                )
            )
            continue
        if b is None:
            result.rows.append(
                CompareRow(
                    c.label, c.kind, _modes(c.modes), "move", "new", note="not in the baseline"
                )
            )
            continue
        modes = _modes(b.modes)
        if set(c.modes) - set(b.modes):
            modes = f"{modes} -> {_modes(c.modes)}"
            changed = sum(n for mode, n in c.modes.items() if mode not in b.modes)
            p = stats.fisher_greater(changed, c.runs, 0, b.runs)
            if p <= tolerance.alpha or stats.most_extreme(changed, c.runs, 0):
                result.rows.append(
                    CompareRow(
                        b.label,
                        b.kind,
                        modes,
                        "mode",
                        "failure",
                        note=f"mode {_modes(c.modes)} in {changed} of {c.runs} runs, never in "
                        f"the baseline ({_modes(b.modes)})",
                    )
                )
        for metric in sorted({*b.values, *c.values}, key=_metric_order):
            base_values = b.values.get(metric, [None] * b.runs)
            cur_values = c.values.get(metric, [None] * c.runs)
            status, note, details = _judge(metric, base_values, cur_values, tolerance)
            result.rows.append(
                CompareRow(b.label, b.kind, modes, metric, status, note=note, **details)
            )
    return result


def _pair(figures: Figures | None, failed: int, runs: int) -> str:
    text = "-" if figures is None else f"{_ms(figures.p50)} / {_ms(figures.p95)}"
    return text + (f" ({failed}/{runs} null)" if failed else "")


def format_table(result: CompareResult, *, all_rows: bool = True) -> str:
    """The comparison as text: one row per move and metric (``all_rows=False``: only the
    interruptions and what is not ok), then the verdict."""
    table = Table(
        [
            "move",
            "metric",
            "n",
            "baseline p50 / p95",
            "current p50 / p95",
            "shift",
            "bound",
            "limit",
            "status",
        ],
        align=list("llrrrrrrl"),
    )
    shown = [
        r
        for r in result.rows
        if all_rows or r.status != "ok" or r.metric.startswith("interruption")
    ]
    for row in shown:
        fb, nb, fc, nc = row.failed
        s = row.shift
        table.rows.append(
            [
                f"{row.move} {row.kind} {row.modes}",
                row.metric,
                f"{nb - fb}/{nc - fc}" if nb or nc else "-",
                _pair(row.baseline, fb, nb),
                _pair(row.current, fc, nc),
                "-" if s is None else _signed(s.estimate),
                "-" if s is None else _signed(s.lower),
                "-" if row.limit is None else f"+{_ms(row.limit)}",
                row.status.upper() if row.flagged else row.status,
            ]
        )
    lines = [to_text(table, indent="")] if table.rows else ["no comparable metrics"]
    rule = result.tolerance.describe()
    insufficient = result.insufficient
    if insufficient:
        lines.append(
            f"{len(insufficient)} metric(s) not judged: fewer than "
            f"{result.tolerance.min_samples} values a side (runs with --repeat, or "
            "--min-samples 1 to compare single runs pair by pair)"
        )
    if result.ok:
        lines.append(f"OK: no regressions ({rule})")
    else:
        regressions = result.regressions
        lines.append(f"{len(regressions)} regression(s) ({rule}):")
        lines += [f"  - {r}" for r in regressions]
    return "\n".join(lines)


def per_move_figures(summary: RunSummary) -> Iterable[tuple[MoveSamples, str, Figures]]:
    """(move, metric, figures) for every metric of every move with values: the per-move
    percentiles (never pooled over moves of different kinds)."""
    for move in samples(summary).values():
        for metric, values in move.values.items():
            figures = Figures.of([v for v in values if v is not None])
            if figures is not None:
                yield move, metric, figures
