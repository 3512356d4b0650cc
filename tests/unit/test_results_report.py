"""report.md / report.html / text_summary from synthetic and broken run directories."""

from __future__ import annotations

import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from testbed.results import figure
from testbed.results.report import render_report, text_summary
from testbed.results.sample import write_sample_run
from testbed.summary import RunSummary, read_summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def strict_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(figure, "STRICT", True)


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # The report also looks for the summary's topology file relative to the working
    # directory; run from tmp_path so only the tests that provide one get a picture.
    monkeypatch.chdir(tmp_path)
    return write_sample_run(tmp_path / "results" / "sample" / "20261123-201500-ab12")


def summary_of(run: Path) -> RunSummary:
    return read_summary(run / "summary.json")


def test_report_mentions_every_handoff_and_expectation(run: Path) -> None:
    started = time.perf_counter()
    md_path = render_report(run)
    elapsed = time.perf_counter() - started
    assert md_path == run / "report.md"
    md = md_path.read_text()
    summary = summary_of(run)
    assert summary.scenario in md and "FAILED" in md
    for h in summary.handoffs:
        assert f"Handoff {h.index}: {h.from_} → {h.to}" in md
        assert f"| {h.index} | {h.t_s:g} | {h.from_} → {h.to} |" in md
    for e in summary.expectations:
        assert e.name in md
    assert "never" in md  # the downlink of handoff 0 never recovered
    assert "address_acquired 25.3" in md
    assert "| down | cn → mn | 3000 |" in md
    # 2 handoffs x (timeline, ladder), each figure well under a second
    assert elapsed < 5.0


def test_report_images_exist_and_are_relative(run: Path) -> None:
    md = render_report(run).read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"figures/h0-timeline.png", "figures/h0-ladder.png"} <= set(links)
    assert {"figures/h1-timeline.png", "figures/h1-ladder.png"} <= set(links)
    for link in links:
        assert not Path(link).is_absolute()
        data = (run / link).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 4000


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.text: list[str] = []
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        elif tag not in ("meta", "img"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_has_the_same_content(run: Path) -> None:
    render_report(run)
    page = (run / "report.html").read_text()
    parser = _Collect()
    parser.feed(page)
    assert not parser.stack
    text = "".join(parser.text)
    for e in summary_of(run).expectations:
        assert e.name in text
    assert len(parser.images) == 4  # 2 x (timeline, ladder); no topology file here
    for src in parser.images:
        assert (run / src).is_file()


def test_topology_picture_found_from_summary_path(run: Path, tmp_path: Path) -> None:
    topo = tmp_path / "topologies" / "t.yaml"
    topo.parent.mkdir()
    topo.write_text(
        "networks: {lan: {subnet: 10.0.0.0/24, trust: trusted}}\n"
        "nodes: {mn: {role: host, links: [{network: lan}]}}\n"
    )
    summary = json.loads((run / "summary.json").read_text())
    summary["topology"] = "topologies/t.yaml"  # relative to an ancestor of the run
    (run / "summary.json").write_text(json.dumps(summary))
    md = render_report(run).read_text()
    assert "![topology](figures/topology.png)" in md


def test_empty_run_directory(tmp_path: Path) -> None:
    md = render_report(tmp_path).read_text()
    assert "ERROR" in md and "summary.json missing" in md
    assert (tmp_path / "report.html").is_file()


def test_partial_run_without_probes_or_events(tmp_path: Path) -> None:
    run = write_sample_run(tmp_path / "run", with_probes=False)
    (run / "events.jsonl").unlink()
    md = render_report(run).read_text()
    assert "Handoff 1" in md


def test_never_recovered_and_nulls_everywhere(tmp_path: Path) -> None:
    summary = {
        "scenario": "odd",
        "passed": False,
        "handoffs": [
            {"index": 0, "t_ns": 10, "interruption_ms": None, "interruption_down_ms": None},
            {"index": 1},
        ],
        "streams": {"down": {"sent": 0, "received": 0}},
        "expectations": [{"name": "x", "value": None, "limit": None, "passed": None}],
        "percentiles": {"interruption_ms": {"p50": None, "n": 0}},
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "probes").mkdir()
    (tmp_path / "probes" / "down.csv").write_text("seq,t_send_ns,t_recv_ns,src\n")
    md = render_report(tmp_path).read_text()
    assert "| 0 |" in md and "| 1 |" in md and "n/a" in md
    assert text_summary(RunSummary.model_validate(summary))


def test_text_summary(run: Path) -> None:
    summary = summary_of(run)
    text = text_summary(summary)
    assert text.splitlines()[0].startswith("sample-home-office  20261123-201500-ab12  FAILED")
    assert "1/3 passed" in text
    for e in summary.expectations:
        assert e.name in text
    assert "home → office" in text and "office → home" in text
    assert max(len(line) for line in text.splitlines()) < 120  # fits a terminal


def test_text_summary_error_and_minimal() -> None:
    text = text_summary(RunSummary(scenario="s", error="agent mn exited with 1"))
    assert "ERROR" in text and "agent mn exited with 1" in text
    assert text_summary(RunSummary(scenario="")).startswith("?")
