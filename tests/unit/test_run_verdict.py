"""Honest CI output: the summary's verdict and reasons, regressions and set-up errors in
JUnit, and a killed run's summary rebuilt from its events and probes."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from testbed import cli
from testbed.results.junit import write_junit
from testbed.scenario import catalogue, execute
from testbed.summary import BaselineComparison, RunSummary

ROOT = Path(__file__).resolve().parents[2]
MS = 1_000_000


def summary(**extra: object) -> RunSummary:
    base: dict = {
        "scenario": "s",
        "run_id": "r1",
        "passed": True,
        "error": None,
        "runs": 1,
        "duration_s": 3.0,
        "expectations": [{"name": "lost below 10", "value": 3, "limit": 10, "passed": True}],
    }
    base.update(extra)
    return RunSummary.model_validate(base)


# -- verdict ------------------------------------------------------------------------------


def test_verdict_passed_failed_error_interrupted() -> None:
    s = summary()
    execute.set_verdict(s, [], infrastructure=False, interrupted=False)
    assert (s.verdict, s.reasons) == ("passed", [])

    failed = {"name": "gap under 100 ms", "value": 312.5, "limit": 100, "passed": False}
    s = summary(passed=False, expectations=[failed])
    s.baseline = BaselineComparison(
        file="b.json", regressions=["handoff[0].interruption_ms: 10 → 30 ms"]
    )
    execute.set_verdict(s, [], infrastructure=False, interrupted=False)
    assert s.verdict == "failed"
    assert s.reasons == [
        "expectation failed: gap under 100 ms: value 312.5 vs limit 100",
        "regression: handoff[0].interruption_ms: 10 → 30 ms",
    ]

    s = summary(passed=False, error="ServiceDied: service fa on fa exited with status 1")
    execute.set_verdict(s, [s.error], infrastructure=True, interrupted=False)
    assert s.verdict == "error"
    assert s.reasons == ["error: ServiceDied: service fa on fa exited with status 1"]

    s = summary(passed=False, error="StepFailed: agents not ready within 10 s: mn")
    execute.set_verdict(s, [s.error], infrastructure=False, interrupted=False)
    assert s.verdict == "failed"  # the system under test never came up

    s = summary(passed=False, error="interrupted")
    execute.set_verdict(s, ["interrupted"], infrastructure=False, interrupted=True)
    assert s.verdict == "interrupted" and "handoffs finished before are kept" in s.reasons[0]


# -- JUnit ----------------------------------------------------------------------------------


def suites(tmp_path: Path, *summaries: RunSummary) -> list[ET.Element]:
    return ET.parse(write_junit(list(summaries), tmp_path / "j.xml")).getroot().findall("testsuite")


def test_regressions_are_failing_testcases_with_the_numbers(tmp_path: Path) -> None:
    regression = "handoff[0].interruption_ms: 30 → 45 ms (+50.0%), limit 34 ms"
    s = summary(passed=False, verdict="failed")
    s.baseline = BaselineComparison(
        file="old/summary.json", tolerance_pct=10.0, regressions=[regression]
    )
    (suite,) = suites(tmp_path, s)
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "0")
    case = suite.find("testcase[@name='no regression: handoff[0].interruption_ms']")
    assert case is not None and case.get("classname") == "scenario.s.baseline"
    failure = case.find("failure")
    assert failure is not None and failure.get("message") == regression
    assert failure.get("type") == "regression"
    assert "against old/summary.json (tolerance 10 %)" in (failure.text or "")

    s.baseline.regressions = []
    (suite,) = suites(tmp_path, s)
    names = [c.get("name") for c in suite.findall("testcase")]
    assert "no regression against old/summary.json (tolerance 10 %)" in names
    assert suite.get("failures") == "0"


def test_infrastructure_is_an_error_and_the_system_under_test_a_failure(tmp_path: Path) -> None:
    died = summary(passed=False, error="ServiceDied: relay exited", verdict="error")
    died.reasons = ["error: ServiceDied: relay exited"]
    stuck = summary(
        scenario="t", passed=False, error="StepFailed: agents not ready", verdict="failed"
    )
    invalid = execute.invalid_summary("bad.yaml", "bad.yaml:3: timeline[0].wait.event: unknown")
    a, b, c = suites(tmp_path, died, stuck, invalid)
    assert a.find("testcase[@name='scenario completed']/error") is not None
    assert a.find("testcase/error").text == "error: ServiceDied: relay exited"
    assert b.find("testcase[@name='scenario completed']/failure") is not None
    assert b.find("testcase/error") is None
    assert (c.get("name"), c.get("errors"), c.get("tests")) == ("bad.yaml", "1", "1")
    props = {p.get("name"): p.get("value") for p in a.iter("property")}
    assert props["verdict"] == "error"


# -- a killed run ---------------------------------------------------------------------------

SCENARIO = """
name: killed
topology: topologies/enterprise.yaml
settle: 300ms
timeline:
  - {move: {node: mn, to: home, gap: 300ms}}
  - {wait: {event: dhcp_bound, node: mn, timeout: 1s}}
  - {move: {node: mn, to: office}}
  - {sleep: 10s}
expect:
  - {metric: "handoff[0].interruption_ms", below: 1000}
  - {metric: handoffs, equals: 2}
