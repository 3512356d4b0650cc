"""Foreign agent on a hostile visited link (issue 20): pending-request floods and limits."""

from __future__ import annotations

import random
import time

from agents.mip.actions import CancelTimer, Event, Neighbour, Send, SetTimer
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
    denied = [a.data for a in out if isinstance(a, Event) and a.name == "registration_denied"]
    assert [d["code"] for d in denied] == [78] * n
    # (most of them not sent: the reply rate limit, finding 3)
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


# --- link-layer learning (neighbour entries from Registration Requests) ---------------------

MAC = "02:00:00:00:00:07"
EVIL = "02:00:00:00:00:66"


def link(fa: ForeignAgent, payload: bytes, src: str = HOME, dst: str = COA, mac: str = MAC):
    return fa.handle_link_request(payload, src, dst, mac, "eth1", 0.0)


def test_a_visitors_request_enters_its_home_address_at_its_mac() -> None:
    """RFC 5944 4.6, the point of the learning: the home address is not on the link and the
    FA must not ARP for it."""
    assert link(make_fa(), rrq()) == [Neighbour(HOME, MAC, "eth1")]
    # to the interface's own address as well as the care-of address
    fa = ForeignAgent(FaConfig(COA, [FaInterface("eth1", "10.2.0.254", 24)]))
    assert link(fa, rrq(), dst="10.2.0.254") == [Neighbour(HOME, MAC, "eth1")]


def test_what_is_not_such_a_request_teaches_nothing() -> None:
    """Before: any frame to UDP 434 made the FA replace its entry for the frame's IP source,
    a one-byte one with a spoofed source included."""
    fa = make_fa()
    req = rrq()
    colocated = append_auth(
        encode(RegistrationRequest(HOME, HA, "10.2.0.77", 1, 600, 0x20)), 32, MN_SA
    )
    other_coa = append_auth(encode(RegistrationRequest(HOME, HA, "10.9.9.9", 1, 600, 0)), 32, MN_SA)
    cases = {
        "one byte": link(fa, b"\x01"),
        "not a request": link(fa, hrep(req)),
        "truncated": link(fa, req[:20]),
        "unknown non-skippable extension": link(fa, req + b"\x63\x00"),
        "source is not the home address": link(fa, req, src="10.1.0.8"),
        "not to us": link(fa, req, dst="10.2.0.9"),
        "co-located": link(fa, colocated),
        "someone else's care-of address": link(fa, other_coa),
        "multicast MAC": link(fa, req, mac="01:00:5e:00:00:01"),
        "broadcast MAC": link(fa, req, mac="ff:ff:ff:ff:ff:ff"),
        "not advertising there": fa.handle_link_request(req, HOME, COA, MAC, "eth9", 0.0),
    }
    for home in (
        "10.2.0.9",  # on the visited link: ARP finds it, and a router's entry is no one's to set
        "10.2.0.255",
        COA,
        "127.0.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "240.0.0.1",
    ):
        cases[home] = link(fa, rrq(home), src=home)
    assert {why: out for why, out in cases.items() if out} == {}
    assert fa.counters["link_learned"] == 0 and fa.counters["link_ignored"] == len(cases)


def test_mn_fa_authentication_where_required() -> None:
    mnfa = SecurityAssociation(2000, b"mn-fa")
    fa = make_fa(mn_sas={HOME: mnfa})
    assert link(fa, rrq()) == []
    assert link(fa, append_auth(rrq(), 33, SecurityAssociation(2000, b"bad"))) == []
    assert link(fa, append_auth(rrq(), 33, mnfa)) == [Neighbour(HOME, MAC, "eth1")]


def test_a_visitors_entry_moves_only_with_an_accepted_registration() -> None:
    fa = make_fa()
    first = rrq(ident=1)
    assert link(fa, first) == [Neighbour(HOME, MAC, "eth1")]
    relay(fa, first)
    fa.handle_datagram(hrep(first), HA, 434, 0.1)
    # a forged request for the visitor's home address from another MAC: nothing now
    forged = rrq(ident=2)
    assert link(fa, forged, mac=EVIL) == []
    relay(fa, forged, 1.0)
    out = fa.handle_datagram(hrep(forged, 131), HA, 434, 1.1)  # the HA refuses it
    assert not [a for a in out if isinstance(a, Neighbour)]
    # the same MAC again is fine (renewals refresh the entry)
    assert link(fa, rrq(ident=3)) == [Neighbour(HOME, MAC, "eth1")]
    # the mobile node really changed its MAC: its next accepted registration moves the entry,
    # before the reply to it is sent
    moved = rrq(ident=4)
    assert link(fa, moved, mac=EVIL) == []
    relay(fa, moved, 2.0)
    out = fa.handle_datagram(hrep(moved), HA, 434, 2.1)
    kinds = [type(a).__name__ for a in out if isinstance(a, Neighbour | Send)]
    assert kinds == ["Neighbour", "Send"]
    assert Neighbour(HOME, EVIL, "eth1") in out
    assert link(fa, rrq(ident=5), mac=EVIL) == [Neighbour(HOME, EVIL, "eth1")]


