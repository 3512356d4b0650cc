"""Agent state as JSON, for live inspection (binding cache, visitor list, MN state)."""

from __future__ import annotations

import time
from typing import Any


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
        tunnel = engine.get(b.home_address) if engine is not None else None
        if tunnel is not None and entry.get("encapsulation") == "udp":
            learned = getattr(tunnel, "peer_port", None)
            if learned is not None and learned != entry.get("peer_port"):
                entry["peer_port_registered"] = entry.get("peer_port")
                entry["peer_port"] = learned
        out.append(entry)
    return out
