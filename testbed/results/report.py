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
    handoffs,
    load_events,
    load_summary,
    mobile_node,
    resolve_handoff,
    stream_fields,
    stream_names,
)
from testbed.results.tables import Table, to_html, to_markdown, to_text
from testbed.results.topology import Visit

log = logging.getLogger(__name__)

FIGURES = "figures"


# --- tables ----------------------------------------------------------------------------


def _status(summary: Mapping[str, Any]) -> str:
    if isinstance(summary.get("verdict"), str):
        return str(summary["verdict"]).upper()
    if summary.get("error"):
        return "ERROR"
    passed = summary.get("passed")
    return "PASSED" if passed is True else "FAILED" if passed is False else "UNKNOWN"


def _streams_in(summary: Mapping[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    streams = [str(s) for s in summary.get("streams") or {}]
    found: list[str] = []
    for h in rows:
        found += [s for s in stream_fields(h, streams) if s not in found]
    return found


def _lost(h: Mapping[str, Any], streams: list[str]) -> str:
    parts = [f"{s} {fmt_num(h[f'lost_{s}'])}" for s in streams if h.get(f"lost_{s}") is not None]
    if parts:
        return ", ".join(parts)
    return fmt_num(h.get("lost_packets"))


def _phases(h: Mapping[str, Any]) -> str:
    phases = h.get("phases_ms")
    if not isinstance(phases, Mapping):
        return "-"
    numeric = sorted(
        (v, str(k)) for k, v in phases.items() if isinstance(v, int | float) and v is not True
    )
    return ", ".join(f"{k} {fmt_num(v)}" for v, k in numeric) or "-"


def handoff_table(summary: Mapping[str, Any], phases: bool = True) -> Table:
    rows = handoffs(summary)
    streams = _streams_in(summary, rows)
    with_run = any(isinstance(h.get("run"), int) and h["run"] > 0 for h in rows)
    # several mobile nodes (issue 19): which one moved, # its own N-th move
    with_node = len({h.get("node") for h in rows}) > 1
    headers = [*(["node"] if with_node else []), "#", *(["run"] if with_run else [])]
    headers += ["t (s)", "move", "mode"]
    headers += [f"{s} ms" for s in streams] + ["max ms", "lost"]
    headers += ["phases (ms from move)"] if phases else []
    align = ["l"] * with_node + ["r"] * (2 + with_run) + ["l", "l"] + ["r"] * (len(streams) + 1)
    table = Table(headers, align=align)
    for h in rows:
        row = [str(h.get("node"))] if with_node else []
        row += [fmt_num(h.get("index")), *([fmt_num(h.get("run"))] if with_run else [])]
        row += [fmt_num(h.get("t_s"), 3), f"{h.get('from', '?')} → {h.get('to', '?')}"]
        row += [fmt_num(h.get("mode"))]
        row += [fmt_ms(h.get(f"interruption_{s}_ms"), f"interruption_{s}_ms" in h) for s in streams]
        row += [fmt_ms(h.get("interruption_ms"), "interruption_ms" in h), _lost(h, streams)]
        row += [_phases(h)] if phases else []
        table.rows.append(row)
    return table


def _expectations(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(e) for e in summary.get("expectations") or [] if isinstance(e, Mapping)]


def _verdict(e: Mapping[str, Any]) -> str:
    return "pass" if e.get("passed") is True else "FAIL" if e.get("passed") is False else "n/a"


def expectation_table(summary: Mapping[str, Any]) -> Table:
    table = Table(["passed", "expectation", "value", "limit", "detail"], align=list("llrrl"))
    for e in _expectations(summary):
        table.rows.append(
            [
                _verdict(e),
                str(e.get("name", "?")),
                fmt_num(e.get("value"), 3),
                fmt_num(e.get("limit"), 3),
                str(e.get("detail") or ""),
            ]
        )
    return table


def stream_table(summary: Mapping[str, Any]) -> Table:
    headers = ["stream", "path", "sent", "received", "loss %", "interval ms", "owd p50", "owd p95"]
    table = Table(headers, align=list("llrrrrrr"))
    for name, info in (summary.get("streams") or {}).items():
        if not isinstance(info, Mapping):
            continue
        sent, received = info.get("sent"), info.get("received")
        loss = None
        if isinstance(sent, int | float) and isinstance(received, int | float) and sent > 0:
            loss = 100.0 * (sent - received) / sent
        owd = info.get("owd_ms") if isinstance(info.get("owd_ms"), Mapping) else {}
        table.rows.append(
            [
                str(name),
                f"{info.get('from', '?')} → {info.get('to', '?')}",
                fmt_num(sent),
                fmt_num(received),
                fmt_num(loss, 2),
                fmt_num(info.get("interval_ms")),
                fmt_num(owd.get("p50"), 2),
                fmt_num(owd.get("p95"), 2),
            ]
        )
    return table


def floor_table(summary: Mapping[str, Any]) -> Table:
    """Each handoff against its floor: measured, what the links impose on the exchanges
    that happened (the critical path, each message at its path's one-way delay), and the
    overhead on top."""
    rows = [h for h in handoffs(summary) if "floor_ms" in h]
    with_run = any(isinstance(h.get("run"), int) and h["run"] > 0 for h in rows)
    headers = ["#", *(["run"] if with_run else []), "move", "mode", "measured ms"]
    headers += ["floor ms", "overhead ms", "critical path (one-way ms)"]
    table = Table(headers, align=["r"] * (1 + with_run) + ["l", "l", "r", "r", "r", "l"])
    for h in rows:
        path = ", ".join(
            f"{e.get('msg')}"
            + (f" {e['from']}→{e['to']}" if e.get("from") else "")
            + f" {fmt_num(e.get('one_way_ms'))}"
            for e in h.get("critical_path") or []
            if isinstance(e, Mapping)
        )
        row = [fmt_num(h.get("index")), *([fmt_num(h.get("run"))] if with_run else [])]
        row += [f"{h.get('from', '?')} → {h.get('to', '?')}", fmt_num(h.get("mode"))]
        row += [fmt_ms(h.get("interruption_ms"), "interruption_ms" in h)]
        row += [fmt_num(h.get("floor_ms")), fmt_num(h.get("overhead_ms")), path or "-"]
        table.rows.append(row)
    return table


def percentile_table(summary: Mapping[str, Any]) -> Table:
    """Each move's interruption over the repetitions (summaries before per-move percentiles
    held one pooled mapping: shown as one row)."""
    table = Table(["move", "p50", "p95", "max", "n"], align=list("lrrrr"))
    rows = summary.get("percentiles") or []
    if isinstance(rows, Mapping):
        rows = [{"interruption_ms": rows.get("interruption_ms")}]
    for row in rows:
        stats = row.get("interruption_ms") if isinstance(row, Mapping) else None
        if not isinstance(stats, Mapping):
            continue
        move = (
            f"handoff[{row['handoff']}] {row.get('from')}->{row.get('to')}"
            if "handoff" in row
            else "all moves"
        )
        table.rows.append([move] + [fmt_num(stats.get(k)) for k in ("p50", "p95", "max", "n")])
    return table


def text_summary(summary: dict) -> str:
    """A compact terminal table of handoffs and expectations, for the end of a run."""
    head = [
        str(summary.get("scenario") or "?"),
        str(summary.get("run_id") or ""),
        _status(summary),
    ]
    if isinstance(summary.get("duration_s"), int | float):
        head.append(f"{fmt_num(summary['duration_s'])} s")
    lines = ["  ".join(p for p in head if p)]
    if summary.get("error"):
        lines.append(f"  error: {summary['error']}")
    hand = handoff_table(summary, phases=False)
    if hand.rows:
        lines += ["handoffs:", to_text(hand)]
    exps = _expectations(summary)
    if exps:
        passed = sum(1 for e in exps if e.get("passed") is True)
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


def _find_topology(run_dir: Path, summary: Mapping[str, Any]) -> Any:
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
    ref = summary.get("topology")
    if not isinstance(ref, str) or not ref:
        return None
    path = Path(ref)
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


def mobile_path(summary: Mapping[str, Any], events: list[dict]) -> list[Visit]:
    """The mobile node's moves in the first repetition, each with the mode it ended in and
    the address it was given there (from the events: the DHCP server's answer)."""
    mobile = mobile_node(summary)
    moves = [h for h in handoffs(summary) if not h.get("run")]
    visits = []
    for i, h in enumerate(moves):
        t0 = h.get("t_ns")
        t1 = moves[i + 1].get("t_ns") if i + 1 < len(moves) else None
        address = None
        if isinstance(t0, int):
            for e in events:
                in_window = t0 <= e["t_ns"] and (t1 is None or e["t_ns"] < t1)
                if in_window and e.get("node") == mobile and e.get("event") == "dhcp_ack":
                    address = e.get("address")
        note = ", ".join(str(x) for x in (h.get("mode"), address) if x)
        visits.append(Visit(i + 1, str(h.get("to")), note))
    return visits


def _figure(run_dir: Path, name: str, draw: Any, *args: Any) -> str | None:
    """Draw one figure; returns its path relative to the run directory, or None."""
    out = run_dir / FIGURES / name
    try:
        draw(*args, out)
    except Exception:  # plots catch their own errors; this guards a failing disk
        log.exception("cannot write %s", out)
        return None
    return f"{FIGURES}/{name}" if out.exists() else None


def _blocks(run_dir: Path, summary: dict[str, Any], figures: bool) -> list[_Block]:
    title = f"{summary.get('scenario') or run_dir.name}"
    status = _status(summary)
    blocks = [_Block("h1", f"Scenario {title}"), _Block("status", status)]
    facts = [
        ("run", summary.get("run_id")),
        ("started", summary.get("started")),
        ("duration", f"{fmt_num(summary['duration_s'])} s" if "duration_s" in summary else None),
        ("topology", summary.get("topology")),
        ("runs", summary.get("runs")),
        ("error", summary.get("error")),
    ]
    blocks.append(_Block("kv", "\n".join(f"{k}\t{v}" for k, v in facts if v not in (None, ""))))

    rows = handoffs(summary)
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
        if not name and isinstance(summary.get("topology"), str):
            name = Path(summary["topology"]).stem  # a plan.json from before it had the name
        path = mobile_path(summary, events)
        mobile = mobile_node(summary)
        draw = lambda out: topology_diagram(topo, out, name, path, mobile)  # noqa: E731
        img = _figure(run_dir, "topology.png", draw)
        if img:
            blocks += [_Block("h2", "Topology"), _Block("img", img)]
    has_streams = bool(stream_names(run_dir, summary))
    for h in rows:
        ref = resolve_handoff(summary, events, h)
        run = f", run {h['run']}" if isinstance(h.get("run"), int) and h["run"] > 0 else ""
        head = f"Handoff {ref.index}{run}: {h.get('from', '?')} → {h.get('to', '?')}"
        blocks.append(_Block("h2", head))
        if has_streams:
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
    summary = load_summary(run_dir)
    if not summary:
        summary = {"scenario": run_dir.name, "error": "summary.json missing or unreadable"}
    blocks = _blocks(run_dir, summary, figures)
    md = run_dir / "report.md"
    md.write_text(_markdown(blocks), encoding="utf-8")
    title = f"{summary.get('scenario') or run_dir.name} {summary.get('run_id') or ''}".strip()
    (run_dir / "report.html").write_text(_html(blocks, title), encoding="utf-8")
    return md
