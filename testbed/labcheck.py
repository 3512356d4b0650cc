"""A lab's expected observations, written in its README, checked against a run.

Each lab README carries one or more fenced blocks whose info string is ``expected``,
optionally followed by the scenario file it is about (default ``scenario.yaml``)::

    ```expected scenario-sequential.yaml
    handoff[0].mode = c                                   # a summary.json metric
    handoff[0].phases_ms.dhcp_started >= 1000
    handoff[0].phases_ms.agent_discovered < handoff[0].phases_ms.registration_sent
    handoff[*].interruption_ms < 1000                     # every handoff
    events contains registration_accepted from mn in handoff[0] with mode=f udp=false
    events lacks visitor_removed from fa
    count(agent_solicitation_sent from mn in handoff[0]) >= 1
    time(nat_detected from ha in handoff[1]) < handoff[1].phases_ms.registration_accepted
    ```

One observation per line; ``#`` starts a comment. A line is either

* ``TERM OP TERM`` with ``OP`` one of ``= == != < <= > >=`` (spaces around it), or
* ``events contains SELECTOR`` / ``events lacks SELECTOR``.

A TERM is a metric of ``summary.json`` (``handoff[N].FIELD[.SUB]``, ``handoffs`` (their
number), ``tcp.errors``, ``stream.down.lost``, ``handoff[N].interruption_ms.p95`` (over
the move's repetitions; ``interruption_ms.p95`` when the run has one move),
``loss_before_first_move``, ``final_mode``, or any other path into the summary), a
``count(SELECTOR)``, a ``time(SELECTOR)`` (ms from the handoff's move to the first matching
event, or from the run's first event without ``in``), or a literal: a number, ``null``,
``true``, ``false``, a bare word (``f``, ``udp``) or a "quoted string".

A SELECTOR is ``EVENT [from NODE] [in handoff[N]] [with KEY=VALUE ...]``; EVENT and string
VALUEs may be shell patterns (``registration_*``, ``care_of=192.168.1.*``). ``in handoff[N]``
means from that handoff's move to the next move. ``[*]`` anywhere in a line checks the line
once per handoff.

``python -m testbed.labcheck labs/01-.../README.md RUN_DIR`` checks a run by hand.
"""

from __future__ import annotations

import argparse
import fnmatch
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mipbase import events as eventlog
from testbed.scenario.metricpath import Missing, resolve_one
from testbed.summary import RunSummary, read_summary

DEFAULT_TARGET = "scenario.yaml"
OPS = ("==", "!=", "<=", ">=", "=", "<", ">")
_FENCE = re.compile(r"^(`{3,}|~{3,})\s*expected\b[ \t]*(\S*)[ \t]*$")
_OP_SPLIT = re.compile(r"\s(==|!=|<=|>=|=|<|>)\s")
_PATH = re.compile(r"^[a-z_][a-z0-9_]*(\[(\d+|\*)\])?(\.[a-z0-9_]+(\[\d+\])?)*$")
_SEGMENT = re.compile(r"^([a-z0-9_]+)(?:\[(\d+|\*)\])?$")
_FUNC = re.compile(r"^(count|time)\((.*)\)$")
_HANDOFF_SCOPE = re.compile(r"^handoff\[(\d+|\*)\]$")
# roots of summary.json a metric may start with (and the short names the runner's
# expectations use for some of them)
METRIC_ROOTS = frozenset(
    {
        "handoff",
        "handoffs",
        "stream",
        "streams",
        "tcp",
        "interruption_ms",
        "percentiles",
        "loss_before_first_move",
        "final_mode",
        "passed",
        "error",
        "runs",
        "repeat",
        "duration_s",
        "scenario",
    }
)


class LabCheckError(ValueError):
    """An expected-block line that cannot be parsed."""


# --- the syntax ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Selector:
    event: str
    node: str | None = None
    handoff: str | None = None  # an index, or "*"
    where: tuple[tuple[str, Any], ...] = ()

    def text(self) -> str:
        out = self.event
        if self.node:
            out += f" from {self.node}"
        if self.handoff is not None:
            out += f" in handoff[{self.handoff}]"
        if self.where:
            out += " with " + " ".join(f"{k}={_show(v)}" for k, v in self.where)
        return out


