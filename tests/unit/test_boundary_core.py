"""The boundary decision (agents/mip/boundary.py) for every architecture, with a fake clock,
a fake MN core and a fake VPN gateway (charon): inside, outside, the races between the home
agent's answer, the gateway's and ICMP, moves during a decision, failed initiations retried,
and the tunnel lost while outside."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from agents.mip.actions import CancelTimer, Event, SetTimer
from agents.mip.boundary import (
    CONNECTING,
    DOWN,
    DUAL,
    MOBIKE,
    PROXY,
    UP,
    AddressAcquired,
    AgentHeard,
    Architecture,
    Backoff,
    BindVpnToHome,
    BoundaryConfig,
    BoundaryCore,
    DeregisterFrom,
    GatewayChoice,
    HomeAgentAnswered,
    IcmpUnreachable,
    InitiateDone,
    InitiateVpn,
    Moved,
    OuterRegistered,
    ProbeHomeAgent,
    QueryTunnel,
    Registered,
    ReturnedHome,
    TerminateVpn,
    TimerFired,
    TunnelSeen,
    UseAttachment,
    UseOuterAttachment,
    from_core_event,
    from_outer_event,
)
from agents.mip.mn import Attachment

HA, GW, PROXY_ADDR = "10.1.0.1", "192.0.2.10", "192.0.2.11"
TIA, TIA2 = "10.10.0.1", "10.10.0.2"
ADDR, ADDR2 = "203.0.113.50", "198.51.100.50"
NO_PROPOSAL = "VpnError: establishing CHILD_SA 'net' failed: NO_PROPOSAL_CHOSEN"


@dataclass
class FakeMn:
    """What the decider reads of the MN core."""

    home_agent: str = HA
    mode: str | None = None
    registered: bool = False
    attachment: Attachment | None = None


@dataclass
class Gateway:
    """charon and the VPN gateway: an initiation takes ``ike_s``; the first ``failures`` fail
    (a restarted gateway's NO_PROPOSAL_CHOSEN); ``connecting`` looks report charon's own
    initiation under way; queries take ``query_s``."""

    tia: str = TIA
    ike_s: float = 0.1
    query_s: float = 0.002
    failures: int = 0
    connecting: int = 0
    up: bool = False
    initiations: int = 0
    terminations: int = 0
    aborted: int = 0  # initiations in progress that a termination ended
    attempts: list[InitiateVpn] = field(default_factory=list)


class Rig:
    """The core with its driver faked: timers and the gateway's answers on one fake clock."""

    def __init__(self, arch: Architecture, gateway: Gateway | None = None, **config: Any) -> None:
        self.now = 0.0
        self.mn = FakeMn()
        self.gw = gateway or Gateway()
        self.ha_direct = False  # does the home agent answer a direct echo from here?
        self.path_ok = True  # does it answer an echo through the tunnel?
        self.path_rtt = 0.005  # and how long its answer takes (none past the echo's timeout)
        proxy = PROXY_ADDR if arch.outer == "proxy" else None
        cfg = BoundaryConfig(arch, GW, "wlan0", proxy=proxy, tia_iface="ipsec0", **config)
        self.core = BoundaryCore(cfg, self.mn, self.now)
        self.log: list[tuple[float, Any]] = []
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._timers: dict[str, float] = {}
        self._initiator_free = 0.0  # initiations run one at a time
        self._in_progress: set[int] = set()  # started, not done (id of the action)
        self._aborting: set[int] = set()

    # driving -----------------------------------------------------------------------------

    def feed(self, event: Any) -> list[Any]:
        actions = self.core.handle(event, self.now)
        for action in actions:
            self.log.append((self.now, action))
            self._apply(action)
        return actions

    def at(self, when: float, fn: Callable[[], Any]) -> None:
        heapq.heappush(self._queue, (when, next(self._seq), fn))

    def run(self, until: float) -> None:
        while self._queue and self._queue[0][0] <= until:
            when, _, fn = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            fn()
        self.now = max(self.now, until)

    def mn_registered(self, mode: str) -> None:
        """The MN core's registration in ``mode`` was accepted (f/c/home: a direct reply)."""
        self.mn.mode, self.mn.registered = mode, True
        self.feed(Registered(mode))

    # what the driver does with the core's actions ---------------------------------------

    def _apply(self, a: Any) -> None:
        if isinstance(a, SetTimer):
            self._timers[a.name] = a.at
            self.at(a.at, lambda: self._fire(a.name, a.at))
        elif isinstance(a, CancelTimer):
            self._timers.pop(a.name, None)
        elif isinstance(a, UseAttachment):
            self.mn.attachment = a.attachment
            self.mn.mode = a.attachment.mode if a.attachment else None
            self.mn.registered = False
        elif isinstance(a, InitiateVpn):
            self._initiate(a)
        elif isinstance(a, QueryTunnel):
            self.at(self.now + self.gw.query_s, lambda: self._answer_query(a))
        elif isinstance(a, ProbeHomeAgent):
            answered = self.ha_direct if a.path == "direct" else self.path_ok
            rtt = 0.005 if a.path == "direct" else self.path_rtt
            answered = answered and rtt <= a.timeout_s
            delay = rtt if answered else a.timeout_s
            result = HomeAgentAnswered(a.path, answered, rtt if answered else None)
            self.at(self.now + delay, lambda: self.feed(result))
        elif isinstance(a, TerminateVpn):  # charon's SAs by name: one being set up too
            self.gw.up = False
            self.gw.terminations += 1
            self.gw.aborted += len(self._in_progress)
            self._aborting |= self._in_progress

    def _fire(self, name: str, at: float) -> None:
        if self._timers.get(name) == at:
            del self._timers[name]
            self.feed(TimerFired(name))

    def _answer_query(self, a: QueryTunnel) -> None:
        self.feed(TunnelSeen(a.query, self.gw.tia if self.gw.up else None))

    def _initiate(self, a: InitiateVpn) -> None:
        gw = self.gw
        gw.attempts.append(a)
        start = max(self.now, self._initiator_free)

        def started() -> None:
            self._in_progress.add(id(a))

        def done() -> None:
            self._in_progress.discard(id(a))
            if id(a) in self._aborting:
                self._aborting.discard(id(a))
                self.feed(InitiateDone(a.attempt, DOWN, "VpnError: IKE_SA deleted"))
                return
            if a.fresh:
                gw.up = False
            if gw.up:
                self.feed(InitiateDone(a.attempt, UP))
            elif gw.connecting:
                gw.connecting -= 1
                self.feed(InitiateDone(a.attempt, CONNECTING))
            else:
                gw.initiations += 1
                if gw.initiations <= gw.failures:
                    self.feed(InitiateDone(a.attempt, DOWN, NO_PROPOSAL))
                else:
                    gw.up = True
                    self.feed(InitiateDone(a.attempt, UP))

        finish = start + (0.001 if gw.up else gw.ike_s)
        self._initiator_free = finish
        self.at(start, started)
        self.at(finish, done)

    # looking at what happened --------------------------------------------------------------

    def events(self, name: str) -> list[dict[str, Any]]:
        return [a.data for _, a in self.log if isinstance(a, Event) and a.name == name]

    def decisions(self) -> list[dict[str, Any]]:
        return self.events("boundary_decision")

    def actions(self, kind: type) -> list[Any]:
        return [a for _, a in self.log if isinstance(a, kind)]

    def timed(self, kind: type) -> list[tuple[float, Any]]:
        return [(t, a) for t, a in self.log if isinstance(a, kind)]

    def armed(self, name: str) -> bool:
        return name in self._timers


def acquire(rig: Rig, address: str = ADDR) -> None:
    rig.feed(AddressAcquired(address))


# -- MOBIKE (RFC 5266, mode mc) --------------------------------------------------------------


def test_mobike_inside_the_home_agent_answers_and_the_vpn_is_closed() -> None:
    rig = Rig(MOBIKE)
    acquire(rig)
    # both at once: the direct registration (the MN core's) and the gateway
    assert rig.events("boundary_probe") == [{"gateway": GW, "outside": False}]
    assert len(rig.gw.attempts) == 1 and rig.armed("boundary.decide")
    rig.at(0.02, lambda: rig.mn_registered("c"))
    rig.run(2.0)
    assert rig.decisions() == [
        {"inside": True, "phase": "boundary_decision", "after_ms": 20.0, "changed": False}
    ]
    assert not rig.armed("boundary.decide")
    # the tunnel that raced is closed (charon ends the initiation under way)
    assert rig.actions(TerminateVpn) and not rig.gw.up and rig.gw.aborted == 1
    assert rig.actions(UseAttachment) == [] and rig.core.outside is None


def test_mobike_outside_only_the_gateway_answers() -> None:
    rig = Rig(MOBIKE)
    acquire(rig)
    rig.run(1.0)
    (decision,) = rig.decisions()
    assert decision == {
        "inside": False,
        "tia": TIA,
        "mode": "mc",
        "phase": "boundary_decision",
        "after_ms": 302.0,  # the timer, then one query of charon (2 ms)
    }
    (use,) = rig.actions(UseAttachment)
    assert use.attachment == Attachment(
        "mc", care_of=TIA, src=TIA, iface="ipsec0", colocated=True, via_vpn=True
    )
    assert rig.core.outside == TIA and not rig.core.inside
    assert rig.armed("boundary.watch")  # the tunnel check runs outside


def test_mobike_neither_answers() -> None:
    rig = Rig(MOBIKE, Gateway(failures=10**9), backoff=Backoff(first_s=0.5, max_s=0.5))
    acquire(rig)
    rig.run(10.0)
    assert rig.decisions() == [{"inside": None, "reason": "neither answered"}]
    # the initiations were retried as long as a decision could use the tunnel, no longer
    t_last = rig.timed(InitiateVpn)[-1][0]
    assert 0.3 + 5.0 - 0.6 <= t_last <= 0.3 + 5.0 and rig.core.snapshot()["initiating"] is False


def test_mobike_the_home_agent_answers_after_the_gateway() -> None:
    """The tunnel is up first; the direct reply still wins while the decision is pending."""
    rig = Rig(MOBIKE, Gateway(ike_s=0.05))
    acquire(rig)
    rig.at(0.2, lambda: rig.mn_registered("f"))
    rig.run(2.0)
    assert [d["inside"] for d in rig.decisions()] == [True]
    assert rig.actions(UseAttachment) == [] and rig.actions(QueryTunnel) == []
    assert rig.gw.terminations == 1


def test_mobike_a_direct_reply_during_the_decisions_wait_for_the_tia_wins() -> None:
    """The timer fired and charon is being asked for the TIA (IKE still under way) when the
    home agent's reply arrives: inside; the TIA that shows up later changes nothing."""
    rig = Rig(MOBIKE, Gateway(ike_s=0.6))
    acquire(rig)
    rig.run(0.35)
    assert rig.core.deciding and rig.actions(QueryTunnel)
    rig.mn_registered("c")
    rig.run(3.0)
    assert [d["inside"] for d in rig.decisions()] == [True]
    assert rig.actions(UseAttachment) == []


def test_mobike_icmp_unreachable_decides_before_either_answers() -> None:
    rig = Rig(MOBIKE, Gateway(ike_s=0.15))
    acquire(rig)
    rig.feed(IcmpUnreachable("10.9.9.9", 3, 0))  # about something else
    rig.feed(IcmpUnreachable(HA, 11, 0))  # not "unreachable"
    assert not rig.events("home_agent_unreachable")
    rig.at(0.01, lambda: rig.feed(IcmpUnreachable(HA, 3, 0)))
    rig.run(1.0)
    assert rig.events("home_agent_unreachable") == [{"code": 0, "phase": "home_agent_unreachable"}]
    (decision,) = rig.decisions()
    # decided as soon as the tunnel was up (our initiation wakes the wait): not at 300 ms
    assert decision["inside"] is False and 150.0 <= decision["after_ms"] < 160.0
    assert not rig.armed("boundary.decide")


def test_an_icmp_error_with_no_decision_pending_is_ignored() -> None:
    rig = Rig(MOBIKE)
    assert rig.feed(IcmpUnreachable(HA, 3, 1)) == []


def test_mobike_a_move_during_a_pending_decision_drops_it() -> None:
    rig = Rig(MOBIKE, Gateway(ike_s=0.2))
    acquire(rig)
    rig.at(0.1, lambda: rig.feed(Moved()))  # the old attachment's decision and IKE attempt
    rig.run(0.25)
    assert not rig.armed("boundary.decide") and rig.decisions() == []
    rig.feed(AddressAcquired(ADDR2))  # the new one brings its own
    rig.run(2.0)
    (decision,) = rig.decisions()
    assert decision["inside"] is False and decision["after_ms"] == 452.0  # since the move
    assert len(rig.actions(UseAttachment)) == 1


def test_mobike_a_move_while_the_decision_waits_for_the_tia_drops_the_wait() -> None:
    rig = Rig(MOBIKE, Gateway(ike_s=0.5))
    acquire(rig)
    rig.run(0.35)  # the timer fired; charon is asked until the tunnel is up
    rig.feed(Moved())
    rig.run(3.0)
    assert rig.decisions() == [] and rig.actions(UseAttachment) == []


def test_mobike_a_failed_initiation_is_retried_with_a_growing_delay() -> None:
    rig = Rig(MOBIKE, Gateway(failures=3, ike_s=0.01), backoff=Backoff(0.1, 2.0, 0.3))
    acquire(rig)
    rig.run(3.0)
    retries = rig.events("vpn_retry")
    assert [r["attempt"] for r in retries] == [2, 3, 4]
    assert [r["delay_ms"] for r in retries] == [100, 200, 300]  # doubling, bounded
    assert all("NO_PROPOSAL_CHOSEN" in r["error"] for r in retries)
    assert len(rig.events("vpn_initiate_failed")) == 3
    (decision,) = rig.decisions()  # outside, once the fourth initiation brought the tunnel
    assert decision["inside"] is False and decision["tia"] == TIA


def test_charons_own_initiation_is_waited_for_not_doubled() -> None:
    rig = Rig(MOBIKE, Gateway(connecting=2, ike_s=0.01))
    acquire(rig)
    rig.run(2.0)
    assert rig.gw.initiations == 1 and not rig.events("vpn_retry")
    times = [t for t, _ in rig.timed(InitiateVpn)]
    assert len(times) == 3 and times[2] - times[1] == pytest.approx(0.5 + 0.01)


def test_retries_scale_with_the_machine() -> None:
    rig = Rig(
        MOBIKE,
        Gateway(failures=2, ike_s=0.01),
        backoff=Backoff(0.1, 2.0, 8.0),
        scale=lambda s: 2 * s,
    )
    acquire(rig)
    rig.run(5.0)
    assert [r["delay_ms"] for r in rig.events("vpn_retry")] == [200, 400]
    assert rig.actions(InitiateVpn)[0].timeout_s == 6.0


def test_inside_ends_the_retries() -> None:
    rig = Rig(MOBIKE, Gateway(failures=10**9, ike_s=0.01), backoff=Backoff(1.0, 1.0, 1.0))
    acquire(rig)
    rig.at(0.05, lambda: rig.mn_registered("c"))
    rig.run(10.0)
    assert len(rig.actions(InitiateVpn)) == 1  # the retry waiting out its backoff: never sent


def test_a_move_ends_the_old_retries_and_a_stale_outcome_is_ignored() -> None:
    rig = Rig(MOBIKE, Gateway(failures=1, ike_s=0.2))
    acquire(rig)
    rig.at(0.1, lambda: rig.feed(Moved()))  # the initiation in flight fails at 0.2
    rig.run(0.5)
    assert rig.events("vpn_initiate_failed")  # charon's failure is still told
    assert not rig.events("vpn_retry") and len(rig.actions(InitiateVpn)) == 1


def _outside(rig: Rig) -> None:
    acquire(rig)
    rig.run(1.0)
    assert rig.core.outside == TIA
    rig.mn.registered = True  # the TIA's registration was accepted


def test_mobike_the_tunnel_lost_while_outside_is_brought_back() -> None:
    rig = Rig(MOBIKE, Gateway(ike_s=0.05), backoff=Backoff(0.2, 2.0, 1.0))
    _outside(rig)
    rig.gw.up, rig.gw.failures = False, rig.gw.initiations + 3  # gone; refused three times
    rig.run(8.0)
    assert len(rig.events("vpn_tunnel_lost")) == 1  # later checks while reconnecting: no more
    assert rig.events("vpn_tunnel_lost")[0] == {"tia": TIA}
    assert [r["attempt"] for r in rig.events("vpn_retry")] == [2, 3, 4]
    assert rig.gw.up and not rig.core.reconnecting
    assert len(rig.actions(UseAttachment)) == 1  # the same TIA back: the registration stays
    # the check goes on (lost again: reported again)
    rig.gw.up = False
    rig.run(11.0)
    assert len(rig.events("vpn_tunnel_lost")) == 2


def test_mobike_a_reconnection_stops_inside_and_on_a_move() -> None:
    for stop in ("inside", "move"):
        rig = Rig(MOBIKE, Gateway(ike_s=0.05), backoff=Backoff(5.0, 1.0, 5.0))
        _outside(rig)
        rig.gw.up, rig.gw.failures = False, 10**9
        rig.run(3.0)
        assert rig.core.reconnecting and rig.events("vpn_retry")
        sent = len(rig.actions(InitiateVpn))
        rig.feed(ReturnedHome() if stop == "inside" else Moved())
        assert not rig.core.reconnecting and not rig.armed("boundary.retry"), stop
        if stop == "inside":
            rig.run(20.0)
            assert len(rig.actions(InitiateVpn)) == sent and rig.core.outside is None


def test_mobike_a_new_tia_is_a_new_registration() -> None:
    rig = Rig(MOBIKE)
    _outside(rig)
    rig.gw.tia = TIA2  # re-established without a move (DPD after a gateway restart)
    rig.run(3.0)
    assert rig.events("tia_changed") == [{"old": TIA, "new": TIA2}]
    uses = rig.actions(UseAttachment)
    assert [u.attachment.care_of for u in uses] == [TIA, TIA2]


def test_mobike_a_dead_path_is_a_new_ike_sa() -> None:
    rig = Rig(MOBIKE, path_check=1.0, path_failures=2)
    _outside(rig)
    rig.path_ok = False
    rig.run(2.9)
    assert not rig.actions(ProbeHomeAgent)  # not settled yet: 3 s since the move
    rig.run(8.0)
    echoes = [a for a in rig.actions(ProbeHomeAgent) if a.path == "tunnel"]
    assert echoes[0].source == TIA and echoes[0].seq == 3 and echoes[1].seq == 5
    assert rig.events("vpn_path_dead")[0] == {"tia": TIA}
    renew = rig.actions(InitiateVpn)[-len(rig.events("vpn_path_dead"))]
    assert renew.fresh  # the old SA's address is dead: terminated without waiting


def test_mobike_a_slow_path_is_not_a_dead_one() -> None:
    """Issue 19, item 3: with 100 mobile nodes on a loaded 2-core machine tunnel echoes took
    110-510 ms, and a fixed 0.5 s timeout took a live path for dead (21 of 25 MOBIKE MNs
    tore down a working IKE SA). An echo after a miss waits twice as long; the timeout
    follows the answered echoes' round trip."""
    rig = Rig(MOBIKE, path_check=1.0, path_failures=2)
    _outside(rig)
    rig.path_rtt = 0.6  # slower than the first echo waits
    rig.run(20.0)
    echoes = [a for a in rig.actions(ProbeHomeAgent) if a.path == "tunnel"]
    assert rig.events("vpn_path_dead") == []
    assert [e.timeout_s for e in echoes[:3]] == [0.5, 1.0, 2.4]  # 4 x 0.6 s once measured
    assert len(rig.actions(InitiateVpn)) == 1  # the IKE SA stays


def test_mobike_the_echo_timeout_has_a_ceiling() -> None:
    rig = Rig(MOBIKE, path_check=1.0, path_failures=5)
    _outside(rig)
    rig.path_ok = False
    rig.run(30.0)
    timeouts = [a.timeout_s for a in rig.actions(ProbeHomeAgent) if a.path == "tunnel"]
    assert timeouts[:5] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert rig.events("vpn_path_dead")  # dead all the same, after five unanswered


def test_mobike_outside_a_move_is_mobike_and_a_direct_probe() -> None:
    rig = Rig(MOBIKE)
    _outside(rig)
    rig.feed(Moved())
    acquire(rig, ADDR2)
    assert rig.events("boundary_probe")[-1] == {"gateway": GW, "outside": True}
    assert len(rig.actions(InitiateVpn)) == 1  # charon moves the SA itself (MOBIKE)
    (probe,) = rig.actions(ProbeHomeAgent)
    assert probe.path == "direct" and probe.iface == "wlan0" and probe.timeout_s == 0.3
    rig.run(rig.now + 1.0)
    assert rig.decisions()[-1]["moved_only"] is True  # same TIA: the registration stays
    assert len(rig.actions(UseAttachment)) == 1


def test_mobike_outside_the_home_agent_answering_directly_means_inside_again() -> None:
    rig = Rig(MOBIKE)
    _outside(rig)
    rig.feed(Moved())
    rig.ha_direct = True
    acquire(rig, ADDR2)
    rig.run(rig.now + 0.01)
    assert rig.events("home_agent_probe") == [{"answered": True}]
    assert rig.actions(UseAttachment)[-1].attachment is None  # the MN core registers directly
    rig.mn_registered("c")
    assert rig.decisions()[-1]["inside"] is True and rig.decisions()[-1]["changed"] is True


def test_mobike_outside_an_agent_heard_means_inside_again() -> None:
    rig = Rig(MOBIKE)
    _outside(rig)
    rig.feed(AgentHeard())
    assert rig.actions(UseAttachment)[-1].attachment is None and rig.core.outside is None


def test_without_mobike_each_outside_move_is_a_new_ike_sa() -> None:
    rig = Rig(MOBIKE, mobike=False)
    _outside(rig)
    rig.feed(Moved())
    rig.gw.tia = TIA2
    acquire(rig, ADDR2)
    assert rig.actions(InitiateVpn)[-1].fresh and not rig.actions(ProbeHomeAgent)
    rig.run(rig.now + 1.0)
    assert [u.attachment.care_of for u in rig.actions(UseAttachment)] == [TIA, TIA2]


def test_mobike_a_move_to_another_gateways_network_is_a_new_ike_sa_and_registration() -> None:
    """Issue 19, item 2; RFC 5266 section 5: "If the MN connects to a new VPN GW, the MN
    must send a registration request". MOBIKE cannot move an IKE SA to another gateway."""
    gw2 = GatewayChoice("192.0.2.20", "home2", ("198.51.100.0/24",))
    rig = Rig(MOBIKE, gateways=(gw2,))
    _outside(rig)  # at ADDR: the default gateway, its connection
    assert {a.ike for a in rig.actions(InitiateVpn)} == {None}
    rig.feed(Moved())
    rig.gw.tia = TIA2  # gw2's pool
    acquire(rig, ADDR2)  # on gw2's network
    assert rig.events("vpn_gateway_changed") == [{"gateway": "192.0.2.20", "ike": "home2"}]
    last = rig.actions(InitiateVpn)[-1]
    assert last.fresh and last.ike == "home2" and not rig.actions(ProbeHomeAgent)
    rig.run(rig.now + 1.0)
    assert [u.attachment.care_of for u in rig.actions(UseAttachment)] == [TIA, TIA2]
    # back on the default gateway's network: its connection again, a new SA there too
    rig.feed(Moved())
    rig.gw.tia = TIA
    acquire(rig, ADDR)
    assert rig.events("vpn_gateway_changed")[-1] == {"gateway": GW, "ike": None}
    assert rig.actions(InitiateVpn)[-1].ike is None
    # one gateway only: a move outside stays MOBIKE, as always
    assert BoundaryConfig(MOBIKE, GW, "wlan0").gateway_for(ADDR2) == (GW, None)


# -- dual MIP (RFC 5265) -------------------------------------------------------------------------


def _x_mip_accepted(rig: Rig, care_of: str = ADDR, udp: bool = False) -> None:
    rig.feed(OuterRegistered(care_of, udp, 0.004))


def test_dual_outside_x_mip_first_then_the_tunnel_then_the_tia() -> None:
    rig = Rig(DUAL)
    acquire(rig)
    assert rig.events("boundary_probe") == [{"gateway": GW, "outside": False}]
    assert rig.actions(InitiateVpn) == []  # no race: the tunnel is bound to the x-HoA
    rig.run(0.3)
    (outer,) = rig.actions(UseOuterAttachment)
    assert outer.attachment == Attachment(
        "c", care_of=ADDR, src=ADDR, iface="wlan0", colocated=True
    )
    assert rig.decisions() == []
    rig.at(0.31, lambda: _x_mip_accepted(rig))
    rig.run(2.0)
    assert rig.events("external_registration") == [
        {
            "mode": "dual",
            "care_of": ADDR,
            "udp": False,
            "latency": 0.004,
            "phase": "external_registration",
        }
    ]
    (initiate,) = rig.actions(InitiateVpn)
    assert initiate.after_batch  # once the x-MIP tunnel and x-HoA are in place
    (decision,) = rig.decisions()
    assert decision["inside"] is False and decision["mode"] == "dual" and decision["tia"] == TIA
    (use,) = rig.actions(UseAttachment)
    assert use.attachment.mode == "dual" and use.attachment.via_vpn


def test_dual_inside() -> None:
    rig = Rig(DUAL)
    acquire(rig)
    rig.at(0.05, lambda: rig.mn_registered("f"))
    rig.run(2.0)
    assert [d["inside"] for d in rig.decisions()] == [True]
    assert rig.actions(UseOuterAttachment) == [] and rig.actions(InitiateVpn) == []


def test_dual_the_home_agent_answers_after_the_timer_but_before_x_mip() -> None:
    rig = Rig(DUAL)
    acquire(rig)
    rig.run(0.31)
    assert rig.actions(UseOuterAttachment)
    rig.mn_registered("c")
    _x_mip_accepted(rig)  # x-MIP's acceptance comes in after: no tunnel
    rig.run(2.0)
    assert rig.actions(UseOuterAttachment)[-1].attachment is None
    assert rig.actions(InitiateVpn) == [] and [d["inside"] for d in rig.decisions()] == [True]


def test_dual_no_address_no_decision() -> None:
    rig = Rig(DUAL)
    rig.feed(AddressAcquired(None))
    rig.run(1.0)
    assert rig.decisions() == [{"inside": None, "reason": "no address"}]


def test_dual_icmp_unreachable_starts_x_mip_at_once() -> None:
    rig = Rig(DUAL)
    acquire(rig)
    rig.at(0.01, lambda: rig.feed(IcmpUnreachable(HA, 3, 0)))
    rig.run(0.02)
    assert rig.actions(UseOuterAttachment) and not rig.armed("boundary.decide")


def _dual_outside(rig: Rig) -> None:
    acquire(rig)
    rig.at(0.31, lambda: _x_mip_accepted(rig))
    rig.run(2.0)
    assert rig.core.outside == TIA
    rig.mn.registered = True


def test_dual_outside_a_move_is_one_x_mip_registration() -> None:
    rig = Rig(DUAL)
    _dual_outside(rig)
    rig.feed(Moved())
    acquire(rig, ADDR2)
    outer = rig.actions(UseOuterAttachment)
    assert [o.attachment.care_of for o in outer] == [ADDR, ADDR2]
    assert rig.actions(ProbeHomeAgent)[-1].path == "direct"
    assert not rig.armed("boundary.decide")  # no decision: IPsec and i-MIP stay
    rig.run(rig.now + 1.0)
    assert len(rig.actions(InitiateVpn)) == 1 and len(rig.actions(UseAttachment)) == 1
    _x_mip_accepted(rig, ADDR2, udp=True)  # through the NAT: RFC 3519
    assert rig.events("external_registration")[-1]["udp"] is True
    assert len(rig.actions(InitiateVpn)) == 1


def test_dual_back_inside_x_mip_is_let_go_and_the_vpn_closed() -> None:
    rig = Rig(DUAL)
    _dual_outside(rig)
    rig.feed(Moved())
    rig.feed(AgentHeard())  # an FA: the MN core registers through it
    assert rig.actions(UseAttachment)[-1].attachment is None
    assert rig.actions(UseOuterAttachment)[-1].attachment is None
    rig.mn_registered("f")
    assert rig.decisions()[-1] == {
        "inside": True,
        "phase": "boundary_decision",
        "after_ms": 0.0,
        "changed": True,
    }
    assert rig.actions(TerminateVpn)


def test_dual_a_move_while_the_tunnel_comes_up_drops_that_decision() -> None:
    rig = Rig(DUAL, Gateway(ike_s=0.3))
    acquire(rig)
    rig.at(0.31, lambda: _x_mip_accepted(rig))
    rig.at(0.4, lambda: rig.feed(Moved()))
    rig.run(3.0)
    assert rig.decisions() == [] and rig.actions(UseAttachment) == []


def test_dual_a_failed_initiation_is_retried() -> None:
    rig = Rig(DUAL, Gateway(failures=2, ike_s=0.01), backoff=Backoff(0.1, 2.0, 1.0))
    acquire(rig)
    rig.at(0.31, lambda: _x_mip_accepted(rig))
    rig.run(3.0)
    assert [r["attempt"] for r in rig.events("vpn_retry")] == [2, 3]
    assert rig.decisions()[-1]["tia"] == TIA


def test_dual_the_tunnel_lost_while_outside_is_brought_back() -> None:
    rig = Rig(DUAL)
    _dual_outside(rig)
    rig.gw.up = False
    rig.run(5.0)
    assert rig.events("vpn_tunnel_lost") == [{"tia": TIA}] and rig.gw.up


# -- MIP proxy (seed 003) ------------------------------------------------------------------------


def test_proxy_outside_register_with_the_proxy_then_the_tunnel() -> None:
    rig = Rig(PROXY)
    acquire(rig)
    assert rig.events("boundary_probe") == [{"proxy": PROXY_ADDR, "outside": False}]
    assert rig.actions(InitiateVpn) == []
    rig.run(1.0)
    assert rig.decisions() == [
        {
            "inside": False,
            "mode": "proxy",
            "proxy": PROXY_ADDR,
            "care_of": ADDR,
            "moved_only": False,
            "phase": "boundary_decision",
            "after_ms": 300.0,
        }
    ]
    assert rig.actions(BindVpnToHome) == [BindVpnToHome(True, GW)]
    (use,) = rig.actions(UseAttachment)
    assert use.attachment == Attachment(
        "proxy", care_of=ADDR, src=ADDR, iface="wlan0", colocated=True, home_agent=PROXY_ADDR
    )
    rig.mn_registered("proxy")
    (initiate,) = rig.actions(InitiateVpn)
    assert initiate.after_batch and initiate.timeout_s == 5.0
    rig.run(2.0)
    assert rig.gw.up and rig.actions(QueryTunnel) == []  # the TIA is not registered


def test_proxy_a_failed_initiation_is_reported_not_retried() -> None:
    rig = Rig(PROXY, Gateway(failures=1))
    acquire(rig)
    rig.run(1.0)
    rig.mn_registered("proxy")
    rig.run(20.0)
    assert rig.events("vpn_initiate_failed") == [{"error": NO_PROPOSAL}]
    assert len(rig.actions(InitiateVpn)) == 1 and not rig.events("vpn_retry")
    # the proxy's next acceptance (a renewal) asks again
    rig.mn_registered("proxy")
    rig.run(21.0)
    assert rig.gw.up


def test_proxy_icmp_unreachable_decides_before_the_timer() -> None:
    rig = Rig(PROXY)
    acquire(rig)
    rig.at(0.004, lambda: rig.feed(IcmpUnreachable(HA, 3, 0)))
    rig.run(0.01)
    assert rig.decisions()[0]["after_ms"] == 4.0 and rig.decisions()[0]["inside"] is False


def test_proxy_outside_a_move_is_one_registration_with_the_proxy() -> None:
    rig = Rig(PROXY)
    acquire(rig)
    rig.run(1.0)
    rig.mn_registered("proxy")
    rig.run(2.0)
    rig.feed(Moved())
    acquire(rig, ADDR2)
    assert rig.decisions()[-1]["moved_only"] is True and rig.decisions()[-1]["care_of"] == ADDR2
    assert len(rig.actions(BindVpnToHome)) == 1  # bound already
    assert rig.actions(UseAttachment)[-1].attachment.care_of == ADDR2
    assert rig.actions(ProbeHomeAgent)[-1].path == "direct"
    assert not rig.armed("boundary.decide")


def test_proxy_back_inside_deregisters_from_the_proxy() -> None:
    rig = Rig(PROXY)
    acquire(rig)
    rig.run(1.0)
    rig.mn_registered("proxy")
    binding = rig.mn.attachment
    rig.run(2.0)
    rig.feed(Moved())
    rig.feed(AgentHeard())
    assert rig.actions(BindVpnToHome)[-1] == BindVpnToHome(False, GW)
    assert rig.actions(UseAttachment)[-1].attachment is None
    rig.mn_registered("f")
    assert rig.actions(DeregisterFrom) == [DeregisterFrom(binding)]
    assert rig.decisions()[-1]["inside"] is True and rig.decisions()[-1]["changed"] is True
    assert rig.actions(TerminateVpn)
    # the next trip outside registers anew
    rig.mn.mode, rig.mn.registered = None, False
    acquire(rig, ADDR2)
    rig.run(rig.now + 1.0)
    assert rig.decisions()[-1]["moved_only"] is False
    assert rig.actions(BindVpnToHome)[-1] == BindVpnToHome(True, GW)


def test_proxy_outside_the_home_agent_answering_directly_means_inside_again() -> None:
    rig = Rig(PROXY)
    acquire(rig)
    rig.run(1.0)
    rig.feed(Moved())
    rig.ha_direct = True
    acquire(rig, ADDR2)
    rig.run(rig.now + 0.1)
    assert rig.events("home_agent_probe") == [{"answered": True}]
    assert rig.actions(BindVpnToHome)[-1] == BindVpnToHome(False, GW)
    assert rig.actions(UseAttachment)[-1].attachment is None


def test_proxy_the_home_agent_answers_before_the_timer() -> None:
    rig = Rig(PROXY)
    acquire(rig)
    rig.at(0.1, lambda: rig.mn_registered("c"))
    rig.run(1.0)
    assert [d["inside"] for d in rig.decisions()] == [True]
    assert rig.actions(UseAttachment) == [] and rig.actions(BindVpnToHome) == []


# -- all of them -------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", [MOBIKE, DUAL, PROXY], ids=lambda a: a.name)
def test_every_architecture_decides_outside_and_comes_back_inside(arch: Architecture) -> None:
    rig = Rig(arch)
    acquire(rig)
    rig.run(0.31)
    if arch is DUAL:
        _x_mip_accepted(rig)
    rig.run(2.0)
    assert rig.decisions()[-1]["inside"] is False and rig.decisions()[-1]["mode"] == arch.mode
    assert rig.mn.mode == arch.mode
    rig.mn_registered(arch.mode)
    rig.run(3.0)
    assert rig.gw.up
    rig.feed(Moved())
    rig.feed(ReturnedHome())
    assert rig.decisions()[-1]["inside"] is True and rig.decisions()[-1]["changed"] is True
    assert rig.core.outside is None and rig.core.inside
    rig.run(10.0)
    assert not rig.gw.up and not rig.armed("boundary.watch")


def test_the_mn_cores_events_as_inputs() -> None:
    assert from_core_event("agent_discovered", {"address": "10.2.0.1"}) == AgentHeard()
    assert from_core_event("registration_accepted", {"mode": "f"}) == Registered("f")
    assert from_core_event("returned_home", {"iface": "eth0"}) == ReturnedHome()
    assert from_core_event("registration_sent", {"mode": "c"}) is None
    accepted = {"mode": "c", "care_of": ADDR, "udp": True, "latency": 0.01}
    assert from_outer_event("registration_accepted", accepted) == OuterRegistered(ADDR, True, 0.01)
    assert from_outer_event("registration_sent", {}) is None


def test_backoff_doubles_and_is_bounded() -> None:
    backoff = Backoff(first_s=0.5, factor=2.0, max_s=8.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 8, 8]
    assert backoff.delay(10**6) == 8.0  # a long outage: still bounded, no overflow


def test_the_proxy_architecture_needs_the_proxys_address() -> None:
    with pytest.raises(ValueError, match="proxy"):
        BoundaryConfig(PROXY, GW, "wlan0")
