"""The human-readable report of one run: ``report.md``, ``report.html``, ``figures/*.png``.

The content is built once as a list of blocks (heading, paragraph, table, image) and then
rendered twice, so the Markdown and the HTML never disagree.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.results.plots import ladder, probe_timeline, topology_diagram
from testbed.results.rundata import (
    fmt_ms,
    fmt_num,
    load_events,
    load_summary,
    move_text,
    or_unknown,
    resolve_handoff,
    stream_fields,
    stream_names,
)
from testbed.results.tables import Table, to_html, to_markdown, to_text
from testbed.results.topology import Visit
from testbed.summary import Expectation, Handoff, RunSummary

log = logging.getLogger(__name__)

FIGURES = "figures"


# --- tables ----------------------------------------------------------------------------


def _status(summary: RunSummary) -> str:
    if summary.verdict is not None:
        return summary.verdict.upper()
    if summary.error:
        return "ERROR"
    passed = summary.passed
    return "PASSED" if passed is True else "FAILED" if passed is False else "UNKNOWN"


def _streams_in(summary: RunSummary, rows: list[Handoff]) -> list[str]:
    streams = list(summary.streams)
    found: list[str] = []
    for h in rows:
        found += [s for s in stream_fields(h, streams) if s not in found]
    return found


def _lost(h: Handoff, streams: list[str]) -> str:
    parts = [f"{s} {fmt_num(lost)}" for s in streams if (lost := h.lost(s)) is not None]
    if parts:
        return ", ".join(parts)
    return fmt_num(h.lost_packets)


def _phases(h: Handoff) -> str:
    numeric = sorted((v, k) for k, v in h.phases_ms.items())
    return ", ".join(f"{k} {fmt_num(v)}" for v, k in numeric) or "-"


def _with_run(rows: list[Handoff]) -> bool:
    """Whether the table needs a run column: some handoff is of a later repetition."""
    return any(h.run > 0 for h in rows)


def handoff_table(summary: RunSummary, phases: bool = True) -> Table:
    rows = summary.handoffs
    streams = _streams_in(summary, rows)
    with_run = _with_run(rows)
    # several mobile nodes (issue 19): which one moved, # its own N-th move
    with_node = len({h.node for h in rows}) > 1
    headers = [*(["node"] if with_node else []), "#", *(["run"] if with_run else [])]
    headers += ["t (s)", "move", "mode"]
    headers += [f"{s} ms" for s in streams] + ["max ms", "lost"]
    headers += ["phases (ms from move)"] if phases else []
    align = ["l"] * with_node + ["r"] * (2 + with_run) + ["l", "l"] + ["r"] * (len(streams) + 1)
    table = Table(headers, align=align)
    for h in rows:
        interruptions = h.interruptions()
        row = [str(h.node)] if with_node else []
        row += [fmt_num(h.index), *([fmt_num(h.run)] if with_run else [])]
        row += [fmt_num(h.t_s, 3), move_text(h), fmt_num(h.mode)]
        row += [fmt_ms(interruptions.get(s), s in interruptions) for s in streams]
        row += [fmt_ms(h.interruption_ms), _lost(h, streams)]
        row += [_phases(h)] if phases else []
        table.rows.append(row)
    return table


def _verdict(e: Expectation) -> str:
    return "pass" if e.passed is True else "FAIL" if e.passed is False else "n/a"


def expectation_table(summary: RunSummary) -> Table:
    table = Table(["passed", "expectation", "value", "limit", "detail"], align=list("llrrl"))
    for e in summary.expectations:
        table.rows.append(
            [
                _verdict(e),
                e.name,
                fmt_num(e.value, 3),
                fmt_num(e.limit, 3),
                e.detail or "",
            ]
        )
    return table


def stream_table(summary: RunSummary) -> Table:
    headers = ["stream", "path", "sent", "received", "loss %", "interval ms", "owd p50", "owd p95"]
    table = Table(headers, align=list("llrrrrrr"))
    for name, info in summary.streams.items():
        sent, received = info.sent, info.received
        loss = None
        if sent is not None and received is not None and sent > 0:
            loss = 100.0 * (sent - received) / sent
        table.rows.append(
            [
                name,
                f"{or_unknown(info.from_)} → {or_unknown(info.to)}",
                fmt_num(sent),
                fmt_num(received),
                fmt_num(loss, 2),
                fmt_num(info.interval_ms),
                fmt_num(info.owd_ms.get("p50"), 2),
                fmt_num(info.owd_ms.get("p95"), 2),
            ]
        )
    return table


def floor_table(summary: RunSummary) -> Table:
    """Each handoff against its floor: measured, what the links impose on the exchanges
    that happened (the critical path, each message at its path's one-way delay), and the
    overhead on top."""
    rows = summary.handoffs
    with_run = _with_run(rows)
    headers = ["#", *(["run"] if with_run else []), "move", "mode", "measured ms"]
    headers += ["floor ms", "overhead ms", "critical path (one-way ms)"]
    table = Table(headers, align=["r"] * (1 + with_run) + ["l", "l", "r", "r", "r", "l"])
    for h in rows:
        path = ", ".join(
            f"{e.msg}" + (f" {e.from_}→{e.to}" if e.from_ else "") + f" {fmt_num(e.one_way_ms)}"
            for e in h.critical_path
        )
        row = [fmt_num(h.index), *([fmt_num(h.run)] if with_run else [])]
        row += [move_text(h), fmt_num(h.mode), fmt_ms(h.interruption_ms)]
        row += [fmt_num(h.floor_ms), fmt_num(h.overhead_ms), path or "-"]
        table.rows.append(row)
    return table


def percentile_table(summary: RunSummary) -> Table:
    """Each move's interruption over the repetitions (summaries before per-move percentiles
    held one pooled mapping: shown as one row)."""
    table = Table(["move", "p50", "p95", "max", "n"], align=list("lrrrr"))
    rows: list[tuple[str, Mapping[str, Any]]] = []
    if isinstance(summary.percentiles, dict):
        pooled = summary.percentiles.get("interruption_ms")
        rows += [("all moves", pooled)] if isinstance(pooled, Mapping) else []
    else:
        rows += [
            (f"handoff[{row.handoff}] {row.from_}->{row.to}", row.interruption_ms)
            for row in summary.percentiles or []
        ]
    for move, stats in rows:
        table.rows.append([move] + [fmt_num(stats.get(k)) for k in ("p50", "p95", "max", "n")])
    return table


def text_summary(summary: RunSummary) -> str:
    """A compact terminal table of handoffs and expectations, for the end of a run."""
    head = [summary.scenario or "?", summary.run_id or "", _status(summary)]
    if summary.duration_s is not None:
        head.append(f"{fmt_num(summary.duration_s)} s")
    lines = ["  ".join(p for p in head if p)]
    if summary.error:
        lines.append(f"  error: {summary.error}")
    hand = handoff_table(summary, phases=False)
    if hand.rows:
        lines += ["handoffs:", to_text(hand)]
    exps = summary.expectations
    if exps:
        passed = sum(1 for e in exps if e.passed is True)
        lines.append(f"expectations: {passed}/{len(exps)} passed")
        table = expectation_table(summary)
        table.headers[0] = ""
        lines.append(to_text(table))
    return "\n".join(lines)


# --- document ------------------------------------------------------------------------


@dataclass
class _Block:
    kind: str  # h1, h2, p, table, img, kv
    text: str = ""
    table: Table | None = None
    classes: list[str] | None = None


def _find_topology(run_dir: Path, summary: RunSummary) -> Any:
    """A plan-like topology for the picture: a JSON dump in the run directory if the runner
    wrote one, else the topology file named in the summary (which does not include the
    scenario's overrides, but those change delays, not the shape)."""
    import json

    for name in ("plan.json", "topology.json"):
        path = run_dir / name
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except ValueError:
                pass
    if not summary.topology:
        return None
    path = Path(summary.topology)
    candidates = [path] if path.is_absolute() else [d / path for d in [run_dir, *run_dir.parents]]
    candidates.append(Path.cwd() / path)
    for candidate in candidates:
        if candidate.is_file():
            try:
                import yaml

                return yaml.safe_load(candidate.read_text())
            except Exception:  # an unreadable topology only costs the picture
                log.warning("cannot read topology %s", candidate, exc_info=True)
                return None
    return None


def mobile_path(
    summary: RunSummary, events: list[dict], node: str | None = None, addresses: bool = True
) -> list[Visit]:
    """The mobile node's moves in the first repetition, each with the mode it ended in and
    the address it was given there (from the events: the DHCP server's answer). ``node``:
    one of several mobile nodes (its own moves)."""
    mobile = node or summary.mobile_node
    if node is None and summary.mobiles:  # several: the first's own, not everyone's moves
        node = mobile
    moves = [h for h in summary.handoffs if not h.run and (node is None or h.node == node)]
    visits = []
    for i, h in enumerate(moves):
        t0 = h.t_ns
        t1 = moves[i + 1].t_ns if i + 1 < len(moves) else None
        address = None
        if t0 is not None:
            for e in events:
                in_window = t0 <= e["t_ns"] and (t1 is None or e["t_ns"] < t1)
                if in_window and e.get("node") == mobile and e.get("event") == "dhcp_ack":
                    address = e.get("address")
        note = ", ".join(str(x) for x in (h.mode, address if addresses else None) if x)
        visits.append(Visit(i + 1, str(h.to), note))
    return visits


def crowd_path(summary: RunSummary, events: list[dict]) -> tuple[list[Visit], str]:
    """Several mobile nodes on one picture: the moves most of them made (networks and
    modes, in order; their addresses differ, so none is noted), and who made them
    (``mn01-mn12``, or ``mn01, mn05 (2 of 12)``). Twelve paths over one topology would
    hide it; the nodes that went elsewhere are counted in the name."""
    groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
    paths: dict[str, list[Visit]] = {}
    for node in summary.mobiles:
        path = mobile_path(summary, events, node, addresses=False)
        if path:
            paths[node] = path
            groups.setdefault(tuple((v.network, v.note) for v in path), []).append(node)
    if not groups:
        return [], summary.mobile_node
    nodes = max(groups.values(), key=len)
    who = _node_names(nodes, summary.mobiles)
    if len(nodes) < len(summary.mobiles):
        who += f" ({len(nodes)} of {len(summary.mobiles)})"
    return paths[nodes[0]], who


def _node_names(nodes: list[str], mobiles: list[str]) -> str:
    """``mn01-mn12`` for a run of consecutive nodes, else the first few, named."""
    at = [mobiles.index(n) for n in nodes]
    if len(nodes) > 2 and at == list(range(at[0], at[0] + len(at))):
        return f"{nodes[0]}-{nodes[-1]}"
    return ", ".join(nodes[:3]) + (", ..." if len(nodes) > 3 else "")


def _figure(run_dir: Path, name: str, draw: Any, *args: Any) -> str | None:
    """Draw one figure; returns its path relative to the run directory, or None."""
    out = run_dir / FIGURES / name
    try:
        draw(*args, out)
    except Exception:  # plots catch their own errors; this guards a failing disk
        log.exception("cannot write %s", out)
        return None
    return f"{FIGURES}/{name}" if out.exists() else None


def _blocks(run_dir: Path, summary: RunSummary, figures: bool) -> list[_Block]:
    title = f"{summary.scenario or run_dir.name}"
    status = _status(summary)
    blocks = [_Block("h1", f"Scenario {title}"), _Block("status", status)]
    duration = summary.duration_s
    facts = [
        ("run", summary.run_id),
        ("started", summary.started),
        ("duration", f"{fmt_num(duration)} s" if duration is not None else None),
        ("topology", summary.topology),
        ("runs", summary.runs),
        ("error", summary.error),
    ]
    blocks.append(_Block("kv", "\n".join(f"{k}\t{v}" for k, v in facts if v not in (None, ""))))

    rows = summary.handoffs
    blocks.append(_Block("h2", "Handoffs"))
    table = handoff_table(summary)
    blocks.append(_Block("table", table=table) if table.rows else _Block("p", "No handoffs."))

    blocks.append(_Block("h2", "Expectations"))
    table = expectation_table(summary)
    if table.rows:
        classes = [{"pass": "pass", "FAIL": "fail"}.get(r[0], "") for r in table.rows]
        blocks.append(_Block("table", table=table, classes=classes))
    else:
        blocks.append(_Block("p", "No expectations."))

    table = floor_table(summary)
    if table.rows:
        blocks += [_Block("h2", "Each handoff against its floor"), _Block("table", table=table)]
    table = stream_table(summary)
    if table.rows:
        blocks += [_Block("h2", "Streams"), _Block("table", table=table)]
    table = percentile_table(summary)
    if table.rows:
        blocks += [_Block("h2", "Interruption per move"), _Block("table", table=table)]

    if not figures:
        return blocks
    topo = _find_topology(run_dir, summary)
    events = load_events(run_dir, summary)
    if topo:
        name = topo.get("name") if isinstance(topo, Mapping) else None
        if not name and summary.topology:
            name = Path(summary.topology).stem  # a plan.json from before it had the name
        if summary.mobiles:
            path, mobile = crowd_path(summary, events)
        else:
            path, mobile = mobile_path(summary, events), summary.mobile_node
        draw = lambda out: topology_diagram(topo, out, name, path, mobile)  # noqa: E731
        img = _figure(run_dir, "topology.png", draw)
        if img:
            blocks += [_Block("h2", "Topology"), _Block("img", img)]
    has_streams = bool(stream_names(run_dir, summary))
    for h in rows:
        ref = resolve_handoff(summary, events, h)
        run = f", run {h.run}" if h.run > 0 else ""
        who = f" of {ref.node}" if ref.node else ""
        head = f"Handoff {ref.index}{run}{who}: {move_text(h)}"
        blocks.append(_Block("h2", head))
        if has_streams and h.probed:  # a crowd node without streams (probes.sample): none
            img = _figure(run_dir, f"{ref.label}-timeline.png", probe_timeline, run_dir, h)
            if img:
                blocks.append(_Block("img", img))
        img = _figure(run_dir, f"{ref.label}-ladder.png", ladder, run_dir, h)
        if img:
            blocks.append(_Block("img", img))
    return blocks


def _markdown(blocks: list[_Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.text}")
        elif b.kind == "h2":
            out.append(f"## {b.text}")
        elif b.kind == "status":
            out.append(f"**Result: {b.text}**")
        elif b.kind == "kv":
            out.append(
                "\n".join(f"- {line.replace(chr(9), ': ', 1)}" for line in b.text.split("\n"))
            )
        elif b.kind == "table" and b.table is not None:
            out.append(to_markdown(b.table))
        elif b.kind == "img":
            out.append(f"![{Path(b.text).stem}]({b.text})")
        else:
            out.append(b.text)
    return "\n\n".join(out) + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.fail td { background: #fbe3e1; } tr.pass td:first-child { color: #2e7d32; }
.status { display: inline-block; padding: 0.2em 0.8em; border-radius: 4px; font-weight: bold; }
.PASSED { background: #d9f0d3; color: #1b5e20; }
.FAILED, .ERROR { background: #f6c9c4; color: #8e1b10; } .UNKNOWN { background: #eee; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: bold; } img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
"""


def _html(blocks: list[_Block], title: str) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
    ]
    for b in blocks:
        text = html.escape(b.text)
        if b.kind in ("h1", "h2"):
            out.append(f"<{b.kind}>{text}</{b.kind}>")
        elif b.kind == "status":
            out.append(f'<p>Result: <span class="status {text}">{text}</span></p>')
        elif b.kind == "kv":
            pairs = [line.split("\t", 1) for line in b.text.split("\n") if "\t" in line]
            items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in pairs)
            out.append(f"<dl>{items}</dl>")
        elif b.kind == "table" and b.table is not None:
            out.append(to_html(b.table, b.classes))
        elif b.kind == "img":
            out.append(f'<p><img src="{text}" alt="{html.escape(Path(b.text).stem)}"></p>')
        else:
            out.append(f"<p>{text}</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render_report(run_dir: Path | str, figures: bool = True) -> Path:
    """Write ``report.md``, ``report.html`` and ``figures/*.png``; return the Markdown path.

    Works on partial runs: a missing summary gives a report that says so.
    """
    run_dir = Path(run_dir)
    summary = load_summary(run_dir) or RunSummary(
        scenario=run_dir.name, error="summary.json missing or unreadable"
    )
    blocks = _blocks(run_dir, summary, figures)
    md = run_dir / "report.md"
    md.write_text(_markdown(blocks), encoding="utf-8")
    title = f"{summary.scenario or run_dir.name} {summary.run_id or ''}".strip()
    (run_dir / "report.html").write_text(_html(blocks, title), encoding="utf-8")
    return md
