"""A picture of a topology: networks as horizontal bars coloured by trust, nodes as boxes.

Layout is deterministic and needs no graph library: one row per network (trusted, then
DMZ, then untrusted, each in file order), one column per node sorted by the rows it
attaches to, so routers form a staircase between the networks they join. Each bar only
spans the columns of its own nodes, which keeps vertical links from crossing bars they
do not attach to in the common tree-shaped enterprise layouts; attachments get a dot and
the interface's address beside it, on the side its line comes from. A network's name goes
where no line or address is (left of its bar, else right). Zones are coloured as the
topology declares them (the model's default, untrusted, when it does not), with a legend
of the zones used; the mobile node's moves are numbered badges on the networks it visited,
with a caption of each move's mode and address. A crowd's numbered nodes that are alike
are one box (``mn01-mn100``, their count and address range).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch, Rectangle

from testbed.results.figure import (
    TRUST_COLOURS,
    UNKNOWN_TRUST,
    NoData,
    never_raises,
    new_figure,
    save,
)

_ZONES = ("trusted", "dmz", "untrusted")
_ROW = 1.5  # data units between network bars
_COL = 1.3  # data units between node columns
_LABEL = 2.3  # data units left of the first column for network labels
_IN_PER_UNIT = 0.75
# average character widths in data units, to size boxes before drawing
_NAME_CHAR = 0.62 * 9 / 72 / _IN_PER_UNIT
_ROLE_CHAR = 0.55 * 7.5 / 72 / _IN_PER_UNIT
_LINE = 0.17  # data units per line of role text
_ADDR_CHAR = 0.6 * 7 / 72 / _IN_PER_UNIT
_NET_CHAR = 0.66 * 10 / 72 / _IN_PER_UNIT
_SUB_CHAR = 0.6 * 8 / 72 / _IN_PER_UNIT
_HANG = 0.72  # a node box's centre from the bar it hangs on
_BADGE_ROOM = 0.55  # bar length added for the badge of the mobile node's moves
_PATH = "#6a3d9a"


def _box_width(name: str, roles: list[str]) -> float:
    return max([len(name) * _NAME_CHAR] + [len(r) * _ROLE_CHAR for r in roles]) + 0.3


def _node_box(
    ax: Any, x: float, y: float, name: str, roles: list[str], width: float, moves: Any = False
) -> None:
    """A rounded box: the name in bold, one role per line below it, centred on (x, y); the
    mobile node's in the colour of its moves."""
    height = 0.3 + _LINE * len(roles)
    top = y - height / 2  # y grows downwards
    ax.add_patch(
        FancyBboxPatch(
            (x - width / 2, top),
            width,
            height,
            boxstyle="round,pad=0,rounding_size=0.08",
            fc="white",
            ec=_PATH if moves else "#444444",
            lw=2 if moves else 1,
            zorder=5,
        )
    )
    ax.text(x, top + 0.16, name, ha="center", va="center", fontsize=9, weight="bold", zorder=6)
    for i, role in enumerate(roles):
        ax.text(
            x,
            top + 0.33 + i * _LINE,
            role,
            ha="center",
            va="center",
            fontsize=7.5,
            color="#444444",
            zorder=6,
        )


def _text(value: Any) -> str:
    return str(getattr(value, "value", value))  # enums (Role) print as their value


def plan_like(source: Any) -> dict[str, Any]:
    """Normalise a topology into ``{"networks": {...}, "nodes": {...}}``.

    Accepts the plan-like dict itself, a raw topology YAML mapping (``role`` as a string
    or list, ``links`` as ``{network: ...}`` mappings), or a ``TopologyPlan`` object.
    """
    out: dict[str, Any] = {"networks": {}, "nodes": {}}
    if source is None:
        return out
    name = source.get("name") if isinstance(source, Mapping) else getattr(source, "name", None)
    if isinstance(name, str) and name:
        out["name"] = name
    networks = source.get("networks") if isinstance(source, Mapping) else None
    nodes = source.get("nodes") if isinstance(source, Mapping) else None
    if networks is None and hasattr(source, "networks"):
        networks, nodes = source.networks, getattr(source, "nodes", {})
    for name, net in (networks or {}).items():
        if isinstance(net, Mapping):
            subnet, trust = net.get("subnet"), net.get("trust")
        else:
            subnet, trust = getattr(net, "subnet", None), getattr(net, "trust", None)
        out["networks"][str(name)] = {
            "subnet": "" if subnet is None else str(subnet),
            # what the topology model gives a network that does not declare its zone
            "trust": DEFAULT_TRUST if trust in (None, "") else _text(trust),
        }
    for name, node in (nodes or {}).items():
        interfaces: list[dict[str, Any]] = []
        if isinstance(node, Mapping):
            roles = node.get("roles", node.get("role"))
            links = node.get("links") or []
            for link in node.get("interfaces") or links:
                if isinstance(link, Mapping) and link.get("network"):
                    address = link.get("address")
                    interfaces.append(
                        {k: v for k, v in link.items() if k in _IFACE_KEYS}
                        | {"network": str(link["network"])}
                        | ({"address": str(address)} if address is not None else {})
                    )
        else:
            roles = getattr(node, "roles", None)
            links = [i.network for i in getattr(node, "interfaces", [])]
            for iface in getattr(node, "interfaces", []):
                address = getattr(iface, "address", None)
                entry = {
                    "network": iface.network,
                    "name": iface.name,
                    "address": str(address) if address is not None else iface.addressing,
                }
                for side in ("egress", "ingress"):
                    delay = getattr(getattr(iface, side, None), "delay_ms", None)
                    if delay:
                        entry[f"{side}_delay_ms"] = delay
                interfaces.append(entry)
        if roles is None:
            roles = []
        elif isinstance(roles, str) or not hasattr(roles, "__iter__"):
            roles = [roles]
        nets = []
        for link in links:
            net = link.get("network") if isinstance(link, Mapping) else link
            if net is not None and str(net) not in nets:
                nets.append(str(net))
        out["nodes"][str(name)] = {"roles": [_text(r) for r in roles], "links": nets}
        if interfaces:
            out["nodes"][str(name)]["interfaces"] = interfaces
    return out


