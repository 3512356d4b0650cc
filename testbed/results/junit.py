"""JUnit XML for CI: one testsuite per scenario run, one testcase per expectation.

Against a baseline, each regression is a failing testcase with the numbers (one passing
testcase when there is none); metrics with too few runs to judge are one skipped testcase.
Every suite also has a testcase "scenario completed": an ``<error>`` when the testbed failed
(verdict ``error`` or ``interrupted``: a daemon that died, a lab removed under the run, a
bad baseline, an invalid scenario file), a ``<failure>`` when the system under test stopped
the run (e.g. agents never ready), so a crashed run is red in CI even with no expectations,
and set-up trouble is told apart from a regression.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from testbed.results.rundata import fmt_num
from testbed.summary import Expectation, RunSummary

# XML 1.0 forbids most control characters; runner error text may contain them.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(value: Any) -> str:
    return _ILLEGAL.sub("?", str(value))


def _value(value: Any) -> str:
    return "null" if value is None else fmt_num(value, 3)


def failure_message(expectation: Expectation) -> str:
    return f"value {_value(expectation.value)} vs limit {_value(expectation.limit)}"


# the run's properties, each when the summary recorded it (a scenario file that could not
# be run has no repeat or runs)
_PROPERTIES = ("run_id", "file", "topology", "repeat", "runs", "passed", "verdict")


def _suite(summary: RunSummary) -> ET.Element:
    scenario = _clean(summary.scenario or "scenario")
    classname = f"scenario.{scenario}"
    suite = ET.Element("testsuite", name=scenario)
    props = ET.SubElement(suite, "properties")
    recorded = summary.model_dump(include=set(_PROPERTIES), exclude_unset=True, exclude_none=True)
    for key in _PROPERTIES:
        if key in recorded:
            ET.SubElement(props, "property", name=key, value=_clean(recorded[key]))

    failures = errors = skipped = tests = 0
    for e in summary.expectations:
        tests += 1
        case = ET.SubElement(suite, "testcase", classname=classname, name=_clean(e.name))
        if e.passed is False:
            failures += 1
            failure = ET.SubElement(
                case, "failure", message=_clean(failure_message(e)), type="expectation"
            )
            if e.detail:
                failure.text = _clean(e.detail)
        elif e.passed is not True:  # not evaluated (e.g. the run stopped early)
            skipped += 1
            ET.SubElement(case, "skipped", message=_clean(e.detail or "not evaluated"))

    baseline = summary.baseline
    if baseline is not None:
        regressions = baseline.regressions
        tolerance = baseline.tolerance_pct
        slack = baseline.tolerance_ms
        against = f"against {baseline.file}" + (
            f" (tolerance {_value(tolerance)} %"
            + (f" or {_value(slack)} ms" if slack is not None else "")
            + ")"
            if tolerance is not None
            else ""
        )
        for regression in regressions:
            tests += 1
            failures += 1
            text = _clean(regression)
            metric = text.split(": ", 1)[0]
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"{classname}.baseline",
                name=f"no regression: {metric}",
            )
            failure = ET.SubElement(case, "failure", message=text, type="regression")
            failure.text = f"{text}\n{_clean(against)}"
        if not regressions:
            tests += 1
            ET.SubElement(
                suite,
                "testcase",
                classname=f"{classname}.baseline",
                name=_clean(f"no regression {against}"),
            )
        insufficient = baseline.insufficient
        if insufficient:  # too few runs to judge: reported, never a failure
            tests += 1
            skipped += 1
            case = ET.SubElement(
                suite, "testcase", classname=f"{classname}.baseline", name="metrics not judged"
            )
            fewer = baseline.min_samples
            message = f"{len(insufficient)} metric(s) with too few values a side" + (
                f" (fewer than {fewer})" if fewer is not None else ""
            )
            ET.SubElement(case, "skipped", message=message).text = "\n".join(
                _clean(line) for line in insufficient
            )

    tests += 1
    done = ET.SubElement(suite, "testcase", classname=classname, name="scenario completed")
    duration = summary.duration_s
    if duration is not None:
        done.set("time", f"{duration:.3f}")
    if summary.error:
        message = _clean(summary.error)
        # the testbed's fault (or a summary from before verdicts): an error; the system
        # under test's (it stopped the run): a failure
        if summary.verdict in (None, "error", "interrupted"):
            errors += 1
            problem = ET.SubElement(done, "error", message=message, type="error")
        else:
            failures += 1
            problem = ET.SubElement(done, "failure", message=message, type="run")
        problem.text = "\n".join(_clean(r) for r in summary.reasons) or message

    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    suite.set("time", f"{duration:.3f}" if duration is not None else "0")
    if summary.started:
        suite.set("timestamp", _clean(summary.started))
    if summary.run_id:
        suite.set("id", _clean(summary.run_id))
    return suite


def write_junit(summaries: list[RunSummary], path: Path | str) -> Path:
    """Write one JUnit XML file covering all ``summaries``; returns its path."""
    root = ET.Element("testsuites", name="testbed")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    seconds = 0.0
    for summary in summaries:
        suite = _suite(summary)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
        seconds += float(suite.get("time", "0"))
    for key, count in totals.items():
        root.set(key, str(count))
    root.set("time", f"{seconds:.3f}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    tree.write(out, encoding="utf-8", xml_declaration=True)
    return out
