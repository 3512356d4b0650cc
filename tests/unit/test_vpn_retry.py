"""Issue 15 (a): the MN's VPN client brings its tunnel back after the gateway refused it (a
restarted charon answers NO_PROPOSAL_CHOSEN until its connections are loaded), retrying
with a bounded backoff until it is up, and stops once the tunnel is no longer needed. A
fake client stands in for charon: its vici calls fail N times."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from agents.runtime import vpn
from agents.runtime.vpnretry import CONNECTING, DOWN, UP, Backoff, TunnelKeeper

FAST = Backoff(first_s=0.001, factor=2.0, max_s=0.004)  # 1, 2, 4, 4 ... ms


class FakeClient:
    """charon through vici: ``initiate`` fails ``failures`` times (as after a restarted
    gateway's NO_PROPOSAL_CHOSEN), then brings the tunnel up."""

    def __init__(self, failures: int, states: list[str] | None = None) -> None:
        self.failures = failures
        self.states = list(states or [])  # what state() says first, before the real answer
        self.initiations = 0
        self.up = False

    def state(self) -> str:
        if self.states:
            return self.states.pop(0)
        return UP if self.up else DOWN

    def initiate(self, timeout_s: float = 5.0) -> None:
        self.initiations += 1
        if self.initiations <= self.failures:
            raise RuntimeError("initiate home/net failed: NO_PROPOSAL_CHOSEN")
        self.up = True

    # what the controller's watchdog asks too
    def tia(self) -> str | None:
        return "10.10.0.1" if self.up else None


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, **fields: Any) -> None:
        self.events.append((name, fields))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [fields for event, fields in self.events if event == name]


def test_backoff_doubles_and_is_bounded() -> None:
    backoff = Backoff(first_s=0.5, factor=2.0, max_s=8.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 8, 8]
    assert backoff.delay(10**6) == 8.0  # a long outage: still bounded, no overflow


def test_initiation_is_retried_until_the_tunnel_is_up() -> None:
    client, report = FakeClient(failures=5), Recorder()
    assert TunnelKeeper(client, report, FAST).keep_up() is True
    assert client.initiations == 6 and client.up
    retries = report.named("vpn_retry")
    # one event per retry: which attempt comes next, after how long, and why
    assert [r["attempt"] for r in retries] == [2, 3, 4, 5, 6]
    assert [r["delay_ms"] for r in retries] == [1, 2, 4, 4, 4]  # doubling, bounded
    assert all("NO_PROPOSAL_CHOSEN" in r["error"] for r in retries)
    assert len(report.named("vpn_initiate_failed")) == 5


def test_the_waits_are_scaled_for_slow_machines() -> None:
    client, report = FakeClient(failures=2), Recorder()
    keeper = TunnelKeeper(client, report, FAST, scale=lambda s: s * 2)
    assert keeper.keep_up() is True
    assert [r["delay_ms"] for r in report.named("vpn_retry")] == [2, 4]


def test_an_initiation_under_way_is_waited_for_not_doubled() -> None:
    """charon's own attempt (close_action restart) is CONNECTING: no second IKE SA."""
    client = FakeClient(failures=0, states=[CONNECTING, CONNECTING, UP])
    report = Recorder()
    assert TunnelKeeper(client, report, FAST).keep_up() is True
    assert client.initiations == 0 and not report.named("vpn_retry")


def test_a_tunnel_already_up_is_left_alone() -> None:
    client = FakeClient(failures=0)
    client.up = True
    assert TunnelKeeper(client, Recorder(), FAST).keep_up() is True
    assert client.initiations == 0


def test_cancel_stops_the_retries_at_once_even_in_a_long_backoff() -> None:
    client, report = FakeClient(failures=10**9), Recorder()
    keeper = TunnelKeeper(client, report, Backoff(first_s=30.0, max_s=30.0))
    result: list[bool] = []
    worker = threading.Thread(target=lambda: result.append(keeper.keep_up()))
    worker.start()
    while not report.named("vpn_retry"):  # failed once, now waiting 30 s
        time.sleep(0.001)
    started = time.monotonic()
    keeper.cancel()  # e.g. back inside: the tunnel is no longer needed
    worker.join(5)
    assert result == [False] and time.monotonic() - started < 1.0
    assert client.initiations == 1


def test_a_cancel_before_the_worker_starts_counts() -> None:
    """Submitted, then inside before the VPN thread got to it: no initiation at all."""
    client = FakeClient(failures=0)
    keeper = TunnelKeeper(client, Recorder(), FAST)
    ticket = keeper.ticket()
    keeper.cancel()
    assert keeper.keep_up(ticket) is False and client.initiations == 0


def test_retries_end_at_the_deadline() -> None:
    client, report = FakeClient(failures=10**9), Recorder()
    keeper = TunnelKeeper(client, report, FAST)
    assert keeper.keep_up(until=time.monotonic() + 0.05) is False
    assert 2 <= client.initiations < 60


