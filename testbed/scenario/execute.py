"""Running a scenario N times and writing its results: summary, events, report, JUnit.

Everything a run is told is checked before anything is built (the scenario, its agents'
configurations, ``--pcap``, ``--repeat``, ``--baseline``): bad input is one line and exit 2,
with no lab and no results directory. Each summary has a ``verdict`` with its ``reasons``:
``passed``; ``failed`` (an expectation, a wait step or a regression: the system under test);
``error`` (the testbed's own fault: a daemon that died, a lab removed under the run, a set-up
error: exit 2 and a JUnit ``<error>``); ``interrupted`` (exit 130).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mipbase import events as eventlog
from mipbase.specfile import SpecError
from testbed.results.compare import (
    DEFAULT_MIN_SAMPLES,
    DEFAULT_TOLERANCE_MS,
    DEFAULT_TOLERANCE_PCT,
    CompareResult,
    Tolerance,
    compare,
)
from testbed.scenario import metrics
from testbed.scenario.analyse import analyse, annotate, signalling_nodes
from testbed.scenario.expect import evaluate
from testbed.scenario.load import Scenario, load_scenario
from testbed.scenario.many import analyse_many
from testbed.scenario.record import RunRecord, atomic_write, merge_events, new_run_id
from testbed.scenario.runner import RunOptions, ensure_ready, run_once
from testbed.summary import (
    BaselineComparison,
    RunSummary,
    SummaryError,
    read_summary,
    write_summary,
)

EXIT_PASSED, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130
REPEAT_RANGE = (1, 1000)


class InvalidRun(ValueError):
    """A run's options are wrong (``--repeat``, ``--baseline``...): one line, exit 2."""


@dataclass
class Outcome:
    run_summary: RunSummary
    run_dir: Path
    exit_code: int
    regressions: list[str] = field(default_factory=list)

    @functools.cached_property
    def summary(self) -> dict[str, Any]:
        """summary.json as written, as JSON data: what the pytest plugin's tests index
        (``outcome.summary["handoffs"][0]["interruption_ms"]``)."""
        return self.run_summary.model_dump(mode="json", by_alias=True, exclude_unset=True)

    @property
    def passed(self) -> bool:
        return self.exit_code == EXIT_PASSED

    @property
    def verdict(self) -> str:
        return self.run_summary.verdict or ("passed" if self.passed else "failed")


def check_baseline(path: Path | str) -> Path:
    """The baseline's summary file (a run directory names its summary.json), checked to be
    a readable run summary; raises InvalidRun."""
    file = Path(path)
    if file.is_dir():
        file = file / "summary.json"
    try:
        read_summary(file)
    except SummaryError as exc:
        raise InvalidRun(f"--baseline {exc}") from None
    return file


def check_repeat(repeat: int | None) -> None:
    low, high = REPEAT_RANGE
    if repeat is not None and not low <= repeat <= high:
        raise InvalidRun(f"--repeat must be between {low} and {high}, got {repeat}")