_IFACE_KEYS = ("network", "name", "address", "egress_delay_ms", "ingress_delay_ms")
DEFAULT_TRUST = "untrusted"


def _address_text(address: Any) -> str:
    """An interface's address for the picture: without the prefix length; dhcp as is."""
    text = str(address or "")
    if text in ("auto", "none", ""):
        return ""
    return text.split("/")[0]


_NUMBERED = re.compile(r"(.*?)(\d{2,})$")
FOLD_AT = 3  # numbered nodes alike from this many on are one box


def fold_groups(plan: Mapping[str, Any]) -> dict[str, Any]:
    """``plan`` with each run of numbered nodes that are alike (a crowd's ``mn01`` ...
    ``mn100``: one name stem, the same roles and networks) as one box, ``mn01-mn100``,
    its count under its roles and the first and last address at each attachment: a
    hundred boxes would be a picture ten pages wide of the same box."""
    nodes: dict[str, dict[str, Any]] = dict(plan.get("nodes") or {})
    runs: dict[tuple[Any, ...], list[str]] = {}
    for name, node in nodes.items():
        numbered = _NUMBERED.fullmatch(name)
        if numbered:
            key = (numbered.group(1), tuple(node["roles"]), tuple(node["links"]))
            runs.setdefault(key, []).append(name)
    folded: dict[str, dict[str, Any]] = {}
    first_of = {names[0]: names for names in runs.values() if len(names) >= FOLD_AT}
    members = {name for names in first_of.values() for name in names}
    for name, node in nodes.items():
        if name in first_of:
            names = first_of[name]
            interfaces = []
            for iface in node.get("interfaces") or []:
                last = next(
                    (
                        i
                        for i in nodes[names[-1]].get("interfaces") or []
                        if i["network"] == iface["network"]
                    ),
                    iface,
                )
                span = _address_span(iface.get("address"), last.get("address"))
                interfaces.append(iface | {"address": span})
            folded[f"{names[0]}-{names[-1]}"] = node | {
                "roles": [*node["roles"], f"{len(names)} nodes"],
                "interfaces": interfaces,
            }
        elif name not in members:
            folded[name] = node
    return dict(plan) | {"nodes": folded}


def _address_span(first: Any, last: Any) -> str:
    """``10.1.0.100-111`` for the first and last of a group's addresses (prefixes off);
    ``dhcp`` (or what else they share) as it is."""
    a, b = _address_text(first), _address_text(last)
    if a == b or not b:
        return a
    head_a = a.rpartition(".")[0]
    head_b, _, tail_b = b.rpartition(".")
    return f"{a}-{tail_b}" if head_a and head_a == head_b else f"{a}-{b}"


def _zone_rank(trust: str) -> int:
    return _ZONES.index(trust) if trust in _ZONES else len(_ZONES)


@dataclass(frozen=True)
class Visit:
    """One move of the mobile node on the picture: its step number, where it went and a
    note (the mode it ended in, the address it got)."""

    step: int
    network: str
    note: str = ""


@never_raises("topology diagram", out_arg=1)
def topology_diagram(
    plan_like_dict: Mapping[str, Any] | Any,
    out_png: Path | str,
    title: str | None = None,
    path: Sequence[Visit] | None = None,
    mobile: str = "mn",
) -> Path:
    """Draw networks (bars coloured by the trust zone the topology declares) and the nodes
    attached to them, each interface's address at its attachment, and the mobile node's
    moves (``path``) as numbered badges on the networks it visited."""
    return save(topology_figure(plan_like_dict, title, path, mobile), out_png)


