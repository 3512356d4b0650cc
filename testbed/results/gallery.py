"""The picture gallery (``docs/gallery/``): one ladder, one timeline and the topology of
each lab, from real runs, so a reviewer can look at them in the repository.

``testbed gallery`` (or ``python -m testbed.results.gallery``) runs each lab's
``scenario.yaml`` (root: network namespaces), picks the handoff with the most to see (a
message stopped on its way first, then the most messages), draws the three pictures at
a resolution that keeps each PNG under :data:`MAX_BYTES`, checks that they read clearly
(:func:`testbed.results.ladder.readability_problems`, no overlapping labels in the
timeline and the topology) and writes ``docs/gallery/README.md`` embedding them. With
``--runs DIR`` it draws from runs already there (``DIR/<scenario>/latest``) instead.
Exit status 1 when a picture has a readability problem (the pictures are still written).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# the drawing modules (matplotlib) are imported where they are used: ``testbed``'s parser
# registers this command without paying for them

ROOT = Path(__file__).resolve().parents[2]
MAX_BYTES = 150_000
DPIS = (100, 90, 80, 72, 60)


@dataclass
class Entry:
    """One lab's pictures."""

    lab: str  # the lab's directory name
    title: str
    description: str
    run_dir: Path
    handoff: int
    move: str
    pictures: dict[str, str] = field(default_factory=dict)  # kind -> file name
    problems: list[str] = field(default_factory=list)


def lab_scenarios(root: Path = ROOT) -> list[Path]:
    """Each lab's main scenario (labs/0*/scenario.yaml)."""
    return sorted(p for p in (root / "labs").glob("0*/scenario.yaml"))


def save_small(fig: Figure, out: Path, max_bytes: int = MAX_BYTES) -> int:
    """Save ``fig`` at the highest of :data:`DPIS` that keeps it under ``max_bytes``."""
    data = b""
    for dpi in DPIS:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
        data = buffer.getvalue()
        if len(data) <= max_bytes:
            break
    out.write_bytes(data)
    return len(data)


def pick_handoff(run_dir: Path) -> int:
    """The handoff with the most to see: one with a stopped message first, then the one
    with the most arrows (the first of equals)."""
    from testbed.results.ladder import ladder_figure
    from testbed.results.rundata import summary_or_empty

    best: tuple[int, int, int] | None = None
    for h in summary_or_empty(run_dir).handoffs:
        if h.run:
            continue
        try:
            _, lad = ladder_figure(run_dir, h)
        except Exception:  # nothing to draw in this handoff: not the one to show
            continue
        score = (int(any(a.stopped for a in lad.arrows)), len(lad.arrows), -h.index)
        if best is None or score > best:
            best = score
    return -best[2] if best is not None else 0


def draw_lab(run_dir: Path, lab: str, out_dir: Path, handoff: int | None = None) -> Entry:
    """The three pictures of one lab's run into ``out_dir``, checked."""
    from testbed.results.figure import overlapping_texts
    from testbed.results.ladder import ladder_figure, readability_problems, recorded_messages
    from testbed.results.plots import timeline_figure
    from testbed.results.report import mobile_path
    from testbed.results.rundata import (
        LADDER_DEFAULT_SPAN_NS,
        load_events,
        move_text,
        resolve_handoff,
        summary_or_empty,
    )
    from testbed.results.topology import topology_figure

    summary = summary_or_empty(run_dir)
    events = load_events(run_dir, summary)
    index = pick_handoff(run_dir) if handoff is None else handoff
    ref = resolve_handoff(summary, events, index)
    info = ref.info
    entry = Entry(
        lab,
        summary.scenario or lab,
        summary.description,
        run_dir,
        index,
        f"{move_text(info)} (mode {info.mode})",
    )
    fig, lad = ladder_figure(run_dir, index)
    t_move = ref.t_move_ns or 0
    t_end = ref.t_next_ns if ref.t_next_ns is not None else t_move + LADDER_DEFAULT_SPAN_NS
    recorded = recorded_messages(events, t_move, t_end)
    entry.problems += [f"ladder: {p}" for p in readability_problems(fig, lad, recorded)]
    entry.pictures["ladder"] = f"{lab}-ladder.png"
    save_small(fig, out_dir / entry.pictures["ladder"])

    fig = timeline_figure(run_dir, index)
    if pairs := overlapping_texts(fig):
        entry.problems.append(f"timeline: overlapping labels {pairs[:3]}")
    entry.pictures["timeline"] = f"{lab}-timeline.png"
    save_small(fig, out_dir / entry.pictures["timeline"])

    plan = json.loads((run_dir / "plan.json").read_text())
    name = Path(summary.topology or "topology").stem
    fig = topology_figure(plan, name, mobile_path(summary, events), summary.mobile_node)
    if pairs := overlapping_texts(fig):
        entry.problems.append(f"topology: overlapping labels {pairs[:3]}")
    entry.pictures["topology"] = f"{lab}-topology.png"
    save_small(fig, out_dir / entry.pictures["topology"])
    return entry