def check_tolerance(
    tolerance_pct: float,
    tolerance_ms: float = DEFAULT_TOLERANCE_MS,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> None:
    if not tolerance_pct >= 0:
        raise InvalidRun(f"--tolerance must be a percentage of 0 or more, got {tolerance_pct:g}")
    if not tolerance_ms >= 0:
        raise InvalidRun(f"--tolerance-ms must be 0 ms or more, got {tolerance_ms:g}")
    if not min_samples >= 1:
        raise InvalidRun(f"--min-samples must be 1 or more, got {min_samples}")


def check_pcap(scenario: Scenario, pcap: str | list[str] | None) -> None:
    """``--pcap`` names networks of the scenario's topology (or all / none)."""
    if pcap is None or pcap in ("all", "none"):
        return
    names = [n for n in pcap.split(",") if n] if isinstance(pcap, str) else list(pcap)
    networks = scenario.plan.networks
    for name in names:
        if name not in networks:
            raise SpecError(
                str(scenario.path),
                None,
                "--pcap",
                f"unknown network {name!r} ({', '.join(networks)}; or all, none)",
            )


def run_scenario(
    path: str | Path,
    options: RunOptions | None = None,
    *,
    repeat: int | None = None,
    junit: Path | None = None,
    baseline: Path | None = None,
    tolerance_pct: float = DEFAULT_TOLERANCE_PCT,
    tolerance_ms: float = DEFAULT_TOLERANCE_MS,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    overrides: Sequence[str] = (),
) -> Outcome:
    """Validate, run ``repeat`` times, analyse, write results. Raises SpecError or
    InvalidRun on bad input, before anything is built or written. Against a ``baseline``,
    each move's metrics are compared as distributions (testbed.results.compare): a shift
    beyond ``max(tolerance_ms, tolerance_pct % of the baseline median)`` is a regression."""
    options = options or RunOptions()
    check_repeat(repeat)
    check_tolerance(tolerance_pct, tolerance_ms, min_samples)
    tolerance = Tolerance(pct=tolerance_pct, ms=tolerance_ms, min_samples=min_samples)
    scenario = load_scenario(path, overrides)
    check_pcap(scenario, options.pcap)
    if baseline is not None:
        baseline = check_baseline(baseline)
    ensure_ready()
    repeat = scenario.spec.repeat if repeat is None else repeat
    run_id = new_run_id()
    run_dir = Path(options.results) / scenario.name / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_plan(scenario, run_dir)
    _write_scenario(scenario, run_dir, repeat)
    # from its start, so 'testbed state/events results/S/latest' follow the run in progress
    # (a run paused at --cli is the one a student looks at)
    _link_latest(run_dir)
    options.progress(f"scenario {scenario.name}: {scenario.spec.description or ''}".rstrip(": "))
    options.progress(f"  results in {run_dir}")
    started = time.time()
    runs: list[dict[str, Any]] = []  # each repetition's analysis, which the summary is made of
    repetitions: list[RunSummary] = []  # the same, typed: what the expectations check
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
        except KeyboardInterrupt:  # outside the repetition's own handling
            interrupted = True
            errors.append("interrupted")
            record = None
        if record is not None and record.interrupted:
            interrupted = True
        if interrupted:
            options.progress("  interrupted: lab removed, results so far kept")
        if record is not None:
            result = _analysed(scenario, record, rep_dir)
            runs.append(result)
            repetitions.append(_repetition(scenario, result))
            failures += record.failures
            if record.error:
                errors.append(record.error)
            infrastructure = infrastructure or record.infrastructure
            for handoff in repetitions[-1].handoffs:
                who = f" {handoff.node}" if scenario.many else ""
                options.progress(
                    f" {who} handoff {handoff.index} {handoff.from_} -> {handoff.to}: "
                    + _outage_text(handoff.interruption_ms, handoff.probed, handoff.phases_ms)
                    + f", mode {handoff.mode}"
                )
            if repeat > 1:
                rep_summary = _summary(scenario, run_id, [result], [], started, record.error, 1)
                set_verdict(
                    rep_summary,
                    [record.error] if record.error else [],
                    infrastructure=record.infrastructure,
                    interrupted=record.interrupted,
                )
                _write_summary(rep_dir, rep_summary)
        if interrupted:
            break
    expectations = _expectations(scenario, repetitions, failures)
    summary = _summary(
        scenario, run_id, runs, expectations, started, "; ".join(errors) or None, repeat
    )
    regressions: list[str] = []
    if baseline is not None:
        comparison = CompareResult(tolerance=tolerance)
        try:
            comparison = compare(read_summary(baseline), summary, tolerance)
            regressions = comparison.regressions
        except (LookupError, TypeError, ValueError, AttributeError) as exc:
            # a baseline that passed the checks but not the comparison: a set-up error
            errors.append(f"comparing with --baseline {baseline} failed: {exc!r}")
            summary.error, summary.passed = "; ".join(errors), False
            infrastructure = True
        summary.baseline = BaselineComparison(file=str(baseline), **comparison.as_dict())
        if regressions:
            summary.passed = False
    set_verdict(summary, errors, infrastructure=infrastructure, interrupted=interrupted)
    _write_summary(run_dir, summary)
    _render(run_dir, repeat, options)
    if junit is not None:
        _junit([summary], junit)
    exit_code = EXIT_PASSED
    if interrupted:
        exit_code = EXIT_INTERRUPTED
    elif infrastructure:
        exit_code = EXIT_INVALID  # a set-up error: nothing was measured to judge
    elif not summary.passed:
        exit_code = EXIT_FAILED
    return Outcome(summary, run_dir, exit_code, regressions)


def _outage_text(interruption_ms: float | None, probed: bool, phases: dict[str, float]) -> str:
    """A handoff's outcome in the progress lines. One no probe stream measured (a crowd's
    ``probes.sample``) has no interruption: it was "never recovered" there, 88 of 100 MNs'
    every move; its signalling's end is what it has."""
    if not probed:
        done = next((p for p in DONE_PHASES if p in phases), None)
        return "not probed" + (f", {done} at {phases[done]:.1f} ms" if done else "")
    return f"{interruption_ms:.1f} ms" if interruption_ms is not None else "never recovered"


# what ends a handoff's signalling: a registration, MOBIKE's update, the return home
DONE_PHASES = ("registration_accepted", "mobike_update", "returned_home")


def _analysed(scenario: Scenario, record: RunRecord, rep_dir: Path) -> dict[str, Any]:
    """One repetition's metrics from its events and probe records (events.jsonl written)."""
    events = merge_events(rep_dir, lambda evs: annotate(evs, scenario, record))
    # several mobile nodes: each its own handoffs and streams (testbed.scenario.many)
    result = (analyse_many if scenario.many else analyse)(scenario, record, events)
    result["signalling_nodes"] = signalling_nodes(events, scenario.mobile)
    return result


def _repetition(scenario: Scenario, result: dict[str, Any]) -> RunSummary:
    """One repetition's analysis as a summary of that repetition alone, as its expectations
    read it (``handoff[N]``, ``stream.X``, ``per_node``... in the summary's own terms)."""
    return RunSummary.model_validate(
        {"scenario": scenario.name, "mobile": scenario.mobile, **result}
    )


def _expectations(
    scenario: Scenario, repetitions: list[RunSummary], failures: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The run's failed wait steps, then each expectation over every repetition (none
    evaluated when no repetition finished)."""
    return failures + evaluate(scenario.spec.expect, repetitions) if repetitions else failures


def set_verdict(
    summary: RunSummary,
    errors: list[str],
    *,
    infrastructure: bool,
    interrupted: bool,
) -> None:
    """``verdict`` (passed, failed, error, interrupted) and the ``reasons`` for it."""
    reasons = [
        "interrupted (Ctrl-C or SIGTERM): the handoffs finished before are kept"
        if error == "interrupted"
        else f"error: {error}"
        for error in errors
    ]
    for e in summary.expectations:
        if e.passed is False:
            detail = e.detail or f"value {e.value} vs limit {e.limit}"
            reasons.append(f"expectation failed: {e.name}: {detail}")
    if summary.baseline is not None:
        reasons += [f"regression: {regression}" for regression in summary.baseline.regressions]
    if not summary.runs and not errors:
        reasons.append("no repetition finished")
    if interrupted:
        verdict = "interrupted"
    elif infrastructure:
        verdict = "error"
    elif summary.passed:
        verdict = "passed"
    else:
        verdict = "failed"
    summary.verdict = verdict
    summary.reasons = reasons


def _summary(
    scenario: Scenario,
    run_id: str,
    runs: list[dict[str, Any]],
    expectations: list[dict[str, Any]],
    started: float,
    error: str | None,
    repeat: int,
    duration_s: float | None = None,
) -> RunSummary:
    """The summary of ``runs`` (each repetition's analysis), validated: a runner bug raises
    here, before anything reads it."""
    handoffs = [h for run in runs for h in run["handoffs"]]
    percentiles = metrics.move_percentiles(handoffs) if handoffs else None
    first = runs[0] if runs else {}
    passed = error is None and bool(runs) and all(e["passed"] for e in expectations)
    many: dict[str, Any] = {}
    if scenario.many:  # several mobile nodes: each apart, and aggregates over them
        from testbed.scenario.many import aggregate

        per_node, over_nodes = aggregate(handoffs, scenario.mobiles, first.get("node_streams"))
        many = {"mobiles": scenario.mobiles, "per_node": per_node, "over_nodes": over_nodes}
    return RunSummary.model_validate(
        {
            "scenario": scenario.name,
            "description": scenario.spec.description,
            "run_id": run_id,
            "passed": passed,
            "error": error,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "duration_s": round(time.time() - started if duration_s is None else duration_s, 3),
            "topology": str(scenario.topology_path),
            "repeat": repeat,
            "runs": len(runs),
            "handoffs": handoffs,
            "percentiles": percentiles,
            "streams": first.get("streams", {}),
            "mobile": scenario.mobile,
            "loss_before_first_move": first.get("loss_before_first_move"),
            "final_mode": first.get("final_mode"),
            "tcp": first.get("tcp"),
            "move_times_ns": first.get("move_times_ns", []),
            "expectations": expectations,
            "signalling_nodes": first.get("signalling_nodes", []),
            "nodes": list(scenario.plan.nodes),
            "events": "events.jsonl",
            "data_paths": _data_paths(),
            **many,
        }
    )


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


def _write_scenario(scenario: Scenario, run_dir: Path, repeat: int) -> None:
    """The scenario as it was loaded, so that ``testbed report`` can rebuild the summary of a
    run that was killed before it wrote one."""
    meta = {
        "file": str(scenario.path),
        "topology": str(scenario.topology_path),
        "repeat": repeat,
        "started": time.time(),
        "spec": scenario.source.data,  # with any --set applied
        "set": list(scenario.source.overrides.values()),
    }
    atomic_write(run_dir / "scenario.json", json.dumps(meta, indent=1, default=str))


def _link_latest(run_dir: Path) -> None:
    """results/<scenario>/latest -> the newest run, finished or not (for labs and scripts)."""
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / ".latest.tmp"
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.name)
        os.replace(tmp, latest)


def _write_summary(run_dir: Path, summary: RunSummary) -> None:
    write_summary(run_dir / "summary.json", summary)


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


def _junit(summaries: list[RunSummary], path: Path) -> None:
    from testbed.results.junit import write_junit

    write_junit(summaries, path)


def invalid_summary(file: str, message: str) -> RunSummary:
    """What JUnit and the caller get for a scenario file that could not be run."""
    return RunSummary(
        scenario=file,
        file=file,
        passed=False,
        error=message,
        verdict="error",
        reasons=[f"error: {message}"],
    )


KILLED = "the run was killed: summary rebuilt from its events and probes (testbed report)"


def rebuild_summary(run_dir: Path) -> RunSummary:
    """The summary of a run that was killed before it wrote one, from the files it left:
    events, probe records and the scenario as it was loaded. Written to summary.json (and to
    each repetition's); raises InvalidRun when the directory is not a run's."""
    run_dir = Path(run_dir)
    try:
        meta = json.loads((run_dir / "scenario.json").read_text())
    except (OSError, ValueError):
        raise InvalidRun(
            f"{run_dir}: no summary.json, and no scenario.json to rebuild one from "
            "(not a run directory, or a run from an older version)"
        ) from None
    scenario = _scenario_from(meta)
    repeat = int(meta.get("repeat") or 1)
    reps = [run_dir] if repeat == 1 else sorted(run_dir.glob("rep-*"))
    runs: list[dict[str, Any]] = []
    repetitions: list[RunSummary] = []
    failures: list[dict[str, Any]] = []
    errors: list[str] = []
    first_ns = last_ns = None
    for index, rep_dir in enumerate(reps):
        if not (rep_dir / "events").is_dir():
            continue
        record = record_from_events(rep_dir, index)
        result = _analysed(scenario, record, rep_dir)
        runs.append(result)
        repetitions.append(_repetition(scenario, result))
        failures += record.failures
        if record.error:
            errors.append(record.error)
        first_ns = record.started_ns if first_ns is None else first_ns
        last_ns = record.ended_ns
        if repeat > 1 and not (rep_dir / "summary.json").exists():
            rep_summary = _summary(
                scenario, run_dir.name, [result], [], meta["started"], record.error or KILLED, 1
            )
            set_verdict(
                rep_summary,
                [*([record.error] if record.error else []), KILLED],
                infrastructure=True,
                interrupted=False,
            )
            _write_summary(rep_dir, rep_summary)
    errors.append(KILLED)
    expectations = _expectations(scenario, repetitions, failures)
    duration = (last_ns - first_ns) / 1e9 if first_ns is not None and last_ns else 0.0
    summary = _summary(
        scenario,
        run_dir.name,
        runs,
        expectations,
        meta["started"],
        "; ".join(errors),
        repeat,
        duration_s=duration,
    )
    summary.rebuilt = True
    set_verdict(summary, errors, infrastructure=True, interrupted=False)
    _write_summary(run_dir, summary)
    return summary


def _scenario_from(meta: dict[str, Any]) -> Scenario:
    from pydantic import ValidationError

    from mipbase.specfile import SpecSource
    from testbed.scenario.crowd import expand
    from testbed.scenario.model import ScenarioSpec
    from testbed.topology import load_topology

    file = str(meta.get("file", "scenario"))
    try:
        spec = ScenarioSpec.model_validate(meta["spec"])
    except (KeyError, ValidationError) as exc:
        raise InvalidRun(f"{file}: the run's scenario.json no longer validates: {exc}") from None
    topology = Path(meta["topology"])
    plan = load_topology(topology, spec.topology_ref.overrides or None)
    spec = expand(spec, plan).spec  # the crowds' services, as the run had them
    return Scenario(spec, SpecSource(file, meta["spec"]), Path(file), topology, plan)


def record_from_events(rep_dir: Path, index: int) -> RunRecord:
    """A repetition's RunRecord (moves, wait failures, its error) from the runner's events."""
    record = RunRecord(rep_dir, index)
    times: list[int] = []
    step = 0
    ended = False
    for path in eventlog.per_process_files(rep_dir):  # each in its order, as written
        for event in eventlog.read_file(path):
            times.append(event["t_ns"])
            if event.get("node") != "runner":
                continue
            name = event.get("event")
            if name == "run_start":
                record.started_ns = event["t_ns"]
            elif name == "step":
                step = int(event.get("index", step))
            elif name == "move_start":
                record.move_events.append(
                    {
                        "t_ns": event["t_ns"],
                        "t_up_ns": None,
                        "index": event.get("index", len(record.move_events)),
                        "node": event.get("target"),
                        "from": event.get("from"),
                        "to": event.get("to"),
                        "gap_ms": event.get("gap_ms", 0.0),
                    }
                )
            elif name == "link_up" and event.get("phase") == "link_up" and record.move_events:
                move = record.move_events[-1]
                if move["t_up_ns"] is None and move["node"] == event.get("target"):
                    move["t_up_ns"] = event["t_ns"]
            elif name == "wait_timeout":  # as the runner's wait step records it
                awaited, timeout = event.get("awaited"), float(event.get("timeout_ms", 0))
                record.failures.append(
                    {
                        "name": f"timeline[{step}] wait for {awaited}",
                        "value": None,
                        "limit": timeout,
                        "passed": False,
                        "detail": f"no {awaited} within {timeout:g} ms",
                    }
                )
            elif name == "run_error":
                record.error = str(event.get("error"))
            elif name == "run_interrupted":
                record.interrupted = True
            elif name == "run_end":
                ended = True
    # cut short (killed before its teardown): a handoff still in progress is not kept
    record.interrupted = record.interrupted or not ended
    if times:
        record.started_ns = record.started_ns or min(times)
        record.ended_ns = max(times)
    return record
