"""The one event log: what every reader of events sees, including what a killed writer left."""

from __future__ import annotations

import json
from pathlib import Path

from mipbase import events as eventlog
from mipbase.events import EventWriter


def lines(*records: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def test_torn_lines_and_non_events_are_skipped_and_times_made_integers() -> None:
    text = lines(
        {"t_ns": 5, "node": "mn", "event": "a"},
        {"t_ns": 6.0, "node": "ha", "event": "b"},  # a float from another tool
        {"t_ns": True, "event": "bool is not a time"},
        {"t_ns": 7, "node": "x"},  # no event
        ["not", "an", "object"],
    )
    text += '{"t_ns": 8, "node": "mn", "ev'  # killed mid-line
    events = eventlog.parse_lines(text + "\n\n")
    assert [(e["t_ns"], e["event"]) for e in events] == [(5, "a"), (6, "b")]
    assert isinstance(events[1]["t_ns"], int)


def test_a_run_reads_its_merged_log_once_written_and_its_process_files_before(
    tmp_path: Path,
) -> None:
    (tmp_path / "events").mkdir()
    mn = EventWriter.open(str(tmp_path / "events" / "mn.jsonl"), "mn")
    ha = EventWriter.open(str(tmp_path / "events" / "ha.jsonl"), "ha")
    mn.emit("first", t_ns=1)
    ha.emit("second", t_ns=2)
    mn.emit("third", t_ns=3)
    mn.close()
    ha.close()
    assert [e["event"] for e in eventlog.read_run(tmp_path)] == ["first", "second", "third"]
    merged = eventlog.read_run(tmp_path)
    merged[0]["drawn_as"] = "annotation"
    eventlog.write_merged(tmp_path / eventlog.MERGED, merged[:2])
    assert [e["event"] for e in eventlog.read_run(tmp_path)] == ["first", "second"]
    assert eventlog.read_run(tmp_path)[0]["drawn_as"] == "annotation"
    assert not list(tmp_path.glob(".*.tmp"))
    assert eventlog.read_file(tmp_path / "missing.jsonl") == []


def test_equal_times_keep_file_order() -> None:
    a = eventlog.parse_lines(lines({"t_ns": 1, "event": "x1"}, {"t_ns": 1, "event": "x2"}))
    assert [e["event"] for e in sorted(a, key=lambda e: e["t_ns"])] == ["x1", "x2"]


def test_tail_returns_each_complete_event_once_and_waits_for_the_newline(
    tmp_path: Path,
) -> None:
    tail = eventlog.Tail(tmp_path)
    assert tail.poll() == []
    path = tmp_path / "mn.jsonl"
    with path.open("w") as out:
        out.write(lines({"t_ns": 1, "event": "a"}) + '{"t_ns": 2, "eve')
        out.flush()
        assert [e["event"] for e in tail.poll()] == ["a"]
        assert tail.poll() == []
        out.write('nt": "b"}\n')
        out.flush()
        assert [e["event"] for e in tail.poll()] == ["b"]
    (tmp_path / "ha.jsonl").write_text(lines({"t_ns": 3, "event": "c"}))  # appears later
    assert [e["event"] for e in tail.poll()] == ["c"]
