"""The agents' live state: a binding shows the UDP port the data plane learned after it."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

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


def test_an_ip_in_ip_binding_is_dumped_without_asking_the_tunnel_engine() -> None:
    """Issue 19, item 3: the look-up was a third of a 100k-binding state dump."""

    def get(home: str) -> None:
        raise AssertionError("looked up")

    driver = SimpleNamespace(dataplane=SimpleNamespace(_engine=SimpleNamespace(get=get)))
    ipip = Binding(
        "10.1.0.100", "10.2.0.7", 600.0, 600, 1, "10.2.0.7", 434,
        "10.2.0.7", None, "ipip", True, 0, 0.0,
    )  # fmt: skip
    (entry,) = _with_learned_ports([ipip], driver)
    assert entry == ipip.to_dict()


def test_a_costly_state_dump_is_made_less_often() -> None:
    """Issue 19, item 3: 100k bindings took ~0.4 s to dump, every second (40 % of the HA)."""
    from agents.runtime.state import STATE_BUDGET, state_interval

    assert state_interval(0.0) == state_interval(0.045) == 1.0  # up to ~10k bindings: as before
    assert state_interval(0.4) == 8.0  # 100k: within the budget
    assert 0.4 / (state_interval(0.4) + 0.4) <= STATE_BUDGET


def test_the_state_writer_waits_by_what_its_last_dump_took(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import argparse
    import asyncio
    import json

    from agents.runtime import main, state

    def slow_snapshot(role: str, machine: object, driver: object) -> dict:
        time.sleep(0.1)  # a dump of ~25k bindings
        return {"role": role}

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            raise asyncio.CancelledError

    monkeypatch.setattr(state, "snapshot", slow_snapshot)
    monkeypatch.setattr(main.asyncio, "sleep", sleep)
    args = argparse.Namespace(state=str(tmp_path / "ha.json"), role="ha")
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main._write_state(args, None, None))
    assert json.loads((tmp_path / "ha.json").read_text()) == {"role": "ha"}
    assert len(waits) == 2 and all(1.9 <= w < 4 for w in waits), waits
