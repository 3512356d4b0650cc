"""Message sequence ("ladder") diagram of the signalling in one handoff window.

One column per node that took part (its role under its name), time going down. Every
protocol message the agents, charon and DHCP record is one arrow from the sender's send
time to the receiver's receive time, paired by content (``testbed.scenario.floor``, the
floor's pairing); the addresses it was sent to and seen from are noted on it (a peer
seen through a NAT or by a tunnel inner address is still its node's column). A message
an ICMP error answered is drawn to the router that stopped it, ending in ×, with the
error drawn back; a request an agent refused ends in × where it arrived. Decisions
(boundary test and decision, movement detected, mode chosen) are labelled diamonds, other
events ticks, the runner's moves and link changes rules across the page.

Layout: the page width is fixed (:data:`PAGE_WIDTH_IN`); rows are laid out top to bottom
in time order, each label in a band of its own that nothing else's band enters, so no two
labels can overlap whatever their widths (they are measured with the font before placing);
an arrowhead never lands in a label's band. Time runs down with idle stretches
compressed: a gap longer than :data:`IDLE_NS` is drawn as a fixed band marked with its
length. ``time_scale="linear"`` spaces rows by time instead (still never overlapping).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

from testbed.results.figure import DPI, PALETTE, NoData, never_raises, new_figure, save
from testbed.results.rundata import (
    LADDER_DEFAULT_SPAN_NS,
    handoff_title,
    load_events,
    resolve_handoff,
    summary_or_empty,
)
from testbed.scenario.floor import Message, is_message, match_messages, mobile_addresses, whose
from testbed.summary import Handoff

MAX_ITEMS = 60  # beyond this the picture stops being readable; the rest are counted
PAGE_WIDTH_IN = 7.0  # one page's text width (A4 and Letter, with margins)
IDLE_NS = 25_000_000  # a quiet stretch longer than this is compressed and marked
MERGE_NS = 1_000_000  # marks of one kind at one node this close are one label
REPEAT_NS = 100_000_000  # unanswered copies of a message this close are one arrow, counted
_RUNNER = "runner"

_LEFT = 0.8  # time labels
_RIGHT = 0.08
_ARROW_PT, _MARK_PT, _HEAD_PT, _ROLE_PT, _TIME_PT = 7.5, 7.0, 9.0, 6.5, 6.5
_PAD = 0.03  # between bands, inches
_TOP = 0.42  # the title
_BOTTOM = 0.32  # the legend

# message label prefix -> protocol family (for colour only)
_FAMILIES = (
    ("DHCP", "DHCP"),
    ("IKE", "IKE"),
    ("UPDATE_SA", "IKE"),
    ("CREATE_CHILD", "IKE"),
    ("INFORMATIONAL", "IKE"),
    ("ESP", "IKE"),
    ("ICMP", "ICMP"),
    ("RR", "MIP"),
    ("AGENT", "MIP"),
    ("ADV", "MIP"),
    ("SOL", "MIP"),
)
_FAMILY_COLOURS = {"DHCP": "#1f77b4", "MIP": "#2ca02c", "IKE": "#9467bd", "ICMP": "#d62728"}
_DECISION_COLOUR = "#c15c00"
_PROBLEM_COLOUR = "#c0392b"
_EVENT_COLOUR = "#444444"
_MARK_COLOURS = {"decision": _DECISION_COLOUR, "problem": _PROBLEM_COLOUR}


@dataclass(frozen=True)
class Arrow:
    src: str
    dst: str
    t_src: int
    t_dst: int
    label: str
    matched: bool  # False: only one end was recorded, drawn flat at that end's time
    note: str = ""  # the addresses as recorded: "to 10.1.0.1, from 10.10.0.1"
    stopped: bool = False  # lost: drawn to the node that stopped it (dst), ending in ×
    refused: bool = False  # refused where it arrived: ends in ×
    icmp: bool = False  # the ICMP error answering a stopped message, drawn back
    count: int = 1  # unanswered copies drawn as this one arrow


@dataclass(frozen=True)
class Tick:
    """A mark on one node's lifeline: a ``decision`` (diamond), a ``problem`` (×) or
    another ``event`` (tick)."""

    node: str
    t: int
    label: str
    kind: str = "event"


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
    # message ends recorded in the window that are other mobile nodes' (a crowd): not drawn
    theirs: int = 0


# runner events that are part of the handoff (the rest, step, wait_done, pause_skipped,
# service and probe starts, are how the runner keeps its books: not protocol rows)
_RUNNER_SHOWN = frozenset({"move_start", "link_down", "link_up", "nat_flush", "nat_rebind"})
# node events about the node's own plumbing, not the protocol
_BOOKKEEPING_PREFIXES = ("tcp_", "agent_started", "agent_stopped", "dataplane_", "tun_mtu")
_BOOKKEEPING = frozenset(
    {"shutdown", "mn_started", "vpn_terminate_failed", "events_suppressed", "event_file_full"}
)
_PROBLEMS = frozenset(
    {
        "send_failed",
        "message_dropped",
        "registration_failed",
        "vpn_initiate_failed",
        "vpn_path_dead",
        "vpn_tunnel_lost",
        "agent_error",
        "dhcp_request_timeout",
        "dhcp_send_failed",
        "proxy_upstream_timeout",
    }
)


def _on_off(value: Any, yes: str, no: str) -> str:
    return yes if value else no


def _decision(e: Mapping[str, Any]) -> str | None:
    """The label of a decision event, None when ``e`` is not one."""
    name = e.get("event")
    if name == "boundary_decision":
        if e.get("inside"):
            return "decision: inside"
        return "decision: outside" + (f", mode {e['mode']}" if e.get("mode") else "")
    if name == "boundary_probe":
        return "boundary test: direct RRQ and the VPN gateway at once"
    if name == "home_agent_unreachable":
        return "HA unreachable directly: outside"
    if name == "home_agent_probe":
        return "HA probe " + _on_off(
            e.get("answered", e.get("reachable")), "answered", "unanswered"
        )
    if name == "movement_detected":
        why = e.get("reason") or e.get("trigger") or "?"
        if e.get("to"):
            return f"mode {e.get('from') or '-'} → {e['to']} ({why})"
        return f"movement detected ({why})"
    if name == "returned_home":
        return "at home"
    if name == "tia_changed":
        return "new tunnel inner address" + (f" {e['tia']}" if e.get("tia") else "")
    if name == "external_registration":
        return "external HA accepted"
    return None


def _bookkeeping(name: str) -> bool:
    return name in _BOOKKEEPING or name.startswith(_BOOKKEEPING_PREFIXES)


def _runner_label(event: Mapping[str, Any]) -> str:
    name = str(event.get("event", "?"))
    if name == "move_start":
        return f"move {event.get('from', '?')} → {event.get('to', '?')}"
    return name


def build_ladder(
    events: list[dict],
    t_move: int,
    t_end: int,
    mobile: str,
    order: list[str] | None = None,
    others: Collection[str] = (),
) -> Ladder:
    """The arrows, marks and rules of the window ``[t_move, t_end)`` (pure; for tests).

    ``others``: the other mobile nodes of a crowd, whose signalling in the same window is
    theirs, not this handoff's (:func:`own_events`); none, and every event is drawn."""
    window = [_one_column(e) for e in events if t_move <= e["t_ns"] < t_end]
    mine: set[int] | None = None  # with others: ids of the events known to be mobile's
    if others:
        window, mine = own_events(window, mobile, others, mobile_addresses(events, mobile, others))
    messages: list[dict] = []
    marks: list[Tick] = []
    rules: list[Rule] = []
    for e in window:
        node = str(e.get("node", "?"))
        name = str(e.get("event", ""))
        if is_message(e):
            messages.append(e)
        elif node == _RUNNER:
            if name in _RUNNER_SHOWN:  # the rest is the runner's bookkeeping
                rules.append(Rule(e["t_ns"], _runner_label(e)))
        elif _bookkeeping(name):
            continue
        elif mine is not None and id(e) not in mine and name not in _PROBLEMS:
            continue  # an agent's event about nobody known: a crowd's, not this node's
        else:
            part = f"[{node}.{e['_part']}] " if e.get("_part") else ""
            if (label := _decision(e)) is not None:
                marks.append(Tick(node, e["t_ns"], part + label, "decision"))
                continue
            label = part + str(e.get("msg") or name)  # a message to no known peer: its name
            if name in _PROBLEMS and (why := e.get("reason") or e.get("error")):
                label += f": {why}"
            kind = "problem" if name in _PROBLEMS else "event"
            marks.append(Tick(node, e["t_ns"], label, kind))
    if not any(r.t == t_move for r in rules):
        rules.insert(0, Rule(t_move, "move"))
    merged: dict[int, list[str]] = {}  # one line per instant: labels at one time would overprint
    for r in rules:
        merged.setdefault(r.t, []).append(r.label)
    rules = [Rule(t, ", ".join(labels)) for t, labels in merged.items()]

    paired = match_messages(messages)
    theirs = 0
    if mine is not None:
        # an agent's message naming no mobile node (the gateway's IKE behind a NAT): shown
        # when it pairs with one of this node's own
        paired = [m for m in paired if id(m.send_event) in mine or id(m.recv_event) in mine]
        kept = sum((m.send_event is not None) + (m.recv_event is not None) for m in paired)
        theirs = sum(1 for e in events if t_move <= e["t_ns"] < t_end and is_message(e)) - kept
    arrows = arrows_of(paired)
    arrows.sort(key=lambda a: (a.t_src, a.t_dst))
    arrows = _merge_repeats(arrows)

    lifelines = _lifelines(mobile, order, arrows, marks)
    shown = set(lifelines)
    ticks = _merge_marks([t for t in marks if t.node in shown])

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
        theirs,
    )