def topology_figure(
    plan_like_dict: Mapping[str, Any] | Any,
    title: str | None = None,
    path: Sequence[Visit] | None = None,
    mobile: str = "mn",
) -> Figure:
    """The figure of :func:`topology_diagram`, not saved (raises NoData)."""
    plan = fold_groups(plan_like(plan_like_dict))
    title = title or plan.get("name") or "topology"
    networks: dict[str, dict[str, str]] = dict(plan["networks"])
    nodes: dict[str, dict[str, Any]] = plan["nodes"]
    # networks only named by a node link still get a bar
    for node in nodes.values():
        for net in node["links"]:
            networks.setdefault(net, {"subnet": "", "trust": DEFAULT_TRUST})
    if not networks and not nodes:
        raise NoData(title, "no data: no networks or nodes")
    path = [v for v in path or [] if v.network in networks]

    order = list(networks)
    net_order = sorted(order, key=lambda n: (_zone_rank(networks[n]["trust"]), order.index(n)))
    row = {name: i for i, name in enumerate(net_order)}
    node_order = list(nodes)

    def column_key(name: str) -> tuple[int, int, int]:
        rows = [row[n] for n in nodes[name]["links"]] or [len(row)]
        return (min(rows), max(rows), node_order.index(name))

    columns = sorted(nodes, key=column_key)
    # column spacing from the widest box and address, so that neighbours never overlap
    widths = {n: _box_width(n, nodes[n]["roles"]) for n in columns}
    addresses = {
        (n, i["network"]): _address_text(i.get("address"))
        for n in columns
        for i in nodes[n].get("interfaces") or []
    }
    address_w = max((len(a) * _ADDR_CHAR for a in addresses.values()), default=0.0) + 0.25
    box_w = max(widths.values(), default=1.0)
    step = max(_COL, box_w + 0.2, address_w)
    col = {name: i * step for i, name in enumerate(columns)}
    visits: dict[str, list[Visit]] = {}
    for visit in path:
        visits.setdefault(visit.network, []).append(visit)

    # bars, then the node positions and their links (vertical segments)
    bars: dict[str, tuple[float, float, float]] = {}  # network -> (start, end, y)
    for name in net_order:
        members = [col[n] for n in columns if name in nodes[n]["links"]]
        start = min(members, default=0.0) - 0.55
        end = max(members, default=0.0) + 0.55 + (_BADGE_ROOM if name in visits else 0.0)
        bars[name] = (start, end, row[name] * _ROW)
    n_rows = max(len(net_order), 1) + (1 if any(not nodes[n]["links"] for n in nodes) else 0)
    place: dict[str, float] = {}
    segments: list[tuple[float, float, float]] = []  # (x, y0, y1) of every link line
    for name in columns:
        ys = [row[n] * _ROW for n in nodes[name]["links"]]
        x = col[name]
        if not ys:
            y = (n_rows - 1) * _ROW  # the extra bottom row for unattached nodes
        elif len(ys) == 1:
            y = ys[0] - _HANG
        else:
            y = min(ys) + _HANG  # routers hang just below the uppermost network they join
        place[name] = y
        segments += [(x, min(y, ly), max(y, ly)) for ly in ys]

    boxes = []  # (x0, x1, y0, y1) of the address labels, placed as drawn below
    for name in columns:
        for net in nodes[name]["links"]:
            address, link_y = addresses.get((name, net), ""), row[net] * _ROW
            if address:
                y0 = link_y - 0.3 if place[name] < link_y else link_y + 0.15
                boxes.append(
                    (col[name], col[name] + 0.1 + len(address) * _ADDR_CHAR, y0, y0 + 0.15)
                )
    segments_and_boxes = [(x, x, y0, y1) for x, y0, y1 in segments] + boxes
    labels = {
        name: _network_label(name, networks[name], bars[name], segments_and_boxes) for name in bars
    }
    x_lo = min([-0.7] + [lab[0] - 0.15 for lab in labels.values()])
    x_hi = max(
        [max(len(columns) - 1, 1) * step + max(box_w / 2, address_w) + 0.3]
        + [lab[1] + 0.15 for lab in labels.values()]
        + [b[1] + 0.2 for b in bars.values()]
    )
    y_lo, y_hi = -1.3, (n_rows - 1) * _ROW + 0.9
    path_lines = _path_lines(path, mobile)
    foot = 0.35 + 0.2 * len(path_lines) + (0.05 if path else 0.0)
    width = (x_hi - x_lo) * _IN_PER_UNIT
    height = (y_hi - y_lo) * _IN_PER_UNIT + 0.55 + foot
    fig = new_figure(width, height)
    ax = fig.add_axes((0, foot / height, 1, 1 - (0.55 + foot) / height))
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_hi, y_lo)  # first network on top
    ax.set_axis_off()
    fig.text(0.5, 1 - 0.27 / height, title, ha="center", va="center", fontsize=12, weight="bold")

    zones = []
    for name in net_order:
        trust = networks[name]["trust"]
        zones += [trust] if trust not in zones else []
        fill, edge = TRUST_COLOURS.get(trust, UNKNOWN_TRUST)
        start, end, y = bars[name]
        ax.add_patch(Rectangle((start, y - 0.11), end - start, 0.22, fc=fill, ec=edge, lw=1.2))
        detail = networks[name]["subnet"]
        left, _, right_side = labels[name]
        x_text, ha = (left, "left") if right_side else (labels[name][1], "right")
        ax.text(x_text, y - 0.03, name, ha=ha, va="bottom", fontsize=10, weight="bold", color=edge)
        if detail:
            ax.text(x_text, y + 0.03, detail, ha=ha, va="top", fontsize=8, color=edge)
        if name in visits:
            steps = ",".join(str(v.step) for v in visits[name])
            ax.text(
                end - _BADGE_ROOM / 2 - 0.05,
                y,
                steps,
                ha="center",
                va="center",
                fontsize=8,
                weight="bold",
                color="white",
                zorder=6,
                bbox={"boxstyle": "round,pad=0.25", "fc": _PATH, "ec": _PATH},
            )

    for name in columns:
        x, y = col[name], place[name]
        half = (0.3 + _LINE * len(nodes[name]["roles"])) / 2
        for net in nodes[name]["links"]:
            link_y = row[net] * _ROW
            edge = y + half if link_y > y else y - half  # from the box's edge, not its text
            ax.plot([x, x], [edge, link_y], color="#555555", lw=1.2, zorder=2)
            ax.plot([x], [link_y], marker="o", ms=5, color="#333333", zorder=4)
            address = addresses.get((name, net), "")
            if address:
                above = y < link_y  # the line comes from above: the address goes above
                ax.text(
                    x + 0.07,
                    link_y + (-0.15 if above else 0.15),
                    address,
                    ha="left",
                    va="bottom" if above else "top",
                    fontsize=7,
                    color="#333333",
                    zorder=4,
                )
        _node_box(ax, x, y, name, nodes[name]["roles"], widths[name], name == mobile and path)

    handles = [
        Patch(fc=TRUST_COLOURS[z][0], ec=TRUST_COLOURS[z][1], label=z)
        for z in zones
        if z in TRUST_COLOURS
    ]
    if path:
        handles.append(Patch(fc=_PATH, ec=_PATH, label=f"{mobile}'s moves, in order"))
    fig.legend(handles=handles, loc="lower right", ncols=len(handles), fontsize=8, frameon=False)
    for i, line in enumerate(_path_lines(path, mobile)):
        fig.text(
            0.01, (0.3 + 0.2 * (len(path_lines) - 1 - i)) / height, line, fontsize=8, color=_PATH
        )
    return fig


