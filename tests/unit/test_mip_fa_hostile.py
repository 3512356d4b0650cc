"""Foreign agent on a hostile visited link (issue 20): pending-request floods and limits."""

from __future__ import annotations

import random
import time

from agents.mip.actions import CancelTimer, Event, Send, SetTimer
from agents.mip.auth import SecurityAssociation, append_auth
from agents.mip.codec import encode
from agents.mip.fa import T_PENDING, FaConfig, FaInterface, ForeignAgent
from agents.mip.messages import RegistrationReply, RegistrationRequest, decode_udp

HA = "10.1.0.1"
HOME = "10.1.0.7"
COA = "10.2.0.1"
MN_SA = SecurityAssociation(1000, b"mn-ha")


def make_fa(**kw) -> ForeignAgent:
    return ForeignAgent(FaConfig(COA, [FaInterface("eth1", COA, 24)], **kw))


def rrq(home: str = HOME, ident: int = 1, lifetime: int = 600, ha: str = HA) -> bytes:
    return append_auth(encode(RegistrationRequest(home, ha, COA, ident, lifetime, 0)), 32, MN_SA)


def hrep(req: bytes, code: int = 0) -> bytes:
    r = decode_udp(req)
    body = encode(RegistrationReply(code, r.lifetime, r.home_address, HA, r.identification))
    return append_auth(body, 32, MN_SA)


def relay(fa: ForeignAgent, req: bytes, now: float = 0.0, src: str | None = None) -> list:
    return fa.handle_datagram(req, src or decode_udp(req).home_address, 434, now, "eth1")


def names(out) -> list[str]:
    return [a.name for a in out if isinstance(a, Event)]


def codes(out) -> list[int]:
    return [decode_udp(a.payload).code for a in out if isinstance(a, Send) and a.dst != HA]


def home_of(i: int) -> str:
    return f"10.{64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"


class Timers:
    """The driver's timers (name -> deadline), as the agent driver keeps them."""

    def __init__(self) -> None:
        self.armed: dict[str, float] = {}
        self.set_count = 0

    def feed(self, out: list) -> list:
        for a in out:
            if isinstance(a, SetTimer):
                self.armed[a.name] = a.at
                self.set_count += 1
            elif isinstance(a, CancelTimer):
                self.armed.pop(a.name, None)
        return out

    def run_until(self, fa: ForeignAgent, until: float) -> list:
        out: list = []
        while True:
            due = [(at, n) for n, at in self.armed.items() if at <= until]
            if not due:
                return out
            at, name = min(due)
            del self.armed[name]
            out += self.feed(fa.handle_timer(name, at))


# --- one timer, linear expiry -----------------------------------------------------------


def test_a_flood_of_pending_requests_holds_one_timer_and_expires_in_linear_time() -> None:
    """Before: a timer per pending request, each found by scanning every pending request
    (and _timeout scanning them again): 20k took ~10 s to expire in the core alone."""
    rng = random.Random(20)
    fa = make_fa(max_pending=None)
    timers = Timers()
    n = 20_000
    for i in range(n):
        timers.feed(relay(fa, rrq(home_of(i), rng.getrandbits(64)), i * 1e-4))
    assert timers.set_count == 1 and list(timers.armed) == [T_PENDING]
    t0 = time.perf_counter()
    out = timers.run_until(fa, 100.0)
    elapsed = time.perf_counter() - t0
    assert fa._pending == {} and fa._pending_per_home == {} and timers.armed == {}
    assert codes(out).count(78) == n
    assert elapsed < 3.0, f"{n} pending requests took {elapsed:.2f} s to expire"


def test_the_timer_follows_the_oldest_request() -> None:
    fa = make_fa(pending_timeout=7.0)
    timers = Timers()
    a, b = rrq(ident=1), rrq("10.1.0.8", ident=2)
    assert SetTimer(T_PENDING, 7.0) in timers.feed(relay(fa, a, 0.0))
    assert not [x for x in timers.feed(relay(fa, b, 3.0)) if isinstance(x, SetTimer)]
    # the oldest answered: the timer still fires at 7 and moves on to the next one
    timers.feed(fa.handle_datagram(hrep(a), HA, 434, 1.0))
    out = timers.feed(fa.handle_timer(T_PENDING, 7.0))
    assert out == [SetTimer(T_PENDING, 10.0)]
    out = fa.handle_timer(T_PENDING, 10.0)
    assert codes(out) == [78] and not [x for x in out if isinstance(x, SetTimer)]
    # the last one answered: the timer goes with it
    assert SetTimer(T_PENDING, 27.0) in relay(fa, a, 20.0)
    out = fa.handle_datagram(hrep(a), HA, 434, 20.5)
    assert CancelTimer(T_PENDING) in out