def own_events(
    window: list[dict], mobile: str, others: Collection[str], held: Mapping[str, str]
) -> tuple[list[dict], set[int]]:
    """A crowd handoff's events: ``window`` without the other mobile nodes' (theirs, the
    runner's about them, the agents' about them), and the ids of those known to be
    ``mobile``'s; the rest (no node known) the caller keeps only where they pair."""
    mobiles = {mobile, *others}
    kept: list[dict] = []
    mine: set[int] = set()
    for e in window:
        who = whose(e, mobiles, held)
        if who is None:
            kept.append(e)
        elif who == mobile:
            kept.append(e)
            mine.add(id(e))
    return kept, mine


def _one_column(event: dict) -> dict:
    """A process of a node recorded as ``node.part`` (the dual-MIP MN's external
    registration, ``mn.x``) is drawn in its node's column, its marks prefixed."""
    keys = ("node", "to_node", "from_node")
    if not any(isinstance(event.get(k), str) and "." in event[k] for k in keys):
        return event
    out = dict(event)
    for key in keys:
        if isinstance(out.get(key), str) and "." in out[key]:
            out[key], part = out[key].split(".", 1)
            if key == "node":
                out["_part"] = part
    return out


def _merge_repeats(arrows: list[Arrow]) -> list[Arrow]:
    """Unanswered copies of one message (same ends and label, each within
    :data:`REPEAT_NS` of the one before) as one arrow, counted."""
    out: list[Arrow] = []
    count: dict[int, int] = {}
    last: dict[int, int] = {}
    for a in arrows:
        prev = out[-1] if out else None
        if (
            prev is not None
            and not a.matched
            and not prev.matched
            and (prev.src, prev.dst, prev.label) == (a.src, a.dst, a.label)
            and a.t_src - last[len(out) - 1] <= REPEAT_NS
        ):
            count[len(out) - 1] += 1
            last[len(out) - 1] = a.t_src
            continue
        out.append(a)
        count[len(out) - 1] = 1
        last[len(out) - 1] = a.t_src
    return [a if count[i] == 1 else replace(a, count=count[i]) for i, a in enumerate(out)]


