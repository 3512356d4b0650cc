"""The agents' live state: a binding shows the UDP port the data plane learned after it."""

from __future__ import annotations

from types import SimpleNamespace

from agents.mip.ha import Binding
from agents.runtime.state import _with_learned_ports


def binding(port: int) -> Binding:
    return Binding(
        "10.1.0.100", "192.168.1.5", 600.0, 600, 1, "198.51.100.3", port,
        "198.51.100.3", port, "udp", True, 0, 0.0,
    )  # fmt: skip


def test_a_rebound_nat_port_shows_in_the_binding() -> None:
    engine = SimpleNamespace(get=lambda home: SimpleNamespace(peer_port=20123))
    driver = SimpleNamespace(dataplane=SimpleNamespace(_engine=engine))
    (entry,) = _with_learned_ports([binding(434)], driver)
    assert entry["peer_port"] == 20123 and entry["peer_port_registered"] == 434
    # unchanged port, or no engine yet: the core's view as it is
    (same,) = _with_learned_ports([binding(20123)], driver)
    assert same["peer_port"] == 20123 and "peer_port_registered" not in same
    (bare,) = _with_learned_ports([binding(434)], SimpleNamespace(dataplane=None))
    assert bare["peer_port"] == 434