def readme(entries: Sequence[Entry]) -> str:
    lines = [
        "# Gallery: the pictures of each lab",
        "",
        "One signalling ladder, one probe timeline and the topology of each teaching lab",
        "([`labs/`](../../labs/README.md)), drawn from a real run of its `scenario.yaml` by",
        "`testbed gallery` (as root; `testbed gallery --runs DIR` draws from runs already in",
        "`DIR`). Each ladder is the lab's handoff with the most to see: a message stopped on",
        "its way first, then the most messages. The command checks what makes a picture",
        "readable (no overlapping labels, no line through a label, one column per node and",
        "none empty, one page wide, an arrow for every recorded message) and fails when a",
        "picture falls short. Regenerate after changing the pictures or the labs.",
        "",
        "How to read a ladder: time runs down from the move (ms on the left; grey bands are",
        "idle stretches compressed, with their length); one column per node with its role;",
        "an arrow per message from its send to its receipt, with the addresses it was sent",
        "to and seen from and its time in flight; dashed when only one end was recorded; a",
        "red × where a message stopped (with the ICMP error drawn back) or was refused;",
        "diamonds are decisions, ticks other events, dotted rules the runner's moves.",
        "",
    ]
    for e in entries:
        lines += [
            f"## {e.lab}",
            "",
            f"`{e.title}`: {e.description}",
            "",
            f"Handoff {e.handoff}, {e.move}.",
            "",
        ]
        for kind in ("ladder", "timeline", "topology"):
            if kind in e.pictures:
                lines += [f"![{e.lab} {kind}]({e.pictures[kind]})", ""]
        if e.problems:
            lines += ["Readability problems:", ""] + [f"- {p}" for p in e.problems] + [""]
    return "\n".join(lines)


def run_lab(scenario: Path, results: Path) -> Path:
    """Run one lab scenario for real; its run directory."""
    from testbed.scenario.execute import run_scenario
    from testbed.scenario.runner import RunOptions

    options = RunOptions(results=results, pcap="none", progress=lambda _line: None)
    return Path(run_scenario(scenario, options).run_dir)


def build(
    out: Path, runs: Path | None = None, results: Path | None = None, root: Path = ROOT
) -> list[Entry]:
    """Draw every lab's pictures into ``out`` and write its README; the entries."""
    import tempfile

    import yaml

    out.mkdir(parents=True, exist_ok=True)
    entries = []
    with tempfile.TemporaryDirectory(prefix="gallery-") as scratch:
        for scenario in lab_scenarios(root):
            name = yaml.safe_load(scenario.read_text())["name"]
            if runs is not None:
                run_dir = (runs / name / "latest").resolve()
                if not (run_dir / "summary.json").exists():
                    raise FileNotFoundError(f"{run_dir}: no run of {scenario} there")
            else:
                run_dir = run_lab(scenario, results or Path(scratch))
            entry = draw_lab(run_dir, scenario.parent.name, out)
            entries.append(entry)
            print(
                f"{scenario.parent.name}: handoff {entry.handoff}, {len(entry.pictures)} pictures"
                + (f"; {len(entry.problems)} problems" if entry.problems else "")
            )
    (out / "README.md").write_text(readme(entries))
    return entries


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "gallery")
    parser.add_argument(
        "--runs", type=Path, help="draw from DIR/<scenario>/latest instead of running the labs"
    )
    parser.add_argument("--results", type=Path, help="keep the labs' runs here (default: none)")


def run(args: argparse.Namespace) -> int:
    entries = build(args.out, args.runs, args.results)
    problems = [f"{e.lab}: {p}" for e in entries for p in e.problems]
    for p in problems:
        print(p, file=sys.stderr)
    print(f"{args.out / 'README.md'}: {len(entries)} labs")
    return 1 if problems else 0


def register(sub: Any) -> None:
    """``testbed gallery`` on a ``testbed`` subparsers object."""
    p = sub.add_parser(
        "gallery", help="redraw docs/gallery/: each lab's ladder, timeline, topology"
    )
    add_arguments(p)
    p.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.results.gallery", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