def _merge_marks(marks: list[Tick]) -> list[Tick]:
    """Marks of one kind at one node within :data:`MERGE_NS` of the first: one label."""
    out: list[Tick] = []
    for m in sorted(marks, key=lambda t: t.t):
        into = next(
            (
                i
                for i in range(len(out) - 1, -1, -1)
                if m.t - out[i].t <= MERGE_NS and (out[i].node, out[i].kind) == (m.node, m.kind)
            ),
            None,
        )
        if into is None:
            out.append(m)
        elif m.label not in out[into].label.split(", "):
            prev = out[into]
            out[into] = Tick(prev.node, prev.t, f"{prev.label}, {m.label}", prev.kind)
    return out


def _note(m: Message) -> str:
    """The addresses the message was sent to and seen from, as the two ends recorded them."""
    sent, got = m.send_event or {}, m.recv_event or {}
    parts = []
    if sent.get("to_address"):
        parts.append(f"to {sent['to_address']}")
    if got.get("from_address") and not m.msg.startswith("ICMP"):
        via = {"nat": " (NAT)", "alias": ""}.get(str(got.get("from_via")), "")
        if not parts or got.get("from_via"):
            parts.append(f"from {got['from_address']}{via}")
    return ", ".join(parts)


def _label(m: Message) -> str:
    event = m.send_event or m.recv_event or {}
    label = m.msg
    kind = event.get("kind")
    if event.get("event") == "ike_message" and kind in ("request", "response"):
        label += f" {kind}"
    got = m.recv_event or {}
    if got.get("event") == "registration_denied":
        label += f" denied {got.get('code', '?')}" if "by" in got else " refused"
        if "by" not in got:
            label += f" {got.get('code', '?')}" + (
                f" ({got['reason']})" if got.get("reason") else ""
            )
    elif m.msg == "ICMP unreachable" and got.get("code") in _UNREACHABLE:
        label = f"ICMP {_UNREACHABLE[got['code']]} unreachable"
    elif m.msg.startswith("ICMP") and got.get("code") is not None:
        label += f" (code {got['code']})"
    return label


