"""Looking into a run while it runs: ``testbed state`` and ``testbed events``.

``testbed state RUN_DIR [NODE]`` prints the Mobile IP agents' live state -- the home agent's
binding cache, the foreign agent's visitor list, the mobile node's mode, registration,
care-of address and tunnel -- as plain tables. The runner's agents rewrite
``RUN_DIR/state/<service>.json`` every second (``agents/runtime/state.py``).

``testbed events RUN_DIR [--follow] [--node N] [--event PATTERN]`` prints the run's
structured events one per line, with the time since the run's first event: from the
per-process files ``RUN_DIR/events/*.jsonl`` merged by time while the run goes on, from the
merged ``events.jsonl`` once it is over. ``--follow`` keeps printing new events until Ctrl-C
(or until the run ends); given a scenario's results directory before its run starts, it
waits for the run.

RUN_DIR is what ``testbed run`` prints at its start ("results in ..."); a scenario's results
directory (``results/NAME``) means its newest run. Any directory laid out the same way works,
e.g. one for agents started by hand with ``--events DIR/events/ha.jsonl --state
DIR/state/ha.json``. Output is plain text (no curses), so it can be piped and copied.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from mipbase import events as eventlog
from mipbase.modes import Mode
from testbed.results.tables import Table, to_text

STALE_S = 3.0  # state older than this: the agent has probably stopped
HOLD_NS = 250_000_000  # --follow: hold events this long so late writers sort in
POLL_S = 0.2
ROLE_NAMES = {"ha": "home agent", "fa": "foreign agent", "mn": "mobile node", "proxy": "MIP proxy"}
HIDDEN_FIELDS = ("t_ns", "node", "event")


# --- finding the run ----------------------------------------------------------------------


def _is_run_dir(path: Path) -> bool:
    return any((path / name).exists() for name in ("summary.json", "events", "state"))


def resolve_run_dir(path: Path | str) -> Path:
    """A run directory; a scenario's results directory means its newest run; a run with
    repetitions (``rep-NN``) means its newest repetition that has events or state."""
    path = Path(path)
    if not path.is_dir():
        raise LookupError(f"{path}: no such directory")
    if not _is_run_dir(path):
        runs = _runs_in(path)
        if not runs:
            raise LookupError(
                f"{path}: not a run directory (no events/, state/ or summary.json); "
                "'testbed run' prints the run's directory at its start"
            )
        path = runs[-1]
    reps = sorted(
        p for p in path.glob("rep-*") if (p / "events").is_dir() or (p / "state").is_dir()
    )
    if reps and not (path / "events").is_dir():
        return reps[-1]
    return path


def _runs_in(path: Path) -> list[Path]:
    """The runs in a scenario's results directory, oldest first (run ids start with the
    date and time: ``20260101-120000-ab12``)."""
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_dir() and _is_run_dir(p))


# --- events -------------------------------------------------------------------------------


@dataclass
class EventFilter:
    nodes: Sequence[str] = ()
    patterns: Sequence[str] = ()

    def __call__(self, event: Mapping[str, Any]) -> bool:
        if self.nodes and not (
            event.get("node") in self.nodes
            or (event.get("node") == "runner" and event.get("target") in self.nodes)
        ):
            return False
        if self.patterns:
            name = str(event.get("event", ""))
            return any(_name_matches(name, p) for p in self.patterns)
        return True


def _name_matches(name: str, pattern: str) -> bool:
    """Shell patterns match the whole name; a plain word matches whole ``_``-separated words
    of it: ``registration`` and ``accepted`` match ``registration_accepted``; ``move``
    matches ``move_start`` but not ``movement_detected`` or ``binding_removed``."""
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return f"_{pattern}_" in f"_{name}_"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), default=str)
    text = str(value)
    return json.dumps(text) if (not text or any(c.isspace() for c in text)) else text


def format_event(event: Mapping[str, Any], t0_ns: int, node_width: int = 7) -> str:
    """``  +1.234 s  mn      registration_sent          mode=c care_of=10.3.0.160 ...``"""
    seconds = (int(event.get("t_ns", t0_ns)) - t0_ns) / 1e9
    fields = " ".join(f"{k}={_value(v)}" for k, v in event.items() if k not in HIDDEN_FIELDS)
    node = str(event.get("node", "?"))
    line = f"{seconds:+9.3f} s  {node:<{node_width}} {event.get('event', '?')!s:<26} {fields}"
    return line.rstrip()


def _separator(event: Mapping[str, Any]) -> str | None:
    if event.get("event") != "move_start":
        return None
    who = event.get("target", "?")
    return (
        f"  ---- handoff {event.get('index', '?')}: {who} "
        f"{event.get('from', '?')} -> {event.get('to', '?')} ----"
    )


class EventPrinter:
    def __init__(self, out: TextIO, accept: Callable[[Mapping[str, Any]], bool], raw: bool):
        self.out = out
        self.accept = accept
        self.raw = raw
        self.t0: int | None = None

    def emit(self, events: Iterable[Mapping[str, Any]]) -> None:
        for event in events:
            if self.t0 is None:
                self.t0 = int(event["t_ns"])  # relative to the first event, shown or not
            if not self.accept(event):
                continue
            if self.raw:
                self.out.write(json.dumps(event, default=str) + "\n")
                continue
            separator = _separator(event)
            if separator:
                self.out.write(separator + "\n")
            self.out.write(format_event(event, self.t0) + "\n")
        self.out.flush()


def follow_events(
    run_dir: Path,
    printer: EventPrinter,
    *,
    poll_s: float = POLL_S,
    hold_ns: int = HOLD_NS,
    clock: Callable[[], int] = time.monotonic_ns,
    stop_when_finished: bool = True,
    timeout_s: float | None = None,
) -> None:
    """Print events as they are written, in time order, until Ctrl-C or the run ends.

    Each process writes its own file, so an event may be read after a later one of another
    process: events are held ``hold_ns`` before printing, which puts nearly all in order.
    """
    tail = eventlog.Tail(run_dir / eventlog.PER_PROCESS)
    pending: list[dict[str, Any]] = []
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while True:
            finished = stop_when_finished and (run_dir / "summary.json").exists()
            pending += tail.poll()
            pending.sort(key=lambda e: e["t_ns"])
            if finished:
                printer.emit(pending)
                return
            cut = clock() - hold_ns
            ready = [e for e in pending if e["t_ns"] <= cut]
            pending = pending[len(ready) :]
            printer.emit(ready)
            if deadline is not None and time.monotonic() >= deadline:
                printer.emit(pending)
                return
            time.sleep(poll_s)
    except KeyboardInterrupt:
        pending += tail.poll()
        printer.emit(sorted(pending, key=lambda e: e["t_ns"]))


def _quiet_broken_pipe(fn: Callable[[argparse.Namespace, TextIO | None], int]) -> Any:
    """``testbed events RUN | head``: a closed pipe ends the output quietly."""

    def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
        try:
            return fn(args, out)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes
            return 0

    run.__doc__ = fn.__doc__
    return run


def await_run(path: Path, poll_s: float = POLL_S, timeout_s: float | None = None) -> Path:
    """The run to follow: ``path`` itself if it is a run; otherwise (a scenario's results
    directory, which may not exist yet) its newest run still going on, or else the first
    run that starts from now on -- so ``--follow`` can be started before ``testbed run``."""
    if path.is_dir() and _is_run_dir(path):
        return resolve_run_dir(path)
    before = set(_runs_in(path))
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    announced = False
    while True:
        runs = _runs_in(path)
        live = [r for r in runs if not (r / "summary.json").exists()]
        fresh = [r for r in runs if r not in before]
        if live or fresh:
            return resolve_run_dir((live or fresh)[-1])
        if not announced:
            print(f"waiting for a run to start in {path} (Ctrl-C to stop)", file=sys.stderr)
            announced = True
        if deadline is not None and time.monotonic() >= deadline:
            raise LookupError(f"{path}: no run started within {timeout_s:g} s")
        time.sleep(poll_s)


@_quiet_broken_pipe
def cmd_events(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    printer = EventPrinter(out, EventFilter(args.node or (), args.event or ()), args.json)
    if not args.follow:
        run_dir = resolve_run_dir(args.run_dir)
        events = eventlog.read_run(run_dir)
        if not events:
            print(f"{run_dir}: no events yet", file=sys.stderr)
        printer.emit(events)
        return 0
    try:
        run_dir = await_run(Path(args.run_dir))
    except KeyboardInterrupt:
        return 0
    if (run_dir / "summary.json").exists():  # nothing more will come: print it all
        printer.emit(eventlog.read_run(run_dir))
        print(f"(the run in {run_dir} is over)", file=sys.stderr)
        return 0
    print(f"following {run_dir} (Ctrl-C to stop)", file=sys.stderr)
    follow_events(run_dir, printer)
    if (run_dir / "summary.json").exists():
        print("(the run is over: its results are in summary.json)", file=sys.stderr)
    return 0


# --- state --------------------------------------------------------------------------------


@dataclass
class AgentState:
    service: str
    node: str
    data: dict[str, Any]

    @property
    def role(self) -> str:
        return str(self.data.get("role", "?"))

    @property
    def t_s(self) -> float | None:
        t = self.data.get("t_ns")
        return t / 1e9 if isinstance(t, int | float) else None


def _service_nodes(run_dir: Path) -> dict[str, str]:
    """service label -> node, from the runner's ``service_started`` events."""
    out: dict[str, str] = {}
    for event in eventlog.read_file(run_dir / eventlog.PER_PROCESS / "runner.jsonl"):
        if event.get("event") == "service_started" and event.get("service"):
            out[str(event["service"])] = str(event.get("target", event["service"]))
    return out