@dataclass(frozen=True)
class Metric:
    path: str


@dataclass(frozen=True)
class Func:
    name: str  # count or time
    selector: Selector


@dataclass(frozen=True)
class Literal:
    value: Any


Term = Metric | Func | Literal


@dataclass(frozen=True)
class Assertion:
    """One parsed line: ``left op right``."""

    left: Term
    op: str
    right: Term
    source: str = ""
    line: int = 0


@dataclass
class Check:
    """The outcome of one expected line against one run."""

    line: int
    text: str
    passed: bool
    detail: str = ""
    values: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        mark = "pass" if self.passed else "FAIL"
        where = f"line {self.line}: " if self.line else ""
        return f"{mark}  {where}{self.text}" + (f"  ({self.detail})" if self.detail else "")


def parse_literal(text: str) -> Any:
    """``null``/``true``/``false``, numbers, "quoted" or bare strings."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    low = text.lower()
    if low in ("null", "none"):
        return None
    if low == "true":
        return True
    if low == "false":
        return False
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def parse_selector(text: str) -> Selector:
    words = text.split()
    if not words:
        raise LabCheckError("an event selector needs an event name")
    event, rest = words[0], words[1:]
    node = handoff = None
    where: list[tuple[str, Any]] = []
    i = 0
    while i < len(rest):
        word = rest[i]
        if word == "from" and i + 1 < len(rest) and node is None:
            node, i = rest[i + 1], i + 2
        elif word == "in" and i + 1 < len(rest) and handoff is None:
            scope = _HANDOFF_SCOPE.match(rest[i + 1])
            if not scope:
                raise LabCheckError(f"'in' takes handoff[N] or handoff[*], not {rest[i + 1]!r}")
            handoff, i = scope.group(1), i + 2
        elif word == "with":
            pairs = rest[i + 1 :]
            if not pairs:
                raise LabCheckError("'with' needs KEY=VALUE pairs")
            for pair in pairs:
                key, sep, value = pair.partition("=")
                if not sep or not key:
                    raise LabCheckError(f"expected KEY=VALUE after 'with', not {pair!r}")
                where.append((key, parse_literal(value)))
            break
        else:
            raise LabCheckError(
                f"unexpected {word!r} in event selector (EVENT [from NODE] "
                "[in handoff[N]] [with KEY=VALUE ...])"
            )
    return Selector(event, node, handoff, tuple(where))


def parse_term(text: str) -> Term:
    text = text.strip()
    if not text:
        raise LabCheckError("empty term")
    func = _FUNC.match(text)
    if func:
        return Func(func.group(1), parse_selector(func.group(2)))
    if _PATH.match(text) and text.split(".")[0].split("[")[0] in METRIC_ROOTS:
        return Metric(text)
    if " " in text and text[0] not in "\"'":
        raise LabCheckError(f"cannot read {text!r} (spaces around the operator?)")
    return Literal(parse_literal(text))


def strip_comment(text: str) -> str:
    """Drop a ``#`` comment (not inside quotes)."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return text[:i].strip()
    return text.strip()


def parse_line(text: str, line: int = 0) -> Assertion | None:
    """One expected line (None for blank and comment lines). Raises LabCheckError."""
    body = strip_comment(text)
    if not body:
        return None
    try:
        words = body.split(None, 2)
        if words[0] == "events":
            if len(words) < 3 or words[1] not in ("contains", "lacks"):
                raise LabCheckError("use 'events contains SELECTOR' or 'events lacks SELECTOR'")
            selector = parse_selector(words[2])
            op = ">=" if words[1] == "contains" else "=="
            return Assertion(
                Func("count", selector), op, Literal(1 if op == ">=" else 0), body, line
            )
        parts = _OP_SPLIT.split(body, maxsplit=1)
        if len(parts) != 3:
            raise LabCheckError(
                "expected 'TERM OP TERM' (OP one of = != < <= > >=, with spaces around it) "
                "or 'events contains|lacks SELECTOR'"
            )
        left, op, right = parts
        term = parse_term(left)
        if isinstance(term, Literal):
            raise LabCheckError(
                f"{left.strip()!r} is not a metric (handoff[N].FIELD, handoffs, tcp.X, "
                "stream.NAME.X, interruption_ms.pNN, ...), count(...) or time(...)"
            )
        return Assertion(term, op, parse_term(right), body, line)
    except LabCheckError as exc:
        where = f"line {line}: " if line else ""
        raise LabCheckError(f"{where}{text.strip()!r}: {exc}") from None