_UNREACHABLE = {
    0: "net",
    1: "host",
    2: "protocol",
    3: "port",
    9: "net prohibited",
    10: "host prohibited",
    13: "prohibited",
}


def arrows_of(messages: list[Message]) -> list[Arrow]:
    """Arrows of the paired messages: a stopped one to where it stopped, with the ICMP
    error that said so drawn back from there; a message with one end recorded flat."""
    stopped = {id(m): m for m in messages if m.stopped_at is not None}
    answered: dict[int, Message] = {}  # ICMP message id -> the message it answered
    for m in stopped.values():
        icmp = _answer(m, messages)
        if icmp is not None:
            answered[id(icmp)] = m
    arrows = []
    for m in messages:
        note = _note(m)
        if m.stopped_at is not None and m.t_send is not None:
            icmp = next((i for i, s in answered.items() if s is m), None)
            answer = next((x for x in messages if id(x) == icmp), None)
            t_stop = (m.t_send + answer.t_recv) // 2 if answer and answer.t_recv else m.t_send
            note = f"{note}, stopped at {m.stopped_at}" if note else f"stopped at {m.stopped_at}"
            arrows.append(
                Arrow(m.src, m.stopped_at, m.t_send, t_stop, _label(m), True, note, stopped=True)
            )
            continue
        if id(m) in answered and m.t_recv is not None:
            lost = answered[id(m)]
            t_stop = (lost.t_send + m.t_recv) // 2  # type: ignore[operator]
            reporter = (m.recv_event or {}).get("from_address", "")
            note = f"from {reporter}" if reporter else ""
            arrows.append(Arrow(m.src, m.dst, t_stop, m.t_recv, _label(m), True, note, icmp=True))
            continue
        t_src = m.t_send if m.t_send is not None else m.t_recv
        t_dst = m.t_recv if m.t_recv is not None else m.t_send
        matched = m.t_send is not None and m.t_recv is not None
        refused = (m.recv_event or {}).get("event") == "registration_denied" and "by" not in (
            m.recv_event or {}
        )
        arrows.append(
            Arrow(m.src, m.dst, t_src, t_dst, _label(m), matched, note, refused=refused)  # type: ignore[arg-type]
        )
    return arrows


def _answer(lost: Message, messages: list[Message]) -> Message | None:
    """The ICMP error (received by the sender of ``lost``, from the node it stopped at)
    that answered ``lost``: the first after it."""
    candidates = [
        m
        for m in messages
        if m.msg.startswith("ICMP")
        and m.dst == lost.src
        and m.src == lost.stopped_at
        and m.t_recv is not None
        and m.t_recv >= (lost.t_send or 0)
        and (m.recv_event or {}).get("dst")
        in ((lost.send_event or {}).get("to_address"), (lost.send_event or {}).get("to"))
    ]
    return min(candidates, key=lambda m: m.t_recv or 0) if candidates else None


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


def _colour(label: str, seen: dict[str, str]) -> str:
    word = label.split()[0].upper() if label.split() else "?"
    family = next((f for prefix, f in _FAMILIES if word.startswith(prefix)), word)
    if family not in seen:
        seen[family] = _FAMILY_COLOURS.get(family, PALETTE[(len(seen) + 3) % len(PALETTE)])
    return seen[family]


# -- node roles (the column headers) -------------------------------------------------------

_AGENT_ROLES = {
    "ha": "home agent",
    "fa": "foreign agent",
    "mn": "mobile node",
    "proxy": "MIP proxy",
}
_PLAN_ROLES = (
    ("vpn-gateway", "VPN gateway"),
    ("firewall", "firewall"),
    ("nat", "NAT"),
    ("router", "router"),
    ("dhcp-server", "DHCP"),
)


