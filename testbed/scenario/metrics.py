"""Handoff metrics from probe records and structured events (pure functions).

Interruption of a stream at a move: from the receive time of the last packet sent before
the move to the receive time of the first packet sent after it (None if none arrives
before the next move or the end). Packets lost: sequence numbers missing in between.
Phases: time from the move to the first occurrence of each phase event of the handoff.

This is the only definition of an outage in the code base: the summary records each
stream's bounds (``outage``: the last packet before, the first after) and the figures draw
those, so a picture and the number beside it cannot disagree.
"""

from __future__ import annotations

import csv
import json
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from testbed.scenario.catalogue import PHASE_EVENTS  # event -> phase, with the names


@dataclass
class Stream:
    name: str
    seq: list[int] = field(default_factory=list)
    t_send: list[int] = field(default_factory=list)
    t_recv: list[int] = field(default_factory=list)
    attempted: int = 0
    interval_ns: int = 2_000_000

    def __len__(self) -> int:
        return len(self.seq)

    def seq_at(self, t_ns: int) -> int:
        """The sequence number the sender was at, at time ``t_ns`` (constant interval)."""
        if not self.seq:
            return 0
        t0 = self.t_send[0] - self.seq[0] * self.interval_ns
        return max(0, math.ceil((t_ns - t0) / self.interval_ns))


def load_stream(directory: Path, name: str) -> Stream | None:
    """``DIR/NAME.csv`` as the probe wrote it (``seq,t_send_ns,t_recv_ns,...``): received
    packets by send time, duplicates once, a torn last line skipped; with ``NAME.sent.json``
    how many were sent and how often. None without the file. The one reader of probe files."""
    path = directory / f"{name}.csv"
    if not path.exists():
        return None
    stream = Stream(name)
    rows = []
    with path.open() as handle:
        for row in csv.DictReader(handle):
            try:
                rows.append((int(row["t_send_ns"]), int(row["seq"]), int(row["t_recv_ns"])))
            except (KeyError, TypeError, ValueError):
                continue  # a torn last line after a crash
    rows.sort()
    seen: set[int] = set()
    for t_send, seq, t_recv in rows:
        if seq in seen:
            continue  # duplicates (e.g. two bindings delivering) count once
        seen.add(seq)
        stream.seq.append(seq)
        stream.t_send.append(t_send)
        stream.t_recv.append(t_recv)
    sent = directory / f"{name}.sent.json"
    if sent.exists():
        info = json.loads(sent.read_text())
        stream.attempted = int(info.get("last_seq", -1)) + 1
        stream.interval_ns = int(float(info.get("interval_ms", 2.0)) * 1e6)
    else:
        stream.attempted = (max(stream.seq) + 1) if stream.seq else 0
    return stream


@dataclass
class Interruption:
    ms: float | None
    lost: int
    last_before_ns: int | None
    first_after_ns: int | None


def interruption(
    stream: Stream, t_move: int, t_next: int | None, t_attached: int | None = None
) -> Interruption:
    """The outage of ``stream`` at a move at ``t_move`` (until ``t_next``).

    Recovery is the first packet sent once the node is attached again (``t_attached``, the
    move's link-up; packets sent while the old link was still up in fact, on a slow switch,
    do not count as recovery); the outage starts at the last packet that arrived before
    re-attachment.
    """
    before = bisect_left(stream.t_send, t_move)
    end = len(stream.t_send) if t_next is None else bisect_left(stream.t_send, t_next)
    if before == 0:
        return Interruption(None, 0, None, None)
    boundary = t_move if t_attached is None else max(t_move, t_attached)
    start = min(bisect_left(stream.t_send, boundary), end)
    if start < end:
        first = min(range(start, end), key=lambda i: stream.t_recv[i])
        t_first = stream.t_recv[first]
        # what got through before the outage arrived before re-attachment; packets sent
        # during it and released from a queue (ARP) afterwards do not end the outage
        limit = t_first if t_attached is None else min(t_first, boundary)
        prior = [i for i in range(start) if stream.t_recv[i] < limit]
        last = max(prior, key=lambda i: stream.t_recv[i]) if prior else before - 1
        last_seq, first_seq = stream.seq[last], stream.seq[first]
        received = sum(1 for q in stream.seq if last_seq < q < first_seq)
        lost = max(0, first_seq - last_seq - 1 - received)
        return Interruption(
            (t_first - stream.t_recv[last]) / 1e6, lost, stream.t_recv[last], t_first
        )
    # never recovered in this window: everything the sender sent in it is lost
    last_before = max(stream.t_recv[:start]) if start else stream.t_recv[before - 1]
    last_seq = stream.seq[start - 1] if start else stream.seq[before - 1]
    upto = stream.attempted if t_next is None else min(stream.attempted, stream.seq_at(t_next))
    return Interruption(None, max(0, upto - last_seq - 1), last_before, None)


def outage_bounds(result: Interruption) -> dict[str, int | None]:
    """What a handoff records of a stream's outage, for the figures to draw."""
    return {"last_before_ns": result.last_before_ns, "first_after_ns": result.first_after_ns}


def load_tcp(path: Path) -> list[tuple[int, int]]:
    """The TCP probe's samples ``(t_ns, bytes delivered so far)`` in time order."""
    samples: list[tuple[int, int]] = []
    try:
        lines = path.read_text().splitlines()[1:]
    except OSError:
        return samples
    for line in lines:
        parts = line.split(",")
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            samples.append((int(parts[0]), int(parts[1])))
    samples.sort()
    return samples


