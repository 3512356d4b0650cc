"""Figures of one run: probe timeline per handoff, signalling ladder, topology picture.

All three take a run's files (and a handoff of its summary) and write a PNG; none raises
on empty or partial data (they draw "no data" instead), so a report can always be produced
for a broken run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from testbed.results.figure import (
    PALETTE,
    STREAM_COLOURS,
    NoData,
    never_raises,
    new_figure,
    save,
)
from testbed.results.ladder import ladder
from testbed.results.rundata import (
    TCP_PROBE,
    HandoffRef,
    fmt_num,
    handoff_title,
    load_events,
    load_probe,
    outage,
    resolve_handoff,
    stream_names,
    summary_or_empty,
)
from testbed.results.topology import topology_diagram
from testbed.scenario.metrics import load_tcp
from testbed.summary import Handoff, RunSummary, StreamSummary, TcpSummary

__all__ = ["handoff_title", "ladder", "probe_timeline", "topology_diagram"]

# Layout of the timeline in inches: fixed margins keep every figure the same width and
# make text placement computable before drawing (no layout engine, which is slow).
_WIDTH = 12.6
_LEFT, _RIGHT = 0.85, 3.0  # the key of the markers sits in the right margin
_KEY_X = 0.2  # from the plots' right edge to the key
_TITLE, _BOTTOM, _FOOT = 0.45, 0.55, 0.3
_PANEL, _PANEL_GAP = 1.9, 0.45
_LEVEL = 0.2  # height of one row of marker numbers
_KEY_LINE = 0.19  # height of one line of the key
_CHAR_IN = 0.068  # average width of a character at 8 pt
_OUTAGE = "#d62728"
_STALL = "#ff7f0e"


@dataclass(frozen=True)
class _Marker:
    x: float  # seconds from the move
    label: str
    colour: str
    style: str


def _markers(info: Handoff) -> list[_Marker]:
    markers = [_Marker(0.0, "move", "black", "-")]
    for i, (ms, name) in enumerate(sorted((v, k) for k, v in info.phases_ms.items())):
        colour = PALETTE[i % len(PALETTE)]
        markers.append(_Marker(ms / 1000.0, f"{name} +{fmt_num(ms)} ms", colour, "--"))
    return markers


def _badge_in(number: int) -> float:
    """Width of a marker's number badge in inches."""
    return len(str(number)) * _CHAR_IN + 0.14


def _stagger(xs_in: list[tuple[float, float]]) -> list[int]:
    """A row for each badge ``(centre, width)`` in inches so that no two on a row overlap;
    as many rows as it takes (a label never lands on another)."""
    ends: list[float] = []  # right end of the last badge on each row
    levels = []
    for centre, width in xs_in:
        start = centre - width / 2
        row = next((i for i, end in enumerate(ends) if end + 0.02 <= start), None)
        if row is None:
            ends.append(0.0)
            row = len(ends) - 1
        ends[row] = centre + width / 2
        levels.append(row)
    return levels


@never_raises("probe timeline", out_arg=2)
def probe_timeline(
    run_dir: Path | str,
    handoff: int | Handoff,
    out_png: Path | str,
    window_s: tuple[float, float] = (-0.5, 1.5),
) -> Path:
    """One-way delay of every received probe packet against its receive time around a move.

    One panel per stream, and one of the TCP connection's bytes delivered when the run had
    one. x is the receive time in seconds from the move (so the gap in the points is the
    interruption as the receiver saw it); vertical lines mark the move and each phase of
    ``phases_ms``, numbered, with the key beside the plots (no label can land on another).
    The shaded outage is the summary's own (``outage``: the last packet received before,
    the first after, both circled; hatched to the edge when it never recovered) with the
    summary's number on it; the TCP panel shades the summary's ``tcp_stall``.
    """
    return save(timeline_figure(run_dir, handoff, window_s), out_png)