def expected_blocks(markdown: str) -> dict[str, list[tuple[int, str]]]:
    """Fenced ``expected [SCENARIO]`` blocks: scenario file -> [(line number, text)]."""
    blocks: dict[str, list[tuple[int, str]]] = {}
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i].strip())
        if not match:
            i += 1
            continue
        fence, target = match.group(1), match.group(2) or DEFAULT_TARGET
        body = blocks.setdefault(target, [])
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append((i + 1, lines[i]))
            i += 1
        i += 1
    return blocks


def parse_block(lines: Sequence[tuple[int, str]]) -> list[Assertion]:
    return [a for n, text in lines if (a := parse_line(text, n)) is not None]


# --- evaluation ---------------------------------------------------------------------------


def resolve_metric(path: str, summary: RunSummary) -> Any:
    """A metric of summary.json, in the scenario expectations' grammar
    (``testbed.scenario.metricpath``), or any other dotted path into it."""
    return resolve_one(path, summary)


@dataclass
class RunData:
    summary: RunSummary
    events: list[dict[str, Any]]

    def window(self, handoff: str | None) -> tuple[int | None, int | None] | Missing:
        if handoff is None:
            return (None, None)
        moves = self.summary.handoffs
        i = int(handoff)
        if i >= len(moves):
            return Missing(f"there is no handoff {i}")
        end = moves[i + 1].t_ns if i + 1 < len(moves) else None
        return (moves[i].t_ns, end)

    def t0(self) -> int:
        return min((e["t_ns"] for e in self.events if "t_ns" in e), default=0)


def _matches(value: Any, wanted: Any) -> bool:
    if wanted is None or isinstance(wanted, bool) or isinstance(value, bool):
        return value is wanted or value == wanted
    if isinstance(wanted, int | float) and not isinstance(value, str):
        return isinstance(value, int | float) and float(value) == float(wanted)
    if value is None:
        return False
    text = str(value)
    wanted = str(wanted)
    return fnmatch.fnmatchcase(text, wanted) if any(c in wanted for c in "*?[") else text == wanted


def select(run: RunData, selector: Selector) -> list[dict[str, Any]] | Missing:
    window = run.window(selector.handoff)
    if isinstance(window, Missing):
        return window
    start, end = window
    pattern = any(c in selector.event for c in "*?[")
    found = []
    for event in run.events:
        name = str(event.get("event", ""))
        if not (fnmatch.fnmatchcase(name, selector.event) if pattern else name == selector.event):
            continue
        if selector.node is not None and event.get("node") != selector.node:
            continue
        t = event.get("t_ns", 0)
        if (start is not None and t < start) or (end is not None and t >= end):
            continue
        if all(_matches(event.get(k, Missing("absent")), v) for k, v in selector.where):
            found.append(event)
    return found


def evaluate_term(term: Term, run: RunData) -> Any:
    if isinstance(term, Literal):
        return term.value
    if isinstance(term, Metric):
        return resolve_metric(term.path, run.summary)
    events = select(run, term.selector)
    if isinstance(events, Missing):
        return events
    if term.name == "count":
        return len(events)
    if not events:
        return Missing(f"no {term.selector.text()}")
    window = run.window(term.selector.handoff)
    origin = window[0] if isinstance(window, tuple) and window[0] is not None else run.t0()
    return round((min(e["t_ns"] for e in events) - origin) / 1e6, 3)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def compare(left: Any, op: str, right: Any) -> tuple[bool, str]:
    for side in (left, right):
        if isinstance(side, Missing):
            return False, side.why
    if op in ("=", "=="):
        a, b = _number(left), _number(right)
        if a is not None and b is not None:
            return a == b, ""
        return left == right or (left is not None and str(left) == str(right)), ""
    if op == "!=":
        ok, why = compare(left, "=", right)
        return not ok, why
    a, b = _number(left), _number(right)
    if a is None or b is None:
        return False, f"{_show(left)} and {_show(right)} are not both numbers"
    result = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    return result, ""


