"""JUnit XML from summaries: valid, with the right failure and error counts."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from testbed.results.junit import write_junit
from testbed.summary import RunSummary


def summary(scenario: str, **extra: object) -> RunSummary:
    base: dict = {
        "scenario": scenario,
        "run_id": "r1",
        "passed": False,
        "duration_s": 12.3,
        "started": "2026-11-23T20:15:00",
        "expectations": [
            {
                "name": "handoff[0].interruption_ms below 500",
                "value": None,
                "limit": 500,
                "passed": False,
                "detail": "stream never recovered",
            },
            {
                "name": "handoff[1].interruption_ms below 500",
                "value": 612.25,
                "limit": 500,
                "passed": False,
            },
            {"name": "lost below 10", "value": 3, "limit": 10, "passed": True},
        ],
    }
    base.update(extra)
    return RunSummary.model_validate(base)


def test_failures_and_messages(tmp_path: Path) -> None:
    path = write_junit([summary("no-mobility")], tmp_path / "out" / "junit.xml")
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "no-mobility"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "2", "0")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases][-1] == "scenario completed"
    messages = [f.get("message") for f in suite.iter("failure")]
    assert messages == ["value null vs limit 500", "value 612.25 vs limit 500"]
    assert suite.find("testcase/failure").text == "stream never recovered"
    assert cases[-1].find("error") is None


def test_error_and_multiple_suites(tmp_path: Path) -> None:
    crashed = summary("crashed", error="namespace build failed\x01: exit 2", expectations=[])
    path = write_junit([summary("a"), crashed], tmp_path / "junit.xml")
    root = ET.parse(path).getroot()
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["a", "crashed"]
    assert (suites[1].get("tests"), suites[1].get("errors")) == ("1", "1")
    error = suites[1].find("testcase/error")
    assert error is not None and "namespace build failed" in error.get("message", "")
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("5", "2", "1")


def test_unevaluated_expectation_is_skipped(tmp_path: Path) -> None:
    s = summary("s", expectations=[{"name": "x", "value": None, "limit": 1, "passed": None}])
    root = ET.parse(write_junit([s], tmp_path / "j.xml")).getroot()
    assert root.find("testsuite").get("skipped") == "1"
    assert root.get("failures") == "0"


def test_empty_list(tmp_path: Path) -> None:
    root = ET.parse(write_junit([], tmp_path / "j.xml")).getroot()
    assert root.get("tests") == "0" and not list(root)


def test_properties_are_what_the_summary_recorded(tmp_path: Path) -> None:
    from testbed.scenario.execute import invalid_summary

    invalid = invalid_summary("bad.yaml", "bad.yaml:3: unknown")
    ran = summary("ran", repeat=3, runs=3, verdict="failed")
    root = ET.parse(write_junit([invalid, ran], tmp_path / "j.xml")).getroot()
    props = [
        {p.get("name"): p.get("value") for p in suite.iter("property")}
        for suite in root.findall("testsuite")
    ]
    # a file that could not be run has no repeat or runs (not the models' defaults)
    assert props[0] == {"file": "bad.yaml", "passed": "False", "verdict": "error"}
    assert props[1] == {
        "run_id": "r1",
        "repeat": "3",
        "runs": "3",
        "passed": "False",
        "verdict": "failed",
    }