def timeline_figure(
    run_dir: Path | str,
    handoff: int | Handoff,
    window_s: tuple[float, float] = (-0.5, 1.5),
) -> Figure:
    """The figure of :func:`probe_timeline`, not saved (raises NoData)."""
    run_dir = Path(run_dir)
    summary = summary_or_empty(run_dir)
    events = load_events(run_dir, summary)
    ref = resolve_handoff(summary, events, handoff)
    title = handoff_title(summary, ref)
    if ref.t_move_ns is None:
        raise NoData(title, "no data: the move time of this handoff is unknown")
    names = stream_names(run_dir, summary)
    tcp_file = run_dir / "probes" / f"{TCP_PROBE}.csv"
    infos: dict[str, StreamSummary | None] = {n: summary.streams.get(n) for n in names}
    files = {n: n for n in names}
    if ref.node is not None:
        # a crowd: this node's own streams (probes/NODE/NAME.csv), its own figures
        names = [n for n in names if (run_dir / "probes" / ref.node / f"{n}.csv").is_file()]
        files = {n: f"{ref.node}/{n}" for n in names}
        infos = {n: _node_stream(summary, ref.node, n) for n in names}
        tcp_file = run_dir / "probes" / ref.node / f"{TCP_PROBE}.csv"
        if not names:
            raise NoData(title, f"no data: no probe streams served {ref.node}")
    panels = names + ([TCP_PROBE] if tcp_file.is_file() else [])
    if not panels:
        raise NoData(title, "no data: no probe streams in this run")
    lo, hi = float(window_s[0]), float(window_s[1])
    if not hi > lo:
        lo, hi = -0.5, 1.5

    markers = _markers(ref.info)
    axes_in = _WIDTH - _LEFT - _RIGHT
    inside = [(i, m) for i, m in enumerate(markers, 1) if lo <= m.x <= hi]
    levels = _stagger([((m.x - lo) / (hi - lo) * axes_in, _badge_in(i)) for i, m in inside])
    band = (max(levels, default=0) + 1) * _LEVEL + 0.15
    key_h = (len(markers) + 1) * _KEY_LINE
    plots_h = band + len(panels) * (_PANEL + _PANEL_GAP)
    height = _TITLE + max(plots_h, key_h) + _BOTTOM
    fig = new_figure(_WIDTH, height)

    def rect(top_in: float, h_in: float) -> tuple[float, float, float, float]:
        return (_LEFT / _WIDTH, 1 - (top_in + h_in) / height, axes_in / _WIDTH, h_in / height)

    fig.text(0.5, 1 - 0.25 / height, title, ha="center", va="center", fontsize=12, weight="bold")
    top = _TITLE
    label_ax = fig.add_axes(rect(top, band))
    label_ax.set_xlim(lo, hi)
    label_ax.set_ylim(0, max(levels, default=0) + 1.1)
    label_ax.set_axis_off()
    for (number, m), level in zip(inside, levels, strict=True):
        y = level + 0.5
        label_ax.plot([m.x, m.x], [0, y], color=m.colour, ls=m.style, lw=0.8)
        label_ax.text(
            m.x,
            y,
            str(number),
            ha="center",
            va="center",
            fontsize=8,
            color=m.colour,
            weight="bold",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": m.colour, "lw": 0.8},
        )
    _key(fig, markers, lo, hi, (_WIDTH - _RIGHT + _KEY_X) / _WIDTH, 1 - _TITLE / height, height)
    top += band

    for i, name in enumerate(panels):
        ax = fig.add_axes(rect(top + _PANEL_GAP, _PANEL), sharex=label_ax)
        top += _PANEL_GAP + _PANEL
        if name == TCP_PROBE:
            _tcp_panel(ax, tcp_file, summary.tcp, ref, lo, hi)
        else:
            _stream_panel(ax, run_dir, name, infos.get(name), ref, lo, hi, i, files[name])
        for _, m in inside:
            ax.axvline(m.x, color=m.colour, ls=m.style, lw=0.9, zorder=1)
        ax.set_xlim(lo, hi)
        if i < len(panels) - 1:
            ax.tick_params(labelbottom=False)
    ax.set_xlabel("receive time (s from the move)", fontsize=9)
    return fig


