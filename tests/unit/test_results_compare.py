"""Baseline comparison: tolerance, absolute slack, null-after-number, percentiles."""

from __future__ import annotations

import copy

import pytest

from testbed.results.compare import compare, format_table, metrics


def run(interruption: float | None, phases: dict | None = None, p95: float | None = 300.0) -> dict:
    return {
        "scenario": "s",
        "streams": {"down": {}, "up": {}},
        "handoffs": [
            {
                "index": 0,
                "interruption_ms": interruption,
                "interruption_up_ms": interruption,
                "phases_ms": phases if phases is not None else {"link_up": 0.4, "dhcp": 25.0},
            }
        ],
        "percentiles": {"interruption_ms": {"p50": 200.0, "p95": p95, "n": 5}},
    }


def test_within_tolerance_is_ok() -> None:
    result = compare(run(300.0), run(320.0), tolerance_pct=10)  # limit 331
    assert result.ok and not result.regressions
    assert format_table(result).splitlines()[-1].startswith("OK")


def test_beyond_tolerance_is_a_regression() -> None:
    result = compare(run(300.0), run(340.0), tolerance_pct=10)
    assert not result.ok
    assert any(r.startswith("handoff[0].interruption_ms: 300 → 340 ms") for r in result.regressions)
    row = next(r for r in result.rows if r.metric == "handoff[0].interruption_ms")
    assert row.status == "regression"
    assert row.limit == pytest.approx(331.0)
    assert row.delta_pct == pytest.approx(13.333, abs=0.01)
    assert "REGRESSION" in format_table(result)


def test_sub_millisecond_noise_is_not_a_regression() -> None:
    # 0.4 -> 1.2 ms is +200 % but below the 1 ms absolute slack
    result = compare(run(300.0), run(300.0, {"link_up": 1.2, "dhcp": 25.0}), tolerance_pct=10)
    assert result.ok
    result = compare(run(300.0), run(300.0, {"link_up": 1.6, "dhcp": 25.0}), tolerance_pct=10)
    assert result.regressions == ["handoff[0].phases.link_up: 0.4 → 1.6 ms (+300.0%), limit 1.4 ms"]


def test_null_after_number_is_a_regression() -> None:
    result = compare(run(300.0), run(None), tolerance_pct=50)
    assert not result.ok
    assert "handoff[0].interruption_ms: was 300 ms, now null (never happened)" in result.regressions


def test_missing_phase_and_missing_handoff_are_regressions() -> None:
    result = compare(run(300.0), run(300.0, {"link_up": 0.4}), tolerance_pct=10)
    assert result.regressions == ["handoff[0].phases.dhcp: was 25 ms, missing now"]
    current = run(300.0)
    current["handoffs"] = []
    assert len(compare(run(300.0), current, tolerance_pct=10).regressions) == 4


def test_number_after_null_is_an_improvement_and_nulls_are_ok() -> None:
    result = compare(run(None), run(300.0), tolerance_pct=10)
    assert result.ok and result.improvements
    assert compare(run(None), run(None), tolerance_pct=10).ok


def test_percentiles_are_compared_and_counts_ignored() -> None:
    current = run(300.0, p95=400.0)
    current["percentiles"]["interruption_ms"]["n"] = 50
    result = compare(run(300.0), current, tolerance_pct=10)
    assert [r.split(":")[0] for r in result.regressions] == ["percentiles.interruption_ms.p95"]
    assert "percentiles.interruption_ms.n" not in metrics(current)


def test_improvement_and_new_metric() -> None:
    current = copy.deepcopy(run(300.0))
    current["handoffs"][0]["interruption_ms"] = 100.0
    current["handoffs"][0]["phases_ms"]["registration_accepted"] = 90.0
    result = compare(run(300.0), current, tolerance_pct=10)
    statuses = {r.metric: r.status for r in result.rows}
    assert statuses["handoff[0].interruption_ms"] == "improved"
    assert statuses["handoff[0].phases.registration_accepted"] == "new"
    assert result.ok


def test_empty_summaries() -> None:
    result = compare({}, {}, tolerance_pct=10)
    assert result.ok and result.rows == []
    assert "no comparable metrics" in format_table(result)