"""


def killed_run(tmp_path: Path) -> tuple[Path, int, int]:
    """What a run killed (SIGKILL) during its last step leaves: events, probes, the
    scenario; no summary, no run_end."""
    run = tmp_path / "results" / "killed" / "20260101-000000-abcd"
    (run / "events").mkdir(parents=True)
    (run / "probes").mkdir()
    meta = {
        "file": str(tmp_path / "killed.yaml"),
        "topology": str(ROOT / "topologies" / "enterprise.yaml"),
        "repeat": 1,
        "started": time.time(),
        "spec": yaml.safe_load(SCENARIO),
    }
    (run / "scenario.json").write_text(json.dumps(meta))
    t0 = 10_000 * MS
    m0, m1 = t0 + 1000 * MS, t0 + 3000 * MS
    runner = [
        {"t_ns": t0, "event": "run_start", "scenario": "killed", "run": 0},
        {"t_ns": m0 - 1, "event": "step", "index": 0, "action": "move"},
        {"t_ns": m0, "event": "move_start", "index": 0, "target": "mn", "from": "home",
         "to": "home", "gap_ms": 300.0},
        {"t_ns": m0, "event": "link_down", "target": "mn", "phase": "link_down"},
        {"t_ns": m0 + 300 * MS, "event": "link_up", "target": "mn", "network": "home",
         "phase": "link_up"},
        {"t_ns": m0 + 301 * MS, "event": "step", "index": 1, "action": "wait"},
        {"t_ns": m0 + 1301 * MS, "event": "wait_timeout", "awaited": "dhcp_bound",
         "timeout_ms": 1000.0},
        {"t_ns": m1 - 1, "event": "step", "index": 2, "action": "move"},
        {"t_ns": m1, "event": "move_start", "index": 1, "target": "mn", "from": "home",
         "to": "office", "gap_ms": 0.0},
        {"t_ns": m1 + 1 * MS, "event": "link_up", "target": "mn", "network": "office",
         "phase": "link_up"},
    ]  # fmt: skip
    with (run / "events" / "runner.jsonl").open("w") as out:
        for event in runner:
            out.write(json.dumps({"node": "runner", **event}) + "\n")
        out.write('{"t_ns": 1, "node": "runner", "ev')  # torn by the kill
    for stream in ("down", "up"):
        with (run / "probes" / f"{stream}.csv").open("w") as out:
            out.write("seq,t_send_ns,t_recv_ns,src,sport\n")
            for seq in range(2000):  # every 2 ms for 4 s
                sent = t0 + seq * 2 * MS
                if m0 <= sent < m0 + 300 * MS or sent >= m1:
                    continue  # lost in the gap; never again after the second move
                out.write(f"{seq},{sent},{sent + MS},10.1.0.100,9000\n")
    return run, m0, m1


def test_report_rebuilds_a_killed_runs_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(execute, "_data_paths", lambda: None)  # no probing namespace here
    run, _m0, _m1 = killed_run(tmp_path)
    assert cli.main(["report", str(run)]) == 0
    assert "summary.json rebuilt from its events and probes" in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rebuilt"] is True and summary["verdict"] == "error"
    assert execute.KILLED in summary["error"] and f"error: {execute.KILLED}" in summary["reasons"]
    first, second = summary["handoffs"]
    assert (first["from"], first["to"], second["to"]) == ("home", "home", "office")
    assert 300 <= first["interruption_ms"] < 310 and "cut_short" not in first
    assert first["phases_ms"]["link_up"] == 300.0
    # the second move was in progress when the run was killed: kept, but not "never"
    assert second["interruption_ms"] is None and second["cut_short"] is True
    # every field the summary defines (tcp_stall only with probes.tcp; cut_short when it was)
    assert set(first) == set(catalogue.HANDOFF_FIELDS) - {"tcp_stall", "cut_short"}
    expectations = {e["name"]: e for e in summary["expectations"]}
    assert expectations["timeline[1] wait for dhcp_bound"]["passed"] is False
    assert expectations["handoff[0].interruption_ms below 1000.0"]["passed"] is True
    assert expectations["handoffs equals 2.0"]["passed"] is True
    assert (run / "events.jsonl").exists() and (run / "report.md").exists()


def test_report_of_a_directory_that_is_no_run(tmp_path: Path) -> None:
    with pytest.raises(execute.InvalidRun, match=r"no summary\.json, and no scenario\.json"):
        execute.rebuild_summary(tmp_path)
    assert cli.main(["report", str(tmp_path)]) == 2


def test_interrupted_runs_handoff_is_cut_short_not_never_recovered(tmp_path: Path) -> None:
    from testbed.scenario.expect import evaluate
    from testbed.scenario.model import ExpectSpec

    handoffs = [
        {"index": 0, "interruption_ms": 12.0},
        {"index": 1, "interruption_ms": None, "cut_short": True},
    ]
    runs = [RunSummary.model_validate({"scenario": "s", "handoffs": handoffs})]
    spec = ExpectSpec(metric="handoff[*].interruption_ms", below=100)
    first, second = evaluate([spec], runs)
    assert first["passed"] is True
    assert second["passed"] is False and "cut short" in second["detail"]


def test_a_probe_that_ended_during_the_run_is_an_infrastructure_error(tmp_path: Path) -> None:
    """A UDP probe that exits before teardown leaves its stream without data, which the
    metrics would read as an outage that never ended: the run says the probe died (exit 2)
    instead of failing its expectations."""
    import subprocess
    import sys
    from types import SimpleNamespace

    from testbed.lab.state import ProcessRecord
    from testbed.scenario.runner import ServiceDied, _Run

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    run = object.__new__(_Run)
    run._watched, run.vpn_nodes = {}, {}
    records = [ProcessRecord(ended.pid, None, "mn", "probe:tcp-client", [], None)]
    run.lab = SimpleNamespace(state=SimpleNamespace(processes=records))
    run.check_alive()  # the TCP client ends on its own on an error: that is measured
    records.append(ProcessRecord(ended.pid, None, "mn", "probe:mn", [], str(tmp_path / "p.log")))
    with pytest.raises(ServiceDied, match="probe:mn in mn"):
        run.check_alive()
