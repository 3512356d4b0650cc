"""Running a scenario N times and writing its results: summary, events, report, JUnit."""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.scenario import metrics
from testbed.scenario.analyse import analyse, annotate, signalling_nodes
from testbed.scenario.expect import evaluate
from testbed.scenario.load import Scenario, load_scenario
from testbed.scenario.runner import (
    RunOptions,
    atomic_write,
    ensure_ready,
    merge_events,
    new_run_id,
    run_once,
)

EXIT_PASSED, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class Outcome:
    summary: dict[str, Any]
    run_dir: Path
    exit_code: int
    regressions: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.exit_code == EXIT_PASSED


def run_scenario(
    path: str | Path,
    options: RunOptions | None = None,
    *,
    repeat: int | None = None,
    junit: Path | None = None,
    baseline: Path | None = None,
    tolerance_pct: float = 10.0,
) -> Outcome:
    """Validate, run ``repeat`` times, analyse, write results. Raises SpecError on bad input."""
    options = options or RunOptions()
    scenario = load_scenario(path)
    ensure_ready()
    repeat = repeat or scenario.spec.repeat
    run_id = new_run_id()
    run_dir = Path(options.results) / scenario.name / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_plan(scenario, run_dir)
    options.progress(f"scenario {scenario.name}: {scenario.spec.description or ''}".rstrip(": "))
    options.progress(f"  results in {run_dir}")
    started = time.time()
    runs: list[dict[str, Any]] = []
    errors: list[str] = []
    failures: list[dict[str, Any]] = []
    interrupted = False
    infrastructure = False  # a repetition failed through the testbed's own fault
    for index in range(repeat):
        rep_dir = run_dir if repeat == 1 else run_dir / f"rep-{index:02d}"
        rep_dir.mkdir(parents=True, exist_ok=True)
        if repeat > 1:
            options.progress(f"  repetition {index + 1}/{repeat}")
        try:
            record = run_once(scenario, options, rep_dir, index)
        except KeyboardInterrupt:
            interrupted = True
            errors.append("interrupted")
            options.progress("  interrupted: lab removed, results so far kept")
            record = None
        if record is not None:
            events = merge_events(rep_dir, lambda evs, rec=record: annotate(evs, scenario, rec))
            result = analyse(scenario, record, events)
            result["signalling_nodes"] = signalling_nodes(
                events, scenario.spec.probes.mobile if scenario.spec.probes else "mn"
            )
            runs.append(result)
            failures += record.failures
            if record.error:
                errors.append(record.error)
            infrastructure = infrastructure or record.infrastructure
            for handoff in result["handoffs"]:
                shown = handoff["interruption_ms"]
                options.progress(
                    f"  handoff {handoff['index']} {handoff['from']} -> {handoff['to']}: "
                    + (f"{shown:.1f} ms" if shown is not None else "never recovered")
                    + f", mode {handoff['mode']}"
                )
            if repeat > 1:
                _write_summary(
                    rep_dir, _summary(scenario, run_id, [result], [], started, record.error, 1)
                )
        if interrupted:
            break
    expectations = failures + evaluate(scenario.spec.expect, runs) if runs else failures
    summary = _summary(
        scenario, run_id, runs, expectations, started, "; ".join(errors) or None, repeat
    )
    outcome = Outcome(summary, run_dir, EXIT_PASSED)
    if baseline is not None:
        outcome.regressions = _regressions(baseline, summary, tolerance_pct)
        summary["baseline"] = {
            "file": str(baseline),
            "tolerance_pct": tolerance_pct,
            "regressions": outcome.regressions,
        }
        if outcome.regressions:
            summary["passed"] = False
    _write_summary(run_dir, summary)
    _link_latest(run_dir)
    _render(run_dir, repeat, options)
    if junit is not None:
        _junit([summary], junit)
    if interrupted:
        outcome.exit_code = EXIT_INTERRUPTED
    elif infrastructure:
        outcome.exit_code = EXIT_INVALID  # a set-up error: nothing was measured to judge
    elif not summary["passed"]:
        outcome.exit_code = EXIT_FAILED
    return outcome


def _summary(
    scenario: Scenario,
    run_id: str,
    runs: list[dict[str, Any]],
    expectations: list[dict[str, Any]],
    started: float,
    error: str | None,
    repeat: int,
) -> dict[str, Any]:
    handoffs = [h for run in runs for h in run["handoffs"]]
    values = [h["interruption_ms"] for h in handoffs]
    percentiles = None
    if values and all(v is not None for v in values):
        percentiles = {
            "interruption_ms": {
                "p50": metrics.percentile(values, 50),
                "p95": metrics.percentile(values, 95),
                "max": max(values),
                "n": len(values),
            }
        }
    first = runs[0] if runs else {}
    passed = error is None and bool(runs) and all(e["passed"] for e in expectations)
    return {
        "scenario": scenario.name,
        "description": scenario.spec.description,
        "run_id": run_id,
        "passed": passed,
        "error": error,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "duration_s": round(time.time() - started, 3),
        "topology": str(scenario.topology_path),
        "repeat": repeat,
        "runs": len(runs),
        "handoffs": handoffs,
        "percentiles": percentiles,
        "streams": first.get("streams", {}),
        "loss_before_first_move": first.get("loss_before_first_move"),
        "final_mode": first.get("final_mode"),
        "tcp": first.get("tcp"),
        "move_times_ns": first.get("move_times_ns", []),
        "expectations": expectations,
        "signalling_nodes": first.get("signalling_nodes", []),
        "nodes": list(scenario.plan.nodes),
        "events": "events.jsonl",
        "data_paths": _data_paths(),
    }


def _data_paths() -> dict[str, str] | None:
    from testbed import features

    try:
        return features.data_paths()
    except (OSError, RuntimeError, ValueError):  # a probe that could not run: not a result
        return None


def _write_plan(scenario: Scenario, run_dir: Path) -> None:
    """The resolved topology (overrides applied), for the report's diagram."""
    from testbed.results.topology import plan_like

    atomic_write(run_dir / "plan.json", json.dumps(plan_like(scenario.plan), default=str))


def _link_latest(run_dir: Path) -> None:
    """results/<scenario>/latest -> the newest run (for labs and scripts)."""
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / ".latest.tmp"
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.name)
        os.replace(tmp, latest)


def _write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    atomic_write(run_dir / "summary.json", json.dumps(summary, indent=1, default=str))


def _render(run_dir: Path, repeat: int, options: RunOptions) -> None:
    try:
        from testbed.results.report import render_report
    except ImportError:
        return
    targets = [run_dir] if repeat == 1 else sorted(run_dir.glob("rep-*"))
    for target in targets:
        try:
            render_report(target, figures=options.figures)
        except Exception as exc:  # a broken figure must not lose the measured results
            options.progress(f"  report of {target} failed: {exc}")


def _junit(summaries: list[dict[str, Any]], path: Path) -> None:
    from testbed.results.junit import write_junit

    write_junit(summaries, path)


def _regressions(baseline: Path, summary: dict[str, Any], tolerance_pct: float) -> list[str]:
    from testbed.results.compare import compare

    return list(compare(json.loads(Path(baseline).read_text()), summary, tolerance_pct).regressions)
