"""The timeline's steps: one handler and one description per action of ``StepSpec``.

``STEPS`` maps each action (``StepSpec.ACTIONS``) to how it is carried out on a run and how
it is shown in the progress lines and the ``step`` event. A new kind of step is its model in
``testbed/scenario/model.py`` (an action class, a field of ``StepSpec``, its name in
``ACTIONS``) and one entry here; ``tests/unit/test_scenario_steps.py`` checks that the two
agree.

A handler gets the run (the lab, its event writer, its record, its services) and the step's
index in the timeline. It never builds a command line or an nft script itself: moves, links,
impairments and NAT go through the lab (``testbed.lab.lab.Lab``), services through the run.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mipbase.clock import scaled
from testbed.scenario.crowd import nodes_of
from testbed.scenario.model import StepSpec
from testbed.topology.plan import Impairment

if TYPE_CHECKING:
    from testbed.scenario.runner import _Run

# NAT rebinding: each rebind step takes the masquerade's ports from a range of its own
NAT_PORTS_BASE, NAT_PORTS_SPAN, NAT_PORT_RANGES = 20000, 1000, 20


@dataclass(frozen=True)
class Step:
    run: Callable[[_Run, Any, int], None]  # (run, the step's action, its index)
    describe: Callable[[Any], str]


def _nodes(run: _Run, names: str | list[str]) -> list[str]:
    """The nodes a step names: a node, a group of the topology, a list."""
    scenario = getattr(run, "sc", None)
    if scenario is None:  # a run put together by a test, without a scenario
        return [names] if isinstance(names, str) else list(names)
    return nodes_of(scenario.plan, names)


def move_schedule(action: Any, nodes: list[str]) -> list[tuple[float, str]]:
    """(ms after the step's start, node) of each node a move step moves, in time order:
    ``together`` all at 0 (one after the other), ``staggered`` the k-th at k x ``every``,
    ``random`` each uniformly in [0, ``within``) drawn from ``seed``."""
    if action.pattern == "staggered":
        return [(k * action.every, node) for k, node in enumerate(nodes)]
    if action.pattern == "random":
        draw = random.Random(action.seed)
        return sorted((draw.uniform(0, action.within), node) for node in nodes)
    return [(0.0, node) for node in nodes]


def move(run: _Run, action: Any, index: int) -> None:
    nodes = _nodes(run, action.node)
    if len(nodes) == 1:
        _move_one(run, action, nodes[0])
        return
    start = time.monotonic_ns()
    for offset_ms, node in move_schedule(action, nodes):
        delay = (start + int(scaled(offset_ms) * 1e6) - time.monotonic_ns()) / 1e9
        if delay > 0:
            run.sleep(delay)
        _move_one(run, action, node)


def _move_one(run: _Run, action: Any, node: str) -> None:
    lab = run.lab
    assert lab is not None
    plan_if = lab.interface(node, action.iface)
    source = lab.network_of(node, plan_if.name)
    # the node's own handoff number: handoff[N] is each mobile node's N-th move
    handoff = sum(1 for m in run.record.move_events if m["node"] == node)
    start = time.monotonic_ns()
    times = lab.move(node, action.to, action.gap, action.iface)
    event = {
        "t_ns": times.link_down_ns,
        "t_up_ns": times.link_up_ns if action.to is not None else None,
        "index": handoff,
        "node": node,
        "from": source,
        "to": action.to,
        "gap_ms": action.gap,
        "requested_ns": start,
    }
    run.record.move_events.append(event)
    run.events.emit(
        "move_start",
        t_ns=times.link_down_ns,
        index=handoff,
        target=node,
        **{"from": source, "to": action.to},
        gap_ms=action.gap,
    )
    run.events.emit("link_down", t_ns=times.link_down_ns, target=node, phase="link_down")
    if action.to is not None:
        run.events.emit(
            "link_up",
            t_ns=times.link_up_ns,
            target=node,
            network=action.to,
            phase="link_up",
        )


def link(run: _Run, action: Any, index: int) -> None:
    assert run.lab is not None
    if action.state in ("down", "flap"):
        t = run.lab.set_link(action.node, False, action.iface)
        run.events.emit("link_down", t_ns=t, target=action.node)
    if action.state == "flap":
        time.sleep(action.duration / 1000)
    if action.state in ("up", "flap"):
        t = run.lab.set_link(action.node, True, action.iface)
        run.events.emit("link_up", t_ns=t, target=action.node)


def impair(run: _Run, action: Any, index: int) -> None:
    assert run.lab is not None
    plan_if = run.lab.interface(action.node, action.iface)
    changes = {
        "delay_ms": action.delay,
        "jitter_ms": action.jitter,
        "loss": action.loss,
        "rate_bps": action.rate,
    }

    def direction(current: Impairment, override: Any) -> Impairment:
        result = current.overlaid(**changes)
        if override is not None:
            result = result.overlaid(
                delay_ms=override.delay,
                jitter_ms=override.jitter,
                loss=override.loss,
                rate_bps=override.rate,
            )
        return result

    egress = direction(plan_if.egress, action.egress)
    ingress = direction(plan_if.ingress, action.ingress)
    # stamped with the moment the change was requested: the relay applies it before the
    # command returns, so packets sent after this time may already see the new figures
    t_request = time.monotonic_ns()
    run.lab.set_impairment(action.node, egress, ingress, action.iface)
    run.events.emit(
        "impairment_changed",
        t_ns=t_request,
        apply_ms=round((time.monotonic_ns() - t_request) / 1e6, 3),
        target=action.node,
        egress=egress.as_dict(),
        ingress=ingress.as_dict(),
    )


def nat_ports(index: int) -> tuple[int, int]:
    """The external ports a rebind at timeline step ``index`` maps to (first, last)."""
    low = NAT_PORTS_BASE + (index % NAT_PORT_RANGES) * NAT_PORTS_SPAN
    return low, low + NAT_PORTS_SPAN - 1


def nat(run: _Run, action: Any, index: int) -> None:
    assert run.lab is not None
    if action.action == "rebind":  # new external ports for every new mapping
        run.lab.rebind_nat(action.node, nat_ports(index))
    run.lab.flush_conntrack(action.node)
    run.events.emit("nat_" + action.action, target=action.node)


def process(run: _Run, action: Any, index: int) -> None:
    spec = run.service_spec(action.service)
    if action.action != "start":
        run.stop_service(spec, kill=action.action == "kill")  # its exit is the step's doing
    run.events.emit(f"service_{action.action}", service=action.service)
    if action.action in ("start", "restart"):
        run.start_service(spec)


def wait(run: _Run, action: Any, index: int) -> None:
    started = time.monotonic_ns()
    deadline = started + int(scaled(action.timeout) * 1e6)
    # from the previous step's start (a handoff can be over before its move step returns),
    # or an earlier one's: several groups moved by consecutive steps, waited for together
    first = action.since_step if action.since_step is not None else index - 1
    since = run.step_starts[first] if index > 0 else started
    # what an earlier wait read already, then what comes
    fresh = [e for e in run.events_read if e.get("t_ns", 0) >= since]
    # several nodes (a group, a list): the event from every one of them
    pending = set(_nodes(run, action.node)) if action.node else set()
    many = len(pending) > 1
    while time.monotonic_ns() < deadline:
        fresh += run.new_events()
        for event in fresh:
            if event.get("t_ns", 0) < since or event.get("event") != action.event:
                continue
            if pending and event.get("node") not in pending:
                continue
            if all(event.get(k) == v for k, v in action.match.items()):
                pending.discard(str(event.get("node")))
                if pending:
                    continue
                waited = max(0, event["t_ns"] - started) / 1e6
                run.events.emit("wait_done", awaited=action.event, waited_ms=waited)
                return
        fresh = []
        run.check_alive()
        time.sleep(0.005)
    missing = f" from {', '.join(sorted(pending))}" if many or len(pending) > 1 else ""
    failure = {
        "name": f"timeline[{index}] wait for {action.event}",
        "value": None,
        "limit": action.timeout,
        "passed": False,
        "detail": f"no {action.event}{missing} within {action.timeout:g} ms",
    }
    run.record.failures.append(failure)
    run.events.emit("wait_timeout", awaited=action.event, timeout_ms=action.timeout)


def pause(run: _Run, action: Any, index: int) -> None:
    if run.options.interactive and sys.stdin.isatty():
        run.pause(action if isinstance(action, str) else "paused")
    else:
        run.events.emit("pause_skipped", reason="not interactive (use --cli)")


def sleep(run: _Run, action: float, index: int) -> None:
    run.sleep(scaled(action / 1000))


def note(run: _Run, action: str, index: int) -> None:
    run.events.emit("note", text=action)


def _names(node: str | list[str]) -> str:
    return node if isinstance(node, str) else ",".join(node)


def _describe_move(action: Any) -> str:
    gap = f" (gap {action.gap:g} ms)" if action.gap else ""
    pattern = ""
    if action.pattern == "staggered":
        pattern = f", staggered every {action.every:g} ms"
    elif action.pattern == "random":
        pattern = f", random within {action.within:g} ms (seed {action.seed})"
    return f"move {_names(action.node)} -> {action.to}{gap}{pattern}"


def _describe_wait(action: Any) -> str:
    return f"wait for {action.event}" + (f" on {_names(action.node)}" if action.node else "")


def _plain(name: str) -> Callable[[Any], str]:
    return lambda action: f"{name} {action if not isinstance(action, bool) else ''}".strip()


STEPS: dict[str, Step] = {
    "move": Step(move, _describe_move),
    "link": Step(link, lambda a: f"link {a.node} {a.state}"),
    "impair": Step(impair, lambda a: f"impair {a.node}"),
    "nat": Step(nat, lambda a: f"nat {a.node} {a.action}"),
    "process": Step(process, lambda a: f"{a.action} {a.service}"),
    "wait": Step(wait, _describe_wait),
    "pause": Step(pause, _plain("pause")),
    "sleep": Step(sleep, _plain("sleep")),
    "note": Step(note, _plain("note")),
}


def describe(step: StepSpec) -> str:
    return STEPS[step.action].describe(getattr(step, step.action))


def carry_out(run: _Run, step: StepSpec, index: int) -> None:
    STEPS[step.action].run(run, getattr(step, step.action), index)
