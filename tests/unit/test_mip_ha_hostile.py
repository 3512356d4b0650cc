"""Home agent under attack (issue 20): rate-limited denials, unsigned denials of what failed
authentication, an expiry heap that does not grow with renewals."""

from __future__ import annotations

import itertools

from agents.mip.actions import Event, Send
from agents.mip.auth import SecurityAssociation, append_auth
from agents.mip.codec import encode
from agents.mip.ha import HaConfig, HomeAgent, MobileNodeConfig
from agents.mip.messages import RegistrationRequest, decode_udp
from agents.mip.replay import ntp_from_unix

WALL = 1_700_000_000.0
HA = "10.1.0.1"
HOME = "10.1.0.7"
COA = "192.0.2.7"
KEY = bytes(range(16))
SA = SecurityAssociation(1000, KEY)


class Clock:
    def __init__(self) -> None:
        self.wall = WALL

    def __call__(self) -> float:
        return self.wall


def make_ha(clock: Clock | None = None, **kw) -> HomeAgent:
    counter = itertools.count(0x1000)
    return HomeAgent(
        HaConfig(HA, "10.1.0.0/24", [MobileNodeConfig(HOME, 1000, KEY)], **kw),
        wallclock=clock or Clock(),
        rand32=lambda: next(counter),
    )


_idents = itertools.count(1)


def rrq(
    home: str = HOME, ident: int | None = None, sa=SA, lifetime: int = 600, coa: str = COA
) -> bytes:
    ident = ident if ident is not None else ntp_from_unix(WALL) + next(_idents)
    data = encode(RegistrationRequest(home, HA, coa, ident, lifetime, 0))
    return append_auth(data, 32, sa) if sa is not None else data


def replies(out) -> list:
    return [decode_udp(a.payload) for a in out if isinstance(a, Send)]


# --- reflection -----------------------------------------------------------------------------


def test_denials_to_one_source_are_rate_limited() -> None:
    """Before: the HA answered every request, 14-23k replies/s, to any source address."""
    ha = make_ha(reply_rate=10.0, reply_burst=20.0)
    sent = limited = 0
    for i in range(200):  # unknown home addresses from one (spoofed) source, in 0.02 s
        out = ha.handle_datagram(rrq(f"10.1.0.{i + 20}"), "198.51.100.9", 434, i * 0.0001)
        sent += len(replies(out))
        limited += sum(1 for a in out if isinstance(a, Event) and a.data.get("limited"))
    assert (sent, limited) == (20, 180)
    assert ha.counters["rate_limited"] == 180 and ha.counters["denied"] == 200


def test_denials_in_all_are_rate_limited() -> None:
    ha = make_ha(reply_total_rate=100.0, reply_total_burst=200.0)
    sent = 0
    for i in range(2000):
        src = f"198.51.{i >> 8}.{i & 255}"
        sent += len(replies(ha.handle_datagram(rrq("10.1.0.99"), src, 434, i * 0.0005)))
    assert 200 <= sent <= 301


def test_acceptances_are_never_limited() -> None:
    ha = make_ha(reply_rate=1.0, reply_burst=1.0)
    for _ in range(5):
        ha.handle_datagram(rrq("10.1.0.99"), COA, 434, 0.0)  # uses up the source's bucket
    for _ in range(5):
        (rep,) = replies(ha.handle_datagram(rrq(), COA, 434, 0.0))
        assert rep.code == 0


# --- signed denials ---------------------------------------------------------------------------


def test_no_mn_ha_authenticator_for_a_request_that_did_not_prove_it_came_from_the_mn() -> None:
    """Before: each of these came back with an MN-HA authenticator computed with the mobile
    node's key over the Identification the sender chose (a signing oracle)."""
    chosen = ntp_from_unix(WALL + 3600)  # e.g. a timestamp the MN will use in an hour
    plain = encode(RegistrationRequest(HOME, HA, COA, chosen, 600, 0))
    unknown_first = append_auth(plain + b"\x63\x00", 32, SA)  # unknown extension, then MN-HA
    for why, req in {
        "no MN-HA extension": plain,
        "unknown SPI": append_auth(plain, 32, SecurityAssociation(1001, KEY)),
        "bad authenticator": append_auth(plain, 32, SecurityAssociation(1000, b"guess")),
        "unverifiable, unknown extension": unknown_first,
    }.items():
        ha = make_ha()
        (rep,) = replies(ha.handle_datagram(req, "198.51.100.9", 434, 0.0))
        assert rep.code in (131, 134), why
        assert rep.identification == chosen and rep.find(32) is None, why


