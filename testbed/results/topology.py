"""A picture of a topology: networks as horizontal bars coloured by trust, nodes as boxes.

Layout is deterministic and needs no graph library: one row per network (trusted, then
DMZ, then untrusted, each in file order), one column per node sorted by the rows it
attaches to, so routers form a staircase between the networks they join. Each bar only
spans the columns of its own nodes, which keeps vertical links from crossing bars they
do not attach to in the common tree-shaped enterprise layouts; attachments get a dot.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.patches import FancyBboxPatch, Patch, Rectangle

from testbed.results.figure import (
    TRUST_COLOURS,
    UNKNOWN_TRUST,
    never_raises,
    new_figure,
    no_data,
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


def _box_width(name: str, roles: list[str]) -> float:
    return max([len(name) * _NAME_CHAR] + [len(r) * _ROLE_CHAR for r in roles]) + 0.3


def _node_box(ax: Any, x: float, y: float, name: str, roles: list[str], width: float) -> None:
    """A rounded box: the name in bold, one role per line below it, centred on (x, y)."""
    height = 0.3 + _LINE * len(roles)
    top = y - height / 2  # y grows downwards
    ax.add_patch(
        FancyBboxPatch(
            (x - width / 2, top),
            width,
            height,
            boxstyle="round,pad=0,rounding_size=0.08",
            fc="white",
            ec="#444444",
            lw=1,
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
            "trust": "" if trust is None else _text(trust),
        }
    for name, node in (nodes or {}).items():
        if isinstance(node, Mapping):
            roles = node.get("roles", node.get("role"))
            links = node.get("links") or []
        else:
            roles = getattr(node, "roles", None)
            links = [i.network for i in getattr(node, "interfaces", [])]
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
    return out


def _zone_rank(trust: str) -> int:
    return _ZONES.index(trust) if trust in _ZONES else len(_ZONES)


@never_raises("topology diagram", out_arg=1)
def topology_diagram(
    plan_like_dict: Mapping[str, Any] | Any, out_png: Path | str, title: str | None = None
) -> Path:
    """Draw networks (bars coloured by trust zone) and the nodes attached to them."""
    plan = plan_like(plan_like_dict)
    title = title or (
        str(plan_like_dict.get("name"))
        if isinstance(plan_like_dict, Mapping) and plan_like_dict.get("name")
        else "topology"
    )
    networks: dict[str, dict[str, str]] = dict(plan["networks"])
    nodes: dict[str, dict[str, list[str]]] = plan["nodes"]
    # networks only named by a node link still get a bar, of unknown trust
    for node in nodes.values():
        for net in node["links"]:
            networks.setdefault(net, {"subnet": "", "trust": ""})
    if not networks and not nodes:
        return no_data(out_png, title, "no data: no networks or nodes")

    order = list(networks)
    net_order = sorted(order, key=lambda n: (_zone_rank(networks[n]["trust"]), order.index(n)))
    row = {name: i for i, name in enumerate(net_order)}
    node_order = list(nodes)

    def column_key(name: str) -> tuple[int, int, int]:
        rows = [row[n] for n in nodes[name]["links"]] or [len(row)]
        return (min(rows), max(rows), node_order.index(name))

    columns = sorted(nodes, key=column_key)
    # column spacing from the widest box, so that neighbouring boxes never overlap
    widths = {n: _box_width(n, nodes[n]["roles"]) for n in columns}
    box_w = max(widths.values(), default=1.0)
    step = max(_COL, box_w + 0.2)
    col = {name: i * step for i, name in enumerate(columns)}

    n_rows = max(len(net_order), 1) + (1 if any(not nodes[n]["links"] for n in nodes) else 0)
    x_lo, x_hi = -_LABEL - 0.7, max(len(columns) - 1, 1) * step + box_w / 2 + 0.3
    y_lo, y_hi = -1.3, (n_rows - 1) * _ROW + 0.7
    width = (x_hi - x_lo) * _IN_PER_UNIT
    height = (y_hi - y_lo) * _IN_PER_UNIT + 0.9
    fig = new_figure(width, height)
    ax = fig.add_axes((0, 0.35 / height, 1, 1 - 0.9 / height))
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_hi, y_lo)  # first network on top
    ax.set_axis_off()
    fig.text(0.5, 1 - 0.25 / height, title, ha="center", va="center", fontsize=12, weight="bold")

    for name in net_order:
        fill, edge = TRUST_COLOURS.get(networks[name]["trust"], UNKNOWN_TRUST)
        members = [col[n] for n in columns if name in nodes[n]["links"]]
        start = min(members, default=0.0) - 0.55
        end = max(members, default=0.0) + 0.55
        y = row[name] * _ROW
        ax.add_patch(Rectangle((start, y - 0.11), end - start, 0.22, fc=fill, ec=edge, lw=1.2))
        detail = " · ".join(v for v in (networks[name]["subnet"], networks[name]["trust"]) if v)
        # a white backing keeps a label readable where another node's link passes behind it
        backing = {"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.85}
        ax.text(
            start - 0.12,
            y - 0.03,
            name,
            ha="right",
            va="bottom",
            fontsize=10,
            weight="bold",
            color=edge,
            zorder=3,
            bbox=backing,
        )
        if detail:
            ax.text(
                start - 0.12,
                y + 0.03,
                detail,
                ha="right",
                va="top",
                fontsize=8,
                color=edge,
                zorder=3,
                bbox=backing,
            )

    for name in columns:
        links = nodes[name]["links"]
        x = col[name]
        ys = [row[n] * _ROW for n in links]
        if not ys:
            y = (n_rows - 1) * _ROW  # the extra bottom row for unattached nodes
        elif len(ys) == 1:
            y = ys[0] - 0.62
        else:
            y = min(ys) + 0.62  # hang routers just below the uppermost network they join
        for link_y in ys:
            ax.plot([x, x], [y, link_y], color="#555555", lw=1.2, zorder=2)
            ax.plot([x], [link_y], marker="o", ms=5, color="#333333", zorder=4)
        _node_box(ax, x, y, name, nodes[name]["roles"], widths[name])

    handles = [Patch(fc=TRUST_COLOURS[z][0], ec=TRUST_COLOURS[z][1], label=z) for z in _ZONES]
    fig.legend(handles=handles, loc="lower right", ncols=3, fontsize=8, frameon=False)
    return save(fig, out_png)
