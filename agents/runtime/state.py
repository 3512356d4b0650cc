"""Agent state as JSON, for live inspection (binding cache, visitor list, MN state)."""

from __future__ import annotations

import time
from typing import Any

# How often an agent writes its state file (``--state``), and the share of its time that
# writing may take. One dump encodes every binding: the HA's took ~45 ms with 10k bindings
# and ~0.4 s with 100k here (0.3 s without the tunnel look-ups below; benchmarks/
# bench_ha_load.py): every second, 40 % of its CPU and a stall of its loop that made the
# p95 of registrations 420 ms at any rate.
STATE_INTERVAL_S = 1.0
STATE_BUDGET = 0.05


def state_interval(took: float) -> float:
    """Seconds to wait after a dump that took ``took`` s: every second, unless dumping would
    then cost more than ``STATE_BUDGET`` of the agent's time (a binding cache of tens of
    thousands); then as seldom as keeps it within (100k bindings: every ~6 s)."""
    return max(STATE_INTERVAL_S, took / STATE_BUDGET)


def snapshot(role: str, machine: Any, driver: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "role": role,
        "t_ns": time.monotonic_ns(),
        "counters": {**machine.counters, **driver.counters},
    }
    if role == "ha":
        state["bindings"] = _with_learned_ports(machine.bindings(), driver)
    elif role == "proxy":
        state["bindings"] = _with_learned_ports(machine.bindings(), driver, "front")
        state["upstream"] = {
            b.home_address: machine.upstream(b.home_address) for b in machine.bindings()
        }
    elif role == "fa":
        state["visitors"] = [v.to_dict() for v in machine.visitors.values()]
    else:
        state.update(
            mode=machine.mode,
            registered=machine.registered,
            state=machine.state,
            care_of=machine.care_of,
            binding=machine.binding_info(),
        )
    if driver.dataplane is not None and hasattr(driver.dataplane, "stats"):
        state["tunnels"] = driver.dataplane.stats()
    return state


def _with_learned_ports(bindings: Any, driver: Any, plane: str | None = None) -> list[dict]:
    """Bindings as the core has them, with the UDP peer port the data plane has learned
    since (RFC 3519: a NAT may rebind; the tunnel follows the port of its tunnel data)."""
    dataplane = getattr(driver, "dataplane", None)
    if plane is not None and dataplane is not None:
        dataplane = getattr(dataplane, plane, None)
    engine = getattr(dataplane, "_engine", None)
    out = []
    for b in bindings:
        entry = b.to_dict()
        if engine is None or entry.get("encapsulation") != "udp":
            # only a UDP tunnel learns a port; the look-up parses the address (~1.4 us a
            # binding: a third of a dump of 100k IP-in-IP bindings)
            out.append(entry)
            continue
        tunnel = engine.get(b.home_address)
        if tunnel is not None:
            learned = getattr(tunnel, "peer_port", None)
            if learned is not None and learned != entry.get("peer_port"):
                entry["peer_port_registered"] = entry.get("peer_port")
                entry["peer_port"] = learned
        out.append(entry)
    return out
