"""JUnit XML for CI: one testsuite per scenario run, one testcase per expectation.

Every suite also has a testcase "scenario completed", which carries an ``<error>`` when
the runner recorded an error, so a crashed run is red in CI even with no expectations.
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
    for key in ("run_id", "topology", "repeat", "runs", "passed"):
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

    tests += 1
    done = ET.SubElement(suite, "testcase", classname=classname, name="scenario completed")
    if isinstance(summary.get("duration_s"), int | float):
        done.set("time", f"{float(summary['duration_s']):.3f}")
    if summary.get("error"):
        errors += 1
        error = ET.SubElement(done, "error", message=_clean(summary["error"]), type="error")
        error.text = _clean(summary["error"])

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