def _lab_name(run_dir: Path) -> str | None:
    for event in eventlog.read_file(run_dir / eventlog.PER_PROCESS / "runner.jsonl"):
        if event.get("event") == "lab_up" and event.get("lab"):
            return str(event["lab"])
    return None


def load_states(run_dir: Path, node: str | None = None) -> list[AgentState]:
    nodes = _service_nodes(run_dir)
    states = []
    for path in sorted((run_dir / "state").glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced (it is written atomically, but be safe)
        if not isinstance(data, dict):
            continue
        service = path.stem
        state = AgentState(service, nodes.get(service, service), data)
        if node is None or node in (state.service, state.node):
            states.append(state)
    return states


def _secs(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:.0f} s" if abs(value) >= 10 else f"{value:.1f} s"


def _expires_in(expires: Any, at: float | None) -> str:
    if at is None or isinstance(expires, bool) or not isinstance(expires, int | float):
        return "-"
    return _secs(expires - at)


def _yes(value: Any) -> str:
    return "yes" if value is True else "no" if value is False else _value(value)


def _endpoint(address: Any, port: Any) -> str:
    if address in (None, ""):
        return "-"
    return f"{address}:{port}" if port not in (None, "") else str(address)


def _counters(data: Mapping[str, Any], key: str) -> str | None:
    values = data.get(key)
    if not isinstance(values, Mapping) or not values:
        return None
    return ", ".join(f"{k} {v}" for k, v in values.items())


def _ha_lines(state: AgentState) -> list[str]:
    bindings = state.data.get("bindings") or []
    lines = [f"binding cache: {len(bindings)} binding{'s' if len(bindings) != 1 else ''}"]
    if bindings:
        table = Table(
            [
                "home address",
                "care-of address",
                "tunnel to",
                "encap",
                "reverse",
                "lifetime",
                "expires in",
                "request from",
            ],
            align=["l", "l", "l", "l", "l", "r", "r", "l"],
        )
        for b in bindings:
            table.rows.append(
                [
                    _value(b.get("home_address")),
                    _value(b.get("care_of")),
                    _endpoint(b.get("peer"), b.get("peer_port")),
                    _value(b.get("encapsulation")),
                    _yes(b.get("reverse")),
                    _secs(b.get("lifetime")),
                    _expires_in(b.get("expires"), state.t_s),
                    _endpoint(b.get("src"), b.get("src_port")),
                ]
            )
        lines += to_text(table, indent="  ").splitlines()
    return lines


def _fa_lines(state: AgentState) -> list[str]:
    visitors = state.data.get("visitors") or []
    lines = [f"visitor list: {len(visitors)} visitor{'s' if len(visitors) != 1 else ''}"]
    if visitors:
        table = Table(
            [
                "home address",
                "home agent",
                "interface",
                "care-of address",
                "reverse",
                "lifetime",
                "expires in",
            ],
            align=["l", "l", "l", "l", "l", "r", "r"],
        )
        for v in visitors:
            table.rows.append(
                [
                    _value(v.get("home_address")),
                    _value(v.get("home_agent")),
                    _value(v.get("iface")),
                    _value(v.get("care_of")),
                    _yes(v.get("reverse")),
                    _secs(v.get("lifetime")),
                    _expires_in(v.get("expires"), state.t_s),
                ]
            )
        lines += to_text(table, indent="  ").splitlines()
    return lines


def _mn_lines(state: AgentState) -> list[str]:
    d = state.data
    table = Table(["mode", "registered", "state", "care-of address"])
    table.rows.append(
        [
            _value(d.get("mode")),
            _yes(d.get("registered")),
            _value(d.get("state")),
            _value(d.get("care_of")),
        ]
    )
    lines = to_text(table, indent="").splitlines()
    binding = d.get("binding")
    if isinstance(binding, Mapping):
        udp = binding.get("udp")
        tunnel = "IP-in-UDP (RFC 3519)" if udp else "IP-in-IP"
        if udp and binding.get("keepalive"):
            tunnel += f", keepalive every {_secs(binding.get('keepalive'))}"
        if binding.get("mode") == Mode.F:
            tunnel = "none at the MN (the FA decapsulates)"
        table = Table(
            ["binding: mode", "care-of address", "home agent", "lifetime", "expires in", "tunnel"],
            align=["l", "l", "l", "r", "r", "l"],
        )
        table.rows.append(
            [
                _value(binding.get("mode")),
                _value(binding.get("care_of")),
                _value(binding.get("home_agent")),
                _secs(binding.get("lifetime")),
                _expires_in(binding.get("expires"), state.t_s),
                tunnel,
            ]
        )
        lines += to_text(table, indent="").splitlines()
    else:
        lines.append("binding: none (at home, or not registered)")
    return lines


def _generic_lines(state: AgentState) -> list[str]:
    lines = []
    for key, value in state.data.items():
        if key in ("role", "t_ns", "counters", "tunnels"):
            continue
        lines.append(f"{key}: {_value(value)}")
    return lines


def format_state(
    state: AgentState,
    now_s: float | None = None,
    t0_s: float | None = None,
    finished: bool = False,
) -> str:
    role = ROLE_NAMES.get(state.role, state.role)
    head = f"{state.service} ({role}"
    head += f" on node {state.node})" if state.node != state.service else ")"
    when = []
    if state.t_s is not None and t0_s is not None:
        when.append(f"at +{state.t_s - t0_s:.1f} s")
    if state.t_s is not None and now_s is not None and not finished:
        age = now_s - state.t_s
        when.append(
            f"written {age:.1f} s ago"
            + (" -- stale: has the agent stopped?" if age > STALE_S else "")
        )
    if when:
        head += "  " + ", ".join(when)
    body = {"ha": _ha_lines, "fa": _fa_lines, "mn": _mn_lines}.get(state.role, _generic_lines)(
        state
    )
    for label, key in (("counters", "counters"), ("data plane", "tunnels")):
        text = _counters(state.data, key)
        if text:
            body.append(f"{label}: {text}")
    return "\n".join([head, *("  " + line if line else "" for line in body)])


def render_states(run_dir: Path, node: str | None = None, now_s: float | None = None) -> str:
    states = load_states(run_dir, node)
    finished = (run_dir / "summary.json").exists()
    if not states:
        known = ", ".join(s.service for s in load_states(run_dir)) or "none yet"
        what = f"for {node} " if node else ""
        raise LookupError(f"{run_dir}: no agent state {what}(agents with state: {known})")
    events = eventlog.read_run(run_dir)
    t0_s = events[0]["t_ns"] / 1e9 if events else None
    now_s = time.monotonic() if now_s is None else now_s
    lines = []
    lab = _lab_name(run_dir)
    if finished:
        lines.append(f"{run_dir}: the run is over; the agents' last state:")
    else:
        lines.append(
            f"{run_dir}" + (f" (lab {lab}: testbed exec {lab} NODE -- CMD)" if lab else "")
        )
    for state in states:
        lines += ["", format_state(state, now_s, t0_s, finished)]
    return "\n".join(lines)


@_quiet_broken_pipe
def cmd_state(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    run_dir = resolve_run_dir(args.run_dir)
    if args.json:
        data = {s.service: {"node": s.node, **s.data} for s in load_states(run_dir, args.node)}
        out.write(json.dumps(data, indent=1, default=str) + "\n")
        return 0
    if not args.watch:
        out.write(render_states(run_dir, args.node) + "\n")
        return 0
    try:
        while True:
            out.write(time.strftime("==== %H:%M:%S ====\n") + render_states(run_dir, args.node))
            out.write("\n\n")
            out.flush()
            if (run_dir / "summary.json").exists():
                return 0
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


# --- the command line ---------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """Add ``state`` and ``events`` to a ``testbed`` subparsers object."""
    p = subparsers.add_parser(
        "state",
        help="the agents' live state in a run (binding cache, visitor list, MN)",
        description="Print the Mobile IP agents' state (RUN_DIR/state/*.json, rewritten every "
        "second by the agents) as tables. RUN_DIR: what 'testbed run' prints at its start, or "
        "results/SCENARIO for its newest run.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("node", nargs="?", metavar="NODE", help="only this node (or service)")
    p.add_argument("--json", action="store_true", help="the raw state as JSON")
    p.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=1.0,
        metavar="S",
        help="print again every S seconds (default 1) until Ctrl-C or the run ends",
    )
    p.set_defaults(func=cmd_state)

    p = subparsers.add_parser(
        "events",
        help="a run's events, one line each (--follow: live)",
        description="Print a run's structured events, merged by time, one per line with the "
        "time since the run's first event.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    p.add_argument(
        "--node",
        action="append",
        metavar="N",
        help="only events of node N (and the runner's steps on it); repeatable",
    )
    p.add_argument(
        "--event",
        action="append",
        metavar="PATTERN",
        help="only these events: a name or whole words of one (registration, accepted), "
        "or a shell pattern (registration_*); repeatable",
    )
    p.add_argument("--json", action="store_true", help="print the events as JSON lines")
    p.set_defaults(func=cmd_events)


def main(argv: list[str] | None = None) -> int:
    """``python -m testbed.inspect state|events ...`` (until the verbs are in ``testbed``)."""
    parser = argparse.ArgumentParser(prog="testbed")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LookupError as exc:
        print(f"testbed: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