def node_roles(run_dir: Path | str) -> dict[str, str]:
    """Each node's role in the run: the agent or VPN end a service runs there, else what
    the topology makes it (firewall, NAT, router, DHCP server)."""
    run_dir = Path(run_dir)
    roles: dict[str, list[str]] = {}
    try:
        spec = json.loads((run_dir / "scenario.json").read_text()).get("spec") or {}
    except (OSError, ValueError, AttributeError):
        spec = {}
    for service in spec.get("services") or []:
        if not isinstance(service, Mapping) or not isinstance(service.get("node"), str):
            continue
        node = service["node"]
        if service.get("kind") == "agent" and service.get("agent") in _AGENT_ROLES:
            roles.setdefault(node, []).append(_AGENT_ROLES[service["agent"]])
        elif service.get("kind") == "vpn":
            config = service.get("config") or {}
            if isinstance(config, Mapping) and config.get("role") == "gateway":
                roles.setdefault(node, []).append("VPN gateway")
    try:
        plan = json.loads((run_dir / "plan.json").read_text())
        nodes = plan.get("nodes") or {}
    except (OSError, ValueError, AttributeError):
        nodes = {}
    for name, node in nodes.items() if isinstance(nodes, Mapping) else ():
        declared = node.get("roles") or [] if isinstance(node, Mapping) else []
        words = [text for role, text in _PLAN_ROLES if role in declared]
        mine = roles.setdefault(str(name), [])
        for word in words:
            if word not in mine and not (word == "VPN gateway" and "VPN gateway" in mine):
                mine.append(word)
    return {name: ", ".join(words[:2]) for name, words in roles.items() if words}


# -- drawing ---------------------------------------------------------------------------------


def ladder_figure(
    run_dir: Path | str,
    handoff: int | Handoff,
    time_scale: Literal["compressed", "linear"] = "compressed",
) -> tuple[Figure, Ladder]:
    """The ladder of one handoff as a figure (and what it draws); NoData when there is
    nothing to draw."""
    run_dir = Path(run_dir)
    summary = summary_or_empty(run_dir)
    events = load_events(run_dir, summary)
    ref = resolve_handoff(summary, events, handoff)
    title = handoff_title(summary, ref) + ": signalling"
    if ref.t_move_ns is None:
        raise NoData(title, "no data: the move time of this handoff is unknown")
    t_move = ref.t_move_ns
    t_end = ref.t_next_ns if ref.t_next_ns is not None else t_move + LADDER_DEFAULT_SPAN_NS
    order = summary.signalling_nodes
    # a crowd's handoff centres on its own node, the others' signalling left out
    mobile = ref.node or summary.mobile_node
    others = [n for n in summary.mobiles if n != mobile] if ref.node else []
    lad = build_ladder(events, t_move, t_end, mobile, order, others)
    if not lad.arrows and not lad.ticks:
        raise NoData(title, "no data: no signalling events in this handoff window")
    return draw_ladder(lad, t_move, title, time_scale, node_roles(run_dir)), lad


@never_raises("ladder diagram", out_arg=2)
def ladder(
    run_dir: Path | str,
    handoff: int | Handoff,
    out_png: Path | str,
    time_scale: Literal["compressed", "linear"] = "compressed",
) -> Path:
    """Signalling from this handoff's move to the next move (or +3 s when it is the last)."""
    fig, _ = ladder_figure(run_dir, handoff, time_scale)
    return save(fig, out_png)


_MEASURE = RendererAgg(10, 10, DPI)  # at the figures' resolution: hinting changes widths


def _size(
    text: str, points: float, weight: str = "normal", style: str = "normal"
) -> tuple[float, float]:
    """Width and height in inches of ``text`` as drawn (one line per line of text)."""
    font = FontProperties(size=points, weight=weight, style=style)
    lines = text.split("\n")
    width = max(
        _MEASURE.get_text_width_height_descent(line or " ", font, ismath=False)[0] for line in lines
    )
    return width / DPI * 1.02 + 0.03, len(lines) * points * 1.25 / 72


def _fit(text: str, width: float, points: float, weight: str, style: str) -> str:
    """``text`` broken at its commas into lines no wider than ``width`` inches."""
    if _size(text, points, weight, style)[0] <= width:
        return text
    lines: list[str] = []
    for part in text.split(", "):
        # measured with the comma that ends a broken line: without it a full line came out
        # wider than ``width``, the label moved across its own node's tick (a suite flake)
        if lines and _size(f"{lines[-1]}, {part},", points, weight, style)[0] <= width:
            lines[-1] += f", {part}"
        else:
            lines.append(part)
    return ",\n".join(lines)


@dataclass
class _Slot:
    """One row of the layout: a moment, with the label drawn there (if any)."""

    t: int
    rank: int  # order among slots at one time: rules, arrivals, marks, sends
    above: float = 0.0  # inches the slot's label reaches above its anchor
    below: float = 0.0
    y: float = 0.0
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # x0, x1, y0, y1
    labelled: bool = False


def _compress(dt_ns: int, scale: str, per_ms: float) -> float:
    """The spacing a quiet ``dt_ns`` gets (inches), before labels push rows apart."""
    if scale == "linear":
        return dt_ns / 1e6 * per_ms
    dt_ms = dt_ns / 1e6
    return min(0.22, 0.05 * math.log10(1.0 + dt_ms))


