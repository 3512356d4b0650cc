"""Message sequence ("ladder") diagram of the signalling in one handoff window.

Time runs downward. By default the time axis is *compressed*: every distinct event time
gets its own row and idle stretches are shortened logarithmically, because a handoff mixes
sub-millisecond exchanges with second-long waits (DHCP, registration retries) and a linear
axis either hides the fast ones or overflows the page. The tick labels carry the exact
ms from the move; ``time_scale="linear"`` gives a true-to-scale axis instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from testbed.results.figure import PALETTE, never_raises, new_figure, no_data, save
from testbed.results.rundata import (
    LADDER_DEFAULT_SPAN_NS,
    handoff_title,
    load_events,
    load_summary,
    mobile_node,
    resolve_handoff,
)
from testbed.scenario.floor import match_messages

MAX_ITEMS = 60  # beyond this the picture stops being readable; the rest are counted
_ROW_IN = 0.27
_COL_IN = 2.0
_LEFT, _RIGHT, _TOP, _BOTTOM = 0.95, 0.3, 0.55, 0.55
_RUNNER = "runner"

# message label prefix -> protocol family (for colour only)
_FAMILIES = (
    ("DHCP", "DHCP"),
    ("IKE", "IKE"),
    ("UPDATE_SA", "IKE"),
    ("CREATE_CHILD", "IKE"),
    ("INFORMATIONAL", "IKE"),
    ("ESP", "IKE"),
    ("RR", "MIP"),
    ("AGENT", "MIP"),
    ("ADV", "MIP"),
    ("SOL", "MIP"),
)
_FAMILY_COLOURS = {"DHCP": "#1f77b4", "MIP": "#2ca02c", "IKE": "#9467bd"}


@dataclass(frozen=True)
class Arrow:
    src: str
    dst: str
    t_src: int
    t_dst: int
    label: str
    matched: bool  # False: only one end was logged, drawn flat at that end's time


@dataclass(frozen=True)
class Tick:
    node: str
    t: int
    label: str


@dataclass(frozen=True)
class Rule:
    """A runner event: a horizontal line across all lifelines."""

    t: int
    label: str


@dataclass
class Ladder:
    lifelines: list[str]
    arrows: list[Arrow]
    ticks: list[Tick]
    rules: list[Rule]
    dropped: int = 0


# runner events that are part of the handoff (the rest, step, wait_done, pause_skipped,
# service and probe starts, are how the runner keeps its books: not protocol rows)
_RUNNER_SHOWN = frozenset({"move_start", "link_down", "link_up", "nat_flush", "nat_rebind"})
# node events about the node's own plumbing, not the protocol
_BOOKKEEPING_PREFIXES = ("tcp_", "agent_started", "agent_stopped", "dataplane_", "tun_mtu")
_BOOKKEEPING = frozenset({"shutdown", "mn_started", "vpn_terminate_failed"})


def _bookkeeping(name: str) -> bool:
    return name in _BOOKKEEPING or name.startswith(_BOOKKEEPING_PREFIXES)


def _is_message(event: Mapping[str, Any]) -> bool:
    return bool(event.get("msg")) and bool(event.get("to") or event.get("from"))


def _direction(event: Mapping[str, Any]) -> str:
    d = event.get("dir")
    if d in ("tx", "rx"):
        return str(d)
    return "tx" if event.get("to") else "rx"


def _runner_label(event: Mapping[str, Any]) -> str:
    name = str(event.get("event", "?"))
    if name == "move_start":
        return f"move {event.get('from', '?')} → {event.get('to', '?')}"
    return name


def build_ladder(
    events: list[dict], t_move: int, t_end: int, mobile: str, order: list[str] | None = None
) -> Ladder:
    """The arrows, ticks and rules of the window ``[t_move, t_end)`` (pure; for tests)."""
    window = [e for e in events if t_move <= e["t_ns"] < t_end]
    tx: list[dict] = []
    rx: list[dict] = []
    ticks: list[Tick] = []
    rules: list[Rule] = []
    for e in window:
        node = str(e.get("node", "?"))
        if _is_message(e):
            (tx if _direction(e) == "tx" else rx).append(e)
        elif node == _RUNNER:
            if e.get("event") in _RUNNER_SHOWN:  # the rest is the runner's bookkeeping
                rules.append(Rule(e["t_ns"], _runner_label(e)))
        elif _bookkeeping(str(e.get("event", ""))):
            continue
        else:
            label = str(e.get("event", "?"))
            if e.get("msg"):
                label += f" {e['msg']}"
            ticks.append(Tick(node, e["t_ns"], label))
    if not any(r.t == t_move for r in rules):
        rules.insert(0, Rule(t_move, "move"))
    merged: dict[int, list[str]] = {}  # one line per instant: labels at one time would overprint
    for r in rules:
        merged.setdefault(r.t, []).append(r.label)
    rules = [Rule(t, ", ".join(labels)) for t, labels in merged.items()]

    arrows = _match(tx, rx)
    arrows.sort(key=lambda a: (a.t_src, a.t_dst))

    lifelines = _lifelines(mobile, order, arrows, ticks)
    shown = set(lifelines)
    ticks = [t for t in ticks if t.node in shown]

    # Keep the earliest items when there are too many: the start of a handoff matters most.
    items: list[tuple[int, Any]] = sorted(
        [(a.t_src, a) for a in arrows] + [(t.t, t) for t in ticks] + [(r.t, r) for r in rules],
        key=lambda p: p[0],
    )
    dropped = max(0, len(items) - MAX_ITEMS)
    keep = {id(obj) for _, obj in items[:MAX_ITEMS]}
    return Ladder(
        lifelines,
        [a for a in arrows if id(a) in keep],
        [t for t in ticks if id(t) in keep],
        [r for r in rules if id(r) in keep],
        dropped,
    )


def _match(tx: list[dict], rx: list[dict]) -> list[Arrow]:
    """Arrows of the messages, paired send-to-receive by content as the runner's floor
    pairs them (testbed.scenario.floor.match_messages: one pairing in the code base);
    a message with one end recorded is drawn flat at that end."""
    arrows = []
    for m in match_messages(sorted(tx + rx, key=lambda e: e["t_ns"])):
        t_src = m.t_send if m.t_send is not None else m.t_recv
        t_dst = m.t_recv if m.t_recv is not None else m.t_send
        matched = m.t_send is not None and m.t_recv is not None
        arrows.append(Arrow(m.src, m.dst, t_src, t_dst, m.msg, matched))  # type: ignore[arg-type]
    return arrows


def _lifelines(
    mobile: str, order: list[str] | None, arrows: list[Arrow], ticks: list[Tick]
) -> list[str]:
    """Mobile node first, then the given order, then by first appearance."""
    names: list[str] = [mobile]
    for name in order or []:
        if str(name) not in names:
            names.append(str(name))
    for a in arrows:
        for name in (a.src, a.dst):
            if name not in names:
                names.append(name)
    if not order:  # without an explicit list, any node that logged something is shown
        for t in ticks:
            if t.node not in names:
                names.append(t.node)
    # only nodes that took part: a listed node with no arrow and no mark in this window
    # would be an empty column
    active = {a.src for a in arrows} | {a.dst for a in arrows} | {t.node for t in ticks}
    kept = [n for n in names if n in active]
    return kept or names[:1]


def _rows(times: list[int], t_move: int, scale: str) -> dict[int, float]:
    """y position of each distinct time (units of one text row, or ms when linear)."""
    if scale == "linear":
        return {t: (t - t_move) / 1e6 for t in times}
    rows: dict[int, float] = {}
    y = 0.0
    prev = None
    for t in times:
        if prev is not None:
            dt_ms = (t - prev) / 1e6
            y += min(3.5, 1.0 + 0.8 * math.log10(1.0 + dt_ms)) if t != prev else 0.0
        rows[t] = y
        prev = t
    return rows


def _colour(label: str, seen: dict[str, str]) -> str:
    word = label.split()[0].upper() if label.split() else "?"
    family = next((f for prefix, f in _FAMILIES if word.startswith(prefix)), word)
    if family not in seen:
        seen[family] = _FAMILY_COLOURS.get(family, PALETTE[(len(seen) + 3) % len(PALETTE)])
    return seen[family]


@never_raises("ladder diagram", out_arg=2)
def ladder(
    run_dir: Path | str,
    handoff: int | Mapping[str, Any],
    out_png: Path | str,
    time_scale: Literal["compressed", "linear"] = "compressed",
) -> Path:
    """Signalling from this handoff's move to the next move (or +3 s when it is the last)."""
    run_dir = Path(run_dir)
    summary = load_summary(run_dir)
    events = load_events(run_dir, summary)
    ref = resolve_handoff(summary, events, handoff)
    title = handoff_title(summary, ref) + ": signalling"
    if ref.t_move_ns is None:
        return no_data(out_png, title, "no data: the move time of this handoff is unknown")
    t_move = ref.t_move_ns
    t_end = ref.t_next_ns if ref.t_next_ns is not None else t_move + LADDER_DEFAULT_SPAN_NS
    order = summary.get("signalling_nodes")
    order = [str(n) for n in order] if isinstance(order, list) else None
    lad = build_ladder(events, t_move, t_end, mobile_node(summary), order)
    if not lad.arrows and not lad.ticks:
        return no_data(out_png, title, "no data: no signalling events in this handoff window")
    return save(_draw(lad, t_move, title, time_scale), out_png)