# the MN's boundary controller: outside in mode mc, the tunnel is lost without a move -------


@pytest.fixture
def outside() -> Any:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    config = SimpleNamespace(
        vici="/nonexistent", ike="home", child="net", path_check=1.0, decision_timeout=0.3,
        gateway="192.0.2.10", iface="ipsec0", path_failures=2, mobike=True,
    )  # fmt: skip
    machine = SimpleNamespace(home_agent="10.1.0.1", mode="mc", registered=True)
    driver = SimpleNamespace(
        from_thread=lambda cb: lambda f: loop.call_soon_threadsafe(cb, f.result())
    )
    events = SimpleNamespace(records=[])
    events.emit = lambda name, **data: events.records.append((name, data))
    ctrl = vpn.BoundaryController(config, machine, driver=driver, events=events)
    ctrl._outside_tia = "10.10.0.1"
    ctrl._watching = True  # the watchdog's timer is not under test: _tia_checked is
    ctrl._check = lambda: None
    ctrl.keeper.backoff = FAST
    try:
        yield SimpleNamespace(ctrl=ctrl, loop=loop, events=events)
    finally:
        ctrl.close()
        loop.close()
        asyncio.set_event_loop(None)


def _run_until(loop: asyncio.AbstractEventLoop, done: Any, timeout_s: float = 5.0) -> None:
    async def wait() -> None:
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            await asyncio.sleep(0.002)

    loop.run_until_complete(wait())


def test_outside_a_lost_tunnel_is_brought_back(outside: Any) -> None:
    """The gateway restarted and refused charon's re-initiation: the watchdog finds no TIA,
    and the controller initiates until the tunnel is up again."""
    ctrl, loop, events = outside.ctrl, outside.loop, outside.events
    client = FakeClient(failures=3)
    ctrl.vpn = ctrl.keeper.client = client
    ctrl._tia_checked(None)
    _run_until(loop, lambda: client.up and not ctrl._reconnecting)
    assert client.up and client.initiations == 4
    names = [name for name, _ in events.records]
    assert names.count("vpn_tunnel_lost") == 1
    assert [d["attempt"] for n, d in events.records if n == "vpn_retry"] == [2, 3, 4]
    ctrl._tia_checked(None)  # the next watchdog round may still miss it: no harm
    _run_until(loop, lambda: not ctrl._reconnecting)
    assert client.initiations == 4


def test_back_inside_the_retries_stop(outside: Any) -> None:
    ctrl, loop, events = outside.ctrl, outside.loop, outside.events
    client = FakeClient(failures=10**9)
    ctrl.vpn = ctrl.keeper.client = client
    ctrl.keeper.backoff = Backoff(first_s=30.0, max_s=30.0)
    ctrl._tia_checked(None)
    _run_until(loop, lambda: any(n == "vpn_retry" for n, _ in events.records))
    ctrl._forget_outside()  # the home agent accepted a direct registration: inside
    _run_until(loop, lambda: not ctrl._reconnecting, timeout_s=2.0)
    assert not ctrl._reconnecting and client.initiations == 1


def test_a_move_ends_the_old_retries(outside: Any) -> None:
    ctrl, loop, events = outside.ctrl, outside.loop, outside.events
    client = FakeClient(failures=10**9)
    ctrl.vpn = ctrl.keeper.client = client
    ctrl.keeper.backoff = Backoff(first_s=30.0, max_s=30.0)
    ctrl._tia_checked(None)
    _run_until(loop, lambda: any(n == "vpn_retry" for n, _ in events.records))
    ctrl.moved()
    _run_until(loop, lambda: not ctrl._reconnecting, timeout_s=2.0)
    assert not ctrl._reconnecting and client.initiations == 1


def test_a_failed_initiation_says_why() -> None:
    """vici's own error is only "establishing CHILD_SA 'net' failed": the reason from
    charon's log of the attempt goes into the message (and so into vpn_retry's error)."""
    from vici.exception import CommandException

    from mipbase import vici_client as vc

    class Session:
        def initiate(self, request: dict) -> Any:
            yield {"msg": b"initiating IKE_SA home[3] to 192.0.2.10"}
            yield {"msg": b"received NO_PROPOSAL_CHOSEN notify error"}
            raise CommandException("establishing CHILD_SA 'net' failed")

    with pytest.raises(vc.VpnError) as failed:
        vc.initiate(Session(), "net", "home")  # type: ignore[arg-type]
    assert "NO_PROPOSAL_CHOSEN" in str(failed.value) and len(failed.value.log) == 2
    assert vc.failure_reason(["sending retransmit 2", "giving up after 2 retransmits"]) == (
        "giving up after 2 retransmits"
    )
    assert vc.failure_reason(["initiating IKE_SA home[3]"]) is None