def test_denials_of_authenticated_requests_are_authenticated() -> None:
    """RFC 5944 3.8.3.1: the mobile node needs them (e.g. 133 to resynchronise)."""
    ha = make_ha()
    stale = ntp_from_unix(WALL - 3600)
    wrong_ha = append_auth(encode(RegistrationRequest(HOME, "10.1.0.2", COA, 0, 600, 0)), 32, SA)
    for req, code in ((rrq(ident=stale), 133), (wrong_ha, 133)):
        (rep,) = replies(ha.handle_datagram(req, COA, 434, 0.0))
        ext = rep.find(32)
        assert rep.code == code and ext is not None
        (send,) = [a for a in ha.handle_datagram(req, COA, 434, 0.0) if isinstance(a, Send)]
        assert SA.verify(send.payload[: ext.offset + 6], ext.authenticator)
    fresh = append_auth(
        encode(RegistrationRequest(HOME, "10.1.0.2", COA, ntp_from_unix(WALL) + 99, 600, 0)),
        32,
        SA,
    )
    (rep,) = replies(ha.handle_datagram(fresh, COA, 434, 0.0))
    assert rep.code == 136 and rep.find(32) is not None


# --- expiry that does not grow with renewals ------------------------------------------------


def test_renewals_do_not_grow_the_expiry_heap() -> None:
    """Before: one heap entry per accepted request until its old deadline; 20k renewals of
    one binding with lifetime 600 in 200 s left 20k entries."""
    clock = Clock()
    ha = make_ha(clock)
    for i in range(20_000):
        clock.wall = WALL + i * 0.01
        out = ha.handle_datagram(rrq(ident=ntp_from_unix(clock.wall) + i), COA, 434, i * 0.01)
        assert replies(out)[0].code == 0
    assert len(ha._heap) <= 2 and len(ha._scheduled) == 1
    # and the binding still expires 600 s after the last renewal, not before
    last = 19_999 * 0.01
    assert ha.handle_timer("ha.expire", 600.0)  # the first deadline: re-armed, not expired
    assert ha.bindings() and ha.counters["expired"] == 0
    out = ha.handle_timer("ha.expire", last + 600)
    assert ha.bindings() == [] and ha.counters["expired"] == 1
    assert [a.data["reason"] for a in out if isinstance(a, Event)] == ["expired"]


def test_bindings_expire_at_their_deadline_under_random_traffic() -> None:
    """Registrations, renewals with longer and shorter lifetimes, moves, deregistrations and
    timers in random order: a binding is there exactly until its last granted deadline, and
    the heap stays within twice the bindings (+64)."""
    import random

    from agents.mip.actions import CancelTimer, SetTimer

    rng = random.Random(5)
    homes = [f"10.1.0.{i}" for i in range(10, 30)]
    clock = Clock()
    counter = itertools.count(0x1000)
    mns = [MobileNodeConfig(h, 1000, KEY) for h in homes]
    ha = HomeAgent(HaConfig(HA, "10.1.0.0/24", mns), wallclock=clock, rand32=lambda: next(counter))
    armed: float | None = None
    deadline: dict[tuple[str, str], float] = {}
    now = 0.0
    for step in range(6000):
        now += rng.random() * 2
        clock.wall = WALL + now
        while armed is not None and armed <= now:
            at, armed = armed, None
            for a in ha.handle_timer("ha.expire", at):
                if isinstance(a, SetTimer):
                    armed = a.at
                elif isinstance(a, CancelTimer):
                    armed = None
            for key, d in list(deadline.items()):
                if d <= at:
                    del deadline[key]
            live = {(b.home_address, b.care_of) for b in ha.bindings()}
            assert live == set(deadline), (at, live ^ set(deadline))
        home, coa = rng.choice(homes), rng.choice(("192.0.2.7", "192.0.2.8"))
        lifetime = rng.choice((0, 5, 20, 60, 600))
        ident = ntp_from_unix(clock.wall) + step
        out = ha.handle_datagram(rrq(home, ident, lifetime=lifetime, coa=coa), coa, 434, now)
        assert replies(out)[0].code == 0
        for a in out:
            if isinstance(a, SetTimer):
                armed = a.at
        if lifetime == 0:
            deadline.pop((home, coa), None)
        else:
            for key in [k for k in deadline if k[0] == home]:
                del deadline[key]  # no simultaneous bindings: the other care-of goes
            deadline[(home, coa)] = now + lifetime
        assert len(ha._heap) <= 2 * ha.binding_count + 64
        assert armed is not None or not deadline
