"""Figures of one run: probe timeline per handoff, signalling ladder, topology picture.

All three take plain files/dicts and write a PNG; none raises on empty or partial data
(they draw "no data" instead), so a report can always be produced for a broken run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.results.figure import PALETTE, STREAM_COLOURS, never_raises, new_figure, no_data, save
from testbed.results.ladder import ladder
from testbed.results.rundata import (
    HandoffRef,
    fmt_num,
    handoff_title,
    load_events,
    load_probe,
    load_summary,
    resolve_handoff,
    stream_names,
)
from testbed.results.topology import topology_diagram

__all__ = ["handoff_title", "ladder", "probe_timeline", "topology_diagram"]

# Layout of the timeline in inches: fixed margins keep every figure the same width and
# make text placement computable before drawing (no layout engine, which is slow).
_WIDTH = 10.0
_LEFT, _RIGHT = 0.85, 0.3
_TITLE, _BOTTOM, _FOOT = 0.45, 0.55, 0.3
_PANEL, _PANEL_GAP = 1.9, 0.45
_LEVEL = 0.2  # height of one row of marker labels
_MAX_LEVELS = 6
_CHAR_IN = 0.068  # average width of a character at 8 pt


@dataclass(frozen=True)
class _Marker:
    x: float  # seconds from the move
    label: str
    colour: str
    style: str


def _markers(info: Mapping[str, Any]) -> list[_Marker]:
    markers = [_Marker(0.0, "move", "black", "-")]
    phases = info.get("phases_ms") or {}
    if isinstance(phases, Mapping):
        numeric = [
            (float(v), str(k))
            for k, v in phases.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        for i, (ms, name) in enumerate(sorted(numeric)):
            colour = PALETTE[i % len(PALETTE)]
            markers.append(_Marker(ms / 1000.0, f"{name} +{fmt_num(ms)} ms", colour, "--"))
    return markers


def _stagger(markers: list[_Marker], lo: float, hi: float, axes_in: float) -> list[int]:
    """A text row for each marker label so that labels on one row do not overlap."""
    per_in = (hi - lo) / axes_in
    ends: list[float] = []  # right end of the last label on each row, in data units
    levels = []
    for m in markers:
        width = (len(m.label) * _CHAR_IN + 0.1) * per_in
        start = m.x if m.x + width <= hi else m.x - width  # flip left at the right edge
        row = next((i for i, end in enumerate(ends) if end <= start), None)
        if row is None and len(ends) < _MAX_LEVELS:
            ends.append(0.0)
            row = len(ends) - 1
        elif row is None:
            row = min(range(len(ends)), key=ends.__getitem__)  # overlap the least
        ends[row] = start + width
        levels.append(row)
    return levels


@never_raises("probe timeline", out_arg=2)
def probe_timeline(
    run_dir: Path | str,
    handoff: int | Mapping[str, Any],
    out_png: Path | str,
    window_s: tuple[float, float] = (-0.5, 1.5),
) -> Path:
    """One-way delay of every received probe packet against its receive time around a move.

    One panel per stream. x is the receive time in seconds from the move (so the gap in
    the points is the interruption as the receiver saw it); vertical lines mark the move
    and each phase of ``phases_ms``; the shaded span runs from the last packet sent before
    the move to the first sent after it (hatched to the edge when it never recovered).
    """
    run_dir = Path(run_dir)
    summary = load_summary(run_dir)
    events = load_events(run_dir, summary)
    ref = resolve_handoff(summary, events, handoff)
    title = handoff_title(summary, ref)
    if ref.t_move_ns is None:
        return no_data(out_png, title, "no data: the move time of this handoff is unknown")
    names = stream_names(run_dir, summary)
    if not names:
        return no_data(out_png, title, "no data: no probe streams in this run")
    lo, hi = float(window_s[0]), float(window_s[1])
    if not hi > lo:
        lo, hi = -0.5, 1.5

    markers = _markers(ref.info)
    inside = [m for m in markers if lo <= m.x <= hi]
    outside = [m for m in markers if not lo <= m.x <= hi]
    axes_in = _WIDTH - _LEFT - _RIGHT
    levels = _stagger(inside, lo, hi, axes_in)
    band = (max(levels, default=0) + 1) * _LEVEL + 0.1
    foot = _FOOT if outside else 0.0
    height = _TITLE + band + len(names) * (_PANEL + _PANEL_GAP) + _BOTTOM + foot
    fig = new_figure(_WIDTH, height)

    def rect(top_in: float, h_in: float) -> tuple[float, float, float, float]:
        return (_LEFT / _WIDTH, 1 - (top_in + h_in) / height, axes_in / _WIDTH, h_in / height)

    fig.text(0.5, 1 - 0.25 / height, title, ha="center", va="center", fontsize=12, weight="bold")
    top = _TITLE
    label_ax = fig.add_axes(rect(top, band))
    label_ax.set_xlim(lo, hi)
    label_ax.set_ylim(0, max(levels, default=0) + 1.2)
    label_ax.set_axis_off()
    for m, level in zip(inside, levels, strict=True):
        y = level + 0.5
        label_ax.plot([m.x, m.x], [0, y], color=m.colour, ls=m.style, lw=0.8)
        flip = m.x + (len(m.label) * _CHAR_IN + 0.1) * (hi - lo) / axes_in > hi
        label_ax.text(
            m.x,
            y,
            f" {m.label} " if not flip else f"{m.label} ",
            ha="right" if flip else "left",
            va="center",
            fontsize=8,
            color=m.colour,
        )
    top += band

    summary_streams = summary.get("streams") or {}
    for i, name in enumerate(names):
        ax = fig.add_axes(rect(top + _PANEL_GAP, _PANEL), sharex=label_ax)
        top += _PANEL_GAP + _PANEL
        _stream_panel(ax, run_dir, name, summary_streams.get(name) or {}, ref, lo, hi, i)
        for m in inside:
            ax.axvline(m.x, color=m.colour, ls=m.style, lw=0.9, zorder=1)
        ax.set_xlim(lo, hi)
        if i < len(names) - 1:
            ax.tick_params(labelbottom=False)
    ax.set_xlabel("receive time (s from the move)", fontsize=9)
    if outside:
        text = "outside the window: " + ", ".join(m.label for m in outside)
        fig.text(_LEFT / _WIDTH, 0.12 / height, text, fontsize=8, color="#555555")
    return save(fig, out_png)


def _stream_panel(
    ax: Any,
    run_dir: Path,
    name: str,
    info: Mapping[str, Any],
    ref: HandoffRef,
    lo: float,
    hi: float,
    position: int,
) -> None:
    assert ref.t_move_ns is not None
    t0 = ref.t_move_ns
    colour = STREAM_COLOURS.get(name, PALETTE[(position + 2) % len(PALETTE)])
    ends = f" ({info.get('from')} → {info.get('to')})" if info.get("from") else ""
    key = f"interruption_{name}_ms"
    lost = ref.info.get(f"lost_{name}")
    ax.tick_params(labelsize=8)
    ax.set_ylabel("one-way delay (ms)", fontsize=9)
    ax.grid(True, axis="y", color="#dddddd", lw=0.6)
    probe = load_probe(run_dir, name)
    if probe is None or not len(probe):
        why = "no probe file" if probe is None else "no packet received in the whole run"
        ax.set_title(f"{name}{ends}", fontsize=10, loc="left")
        ax.text(0.5, 0.5, f"no data ({why})", transform=ax.transAxes, ha="center", color="#888")
        ax.set_yticks([])
        return

    xs, ys = [], []
    for t_send, t_recv in zip(probe.t_send, probe.t_recv, strict=True):
        x = (t_recv - t0) / 1e9
        if lo <= x <= hi:
            xs.append(x)
            ys.append((t_recv - t_send) / 1e6)
    last, first = probe.gap_around(t0, ref.t_next_ns)
    measured = (first - last) / 1e6 if last is not None and first is not None else None
    value = ref.info.get(key, measured)
    if last is not None:
        x0 = (last - t0) / 1e9
        if first is not None:
            ax.axvspan(x0, (first - t0) / 1e9, color="#d62728", alpha=0.13, lw=0, zorder=0)
        else:
            ax.axvspan(x0, hi, facecolor="none", edgecolor="#d62728", hatch="//", alpha=0.35)
            ax.text(
                min(max(x0, lo), hi),
                0.9,
                " not recovered",
                transform=ax.get_xaxis_transform(),
                fontsize=9,
                color="#d62728",
                va="top",
            )
    if value is not None:
        shown = f"interruption {fmt_num(value)} ms"
    elif key in ref.info or last is not None:
        shown = "never recovered"
    else:
        shown = "no interruption measured"
    lost_text = f", lost {fmt_num(lost)}" if lost is not None else ""
    ax.set_title(f"{name}{ends}: {shown}{lost_text}", fontsize=10, loc="left")
    if xs:
        ax.scatter(xs, ys, s=7, color=colour, lw=0, zorder=3)
        top = max(ys)
        ax.set_ylim(0, top * 1.15 if top > 0 else 1)
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
