"""Tolerant readers for a run directory (``results/<scenario>/<run-id>/``).

Every loader returns empty data instead of raising: a run that crashed half-way still has
to produce a report that says what is missing, so a torn line or an absent file is normal
input here, not an error.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mipbase import events as eventlog
from testbed.scenario.metrics import Stream, load_stream
from testbed.summary import Handoff, RunSummary, SummaryError, read_summary

# Stream names in the order people expect them when a summary does not list any.
_STREAM_ORDER = ("down", "up")
LADDER_DEFAULT_SPAN_NS = 3_000_000_000


def load_summary(run_dir: Path | str) -> RunSummary | None:
    """The run's summary (None without a readable one: a run still going on, or killed)."""
    try:
        return read_summary(Path(run_dir) / "summary.json")
    except SummaryError:
        return None


def summary_or_empty(run_dir: Path | str) -> RunSummary:
    """The run's summary, or an empty one (no scenario name, nothing measured) when it has
    no readable one: a picture of a run still going on, or killed, draws what it can."""
    return load_summary(run_dir) or RunSummary(scenario="")


def load_events(run_dir: Path | str, summary: RunSummary | None = None) -> list[dict]:
    """The run's merged events (the file its summary names) by ``t_ns``."""
    name = summary.events if summary is not None else eventlog.MERGED
    return eventlog.read_files([Path(run_dir) / name])


TCP_PROBE = "tcp"  # probes/tcp.csv: bytes delivered over time, not a packet stream


def outage(handoff: Handoff, stream: str) -> tuple[int | None, int | None] | None:
    """The summary's own bounds of a stream's outage at a handoff: (receive time of the last
    packet before, of the first after; None: never recovered), or None when the summary
    does not record them (written before they were). The runner computes them
    (``testbed.scenario.metrics.interruption``, the one definition of an outage)."""
    bounds = handoff.outage.get(stream)
    if bounds is None:
        return None
    return bounds.last_before_ns, bounds.first_after_ns


def load_probe(run_dir: Path | str, name: str) -> Stream | None:
    """The stream's received packets (``testbed.scenario.metrics.load_stream``), or None
    without a probe file (``name``: ``probes/NAME.csv``; a crowd node's ``NODE/NAME``).

    Cached on the file's identity and modification: a report draws one timeline per
    handoff, and re-parsing a minute of 2 ms probes for each would dominate its time.
    The result is shared, so callers must not modify it.
    """
    path = Path(run_dir) / "probes" / f"{name}.csv"
    try:
        stat = path.stat()
    except OSError:
        return None
    # a crowd node's stream is NODE/NAME: its directory is the node's
    return _load_probe(str(path.parent), Path(name).name, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _load_probe(directory: str, name: str, _mtime_ns: int, _size: int) -> Stream | None:
    return load_stream(Path(directory), name)


def stream_names(run_dir: Path | str, summary: RunSummary) -> list[str]:
    """Streams named in the summary first (in its order), then any other probe files."""
    names = [n for n in summary.streams if n != TCP_PROBE]
    probes = Path(run_dir) / "probes"
    extra = sorted(p.stem for p in probes.glob("*.csv")) if probes.is_dir() else []
    extra = [n for n in extra if n != TCP_PROBE]
    extra.sort(key=lambda n: (_STREAM_ORDER.index(n) if n in _STREAM_ORDER else 99, n))
    return names + [n for n in extra if n not in names]


@dataclass(frozen=True)
class HandoffRef:
    """One handoff resolved against the events: its summary entry and time window."""

    info: Handoff
    t_move_ns: int | None
    t_next_ns: int | None  # the next move, if any (of this node, when several move)
    # several mobile nodes (issue 19): the node that moved, whose pictures these are
    node: str | None = None

    @property
    def index(self) -> int:
        return self.info.index

    @property
    def label(self) -> str:
        # a crowd's indexes are per node (mn01's and mn02's first move are both 0): the
        # node keeps their figures' file names apart
        node = f"{self.node}-" if self.node else ""
        return f"{node}h{self.index}" + (f"-r{self.info.run}" if self.info.run > 0 else "")


def move_times(summary: RunSummary, events: list[dict]) -> list[int]:
    times = {
        t
        for t in (e["t_ns"] for e in events if e.get("event") == "move_start")
        if isinstance(t, int)
    }
    times.update(summary.move_times_ns)
    times.update(h.t_ns for h in summary.handoffs if h.t_ns is not None)
    return sorted(times)


def crowd_node(summary: RunSummary, handoff: Handoff) -> str | None:
    """The node a handoff's pictures are about when several mobile nodes move (None with
    one: its pictures are drawn as they always were)."""
    return handoff.node if summary.mobiles and handoff.node else None


def resolve_handoff(summary: RunSummary, events: list[dict], handoff: int | Handoff) -> HandoffRef:
    """Accept a handoff index or a summary entry; find its move time and the next move.
    An index the summary has no entry for (a run without a summary) is found in the
    events, or in the summary's move times. With several mobile nodes the window is the
    handoff's node's own: up to that node's next move (the others' moves, moments apart
    when a group moves together, would cut it short)."""
    if isinstance(handoff, Handoff):
        info = handoff
    else:
        info = next((h for h in summary.handoffs if h.index == handoff), Handoff(index=handoff))
    node = crowd_node(summary, info)
    t_move = info.t_ns
    if t_move is None:
        starts = [
            e
            for e in events
            if e.get("event") == "move_start"
            and e.get("index") == info.index
            and (node is None or e.get("target") == node)
        ]
        starts = [e for e in starts if e.get("run", info.run) == info.run] or starts
        if starts:
            t_move = starts[0]["t_ns"]
    if t_move is None and 0 <= info.index < len(summary.move_times_ns):
        t_move = summary.move_times_ns[info.index]
    t_next = None
    if t_move is not None:
        times = (
            move_times(summary, events) if node is None else node_move_times(summary, events, node)
        )
        t_next = next((t for t in times if t > t_move), None)
    return HandoffRef(info, t_move, t_next, node)


def node_move_times(summary: RunSummary, events: list[dict], node: str) -> list[int]:
    """The moves of one of several mobile nodes (its handoffs', the runner's events for it)."""
    times = {
        e["t_ns"]
        for e in events
        if e.get("event") == "move_start" and e.get("target") == node and isinstance(e["t_ns"], int)
    }
    times.update(h.t_ns for h in summary.handoffs if h.node == node and h.t_ns is not None)
    return sorted(times)


def handoff_title(summary: RunSummary, ref: HandoffRef) -> str:
    info = ref.info
    mode = f" (mode {info.mode})" if info.mode else ""
    run = f", run {info.run}" if info.run > 0 else ""
    who = f"{ref.node} " if ref.node else ""
    return f"{summary.scenario or 'run'}: {who}handoff {ref.index}{run}, {move_text(info)}{mode}"


def or_unknown(value: str | None) -> str:
    """A node or network the summary does not name (a handoff known only from the
    events, a stream recorded without its ends): ``?``."""
    return "?" if value is None else value


def move_text(handoff: Handoff) -> str:
    """``from → to`` of a handoff, for titles and tables."""
    return f"{or_unknown(handoff.from_)} → {or_unknown(handoff.to)}"


def stream_fields(handoff: Handoff, streams: list[str]) -> list[str]:
    """Stream names with a per-stream interruption field, summary streams first."""
    found = list(handoff.interruptions())
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