def _draw(lad: Ladder, t_move: int, title: str, scale: str) -> Any:
    times = sorted(
        {t_move}
        | {a.t_src for a in lad.arrows}
        | {a.t_dst for a in lad.arrows}
        | {t.t for t in lad.ticks}
        | {r.t for r in lad.rules}
    )
    rows = _rows(times, t_move, scale)
    y_max = max(rows.values())
    n = len(lad.lifelines)
    col = {name: i for i, name in enumerate(lad.lifelines)}
    if scale == "linear":
        span_rows = 30.0
        unit = span_rows / max(y_max, 1e-9)  # text rows per ms
    else:
        span_rows = y_max
        unit = 1.0
    head = 1.6  # rows above time zero for the node names
    plot_h = (span_rows + head + 1.0) * _ROW_IN
    width = max(6.0, n * _COL_IN + 1.0) + _LEFT + _RIGHT
    height = plot_h + _TOP + _BOTTOM
    fig = new_figure(width, height)
    ax = fig.add_axes(
        (_LEFT / width, _BOTTOM / height, 1 - (_LEFT + _RIGHT) / width, plot_h / height)
    )
    y_lo, y_hi = -head / unit, y_max + 1.0 / unit
    ax.set_ylim(y_hi, y_lo)  # inverted: time runs down
    ax.set_xlim(-0.5, n - 0.5 + 0.6)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_xticks([])
    fig.text(0.5, 1 - 0.28 / height, title, ha="center", va="center", fontsize=12, weight="bold")

    for name, x in col.items():
        ax.plot([x, x], [-0.6 / unit, y_max + 0.6 / unit], color="#9a9a9a", lw=1.1, zorder=1)
        ax.text(
            x,
            -1.05 / unit,
            name,
            ha="center",
            va="center",
            fontsize=10.5,
            weight="bold",
            bbox={"boxstyle": "round,pad=0.3", "fc": "#f0f0f0", "ec": "#777777"},
        )
    for r in lad.rules:
        y = rows[r.t]
        ax.axhline(y, color="#b0b0b0", ls=":", lw=0.9, zorder=0)
        ax.text(n - 0.5 + 0.55, y, r.label, ha="right", va="bottom", fontsize=8, color="#707070")

    colours: dict[str, str] = {}
    for a in lad.arrows:
        colour = _colour(a.label, colours)
        x0, x1, y0, y1 = col[a.src], col[a.dst], rows[a.t_src], rows[a.t_dst]
        if a.src == a.dst:  # to itself (e.g. a loopback daemon): a tick is clearer
            ax.plot([x0 - 0.1, x0 + 0.1], [y0, y0], color=colour, lw=2)
            ax.text(x0 + 0.14, y0, a.label, fontsize=9, va="center", color=colour)
            continue
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops={
                "arrowstyle": "-|>",
                "color": colour,
                "lw": 1.4,
                "ls": "-" if a.matched else (0, (4, 2)),
                "shrinkA": 0,
                "shrinkB": 0,
                "mutation_scale": 12,
            },
            zorder=3,
        )
        flat = y0 == y1
        ax.text(
            (x0 + x1) / 2,
            (y0 + y1) / 2,
            a.label,
            ha="center",
            va="bottom" if flat else "center",
            fontsize=9,
            color=colour,
            zorder=4,
            bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85},
        )

    by_place: dict[tuple[str, int], list[str]] = {}
    for t in lad.ticks:
        by_place.setdefault((t.node, t.t), []).append(t.label)
    for (node, t), labels in by_place.items():
        x, y = col[node], rows[t]
        ax.plot([x - 0.07, x + 0.07], [y, y], color="#333333", lw=2.2, zorder=3)
        ax.text(
            x + 0.1,
            y,
            ", ".join(labels),
            fontsize=8,
            style="italic",
            color="#333333",
            va="center",
            zorder=4,
        )

    if scale == "linear":
        ax.set_ylabel("ms from the move", fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
    else:
        ax.set_yticks([rows[t] for t in times])
        ax.set_yticklabels([f"{(t - t_move) / 1e6:+.1f}" for t in times], fontsize=7.5)
        ax.set_ylabel("ms from the move (idle gaps compressed)", fontsize=9)
    notes = "dashed arrow: only one end logged"
    if lad.dropped:
        notes += f"; {lad.dropped} later events not shown"
    fig.text(_LEFT / width, 0.18 / height, notes, fontsize=8, color="#666666")
    return fig
