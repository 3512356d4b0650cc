"""Events stay useful and bounded under a flood (issue 20, finding 6): repeated drops and
denials become counts per kind and interval, an event file has a size cap, and the runner's
metrics never depend on the events that are counted."""

from __future__ import annotations

import io
import json
import random
import re
from pathlib import Path

from agents.runtime.eventlimit import NOISY, Aggregator
from mipbase.events import EventWriter, read_file
from testbed.scenario.catalogue import EVENTS, PHASE_EVENTS

ROOT = Path(__file__).resolve().parents[2]


def test_a_flood_of_drops_is_a_few_in_full_and_a_count() -> None:
    """Before: one line per dropped message, ~115 bytes each, 931 MB in five minutes."""
    rng = random.Random(3)
    agg = Aggregator(interval=1.0, full=5, max_sources=10)
    written = []
    for i in range(10_000):
        src = f"10.{rng.randrange(256)}.{rng.randrange(256)}.1"
        data = {"reason": f"unknown SPI {rng.randrange(1000)}", "src": src}
        if agg.offer("message_dropped", data, i * 1e-4):
            written.append(data)
    assert len(written) == 5
    assert agg.due() == 1.0
    (summary,) = agg.flush(1.0)
    assert summary["of"] == "message_dropped" and summary["reason"] == "unknown SPI #"
    assert (summary["count"], summary["suppressed"]) == (10_000, 9_995)
    assert len(summary["sources"]) == 10
    assert sum(summary["sources"].values()) + summary["other_sources"] == 9_995
    assert agg.due() is None and agg.flush(2.0) == []
    # the next interval starts again with events in full
    assert agg.offer("message_dropped", {"reason": "x", "src": "a"}, 2.5)


def test_a_crowd_registering_at_once_is_written_in_full_a_flood_is_not() -> None:
    """Twelve mobile nodes registering after one move made the HA's per-message events a
    count (5 per second in full), and ladders lost them; a flood stays bounded."""
    agg = Aggregator(interval=1.0, full=5)
    crowd = [{"src": f"10.3.0.{i}", "identification": i} for i in range(50)]
    assert all(agg.offer("registration_received", d, 0.01 * i) for i, d in enumerate(crowd))
    flood = sum(agg.offer("registration_received", {"src": "x"}, 0.5) for _ in range(10_000))
    assert flood == 100 - len(crowd)  # ~100 lines a second in all, whatever comes
    assert agg.flush(1.0)[0]["suppressed"] == 10_000 - flood


def test_kinds_are_counted_apart_and_other_events_always_pass() -> None:
    agg = Aggregator(full=2)
    for code in (131, 133):
        for _ in range(4):
            agg.offer("registration_denied", {"code": code, "reason": "r", "src": "s"}, 0.0)
    for _ in range(100):
        assert agg.offer("binding_added", {"home_address": "h"}, 0.0)
        assert agg.offer("registration_accepted", {}, 0.0)
    summaries = {s["code"]: s["suppressed"] for s in agg.flush(1.0)}
    assert summaries == {131: 2, 133: 2}


def test_kinds_are_bounded() -> None:
    agg = Aggregator(full=1, max_kinds=4)
    for i in range(1000):
        agg.offer("send_failed", {"error": f"e{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}"}, 0.0)
    summaries = agg.flush(1.0)
    assert len(summaries) == 5 and summaries[-1]["other_kinds"]  # 4, and one for the rest
    assert sum(s["count"] for s in summaries) == 1000


def test_a_late_flush_carries_the_counts() -> None:
    """The driver's loop may be busy past the interval: nothing is lost meanwhile."""
    agg = Aggregator(interval=1.0, full=1)
    for t in (0.0, 0.5, 1.5, 2.5):
        agg.offer("message_dropped", {"reason": "r", "src": "s"}, t)
    (summary,) = agg.flush(3.0)
    assert (summary["count"], summary["suppressed"], summary["interval_s"]) == (4, 3, 3.0)


def test_an_event_file_has_a_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "fa.jsonl"
    path.write_text('{"t_ns": 1, "node": "fa", "event": "agent_started"}\n')  # already there
    writer = EventWriter.open(str(path), "fa", max_bytes=20_000)
    for i in range(1000):
        writer.emit("message_dropped", reason="not a registration request", src=f"10.0.0.{i}")
    writer.close()
    assert path.stat().st_size <= 20_000
    events = read_file(path)
    assert events[0]["event"] == "agent_started"
    assert events[-1]["event"] == "event_file_full"
    assert events[-1]["max_bytes"] == 20_000
    assert writer.dropped == 1000 - (len(events) - 2)
    assert [e["event"] for e in events[1:-1]] == ["message_dropped"] * (len(events) - 2)


def test_no_cap_and_streams_without_a_size() -> None:
    stream = io.StringIO()
    writer = EventWriter(stream, "x", max_bytes=None)
    for _ in range(1000):
        writer.emit("e", data="y" * 100)
    assert stream.getvalue().count("\n") == 1000 and not writer.full
    stream = io.StringIO()
    writer = EventWriter(stream, "x", max_bytes=1000)
    for _ in range(100):
        writer.emit("e")
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert lines[-1]["event"] == "event_file_full" and len(stream.getvalue()) <= 1000


def test_metrics_never_depend_on_the_counted_events() -> None:
    """What the aggregator may hold back is no handoff phase and is never read by the
    runner's metrics."""
    assert set(NOISY) <= set(EVENTS)
    assert not set(NOISY) & set(PHASE_EVENTS)
    source = (ROOT / "testbed" / "scenario" / "metrics.py").read_text()
    used = set(re.findall(r'"([a-z_]+)"', source))
    assert not set(NOISY) & used, set(NOISY) & used
