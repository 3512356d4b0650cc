"""The MN's boundary driver (agents/runtime/vpn.py) around the decision's core: blocking
work on worker threads, results fed back on the loop. Fakes stand in for charon and the
network; the decisions themselves are tested in test_boundary_core.py."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from agents.mip import boundary as core
from agents.runtime import vpn

FAST = core.Backoff(first_s=0.001, factor=2.0, max_s=0.004)  # 1, 2, 4, 4 ... ms


class FakeClient:
    """charon through vici: ``initiate`` fails ``failures`` times (as after a restarted
    gateway's NO_PROPOSAL_CHOSEN), then brings the tunnel up."""

    def __init__(self, failures: int = 0, tia: str = "10.10.0.1") -> None:
        self.failures = failures
        self.initiations = 0
        self.terminations: list[float] = []
        self.up = False
        self._tia = tia

    def state(self) -> str:
        return core.UP if self.up else core.DOWN

    def initiate(self, timeout_s: float = 5.0) -> None:
        self.initiations += 1
        if self.initiations <= self.failures:
            raise RuntimeError("initiate home/net failed: NO_PROPOSAL_CHOSEN")
        self.up = True

    def terminate(self, timeout_s: float = 1.0) -> None:
        self.terminations.append(timeout_s)
        self.up = False

    def tia(self) -> str | None:
        return self._tia if self.up else None


class Machine:
    """The MN core as the driver sees it: where it is attached."""

    home_agent = "10.1.0.1"

    def __init__(self) -> None:
        self.mode: str | None = None
        self.registered = False
        self.attachment: Any = None

    def use_attachment(self, attachment: Any, now: float) -> list[Any]:
        self.attachment = attachment
        self.mode = attachment.mode if attachment is not None else None
        return []


@pytest.fixture
def rig() -> Any:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    config = SimpleNamespace(
        vici="/nonexistent", ike="home", child="net", architecture="mobike", gateway="192.0.2.10",
        proxy=None, iface="ipsec0", decision_timeout=0.05, mobike=True, path_check=1.0,
        path_failures=2,
    )  # fmt: skip
    machine = Machine()
    driver = SimpleNamespace(
        from_thread=lambda cb: lambda f: loop.call_soon_threadsafe(cb, f.result()),
        feed=lambda actions: None,
    )
    events = SimpleNamespace(records=[])
    events.emit = lambda name, **data: events.records.append((name, data))
    ctrl = vpn.BoundaryController(config, machine, driver, events, "wlan0")
    ctrl.core.config = dataclasses.replace(ctrl.core.config, backoff=FAST)
    try:
        yield SimpleNamespace(ctrl=ctrl, loop=loop, events=events, machine=machine)
    finally:
        ctrl.close()
        loop.close()
        asyncio.set_event_loop(None)


def _run_until(loop: asyncio.AbstractEventLoop, done: Callable[[], Any], timeout_s=5.0) -> None:
    async def wait() -> None:
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            await asyncio.sleep(0.002)

    loop.run_until_complete(wait())


def _named(events: Any, name: str) -> list[dict[str, Any]]:
    return [data for event, data in events.records if event == name]


def test_outside_through_the_threads_after_failed_initiations(rig: Any) -> None:
    """An address, no answer from the home agent: initiations on the VPN thread fail three
    times and are retried (the core's timers), the decision asks charon for the TIA on the
    query thread, and the MN core is attached in mode mc, on the loop."""
    client = FakeClient(failures=3)
    rig.ctrl.vpn = client
    rig.ctrl.address_acquired("203.0.113.50")
    _run_until(rig.loop, lambda: rig.machine.mode == "mc")
    assert client.initiations == 4
    assert [d["attempt"] for d in _named(rig.events, "vpn_retry")] == [2, 3, 4]
    assert len(_named(rig.events, "vpn_initiate_failed")) == 3
    (decision,) = _named(rig.events, "boundary_decision")
    assert decision["inside"] is False and decision["tia"] == "10.10.0.1"
    assert rig.machine.attachment.iface == "ipsec0" and rig.machine.attachment.via_vpn


def test_inside_the_vpn_is_closed_and_retries_stop(rig: Any) -> None:
    client = FakeClient(failures=10**9)
    rig.ctrl.vpn = client
    rig.ctrl.core.config = dataclasses.replace(
        rig.ctrl.core.config, backoff=core.Backoff(30.0, 1.0, 30.0)
    )
    rig.ctrl.address_acquired("203.0.113.50")
    _run_until(rig.loop, lambda: _named(rig.events, "vpn_retry"))
    rig.machine.mode, rig.machine.registered = "c", True
    rig.ctrl.on_event("registration_accepted", {"mode": "c"})  # the home agent answered
    _run_until(rig.loop, lambda: client.terminations)
    assert client.terminations == [core.INSIDE_TERMINATE_S] and client.initiations == 1
    assert _named(rig.events, "boundary_decision")[-1]["inside"] is True
    assert not rig.ctrl._timers  # the retry's and the decision's timers are gone


def test_an_initiation_no_longer_wanted_by_its_turn_is_not_started(rig: Any) -> None:
    """Queued behind another, then inside (or a move) before the VPN thread got to it: no
    initiation at all."""
    client = FakeClient()
    rig.ctrl.vpn = client
    rig.ctrl.carry_out([core.InitiateVpn(attempt=99, timeout_s=1.0, fresh=True)])
    _run_until(rig.loop, lambda: False, timeout_s=0.1)
    assert client.initiations == 0 and client.terminations == []


def test_a_slow_path_check_does_not_delay_the_boundary_probe(rig: Any, monkeypatch: Any) -> None:
    """The tunnel check's echo (through the tunnel, waiting out its timeout) runs on a thread
    of its own: the direct probe of the home agent after a move does not wait behind it."""
    release = threading.Event()
    echoes: list[str | None] = []

    def echo(address: str, ifname: str | None, *_args: Any) -> bool:
        echoes.append(ifname)
        if ifname is None:
            release.wait(5)  # the path check through the tunnel: no answer yet
            return False
        return True

    monkeypatch.setattr(vpn, "icmp_echo", echo)
    try:
        rig.ctrl.carry_out([core.ProbeHomeAgent("tunnel", "10.1.0.1", 0.5, source="10.10.0.1")])
        rig.ctrl.carry_out([core.ProbeHomeAgent("direct", "10.1.0.1", 0.3, iface="wlan0")])
        _run_until(rig.loop, lambda: _named(rig.events, "home_agent_probe"))
        assert echoes == [None, "wlan0"], "the path check is running"
        assert _named(rig.events, "home_agent_probe") == [{"answered": True}]
    finally:
        release.set()


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