def _show(value: Any) -> str:
    if isinstance(value, Missing):
        return f"<{value.why}>"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _expand(assertion: Assertion, handoffs: int) -> list[Assertion] | None:
    """``[*]`` -> one assertion per handoff (None: the line has no star)."""
    if "[*]" not in assertion.source:
        return None
    out = []
    for i in range(handoffs):
        parsed = parse_line(assertion.source.replace("[*]", f"[{i}]"), assertion.line)
        assert parsed is not None
        out.append(parsed)
    return out


def _describe(term: Term, value: Any) -> str:
    if isinstance(term, Literal):
        return _show(value)
    name = term.path if isinstance(term, Metric) else f"{term.name}({term.selector.text()})"
    return f"{name} is {_show(value)}"


def check_assertion(assertion: Assertion, run: RunData) -> Check:
    expanded = _expand(assertion, len(run.summary.handoffs))
    if expanded is not None:
        if not expanded:
            return Check(assertion.line, assertion.source, False, "there are no handoffs")
        parts = [check_assertion(a, run) for a in expanded]
        failed = [p for p in parts if not p.passed]
        detail = "; ".join(f"{p.detail}" for p in failed)
        values = [v for p in parts for v in p.values]
        return Check(assertion.line, assertion.source, not failed, detail, values)
    left = evaluate_term(assertion.left, run)
    right = evaluate_term(assertion.right, run)
    ok, why = compare(left, assertion.op, right)
    shown = [_describe(t, v) for t, v in ((assertion.left, left), (assertion.right, right))]
    terms = (assertion.left, assertion.right)
    values = [s for s, t in zip(shown, terms, strict=True) if not isinstance(t, Literal)]
    detail = ""
    if not ok:
        detail = why or "; ".join(values) or f"{_show(left)} {assertion.op} {_show(right)}"
    return Check(assertion.line, assertion.source, ok, detail, values)


def load_events(run_dir: Path) -> list[dict[str, Any]]:
    """The run's merged events.jsonl (or its per-process files while it runs)."""
    return eventlog.read_run(run_dir)


def check_lines(
    lines: Sequence[tuple[int, str]], summary: RunSummary, events: list[dict[str, Any]]
) -> list[Check]:
    run = RunData(summary, events)
    return [check_assertion(a, run) for a in parse_block(lines)]


def check_run(readme: Path | str, run_dir: Path | str, target: str = DEFAULT_TARGET) -> list[Check]:
    """Check the README's ``expected`` block(s) for ``target`` against a finished run."""
    readme, run_dir = Path(readme), Path(run_dir)
    blocks = expected_blocks(readme.read_text())
    if target not in blocks:
        raise LabCheckError(f"{readme}: no ```expected {target} block")
    summary = read_summary(run_dir / "summary.json")
    return check_lines(blocks[target], summary, load_events(run_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.labcheck",
        description="Check a lab's expected observations (its README) against a run.",
    )
    parser.add_argument("readme", help="the lab's README.md")
    parser.add_argument("run_dir", help="the run's results directory (has summary.json)")
    parser.add_argument(
        "--scenario", default=DEFAULT_TARGET, help="which block (default scenario.yaml)"
    )
    args = parser.parse_args(argv)
    try:
        checks = check_run(args.readme, args.run_dir, args.scenario)
    except (LabCheckError, OSError, ValueError) as exc:
        print(f"labcheck: {exc}", file=sys.stderr)
        return 2
    for check in checks:
        print(check)
    failed = sum(not c.passed for c in checks)
    print(f"{len(checks) - failed}/{len(checks)} expected observations hold")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
