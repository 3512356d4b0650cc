"""Tolerant readers for a run directory (``results/<scenario>/<run-id>/``).

Every loader returns empty data instead of raising: a run that crashed half-way still has
to produce a report that says what is missing, so a torn line or an absent file is normal
input here, not an error.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mipbase import events as eventlog
from testbed.scenario.metrics import Stream, load_stream
from testbed.summary import SummaryError, read_summary

# Stream names in the order people expect them when a summary does not list any.
_STREAM_ORDER = ("down", "up")
LADDER_DEFAULT_SPAN_NS = 3_000_000_000


def load_summary(run_dir: Path | str) -> dict[str, Any]:
    """The run's summary, validated with every field present ({} without a readable one:
    a report of a run still going on, or killed, draws what it can)."""
    try:
        return read_summary(Path(run_dir) / "summary.json")
    except SummaryError:
        return {}


def load_events(run_dir: Path | str, summary: Mapping[str, Any] | None = None) -> list[dict]:
    """The run's merged events (the file its summary names) by ``t_ns``."""
    name = (summary or {}).get("events") or eventlog.MERGED
    return eventlog.read_files([Path(run_dir) / str(name)])


TCP_PROBE = "tcp"  # probes/tcp.csv: bytes delivered over time, not a packet stream


def outage(handoff: Mapping[str, Any], stream: str) -> tuple[int | None, int | None] | None:
    """The summary's own bounds of a stream's outage at a handoff: (receive time of the last
    packet before, of the first after; None: never recovered), or None when the summary
    does not record them (written before they were). The runner computes them
    (``testbed.scenario.metrics.interruption``, the one definition of an outage)."""
    bounds = (handoff.get("outage") or {}).get(stream)
    if not isinstance(bounds, Mapping):
        return None
    return _as_int(bounds.get("last_before_ns")), _as_int(bounds.get("first_after_ns"))


def load_probe(run_dir: Path | str, name: str) -> Stream | None:
    """The stream's received packets (``testbed.scenario.metrics.load_stream``), or None
    without a probe file.

    Cached on the file's identity and modification: a report draws one timeline per
    handoff, and re-parsing a minute of 2 ms probes for each would dominate its time.
    The result is shared, so callers must not modify it.
    """
    path = Path(run_dir) / "probes" / f"{name}.csv"
    try:
        stat = path.stat()
    except OSError:
        return None
    return _load_probe(str(path.parent), name, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _load_probe(directory: str, name: str, _mtime_ns: int, _size: int) -> Stream | None:
    return load_stream(Path(directory), name)


def stream_names(run_dir: Path | str, summary: Mapping[str, Any]) -> list[str]:
    """Streams named in the summary first (in its order), then any other probe files."""
    names = [str(n) for n in (summary.get("streams") or {}) if n != TCP_PROBE]
    probes = Path(run_dir) / "probes"
    extra = sorted(p.stem for p in probes.glob("*.csv")) if probes.is_dir() else []
    extra = [n for n in extra if n != TCP_PROBE]
    extra.sort(key=lambda n: (_STREAM_ORDER.index(n) if n in _STREAM_ORDER else 99, n))
    return names + [n for n in extra if n not in names]


def mobile_node(summary: Mapping[str, Any]) -> str:
    if isinstance(summary.get("mobile"), str):  # recorded since the summary says it
        return str(summary["mobile"])
    nodes = summary.get("signalling_nodes")
    if isinstance(nodes, list) and nodes:
        return str(nodes[0])
    streams = summary.get("streams") or {}
    for key, end in (("down", "to"), ("up", "from")):
        info = streams.get(key)
        if isinstance(info, Mapping) and info.get(end):
            return str(info[end])
    return str(summary.get("mobile") or "mn")


@dataclass(frozen=True)
class HandoffRef:
    """One handoff resolved against the events: its summary entry and time window."""

    info: dict[str, Any]
    index: int
    t_move_ns: int | None
    t_next_ns: int | None  # the next move, if any

    @property
    def label(self) -> str:
        run = self.info.get("run")
        return f"h{self.index}" + (f"-r{run}" if isinstance(run, int) and run > 0 else "")


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value)


def move_times(summary: Mapping[str, Any], events: list[dict]) -> list[int]:
    times = {
        t
        for t in (e["t_ns"] for e in events if e.get("event") == "move_start")
        if isinstance(t, int)
    }
    times.update(t for t in map(_as_int, summary.get("move_times_ns") or []) if t is not None)
    for h in summary.get("handoffs") or []:
        if isinstance(h, Mapping) and (t := _as_int(h.get("t_ns"))) is not None:
            times.add(t)
    return sorted(times)


def resolve_handoff(
    summary: Mapping[str, Any], events: list[dict], handoff: int | Mapping[str, Any]
) -> HandoffRef:
    """Accept a handoff index or a summary entry; find its move time and the next move."""
    handoffs = [h for h in summary.get("handoffs") or [] if isinstance(h, Mapping)]
    if isinstance(handoff, Mapping):
        info = dict(handoff)
    else:
        info = next((dict(h) for h in handoffs if h.get("index") == handoff), {"index": handoff})
    index = _as_int(info.get("index"))
    index = 0 if index is None else index
    t_move = _as_int(info.get("t_ns"))
    if t_move is None:
        starts = [e for e in events if e.get("event") == "move_start" and e.get("index") == index]
        if "run" in info:
            starts = [e for e in starts if e.get("run", info["run"]) == info["run"]] or starts
        if starts:
            t_move = starts[0]["t_ns"]
    if t_move is None:
        listed = summary.get("move_times_ns") or []
        if 0 <= index < len(listed):
            t_move = _as_int(listed[index])
    t_next = None
    if t_move is not None:
        t_next = next((t for t in move_times(summary, events) if t > t_move), None)
    return HandoffRef(info, index, t_move, t_next)


def handoff_title(summary: Mapping[str, Any], ref: HandoffRef) -> str:
    info = ref.info
    scenario = summary.get("scenario") or "run"
    move = f"{info.get('from', '?')} → {info.get('to', '?')}"
    mode = f" (mode {info['mode']})" if info.get("mode") else ""
    run = f", run {info['run']}" if isinstance(info.get("run"), int) and info["run"] > 0 else ""
    return f"{scenario}: handoff {ref.index}{run}, {move}{mode}"


def handoffs(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(h) for h in summary.get("handoffs") or [] if isinstance(h, Mapping)]


def stream_fields(handoff: Mapping[str, Any], streams: list[str]) -> list[str]:
    """Stream names with a per-stream interruption field, summary streams first."""
    found = [
        k[len("interruption_") : -len("_ms")]
        for k in handoff
        if k.startswith("interruption_") and k.endswith("_ms") and k != "interruption_ms"
    ]
    return [s for s in streams if s in found] + [s for s in found if s not in streams]


def fmt_num(value: Any, digits: int = 1) -> str:
    """Compact number text: no trailing zeros, ``-`` for missing, str() for anything else."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        text = f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:.0f}"
        return "0" if text in ("-0", "") else text
    return str(value)


def fmt_ms(value: Any, present: bool = True) -> str:
    """An interruption: a number, ``never`` when measured but not recovered, ``-`` if absent."""
    if value is None:
        return "never" if present else "-"
    return fmt_num(value)