def test_the_same_request_again_waits_from_then_on() -> None:
    fa = make_fa(pending_timeout=7.0)
    timers = Timers()
    timers.feed(relay(fa, rrq(ident=5), 0.0))
    timers.feed(relay(fa, rrq(ident=5), 5.0))  # retransmitted unchanged
    assert fa._pending_per_home == {HOME: 1}
    assert timers.feed(fa.handle_timer(T_PENDING, 7.0)) == [SetTimer(T_PENDING, 12.0)]
    assert codes(timers.run_until(fa, 12.0)) == [78]


def test_random_traffic_keeps_the_books_straight() -> None:
    """Relays, replies, retransmissions, timers and limits in random order: the count per
    home address is always the recount, and the timer is armed exactly while something is
    pending, for the oldest one's deadline."""
    rng = random.Random(7)
    homes = [f"10.1.0.{i}" for i in range(2, 12)]
    fa = make_fa(max_pending=12, max_pending_per_home=3, pending_timeout=2.0)
    timers = Timers()
    sent: list[bytes] = []
    now = 0.0
    for _ in range(4000):
        now += rng.random() * 0.2
        timers.run_until(fa, now)
        roll = rng.random()
        if roll < 0.5:
            req = rrq(rng.choice(homes), rng.randrange(6), rng.choice((0, 600)))
            sent.append(req)
            timers.feed(relay(fa, req, now))
        elif roll < 0.9 and sent:
            req = rng.choice(sent)
            timers.feed(fa.handle_datagram(hrep(req, rng.choice((0, 131))), HA, 434, now))
        recount: dict[str, int] = {}
        for home, _ in fa._pending:
            recount[home] = recount.get(home, 0) + 1
        assert fa._pending_per_home == recount
        assert all(n <= 3 for n in recount.values()) and len(fa._pending) <= 12
        if fa._pending:
            oldest = next(iter(fa._pending.values()))
            assert timers.armed.get(T_PENDING) is not None
            assert timers.armed[T_PENDING] <= oldest.expires
        else:
            assert T_PENDING not in timers.armed
    assert fa.counters["pending_refused"] > 0 and fa.counters["pending_evicted"] > 0


# --- limits ---------------------------------------------------------------------------------


def test_pending_requests_per_home_address_are_limited() -> None:
    fa = make_fa(max_pending_per_home=3)
    for i in range(3):
        assert codes(relay(fa, rrq(ident=i))) == []
    out = relay(fa, rrq(ident=9))
    assert codes(out) == [66]
    (ev,) = [a for a in out if isinstance(a, Event) and a.name == "pending_limit"]
    assert ev.data == {"limit": "per_home", "max": 3, "pending": 3, "home_address": HOME}
    assert "registration_denied" in names(out)
    assert not [a for a in out if isinstance(a, Send) and a.dst == HA]  # not relayed
    # another home address is not held up, and an answer makes room again
    assert codes(relay(fa, rrq("10.1.0.8", ident=9))) == []
    fa.handle_datagram(hrep(rrq(ident=0)), HA, 434, 0.1)
    assert [a.dst for a in relay(fa, rrq(ident=9), 0.2) if isinstance(a, Send)] == [HA]


def test_a_full_pending_table_makes_room_by_evicting_the_oldest() -> None:
    """A flood of made-up home addresses cannot keep a genuine request out (or draw a 66 per
    flood packet): a new request takes the place of the oldest pending one."""
    fa = make_fa(max_pending=3)
    for i in range(3):
        relay(fa, rrq(f"10.9.0.{i + 1}", ident=i), float(i))
    out = relay(fa, rrq(ident=7), 5.0)
    assert [a.dst for a in out if isinstance(a, Send)] == [HA]  # relayed, nobody answered
    assert Event("request_evicted", {"home_address": "10.9.0.1", "for": HOME}) in out
    assert list(fa._pending) == [("10.9.0.2", 1), ("10.9.0.3", 2), (HOME, 7)]
    assert fa.counters["pending_evicted"] == 1 and fa._pending_per_home.get("10.9.0.1") is None
    # the genuine one is answered while it is pending
    out = fa.handle_datagram(hrep(rrq(ident=7)), HA, 434, 5.01)
    assert [a.dst for a in out if isinstance(a, Send)] == [HOME] and HOME in fa.visitors


def test_limits_come_from_the_agent_file(tmp_path) -> None:
    from agents.runtime.config import load_fa

    path = tmp_path / "fa.yaml"
    path.write_text("address: 10.2.0.254\n")
    _, cfg = load_fa(path)
    assert (cfg.max_pending, cfg.max_pending_per_home) == (4096, 8)
    path.write_text("address: 10.2.0.254\nmax_pending: 100\nmax_pending_per_home: 2\n")
    _, cfg = load_fa(path)
    assert (cfg.max_pending, cfg.max_pending_per_home) == (100, 2)
