"""The event catalogue is complete: every event name the code can write is in it.

The code is read, not run: every ``emit("name", ...)``, ``_emit("name", ...)``,
``Event("name", ...)`` and ``{"event": "name"}`` in ``mipbase/``, ``agents/`` and
``testbed/``. A name passed in through a parameter is followed to the callers of that
function. Phase tags (``phase="name"``) must be catalogue phases.
"""

from __future__ import annotations

import ast
import typing
from collections.abc import Iterator
from pathlib import Path

from testbed.scenario import catalogue, metrics
from testbed.scenario.model import NatAction, ProcessAction

ROOT = Path(__file__).resolve().parents[2]
EMITTERS = ("emit", "_emit", "Event")
# made-up events for the report's sample run, not written by anything that runs
NOT_EMITTERS = {"testbed/results/sample.py"}


def _literal_values(model: type, field: str) -> list[str]:
    return list(typing.get_args(model.model_fields[field].annotation))


# names built from text at run time: (file, expression) -> the names it can give
BUILT = {
    ("testbed/scenario/steps.py", "'nat_' + action.action"): [
        f"nat_{a}" for a in _literal_values(NatAction, "action")
    ],
    ("testbed/scenario/steps.py", "f'service_{action.action}'"): [
        f"service_{a}" for a in _literal_values(ProcessAction, "action")
    ],
}
# calls that pass along events made elsewhere (scanned where they are made)
# (name: the MN passes the DHCP driver's own events on, scanned in agents/dhcp)
FORWARDED = {"action.name", "events", "pending", "ready", "eventlog.read_run(run_dir)", "name"}
FORWARDED_PREFIXES = ("sorted(", "state_events(", "self.tracker.feed(")


def _call_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _strings(node: ast.AST) -> list[str] | None:
    """The constant names an expression can be, or None when it is not constant."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        body, orelse = _strings(node.body), _strings(node.orelse)
        return None if body is None or orelse is None else body + orelse
    return None


def _sources() -> Iterator[tuple[str, ast.Module]]:
    for base in ("mipbase", "agents", "testbed"):
        for path in sorted((ROOT / base).rglob("*.py")):
            file = str(path.relative_to(ROOT))
            if file not in NOT_EMITTERS:
                yield file, ast.parse(path.read_text())


def _enclosing_functions(tree: ast.Module) -> dict[ast.AST, ast.FunctionDef]:
    owner: dict[ast.AST, ast.FunctionDef] = {}
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(func):
                owner[inner] = func  # the innermost wins: walk visits outer functions first
    return owner


def scan() -> tuple[dict[str, list[str]], dict[str, list[str]], list[str]]:
    """(event name -> where, phase tag -> where, unexplained dynamic names)."""
    names: dict[str, list[str]] = {}
    phases: dict[str, list[str]] = {}
    unexplained: list[str] = []
    follow: list[tuple[str, int, str, str]] = []  # (function, position, where, parameter)
    trees = list(_sources())

    def add(found: list[str], where: str) -> None:
        for name in found:
            names.setdefault(name, []).append(where)

    for file, tree in trees:
        owner = _enclosing_functions(tree)
        for node in ast.walk(tree):
            arg = None
            if isinstance(node, ast.Call) and _call_name(node.func) in EMITTERS:
                for keyword in node.keywords:
                    tags = _strings(keyword.value) if keyword.arg == "phase" else None
                    for tag in tags or []:
                        phases.setdefault(tag, []).append(f"{file}:{node.lineno}")
                arg = node.args[0] if node.args else None
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "event":
                        arg = value
            if arg is None:
                continue
            where = f"{file}:{node.lineno}"
            found = _strings(arg)
            if found is not None:
                add(found, where)
                continue
            text = ast.unparse(arg)
            func = owner.get(node)
            params = [a.arg for a in func.args.args] if func else []
            if (file, text) in BUILT:
                add(BUILT[(file, text)], where)
            elif text in FORWARDED or text.startswith(FORWARDED_PREFIXES):
                continue
            elif func is not None and text in params:
                if func.name in EMITTERS:
                    continue  # an emitter passing its own argument on: its callers count
                position = params.index(text) - (1 if params[:1] in (["self"], ["cls"]) else 0)
                follow.append((func.name, position, where, text))
            else:
                unexplained.append(f"{where}: {text}")
    for name, position, where, param in follow:
        seen = False
        for file, tree in trees:
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and _call_name(node.func) == name):
                    continue
                value = next((k.value for k in node.keywords if k.arg == param), None)
                if value is None and len(node.args) > position:
                    value = node.args[position]
                found = _strings(value) if value is not None else None
                if found is None:
                    unexplained.append(f"{file}:{node.lineno}: {name}(...) for {where}")
                else:
                    add(found, f"{file}:{node.lineno}")
                    seen = True
        if not seen:
            unexplained.append(f"{where}: no caller of {name} gives {param}")
    return names, phases, unexplained


def test_every_emitted_event_is_in_the_catalogue() -> None:
    names, _phases, unexplained = scan()
    assert not unexplained, "event names the scan cannot follow (extend BUILT): " + str(unexplained)
    missing = {name: where[:3] for name, where in names.items() if name not in catalogue.EVENTS}
    assert not missing, f"add these to testbed/scenario/catalogue.py: {missing}"
    # the scan itself works: names from every kind of emitter are found
    for name in ("registration_accepted", "dhcp_bound", "ike_update", "move_start"):
        assert name in names
    assert {"visitor_expired", "visitor_removed", "vpn_initiate_failed", "nat_rebind"} <= set(names)


def test_catalogue_has_no_stale_names() -> None:
    names, _phases, _ = scan()
    stale = sorted(set(catalogue.EVENTS) - set(names))
    assert not stale, f"in the catalogue, emitted nowhere: {stale}"


def test_phases_are_all_named() -> None:
    _names, tags, _ = scan()
    assert set(tags) <= set(catalogue.PHASES), set(tags) - set(catalogue.PHASES)
    assert set(catalogue.PHASE_EVENTS) <= set(catalogue.EVENTS)
    assert set(catalogue.PHASE_EVENTS.values()) <= set(catalogue.PHASES)
    assert metrics.PHASE_EVENTS is catalogue.PHASE_EVENTS
    # every phase comes from somewhere: a mapped event, a tag, or the probes
    sources = set(catalogue.PHASE_EVENTS.values()) | set(tags)
    sources |= {"first_packet_down", "first_packet_up"}
    assert sources == set(catalogue.PHASES)


def test_catalogue_sections_do_not_overlap() -> None:
    sections = [
        catalogue.RUNNER_EVENTS,
        catalogue.AGENT_EVENTS,
        catalogue.DHCP_EVENTS,
        catalogue.VPN_EVENTS,
        catalogue.PROBE_EVENTS,
    ]
    assert sum(len(s) for s in sections) == len(catalogue.EVENTS)
    assert all(meaning.strip() for meaning in catalogue.EVENTS.values())


def test_readme_lists_every_phase() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [p for p in catalogue.PHASES if f"`{p}`" not in readme]
    assert not missing, f"README.md does not name the phases {missing}"