def _path_lines(path: Sequence[Visit], mobile: str, per_line: int = 4) -> list[str]:
    """The caption of the moves: ``mn's moves: 1 → visited (f)   2 → public (mc, ...)``."""
    items = [f"{v.step} → {v.network}" + (f" ({v.note})" if v.note else "") for v in path]
    lines = ["   ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return [(f"{mobile}'s moves: " if i == 0 else "    ") + line for i, line in enumerate(lines)]


def _network_label(
    name: str,
    net: Mapping[str, str],
    bar: tuple[float, float, float],
    obstacles: list[tuple[float, float, float, float]],
) -> tuple[float, float, bool]:
    """Where a network's name and subnet go, clear of every link line and address: left of
    its bar, else right of it, else further left until free. (x0, x1, right_side)."""
    start, end, y = bar
    w = max(len(name) * _NET_CHAR, len(net.get("subnet", "")) * _SUB_CHAR) + 0.05
    y0, y1 = y - 0.27, y + 0.22

    def blocking(x0: float, x1: float) -> list[float]:
        return [
            a0
            for a0, a1, b0, b1 in obstacles
            if a0 <= x1 + 0.05 and a1 >= x0 - 0.05 and b0 < y1 and b1 > y0
        ]

    if not blocking(start - 0.12 - w, start - 0.12):
        return start - 0.12 - w, start - 0.12, False
    if not blocking(end + 0.12, end + 0.12 + w):
        return end + 0.12, end + 0.12 + w, True
    x1 = start - 0.12
    while hit := blocking(x1 - w, x1):
        x1 = min(hit) - 0.17
    return x1 - w, x1, False