def draw_ladder(
    lad: Ladder,
    t_move: int,
    title: str,
    scale: str = "compressed",
    roles: Mapping[str, str] | None = None,
) -> Figure:
    """Lay the ladder out (no two labels overlap; one page wide) and draw it."""
    roles = roles or {}
    n = len(lad.lifelines)
    width = PAGE_WIDTH_IN
    span = width - _LEFT - _RIGHT
    col = {name: _LEFT + span * (i + 0.5) / n for i, name in enumerate(lad.lifelines)}
    x_min, x_max = _LEFT + 0.02, width - _RIGHT

    # column headers: the name, its role below; smaller type if the columns are narrow
    head_pt, role_pt = _HEAD_PT, _ROLE_PT
    widest = max(
        max(_size(name, head_pt, "bold")[0], _size(roles.get(name, ""), role_pt)[0])
        for name in lad.lifelines
    )
    if widest > span / n - 0.06:
        factor = max(0.6, (span / n - 0.06) / widest)
        head_pt, role_pt = head_pt * factor, role_pt * factor
    head_h = _size("X", head_pt)[1] + (_size("X", role_pt)[1] if roles else 0.0) + 0.12
    y0 = _TOP + head_h + 0.1  # time zero

    # one slot per label and per arrival: (slot, what draws there)
    slots: list[_Slot] = []
    draw: list[tuple[str, Any, _Slot, _Slot | None]] = []  # kind, item, start, end
    for r in lad.rules:
        s = _Slot(r.t, 0)
        slots.append(s)
        draw.append(("rule", r, s, None))
    for t in lad.ticks:
        s = _Slot(t.t, 2)
        slots.append(s)
        draw.append(("mark", t, s, None))
    stops: dict[tuple[str, int], _Slot] = {}
    for a in lad.arrows:
        start = stops.get((a.src, a.t_src)) if a.icmp else None
        if start is None:
            start = _Slot(a.t_src, 3)
            slots.append(start)
        if a.t_dst == a.t_src and not a.stopped and not a.icmp:
            end = start
        else:
            end = _Slot(a.t_dst, 1)
            slots.append(end)
        if a.stopped:
            stops[(a.dst, a.t_dst)] = end
            end.rank = 3  # the ICMP error leaves from here: its label is drawn at this slot
        draw.append(("arrow", a, start, end))
    slots.sort(key=lambda s: (s.t, s.rank))

    # labels: their sizes, and where they sit relative to their slot's anchor
    texts: list[tuple[_Slot, float, float, str, float, dict[str, Any]]] = []  # slot, x, dy

    def place(
        slot: _Slot,
        x_left: float,
        size: tuple[float, float],
        dy: float,
        text: str,
        pt: float,
        style: dict[str, Any],
    ) -> None:
        w, h = size
        x_left = min(max(x_left, x_min), x_max - w)
        slot.boxes.append((x_left, x_left + w, dy, dy + h))
        slot.above = max(slot.above, -dy)
        slot.below = max(slot.below, dy + h)
        slot.labelled = True
        texts.append((slot, x_left, dy, text, pt, style))

    colours: dict[str, str] = {}
    for kind, item, start, _end in draw:
        if kind == "rule":
            w, h = _size(item.label, _MARK_PT)
            place(start, x_max - w, (w, h), -h - 0.01, item.label, _MARK_PT, {"color": "#707070"})
        elif kind == "mark":
            colour = {"decision": _DECISION_COLOUR, "problem": _PROBLEM_COLOUR}.get(
                item.kind, _EVENT_COLOUR
            )
            weight = "bold" if item.kind == "decision" else "normal"
            style = "normal" if item.kind == "decision" else "italic"
            x = col[item.node]
            text = _fit(
                item.label, max(x_max - x - 0.09, x - 0.09 - x_min), _MARK_PT, weight, style
            )
            w, h = _size(text, _MARK_PT, weight, style)
            x_left = x + 0.09 if x + 0.09 + w <= x_max else x - 0.09 - w
            place(
                start,
                x_left,
                (w, h),
                -h / 2,
                text,
                _MARK_PT,
                {"color": colour, "weight": weight, "style": style},
            )
        else:
            a: Arrow = item
            text = a.label
            if a.matched and not a.stopped and not a.icmp and a.t_dst > a.t_src:
                text += f" ({(a.t_dst - a.t_src) / 1e6:.1f} ms)"
            if a.note:
                text += f"  {a.note}"
            if a.count > 1:
                text += f"  ×{a.count}"
            w, h = _size(text, _ARROW_PT)
            x0, x1 = col[a.src], col[a.dst]
            rightward = x1 > x0 if x1 != x0 else True
            if a.icmp:  # its start is where a stopped message ends: label on the far side
                rightward = not (x1 > x0)
            x_left = x0 + 0.06 if rightward else x0 - 0.06 - w
            if x_left + w > x_max or x_left < x_min:
                x_left = x0 - 0.06 - w if rightward else x0 + 0.06
            colour = _colour(a.label, colours)
            place(start, x_left, (w, h), -h - 0.015, text, _ARROW_PT, {"color": colour})
    for s in slots:  # every labelled slot has its time in the margin
        if s.labelled:
            s.above = max(s.above, 0.07)
            s.below = max(s.below, 0.07)

    # rows: each slot below the previous one's band, its own band below everything above
    per_ms = 0.0
    if scale == "linear":
        total_ms = max(1e-3, (max(s.t for s in slots) - t_move) / 1e6)
        per_ms = 9.0 / total_ms  # about a page for the window, when labels allow
    idle: list[tuple[float, float, int]] = []  # y from, y to, ns
    y, bottom, t_prev = y0, y0, t_move
    for s in slots:
        dt = s.t - t_prev
        gap = _compress(dt, scale, per_ms)
        top_needed = bottom + _PAD + s.above
        if scale != "linear" and dt > IDLE_NS:
            band = 0.26
            idle.append((bottom, bottom + band, dt))
            top_needed = bottom + band + s.above
        y = max(y + gap, top_needed, y + (0.05 if s is not slots[0] else 0.0))
        s.y = y
        bottom = max(bottom, y + s.below, y)
        t_prev = s.t
    y_end = bottom + 0.15
    height = y_end + _BOTTOM

    fig = new_figure(width, height)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # inches from the top: time runs down
    ax.set_axis_off()
    title_pt = 11.0
    while _size(title, title_pt, "bold")[0] > width - 0.2 and title_pt > 7:
        title_pt -= 0.5
    ax.text(width / 2, 0.22, title, ha="center", va="center", fontsize=title_pt, weight="bold")

    # lifelines, broken where a label crosses them; headers
    head_y = _TOP + 0.02
    for name, x in col.items():
        ax.text(x, head_y, name, ha="center", va="top", fontsize=head_pt, weight="bold")
        if roles.get(name):
            ax.text(
                x,
                head_y + _size("X", head_pt)[1] + 0.01,
                roles[name],
                ha="center",
                va="top",
                fontsize=role_pt,
                color="#555555",
            )
        cuts = sorted(
            (s.y + b[2] - 0.01, s.y + b[3] + 0.01)
            for s in slots
            for b in s.boxes
            if b[0] - 0.02 <= x <= b[1] + 0.02
        )
        y_from = y0 - 0.08
        for c0, c1 in cuts:
            if c0 > y_from:
                ax.plot([x, x], [y_from, c0], color="#a0a0a0", lw=1.0, zorder=1)
            y_from = max(y_from, c1)
        if y_end > y_from:
            ax.plot([x, x], [y_from, y_end], color="#a0a0a0", lw=1.0, zorder=1)

    # idle stretches: a light band, its length in the margin
    for a_y, b_y, ns in idle:
        ax.axhspan(
            a_y + 0.03,
            b_y - 0.03,
            xmin=_LEFT / width,
            xmax=x_max / width,
            color="#f1f1f1",
            zorder=0,
            lw=0,
        )
        ax.text(
            _LEFT - 0.08,
            (a_y + b_y) / 2,
            f"≈ {ns / 1e6:.0f} ms",
            ha="right",
            va="center",
            fontsize=_TIME_PT,
            color="#888888",
            style="italic",
        )

    for slot, x_left, dy, text, pt, style in texts:
        ax.text(
            x_left,
            slot.y + dy,
            text,
            ha="left",
            va="top",
            fontsize=pt,
            zorder=5,
            bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.9},
            **style,
        )
    for s in slots:
        if s.labelled:
            ax.text(
                _LEFT - 0.08,
                s.y,
                f"{(s.t - t_move) / 1e6:+.1f}",
                ha="right",
                va="center",
                fontsize=_TIME_PT,
                color="#555555",
            )
    ax.text(
        _LEFT - 0.08, y0 - 0.14, "ms", ha="right", va="center", fontsize=_TIME_PT, color="#555555"
    )

    for kind, item, start, end in draw:
        if kind == "rule":
            ax.plot([_LEFT, x_max], [start.y, start.y], color="#b0b0b0", ls=":", lw=0.9, zorder=0)
        elif kind == "mark":
            x = col[item.node]
            if item.kind == "decision":
                ax.plot(
                    [x], [start.y], marker="D", ms=5.5, color=_DECISION_COLOUR, ls="None", zorder=4
                )
            elif item.kind == "problem":
                ax.plot(
                    [x],
                    [start.y],
                    marker="x",
                    ms=6,
                    mew=2,
                    color=_PROBLEM_COLOUR,
                    ls="None",
                    zorder=4,
                )
            else:
                ax.plot(
                    [x - 0.05, x + 0.05], [start.y, start.y], color=_EVENT_COLOUR, lw=2, zorder=3
                )
        else:
            a = item
            colour = _colour(a.label, colours)
            x0, x1, y_a, y_b = col[a.src], col[a.dst], start.y, end.y  # type: ignore[union-attr]
            if x0 == x1:  # to itself: a short loop would hide in the lifeline
                x1 = x0 + 0.25
            ax.annotate(
                "",
                xy=(x1, y_b),
                xytext=(x0, y_a),
                arrowprops={
                    "arrowstyle": "-" if a.stopped else "-|>",
                    "color": colour,
                    "lw": 1.3,
                    "ls": "-" if a.matched else (0, (4, 2)),
                    "shrinkA": 0,
                    "shrinkB": 0,
                    "mutation_scale": 10,
                },
                zorder=3,
            )
            if a.stopped or a.refused:
                ax.plot(
                    [x1],
                    [y_b],
                    marker="x",
                    ms=7,
                    mew=2.2,
                    color=_PROBLEM_COLOUR,
                    ls="None",
                    zorder=4,
                )

    legend = (
        "dashed: one end recorded · ×: stopped or refused there · ◆ decision · "
        "— event · grey band: idle time compressed · (ms): time in flight"
    )
    if lad.dropped:
        legend += f" · {lad.dropped} later items not shown"
    legend_pt = 6.5
    while _size(legend, legend_pt)[0] > width - 0.2 and legend_pt > 5:
        legend_pt -= 0.25
    ax.text(0.1, height - 0.14, legend, fontsize=legend_pt, color="#666666", va="center")
    return fig


