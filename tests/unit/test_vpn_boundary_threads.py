"""The MN's VPN boundary controller keeps its path watchdog off the decision's thread: an
echo through the tunnel that waits out its timeout must not hold up the direct probe of the
home agent after a move (fakes stand in for charon and the network; pure scheduling)."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

from agents.runtime import vpn


class Events:
    def __init__(self) -> None:
        self.emitted: list[str] = []

    def emit(self, name: str, **_data: Any) -> None:
        self.emitted.append(name)


def test_a_slow_path_check_does_not_delay_the_boundary_probe(monkeypatch: Any) -> None:
    release = threading.Event()
    echoes: list[str | None] = []

    def slow_echo(address: str, ifname: str | None, *_args: Any) -> bool:
        echoes.append(ifname)
        release.wait(5)  # the path check through the tunnel: no answer yet
        return False

    monkeypatch.setattr(vpn, "icmp_echo", slow_echo)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    config = SimpleNamespace(
        vici="/nonexistent", ike="ike", child="child", path_check=1.0, decision_timeout=0.2,
        gateway="198.51.100.1", iface="ipsec0", path_failures=3,
    )  # fmt: skip
    machine = SimpleNamespace(home_agent="10.1.0.1", mode="mc", registered=True)
    driver = SimpleNamespace(
        from_thread=lambda cb: lambda f: loop.call_soon_threadsafe(cb, f.result())
    )
    ctrl = vpn.BoundaryController(config, machine, driver=driver, events=Events())
    probed: list[bool] = []
    ctrl._probed = lambda answered: probed.append(answered)  # type: ignore[method-assign]
    ctrl._home_agent_answers = lambda: True  # type: ignore[method-assign]
    try:
        ctrl._outside_tia = "10.10.0.1"
        ctrl._check_path("10.10.0.1")  # blocks its thread until released

        async def probe() -> None:
            ctrl._probe_home_agent()
            for _ in range(200):
                if probed:
                    return
                await asyncio.sleep(0.005)

        loop.run_until_complete(probe())
        assert echoes == [None], "the path check is running"
        assert probed == [True], "the probe answered while the path check still waited"
    finally:
        release.set()
        ctrl.close()
        loop.close()
        asyncio.set_event_loop(None)


def test_a_failing_callback_or_worker_is_an_agent_error_not_a_log_line() -> None:
    """The loop's exception handler and the worker-thread bridge of AgentDriver: an error in
    a timer callback (e.g. a send to a vanished interface) or in a vici call on a worker
    thread counts in agent_errors and is an agent_error event."""
    from concurrent.futures import ThreadPoolExecutor

    from agents.runtime.driver import AgentDriver

    loop = asyncio.new_event_loop()
    events = SimpleNamespace(records=[])
    events.emit = lambda name, **data: events.records.append((name, data))
    driver = object.__new__(AgentDriver)
    driver.loop, driver.events, driver.counters = loop, events, {"agent_errors": 0}
    loop.set_exception_handler(driver._on_loop_error)
    got: list[int] = []

    def boom() -> None:
        raise OSError("no such device")

    def fails() -> int:
        raise RuntimeError("vici: NO_PROPOSAL_CHOSEN")

    try:
        with ThreadPoolExecutor(1) as pool:
            loop.call_soon(boom)
            pool.submit(fails).add_done_callback(driver.from_thread(got.append))
            pool.submit(lambda: 7).add_done_callback(driver.from_thread(got.append))
        loop.run_until_complete(asyncio.sleep(0.05))
    finally:
        loop.close()
    assert driver.counters["agent_errors"] == 2
    errors = sorted(data["error"] for name, data in events.records if name == "agent_error")
    assert errors == ["OSError: no such device", "RuntimeError: vici: NO_PROPOSAL_CHOSEN"]
    assert got == [7]