def _node_stream(summary: RunSummary, node: str, name: str) -> StreamSummary | None:
    """One crowd node's stream as the panel's title names it: its ends (the pooled
    stream's correspondent, the node) and counts."""
    pooled = summary.streams.get(name)
    stats = summary.per_node.get(node) if summary.per_node else None
    own = stats.streams.get(name) if stats is not None else None
    if pooled is None and own is None:
        return None
    ends = {"from": node, "to": pooled.to} if name == "up" else {"to": node}
    if name != "up" and pooled is not None:
        ends["from"] = pooled.from_
    base = own.model_dump(by_alias=True) if own is not None else {}
    return StreamSummary.model_validate({**base, **ends})


def _key(
    fig: Any, markers: list[_Marker], lo: float, hi: float, x: float, y: float, height: float
) -> None:
    """The markers' numbers and names in time order, one per line, beside the plots."""
    fig.text(x, y, "ms from the move", fontsize=8, va="top", color="#555555", style="italic")
    for number, m in enumerate(markers, 1):
        y -= _KEY_LINE / height
        where = "" if lo <= m.x <= hi else "  (outside the window)"
        fig.text(
            x,
            y,
            f"{number:>2}  {m.label}{where}",
            fontsize=8,
            va="top",
            color=m.colour,
            family="monospace",
        )


def _stream_panel(
    ax: Any,
    run_dir: Path,
    name: str,
    info: StreamSummary | None,
    ref: HandoffRef,
    lo: float,
    hi: float,
    position: int,
    file: str | None = None,
) -> None:
    """``file``: the probe file's name under ``probes/`` (a crowd node's: ``NODE/NAME``)."""
    assert ref.t_move_ns is not None
    t0 = ref.t_move_ns
    colour = STREAM_COLOURS.get(name, PALETTE[(position + 2) % len(PALETTE)])
    ends = f" ({info.from_} → {info.to})" if info is not None and info.from_ else ""
    interruptions = ref.info.interruptions()
    lost = ref.info.lost(name)
    ax.tick_params(labelsize=8)
    ax.set_ylabel("one-way delay (ms)", fontsize=9)
    ax.grid(True, axis="y", color="#dddddd", lw=0.6)
    probe = load_probe(run_dir, file or name)
    if probe is None or not len(probe):
        why = "no probe file" if probe is None else "no packet received in the whole run"
        ax.set_title(f"{name}{ends}", fontsize=10, loc="left")
        ax.text(0.5, 0.5, f"no data ({why})", transform=ax.transAxes, ha="center", color="#888")
        ax.set_yticks([])
        return

    xs, ys, delay_at = [], [], {}
    for t_send, t_recv in zip(probe.t_send, probe.t_recv, strict=True):
        x = (t_recv - t0) / 1e9
        if lo <= x <= hi:
            xs.append(x)
            ys.append((t_recv - t_send) / 1e6)
            delay_at[t_recv] = ys[-1]
    value = interruptions.get(name)
    bounds = outage(ref.info, name)
    last, first = bounds if bounds is not None else (None, None)
    if value is not None:
        shown = f"interruption {fmt_num(value)} ms"
    elif name in interruptions:
        shown = "never recovered"
    else:
        shown = "no interruption measured"
    if bounds is None and name in interruptions:
        shown += " (its bounds are not in this summary: not drawn)"
    lost_text = f", lost {fmt_num(lost)}" if lost is not None else ""
    ax.set_title(f"{name}{ends}: {shown}{lost_text}", fontsize=10, loc="left")
    top = max(ys, default=0.0)
    ax.set_ylim(0, top * 1.4 if top > 0 else 1)
    if last is not None:
        x0 = (last - t0) / 1e9
        if first is not None:
            x1 = (first - t0) / 1e9
            ax.axvspan(x0, x1, color=_OUTAGE, alpha=0.13, lw=0, zorder=0)
            text = f"{fmt_num(value)} ms" if value is not None else shown
        else:
            x1 = hi
            ax.axvspan(x0, hi, facecolor="none", edgecolor=_OUTAGE, hatch="//", alpha=0.35)
            text = "not recovered"
        for t in (last, first):
            if t is not None and t in delay_at:
                ax.scatter(
                    [(t - t0) / 1e9],
                    [delay_at[t]],
                    s=46,
                    facecolors="none",
                    edgecolors=_OUTAGE,
                    lw=1.2,
                    zorder=4,
                )
        mid = (max(x0, lo) + min(x1, hi)) / 2
        ax.text(
            min(max(mid, lo), hi),
            0.95,
            text,
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=9,
            color=_OUTAGE,
            weight="bold",
            zorder=5,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": _OUTAGE, "lw": 0.6},
        )
    if xs:
        ax.scatter(xs, ys, s=7, color=colour, lw=0, zorder=3)
    else:
        ax.text(
            0.5,
            0.5,
            "no packet received in this window",
            transform=ax.transAxes,
            ha="center",
            color="#888",
        )
        ax.set_yticks([])


