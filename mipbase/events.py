"""The event log: structured events as JSON lines (CLOCK_MONOTONIC ns), written by every
agent and service, read, tailed and merged by the runner and the tools. One module."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # an event file's size cap (EventWriter)
_FINAL_RESERVE = 512  # room kept below the cap for the event that says it was reached


class EventWriter:
    """Appends ``{"t_ns", "node", "event", ...}`` lines to a file (line-buffered).

    The file never grows past ``max_bytes`` (``None``: no cap), counted from its size when
    opened: the line that would pass it is replaced by one last event, ``event_file_full``
    (``max_bytes``, ``written``), and nothing is written after it (``dropped`` counts what was
    not). Issue 20: an agent under a flood wrote a line per dropped message, 931 MB in five
    minutes; the agents aggregate those now (agents.runtime.eventlimit), and the cap bounds
    whatever else could run away.
    """

    def __init__(
        self, stream: TextIO, node: str, max_bytes: int | None = DEFAULT_MAX_BYTES
    ) -> None:
        self.stream = stream
        self.node = node
        self.max_bytes = max_bytes
        self.written = _size(stream)
        self.full = False
        self.dropped = 0

    @classmethod
    def open(cls, path: str, node: str, max_bytes: int | None = DEFAULT_MAX_BYTES) -> EventWriter:
        return cls(open(path, "a", buffering=1), node, max_bytes)

    def emit(self, event: str, t_ns: int | None = None, **fields: Any) -> None:
        record = {
            "t_ns": t_ns if t_ns is not None else time.monotonic_ns(),
            "node": self.node,
            "event": event,
            **fields,
        }
        self._write(json.dumps(record, default=str) + "\n")

    def record(self, record: dict[str, Any]) -> None:
        """Pass through a record that already has t_ns and event."""
        self._write(json.dumps({"node": self.node, **record}, default=str) + "\n")

    def _write(self, line: str) -> None:
        if self.full:
            self.dropped += 1
            return
        size = len(line.encode())
        if self.max_bytes is not None and self.written + size > self.max_bytes - _FINAL_RESERVE:
            self.full = True
            self.dropped += 1
            final = {
                "t_ns": time.monotonic_ns(),
                "node": self.node,
                "event": "event_file_full",
                "max_bytes": self.max_bytes,
                "written": self.written,
            }
            line = json.dumps(final) + "\n"
            size = len(line.encode())
        self.stream.write(line)
        self.written += size

    def close(self) -> None:
        self.stream.close()


def _size(stream: TextIO) -> int:
    """What a file opened for appending already holds (0 for a pipe or a terminal)."""
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


# --- reading ------------------------------------------------------------------------------
# Each process appends to its own file; a run's merged ``events.jsonl`` is all of them sorted
# by time. Readers tolerate what a killed writer leaves: a torn last line, a line that is not
# an event. Everything that reads events goes through these.

MERGED = "events.jsonl"  # a run directory's merged log
PER_PROCESS = "events"  # ... and the directory of per-process files it is merged from


def parse_lines(text: str) -> list[dict[str, Any]]:
    """The events in ``text``: JSON objects with a numeric ``t_ns`` (made an int) and an
    ``event``; anything else (a torn line from a killed process) is skipped."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or "event" not in record:
            continue
        t = record.get("t_ns")
        if isinstance(t, bool) or not isinstance(t, int | float):
            continue
        record["t_ns"] = int(t)
        out.append(record)
    return out


def read_file(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """One events file in its order ([] when it does not exist)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return []
    return parse_lines(text)


def read_files(paths: Iterable[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Several events files merged by time (stable: equal times keep file order)."""
    events = [e for path in paths for e in read_file(path)]
    events.sort(key=lambda e: e["t_ns"])
    return events


def per_process_files(run_dir: str | os.PathLike[str]) -> list[Path]:
    return sorted((Path(run_dir) / PER_PROCESS).glob("*.jsonl"))


def read_run(run_dir: str | os.PathLike[str], merged: str = MERGED) -> list[dict[str, Any]]:
    """A run's events by time: its merged log once written, its per-process files before."""
    path = Path(run_dir) / merged
    if path.exists():
        return read_files([path])
    return read_files(per_process_files(run_dir))


def write_merged(path: str | os.PathLike[str], events: Iterable[dict[str, Any]]) -> None:
    """Write ``events`` as one log, atomically (a reader sees the old file or the new)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as out:
        for record in events:
            out.write(json.dumps(record, default=str) + "\n")
    os.replace(tmp, path)


class Tail:
    """New complete events in a directory's ``*.jsonl`` files since the last ``poll``
    (files may appear later; a line still being written waits for its newline)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.offsets: dict[Path, int] = {}

    def poll(self) -> list[dict[str, Any]]:
        fresh: list[dict[str, Any]] = []
        for path in sorted(self.directory.glob("*.jsonl")):
            offset = self.offsets.get(path, 0)
            try:
                with path.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
            except OSError:
                continue
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self.offsets[path] = offset + len(complete)
            fresh += parse_lines(complete.decode(errors="replace"))
        return fresh