# -- readability (tests and the gallery look at every ladder with these) -------------------


def recorded_messages(events: list[dict], t_move: int, t_end: int) -> int:
    """How many message ends (each send, each reception) the window's events record."""
    return sum(1 for e in events if t_move <= e["t_ns"] < t_end and is_message(e))


def drawn_ends(lad: Ladder) -> int:
    """How many recorded message ends the ladder's arrows stand for."""
    return sum((2 if a.matched and not (a.stopped or a.icmp) else 1) * a.count for a in lad.arrows)


def readability_problems(fig: Figure, lad: Ladder, recorded: int | None = None) -> list[str]:
    """What makes a drawn ladder hard to read, in words (empty: none): labels overlapping
    or crossed by a line, text outside the page, wider than a page, a node in two columns
    or a column with nothing in it, arrows that do not account for every recorded message
    end (``recorded``: :func:`recorded_messages`)."""
    from testbed.results.figure import lines_through_texts, overlapping_texts, text_boxes

    problems = []
    if pairs := overlapping_texts(fig):
        problems.append(f"overlapping labels: {pairs[:3]}")
    if crossed := lines_through_texts(fig):
        problems.append(f"lines through labels: {crossed[:3]}")
    width = fig.get_size_inches()[0]
    if width > PAGE_WIDTH_IN + 1e-6:
        problems.append(f"{width:.1f} in wide, more than a page ({PAGE_WIDTH_IN} in)")
    canvas = fig.bbox
    outside = [
        t.get_text()
        for t, box in text_boxes(fig)
        if box.x0 < canvas.x0 - 1 or box.x1 > canvas.x1 + 1 or box.y0 < canvas.y0 - 1
    ]
    if outside:
        problems.append(f"text outside the page: {outside[:3]}")
    if len(set(lad.lifelines)) != len(lad.lifelines):
        problems.append(f"a node in two columns: {lad.lifelines}")
    used = {a.src for a in lad.arrows} | {a.dst for a in lad.arrows} | {t.node for t in lad.ticks}
    if empty := [n for n in lad.lifelines if n not in used]:
        problems.append(f"empty columns: {empty}")
    if recorded is not None and not lad.dropped and drawn_ends(lad) + lad.theirs != recorded:
        drawn = drawn_ends(lad) + lad.theirs
        problems.append(f"arrows stand for {drawn} recorded message ends, not {recorded}")
    return problems