def tcp_stall(
    samples: Sequence[tuple[int, int]], t_move: int, t_next: int | None
) -> dict[str, Any] | None:
    """The longest stretch without progress of the TCP connection that overlaps the move's
    window ``[t_move, t_next)``: from the last sample that showed progress to the next one
    (``to_ns`` None: it never progressed again before the window ended). None without
    samples in or before the window."""
    progress: list[int] = []
    previous = None
    for t_ns, total in samples:
        if previous is None or total > previous:
            progress.append(t_ns)
            previous = total
    if not progress or progress[0] >= (t_next if t_next is not None else 1 << 63):
        return None
    best: tuple[int, int | None] | None = None
    for i, start in enumerate(progress):
        end = progress[i + 1] if i + 1 < len(progress) else None
        if end is not None and end <= t_move:
            continue
        if t_next is not None and start >= t_next:
            break
        if end is None:
            last = samples[-1][0] if t_next is None else min(samples[-1][0], t_next)
            if last > start and (best is None or last - start > _span(best)):
                best = (start, None)
            break
        if best is None or end - start > _span(best):
            best = (start, end)
    if best is None:
        return None
    end_ns = best[1]
    stop = end_ns if end_ns is not None else (samples[-1][0] if t_next is None else t_next)
    return {
        "from_ns": best[0],
        "to_ns": end_ns,
        "ms": round((stop - best[0]) / 1e6, 1),
    }


def _span(best: tuple[int, int | None]) -> int:
    return (best[1] - best[0]) if best[1] is not None else 1 << 62


def lost_before(stream: Stream, t_ns: int) -> int:
    """Packets sent before ``t_ns`` that never arrived."""
    count = bisect_left(stream.t_send, t_ns)
    if count == 0:
        return 0
    return stream.seq[count - 1] + 1 - count


def percentile(values: Sequence[float], pct: float) -> float | None:
    data = sorted(v for v in values if v is not None)
    if not data:
        return None
    rank = (len(data) - 1) * pct / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return data[low] + (data[high] - data[low]) * (rank - low)


def stat(values: Sequence[float], name: str) -> float | None:
    """``p50``/``p95``/``p99``/``max`` of ``values`` (None: no values)."""
    if name == "max":
        return max(values, default=None)
    return percentile(values, float(name[1:]))


H = TypeVar("H")  # a handoff: as the runner writes it, or as a summary is read back


def per_move(handoffs: Iterable[H], index: Callable[[H], int]) -> list[list[H]]:
    """Every repetition's handoffs grouped per move of the timeline (by ``index``, in order):
    percentiles are taken over the repetitions of one move, never pooled over moves of
    different kinds (a return home and a move behind a NAT measure different things).
    ``index`` reads a handoff's: the runner groups the handoffs it is writing, the metric
    paths those of a summary read back."""
    moves: dict[int, list[H]] = {}
    for handoff in handoffs:
        moves.setdefault(index(handoff), []).append(handoff)
    return [moves[i] for i in sorted(moves)]


def move_percentiles(handoffs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary's ``percentiles``: per move, its kind and the interruption's p50, p95 and
    max over the repetitions (null while any repetition never recovered: an outage without
    end has no percentile)."""
    out = []
    for move in per_move(handoffs, lambda h: int(h.get("index", 0))):
        values = [h.get("interruption_ms") for h in move]
        known = None if any(v is None for v in values) else values
        out.append(
            {
                "handoff": move[0].get("index", 0),
                "from": move[0].get("from"),
                "to": move[0].get("to"),
                "interruption_ms": {
                    name: stat(known, name) if known else None for name in ("p50", "p95", "max")
                }
                | {"n": len(values)},
            }
        )
    return out


def owd_stats(stream: Stream) -> dict[str, float | None]:
    delays = [(r - s) / 1e6 for s, r in zip(stream.t_send, stream.t_recv, strict=True)]
    return {"p50": percentile(delays, 50), "p95": percentile(delays, 95)}


def phases(
    events: Iterable[dict[str, Any]],
    t_move: int,
    t_next: int | None,
    mobile: str,
    others: frozenset[str] | set[str] = frozenset(),
) -> dict[str, float]:
    """ms from the move to the first event of each phase within the handoff window (the
    events of ``others``, the other mobile nodes, and the runner's about them, are theirs)."""
    found: dict[str, float] = {}
    for event in events:
        t = event.get("t_ns", 0)
        if t < t_move or (t_next is not None and t >= t_next):
            continue
        if others and (event.get("node") in others or event.get("target") in others):
            continue
        name = event.get("phase") or PHASE_EVENTS.get(event.get("event", ""))
        if not name or name in found:
            continue
        if event.get("event") == "ike_updown" and not event.get("up", True):
            continue  # an SA going down establishes nothing
        if event.get("node") not in (mobile, "runner") and "phase" not in event:
            continue
        found[name] = round((t - t_move) / 1e6, 3)
    return found


def mode_at(
    events: Iterable[dict[str, Any]], t_move: int, t_next: int | None, mobile: str, default: str
) -> str:
    """The mobility mode the MN reported last in the window (``mode`` field of its events)."""
    mode = default
    for event in events:
        t = event.get("t_ns", 0)
        in_window = t >= t_move and (t_next is None or t < t_next)
        if in_window and event.get("node") == mobile and isinstance(event.get("mode"), str):
            mode = event["mode"]
    return mode


def tunnel_at(
    events: Iterable[dict[str, Any]], t_move: int, t_next: int | None, mobile: str
) -> str | None:
    """The encapsulation of the MN's accepted registration in the window (None: no tunnel)."""
    tunnel = None
    for event in events:
        t = event.get("t_ns", 0)
        in_window = t >= t_move and (t_next is None or t < t_next)
        if in_window and event.get("node") == mobile:
            if event.get("event") == "registration_accepted":
                tunnel = "udp" if event.get("udp") else "ipip"
            elif event.get("event") in ("returned_home", "deregistered"):
                tunnel = None
    return tunnel