def _tcp_panel(
    ax: Any, path: Path, info: TcpSummary | None, ref: HandoffRef, lo: float, hi: float
) -> None:
    """Bytes the TCP connection delivered over time, and the summary's stall at this move."""
    assert ref.t_move_ns is not None
    t0 = ref.t_move_ns
    ax.tick_params(labelsize=8)
    ax.set_ylabel("delivered (kB)", fontsize=9)
    ax.grid(True, axis="y", color="#dddddd", lw=0.6)
    samples = load_tcp(path)
    xs = [(t - t0) / 1e9 for t, _ in samples]
    inside = [i for i, x in enumerate(xs) if lo <= x <= hi]
    stall = ref.info.tcp_stall
    total = info.bytes if info is not None else None
    whole = f", {total:,} bytes in the run" if total is not None else ""
    if not inside:
        ax.set_title(f"tcp: bytes delivered{whole}", fontsize=10, loc="left")
        why = "no samples" if not samples else "no sample in this window"
        ax.text(0.5, 0.5, f"no data ({why})", transform=ax.transAxes, ha="center", color="#888")
        ax.set_yticks([])
        return
    first, last = max(inside[0] - 1, 0), min(inside[-1] + 1, len(samples) - 1)
    px = [xs[i] for i in range(first, last + 1)]
    py = [samples[i][1] / 1000 for i in range(first, last + 1)]
    ax.step(px, py, where="post", color="#2ca02c", lw=1.4, zorder=3)
    ax.scatter(px, py, s=8, color="#2ca02c", lw=0, zorder=3)
    low, high = min(py), max(py)
    pad = (high - low) * 0.4 or 1.0
    ax.set_ylim(low - pad * 0.1, high + pad)
    if stall is not None and stall.from_ns is not None:
        x0 = (stall.from_ns - t0) / 1e9
        x1 = (stall.to_ns - t0) / 1e9 if stall.to_ns is not None else hi
        ax.axvspan(x0, x1, color=_STALL, alpha=0.15, lw=0, zorder=0)
        text = f"stall {fmt_num(stall.ms)} ms" + ("" if stall.to_ns else ", no resume")
        mid = (max(x0, lo) + min(x1, hi)) / 2
        ax.text(
            min(max(mid, lo), hi),
            0.95,
            text,
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=9,
            color="#b35900",
            weight="bold",
            zorder=5,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": _STALL, "lw": 0.6},
        )
        shown = f"stall {fmt_num(stall.ms)} ms"
    elif stall is None:
        shown = "no stall measured"
    else:
        shown = "stall not in this summary"
    ax.set_title(f"tcp: bytes delivered{whole}; {shown}", fontsize=10, loc="left")
