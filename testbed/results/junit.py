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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from testbed.results.rundata import fmt_num

# XML 1.0 forbids most control characters; runner error text may contain them.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(value: Any) -> str:
    return _ILLEGAL.sub("?", str(value))


def _value(value: Any) -> str:
    return "null" if value is None else fmt_num(value, 3)


def failure_message(expectation: Mapping[str, Any]) -> str:
    return f"value {_value(expectation.get('value'))} vs limit {_value(expectation.get('limit'))}"


def _suite(summary: Mapping[str, Any]) -> ET.Element:
    scenario = _clean(summary.get("scenario") or "scenario")
    classname = f"scenario.{scenario}"
    suite = ET.Element("testsuite", name=scenario)
    props = ET.SubElement(suite, "properties")
    for key in ("run_id", "file", "topology", "repeat", "runs", "passed", "verdict"):
        if summary.get(key) is not None:
            ET.SubElement(props, "property", name=key, value=_clean(summary[key]))

    failures = errors = skipped = tests = 0
    for e in summary.get("expectations") or []:
        if not isinstance(e, Mapping):
            continue
        tests += 1
        case = ET.SubElement(
            suite, "testcase", classname=classname, name=_clean(e.get("name", "expectation"))
        )
        if e.get("passed") is False:
            failures += 1
            failure = ET.SubElement(
                case, "failure", message=_clean(failure_message(e)), type="expectation"
            )
            if e.get("detail"):
                failure.text = _clean(e["detail"])
        elif e.get("passed") is not True:  # not evaluated (e.g. the run stopped early)
            skipped += 1
            ET.SubElement(case, "skipped", message=_clean(e.get("detail") or "not evaluated"))

    baseline = summary.get("baseline")
    if isinstance(baseline, Mapping):
        regressions = baseline.get("regressions") or []
        tolerance = baseline.get("tolerance_pct")
        slack = baseline.get("tolerance_ms")
        against = f"against {baseline.get('file')}" + (
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
        insufficient = baseline.get("insufficient") or []
        if insufficient:  # too few runs to judge: reported, never a failure
            tests += 1
            skipped += 1
            case = ET.SubElement(
                suite, "testcase", classname=f"{classname}.baseline", name="metrics not judged"
            )
            fewer = baseline.get("min_samples")
            message = f"{len(insufficient)} metric(s) with too few values a side" + (
                f" (fewer than {fewer})" if fewer is not None else ""
            )
            ET.SubElement(case, "skipped", message=message).text = "\n".join(
                _clean(line) for line in insufficient
            )

    tests += 1
    done = ET.SubElement(suite, "testcase", classname=classname, name="scenario completed")
    if isinstance(summary.get("duration_s"), int | float):
        done.set("time", f"{float(summary['duration_s']):.3f}")
    if summary.get("error"):
        message = _clean(summary["error"])
        # the testbed's fault (or a summary from before verdicts): an error; the system
        # under test's (it stopped the run): a failure
        if summary.get("verdict", "error") in ("error", "interrupted"):
            errors += 1
            problem = ET.SubElement(done, "error", message=message, type="error")
        else:
            failures += 1
            problem = ET.SubElement(done, "failure", message=message, type="run")
        problem.text = "\n".join(_clean(r) for r in summary.get("reasons") or []) or message

    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    duration = summary.get("duration_s")
    suite.set("time", f"{float(duration):.3f}" if isinstance(duration, int | float) else "0")
    if summary.get("started"):
        suite.set("timestamp", _clean(summary["started"]))
    if summary.get("run_id"):
        suite.set("id", _clean(summary["run_id"]))
    return suite


def write_junit(summaries: list[dict], path: Path | str) -> Path:
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
