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
        state["bindings"] = [b.to_dict() for b in machine.bindings()]
    elif role == "proxy":
        state["bindings"] = [b.to_dict() for b in machine.bindings()]
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