def test_one_request_from_two_macs_moves_nothing() -> None:
    """A copy of the visitor's own (accepted) request sent from another MAC cannot make the
    acceptance move the entry."""
    fa = make_fa()
    first = rrq(ident=1)
    link(fa, first)
    relay(fa, first)
    fa.handle_datagram(hrep(first), HA, 434, 0.1)
    renewal = rrq(ident=2)
    link(fa, renewal, mac=EVIL)
    link(fa, renewal)
    relay(fa, renewal, 1.0)
    out = fa.handle_datagram(hrep(renewal), HA, 434, 1.1)
    assert not [a for a in out if isinstance(a, Neighbour)]
    assert fa._visitor_macs == {HOME: MAC}


# --- reflection: where the FA relays to, and how many replies it sends ----------------------


def test_no_relaying_to_a_home_agent_address_that_is_no_remote_host() -> None:
    """Before: the FA relayed unauthenticated requests to any home agent address, the
    limited broadcast included (and with care-of 127.0.0.1 when co-located)."""
    fa = make_fa()
    for ha in (
        "255.255.255.255",
        "10.2.0.255",  # the visited link's own broadcast
        "224.0.0.1",
        "239.1.2.3",
        "127.0.0.1",
        "0.0.0.0",
        "240.0.0.1",
        COA,
    ):
        out = relay(fa, rrq(ha=ha))
        assert [a.dst for a in out if isinstance(a, Send)] == [HOME], ha  # only the denial
        rep = decode_udp(next(a for a in out if isinstance(a, Send)).payload)
        assert (rep.code, rep.find(32)) == (194, None), ha
    colocated = append_auth(
        encode(RegistrationRequest(HOME, HA, "127.0.0.1", 9, 600, 0x20)), 32, MN_SA
    )
    assert codes(relay(fa, colocated)) == [77]
    assert fa._pending == {} and fa.counters["relayed"] == 0


def test_a_mobile_node_takes_194_from_its_foreign_agent() -> None:
    from agents.mip.constants import denied_by_fa

    assert denied_by_fa(194) and denied_by_fa(66) and not denied_by_fa(131)


def test_denials_to_one_address_are_rate_limited() -> None:
    fa = make_fa(reply_rate=10.0, reply_burst=20.0)
    sent = limited = 0
    for i in range(100):  # 100 requests for a home agent address it will not use, in 0.1 s
        out = relay(fa, rrq(ha="255.255.255.255", ident=i), i * 0.001)
        sent += len(codes(out))
        limited += sum(1 for a in out if isinstance(a, Event) and a.data.get("limited"))
    assert (sent, limited) == (20, 80)
    assert fa.counters["rate_limited"] == 80 and fa.counters["denied"] == 100
    # the bucket fills again at 10/s; other destinations have their own
    assert len(codes(relay(fa, rrq(ha="0.0.0.0", ident=200), 1.1))) == 1
    assert len(codes(relay(fa, rrq("10.1.0.9", ha="0.0.0.0", ident=201), 0.1))) == 1


def test_denials_in_all_are_rate_limited() -> None:
    fa = make_fa(reply_total_rate=100.0, reply_total_burst=200.0)
    sent = 0
    for i in range(2000):  # from 2000 (spoofed) sources in one second
        sent += len(codes(relay(fa, rrq(home_of(i), ha="224.0.0.5", ident=i), i * 0.0005)))
    assert 200 <= sent <= 200 + 100 + 1


def test_relayed_acceptances_are_never_limited_relayed_denials_are() -> None:
    fa = make_fa(reply_rate=1.0, reply_burst=1.0, max_pending_per_home=None)
    sent = {0: 0, 131: 0}
    for code in (0, 131):
        for i in range(5):
            req = rrq(ident=100 * code + i)
            relay(fa, req)
            out = fa.handle_datagram(hrep(req, code), HA, 434, 0.0)
            sent[code] += sum(1 for a in out if isinstance(a, Send))
    assert sent == {0: 5, 131: 1}


def test_reply_limits_come_from_the_agent_files(tmp_path) -> None:
    from agents.runtime.config import load_fa, load_ha

    fa_file = tmp_path / "fa.yaml"
    fa_file.write_text("address: 10.2.0.254\nreply_rate: 2\nreply_total_rate: null\n")
    _, cfg = load_fa(fa_file)
    assert (cfg.reply_rate, cfg.reply_burst, cfg.reply_total_rate) == (2.0, 20.0, None)
    ha_file = tmp_path / "ha.yaml"
    ha_file.write_text(
        "address: 10.1.0.1\nhome_network: 10.1.0.0/24\nreply_burst: 5\n"
        "mobile_nodes: [{home_address: 10.1.0.7, spi: 256, key: '00'}]\n"
    )
    _, cfg = load_ha(ha_file)
    assert (cfg.reply_rate, cfg.reply_burst, cfg.reply_total_rate) == (10.0, 5.0, 500.0)


def test_token_bucket() -> None:
    from agents.mip.ratelimit import ReplyLimiter, TokenBucket

    bucket = TokenBucket(2.0, 3.0)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(0.5) and not bucket.allow(0.5)  # one token back after 0.5 s
    assert [bucket.allow(10.0) for _ in range(4)] == [True, True, True, False]  # capped
    limiter = ReplyLimiter(1.0, 1.0, None, 1.0, max_keys=2)
    assert limiter.allow("a", 0.0) and not limiter.allow("a", 0.0)
    assert limiter.allow("b", 0.0) and limiter.allow("c", 0.0)  # "a" forgotten: at most 2
    assert len(limiter) == 2 and limiter.limited == 1
    assert ReplyLimiter(None, 1.0, None).allow("x", 0.0)
