"""Baseline comparison: distributions per move, tolerances, minimum samples, failures
(never recovered, a phase gone, a mode changed), single-run summaries, CLI and JUnit."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.results.compare import Tolerance, compare, format_table, per_move_figures, samples
from testbed.results.junit import write_junit
from testbed.summary import RunSummary

MOVES = [
    ("home", "visited", "f", 30.0),
    ("visited", "office", "c", 25.0),
    ("office", "home", "home", 10.0),
]


def batch(
    runs: int = 20,
    *,
    seed: int = 0,
    sd: float = 1.0,
    slower: dict[int, float] | None = None,
    null: set[tuple[int, int]] = frozenset(),  # (run, move): never recovered
    without_phase: set[tuple[int, int]] = frozenset(),  # (run, move): no registration
    modes: dict[tuple[int, int], str] | None = None,
) -> RunSummary:
    """A summary of ``runs`` repetitions of a three-move scenario."""
    rng = random.Random(seed)
    handoffs = []
    for run in range(runs):
        for index, (source, target, mode, base) in enumerate(MOVES):
            value = base + (slower or {}).get(index, 0.0) + rng.gauss(0, sd)
            phases = {"link_up": round(rng.uniform(0.05, 0.2), 3)}
            if (run, index) not in without_phase:
                phases["registration_accepted"] = round(value - 8, 3)
            broken = (run, index) in null
            handoffs.append(
                {
                    "index": index,
                    "from": source,
                    "to": target,
                    "mode": (modes or {}).get((run, index), mode),
                    "interruption_ms": None if broken else round(value, 3),
                    "interruption_down_ms": None if broken else round(value - 1, 3),
                    "interruption_up_ms": round(value, 3),
                    "phases_ms": phases,
                    "run": run,
                }
            )
    return RunSummary.model_validate(
        {
            "scenario": "s",
            "handoffs": handoffs,
            # pooled over moves of different kinds: never compared
            "percentiles": {"interruption_ms": {"p50": 25.0, "p95": 30.0, "n": 3 * runs}},
        }
    )


def statuses(result) -> dict[str, str]:
    return {row.key: row.status for row in result.rows}


def test_identical_batches_pass_and_rows_are_per_move_not_per_run() -> None:
    result = compare(batch(seed=1), batch(seed=2))
    assert result.ok, result.regressions
    keys = [row.key for row in result.rows]
    assert "handoff[0].interruption_ms" in keys and "handoff[2].phases_ms.link_up" in keys
    assert not any("@run" in key or "percentiles" in key for key in keys)
    assert len(keys) == 3 * 5  # 3 moves x (3 interruptions + 2 phases)
    row = result.rows[0]
    assert (row.move, row.kind, row.modes, row.metric) == (
        "handoff[0]",
        "home->visited",
        "f",
        "interruption_ms",
    )
    assert row.baseline.n == row.current.n == 20
    assert format_table(result).splitlines()[-1].startswith("OK: no regressions")


def test_a_slower_move_is_a_regression_with_its_numbers() -> None:
    result = compare(batch(seed=1), batch(seed=2, slower={0: 10.0}))
    assert not result.ok
    flagged = {r.split(":")[0] for r in result.regressions}
    assert flagged == {
        "handoff[0].interruption_ms",
        "handoff[0].interruption_down_ms",
        "handoff[0].interruption_up_ms",
        "handoff[0].phases_ms.registration_accepted",
    }
    line = next(r for r in result.regressions if r.startswith("handoff[0].interruption_ms:"))
    row = next(r for r in result.rows if r.key == "handoff[0].interruption_ms")
    assert f"median {row.baseline.p50:.1f} -> {row.current.p50:.1f} ms" in line
    assert f"(shift {row.shift.estimate:+.1f} ms, at least {row.shift.lower:+.1f} at 99 %)" in line
    assert "tolerance +3 ms" in line and "n 20/20" in line  # 10 % of 30 ms
    assert row.shift.estimate == pytest.approx(10.0, abs=1.0) and row.shift.lower > row.limit
    assert "REGRESSION" in format_table(result)


def test_a_significant_shift_below_the_tolerance_is_not_a_regression() -> None:
    # +1.5 ms with 0.1 ms of noise: certain, but below max(2 ms, 10 %)
    result = compare(batch(seed=1, sd=0.1), batch(seed=2, sd=0.1, slower={2: 1.5}))
    assert result.ok
    row = next(r for r in result.rows if r.key == "handoff[2].interruption_ms")
    assert row.shift.lower > 1.0 and row.limit == 2.0
    tight = compare(
        batch(seed=1, sd=0.1), batch(seed=2, sd=0.1, slower={2: 1.5}), Tolerance(pct=0, ms=1.0)
    )
    assert statuses(tight)["handoff[2].interruption_ms"] == "regression"


def test_the_baseline_spread_widens_what_passes() -> None:
    # +6 ms is a regression against a tight baseline, not against a noisy one
    assert not compare(batch(seed=1, sd=0.5), batch(seed=2, sd=0.5, slower={1: 6.0})).ok
    assert compare(batch(seed=1, sd=12.0), batch(seed=2, sd=12.0, slower={1: 6.0})).ok


def test_faster_is_an_improvement() -> None:
    result = compare(batch(seed=1), batch(seed=2, slower={0: -10.0}))
    assert result.ok
    assert statuses(result)["handoff[0].interruption_ms"] == "improved"
    assert any(r.startswith("handoff[0].interruption_ms:") for r in result.improvements)


def test_never_recovered_is_a_failure_of_its_own() -> None:
    result = compare(batch(seed=1), batch(seed=2, null={(4, 1)}))
    assert not result.ok
    assert statuses(result)["handoff[1].interruption_ms"] == "failure"
    assert (
        "handoff[1].interruption_ms: never recovered in 1 of 20 runs (baseline 0 of 20)"
        in result.regressions
    )
    assert "(1/20 null)" in format_table(result)
    # the same rate in both batches is not a regression; null everywhere (no mobility) is ok
    assert compare(batch(seed=1, null={(3, 1)}), batch(seed=2, null={(4, 1)})).ok
    everywhere = {(r, i) for r in range(20) for i in range(3)}
    assert compare(batch(seed=1, null=everywhere), batch(seed=2, null=everywhere)).ok


def test_a_phase_that_stops_happening() -> None:
    gone = {(r, 0) for r in range(20)}
    result = compare(batch(seed=1), batch(seed=2, without_phase=gone))
    assert statuses(result)["handoff[0].phases_ms.registration_accepted"] == "failure"
    assert any("did not happen in 20 of 20 runs" in r for r in result.regressions)
    # once in 20: not significant
    assert compare(batch(seed=1), batch(seed=2, without_phase={(5, 0)})).ok
    # a phase only the current batch has is new
    result = compare(batch(seed=1, without_phase=gone), batch(seed=2))
    assert result.ok
    assert statuses(result)["handoff[0].phases_ms.registration_accepted"] == "new"


def test_a_mode_the_baseline_never_took() -> None:
    result = compare(batch(seed=1), batch(seed=2, modes={(r, 0): "c" for r in range(20)}))
    assert statuses(result)["handoff[0].mode"] == "failure"
    assert "f -> c" in format_table(result)
    assert compare(batch(seed=1), batch(seed=2, modes={(3, 0): "c"})).ok  # once: noise


def test_moves_are_matched_by_index_and_kind() -> None:
    base, cur = batch(seed=1), batch(seed=2)
    cur.handoffs = [h for h in cur.handoffs if h.index != 2]
    result = compare(base, cur)
    assert statuses(result)["handoff[2].move"] == "missing"
    assert "handoff[2].move: office->home in 20 baseline runs, in no current run" in (
        result.regressions
    )
    result = compare(cur, base)
    assert result.ok and statuses(result)["handoff[2].move"] == "new"


def test_cut_short_handoffs_are_left_out() -> None:
    cur = batch(seed=2, null={(19, 2)})
    cur.handoffs[-1].cut_short = True
    assert compare(batch(seed=1), cur).ok
    assert samples(cur)[(2, "office", "home")].runs == 19


def test_single_run_summaries_compare_failures_and_report_the_rest() -> None:
    one, other = batch(1, seed=1), batch(1, seed=2, slower={0: 40.0})
    result = compare(one, other)
    assert result.ok  # one run against one: not enough to judge a timing
    assert statuses(result)["handoff[0].interruption_ms"] == "insufficient"
    assert len(result.insufficient) == 15
    assert "15 metric(s) not judged: fewer than 5 values a side" in format_table(result)
    assert not compare(one, batch(1, seed=2, null={(0, 1)})).ok  # never recovered: still a failure
    # --min-samples 1: pair by pair, the old point comparison
    pairwise = Tolerance(min_samples=1)
    result = compare(one, other, pairwise)
    assert [r.split(":")[0] for r in result.regressions if "interruption_ms" in r] == [
        "handoff[0].interruption_ms"
    ]
    assert "every pair" in result.regressions[0]
    assert compare(one, batch(1, seed=1, slower={0: 2.0}), pairwise).ok  # under the tolerance


def test_old_summaries_and_empty_ones() -> None:
    old = {  # before repetitions: no "run", a pooled percentile block
        "scenario": "s",
        "handoffs": [{"index": 0, "from": "a", "to": "b", "mode": "f", "interruption_ms": 300}],
        "percentiles": {"interruption_ms": {"p50": 300, "p95": 300, "n": 1}},
    }
    never = {**old, "handoffs": [{**old["handoffs"][0], "interruption_ms": None}]}
    assert compare(RunSummary.model_validate(old), RunSummary.model_validate(old)).ok
    assert not compare(RunSummary.model_validate(old), RunSummary.model_validate(never)).ok
    result = compare(RunSummary(scenario="s"), RunSummary(scenario="s"))
    assert result.ok and result.rows == []
    assert "no comparable metrics" in format_table(result)


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=20, deadline=None)
def test_the_order_of_the_runs_does_not_matter(seed: int) -> None:
    base, cur = batch(8, seed=1), batch(8, seed=2, slower={1: 4.0})
    shuffled = cur.model_copy(
        update={"handoffs": random.Random(seed).sample(cur.handoffs, len(cur.handoffs))}
    )
    assert compare(base, cur).regressions == compare(base, shuffled).regressions


def test_per_move_figures_are_never_pooled() -> None:
    figures = {(m.index, metric): f for m, metric, f in per_move_figures(batch(seed=1))}
    assert figures[(0, "interruption_ms")].p50 == pytest.approx(30.0, abs=1.0)
    assert figures[(2, "interruption_ms")].p50 == pytest.approx(10.0, abs=1.0)
    assert figures[(0, "interruption_ms")].n == 20


def test_tolerance_checks_its_values() -> None:
    assert Tolerance().threshold(30.0) == 3.0 and Tolerance().threshold(10.0) == 2.0
    for bad in ({"pct": -1}, {"ms": -0.5}, {"min_samples": 0}, {"confidence": 1.0}):
        with pytest.raises(ValueError):
            Tolerance(**bad)
    assert compare(batch(seed=1), batch(seed=2), 10.0).tolerance == Tolerance(pct=10.0)


def test_cli_exit_status_and_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from testbed.cli import main

    base, same, slow = (tmp_path / f"{n}.json" for n in ("base", "same", "slow"))
    base.write_text(batch(seed=1).model_dump_json(by_alias=True))
    same.write_text(batch(seed=2).model_dump_json(by_alias=True))
    (tmp_path / "run").mkdir()
    slow = tmp_path / "run" / "summary.json"
    slow.write_text(batch(seed=2, slower={0: 10.0}).model_dump_json(by_alias=True))
    assert main(["compare", str(base), str(same)]) == 0
    assert "phases_ms.link_up" in capsys.readouterr().out
    assert main(["compare", str(base), str(tmp_path / "run"), "--brief"]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "phases_ms.link_up" not in out  # --brief
    # a 15 ms absolute tolerance covers the +10 ms
    assert main(["compare", str(base), str(slow), "--tolerance-ms", "15"]) == 0
    assert main(["compare", str(base), str(slow), "--min-samples", "0"]) == 2
    assert "minimum sample count" in capsys.readouterr().err


def test_regressions_and_unjudged_metrics_in_junit(tmp_path: Path) -> None:
    result = compare(batch(3, seed=1), batch(3, seed=2, null={(1, 0)}))
    summary = RunSummary.model_validate(
        {
            "scenario": "s",
            "expectations": [],
            "baseline": {"file": "old/summary.json", **result.as_dict()},
        }
    )
    suite = ET.parse(write_junit([summary], tmp_path / "j.xml")).getroot().find("testsuite")
    case = suite.find("testcase[@name='no regression: handoff[0].interruption_ms']")
    failure = case.find("failure")
    assert failure.get("message") == (
        "handoff[0].interruption_ms: never recovered in 1 of 3 runs (baseline 0 of 3)"
    )
    assert "tolerance 10 % or 2 ms" in failure.text
    skipped = suite.find("testcase[@name='metrics not judged']/skipped")
    # 15 metrics: two failures (never recovered, both ways), 13 with 3 runs a side
    assert skipped.get("message") == "13 metric(s) with too few values a side (fewer than 5)"
    assert suite.get("failures") == "2" and suite.get("skipped") == "1"


def test_run_checks_the_gate_options_before_anything_is_built() -> None:
    from testbed.scenario import execute

    execute.check_tolerance(10.0, 2.0, 5)
    with pytest.raises(execute.InvalidRun, match="--tolerance-ms must be 0 ms or more"):
        execute.check_tolerance(10.0, -1.0, 5)
    with pytest.raises(execute.InvalidRun, match="--min-samples must be 1 or more"):
        execute.check_tolerance(10.0, 2.0, 0)
