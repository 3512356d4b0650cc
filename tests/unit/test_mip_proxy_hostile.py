"""MIP proxy under attack (issue 20, item 4): the home agent's hostile-input rules hold at the
proxy's front (it wraps the HA core), and forged replies at its back, toward the real home
agent, change nothing (docs/hostile-input.md). Driven by hand, no network."""

from __future__ import annotations

import itertools
import random

from agents.mip.actions import Event, Send
from agents.mip.auth import SecurityAssociation, append_auth
from agents.mip.codec import encode
from agents.mip.ha import MobileNodeConfig
from agents.mip.messages import RegistrationReply, RegistrationRequest, decode_udp
from agents.mip.proxy import MipProxy, ProxyConfig
from agents.mip.replay import ntp_from_unix

WALL = 1_700_000_000.0
KEY = bytes(range(16))
SPI = 1000
SA = SecurityAssociation(SPI, KEY)
HOME, HA, HOME_NET = "10.1.0.7", "10.1.0.1", "10.1.0.0/24"
EXT, INT = "198.51.100.10", "10.0.5.2"
COA = "192.0.2.7"
ATTACKER = "203.0.113.66"


class Clock:
    def __init__(self) -> None:
        self.wall = WALL

    def __call__(self) -> float:
        return self.wall


def make_proxy(clock: Clock | None = None) -> MipProxy:
    counter = itertools.count(0x1000)
    proxy = MipProxy(
        ProxyConfig(EXT, INT, HA, HOME_NET, [MobileNodeConfig(HOME, SPI, KEY)]),
        wallclock=clock or Clock(),
        rand32=lambda: next(counter),
    )
    proxy.start(0.0)
    return proxy


_idents = itertools.count(1)


def rrq(
    home: str = HOME,
    ident: int | None = None,
    sa: SecurityAssociation | None = SA,
    lifetime: int = 600,
    coa: str = COA,
) -> bytes:
    ident = ident if ident is not None else ntp_from_unix(WALL) + next(_idents)
    data = encode(RegistrationRequest(home, EXT, coa, ident, lifetime, 0))
    return append_auth(data, 32, sa) if sa is not None else data


def sends(out, dst: str | None = None) -> list[Send]:
    return [a for a in out if isinstance(a, Send) and dst in (None, a.dst)]


def names(out) -> list[str]:
    return [a.name for a in out if isinstance(a, Event)]


def upstream_reply(req: RegistrationRequest, code: int = 0, *, sa=SA, ident=None, home=HOME):
    body = encode(
        RegistrationReply(
            code, req.lifetime, home, HA, req.identification if ident is None else ident, []
        )
    )
    return append_auth(body, 32, sa) if sa is not None else body


def held(proxy: MipProxy) -> tuple[MipProxy, RegistrationRequest]:
    """A front registration accepted, its reply held, the upstream request in flight."""
    out = proxy.handle_datagram(rrq(), COA, 434, 0.0)
    assert "proxy_reply_held" in names(out) and not sends(out, COA)
    (up,) = sends(out, HA)
    req = decode_udp(up.payload)
    assert isinstance(req, RegistrationRequest)
    return proxy, req


def state(proxy: MipProxy) -> tuple:
    return (
        proxy.upstream(HOME),
        [(b.home_address, b.care_of, b.expires) for b in proxy.bindings()],
        proxy.front.binding_count,
    )


# --- the front: what the home agent core guarantees, through the proxy ----------------------


def test_front_denials_to_one_source_are_rate_limited() -> None:
    proxy = make_proxy()
    sent = 0
    for i in range(200):
        out = proxy.handle_datagram(rrq(f"10.1.0.{i + 20}"), ATTACKER, 434, i * 0.0001)
        sent += len(sends(out))
    assert sent == 20 and proxy.front.counters["rate_limited"] == 180
    # and the mobile node is still answered (acceptances are never limited)
    _, req = held(proxy)
    out = proxy.handle_datagram(upstream_reply(req), HA, 434, 0.05)
    (rel,) = sends(out, COA)
    assert decode_udp(rel.payload).code == 0


def test_front_signs_no_denial_of_an_unauthenticated_request() -> None:
    chosen = ntp_from_unix(WALL + 3600)
    plain = encode(RegistrationRequest(HOME, EXT, COA, chosen, 600, 0))
    for why, req in {
        "no MN-HA extension": plain,
        "unknown SPI": append_auth(plain, 32, SecurityAssociation(SPI + 1, KEY)),
        "bad authenticator": append_auth(plain, 32, SecurityAssociation(SPI, b"guess")),
        "unverifiable": append_auth(plain + b"\x63\x00", 32, SA),
    }.items():
        proxy = make_proxy()
        (rep,) = [
            decode_udp(s.payload) for s in sends(proxy.handle_datagram(req, ATTACKER, 434, 0))
        ]
        assert rep.code in (131, 134) and rep.find(32) is None, why
        assert rep.identification == chosen, why
        assert sends(proxy.handle_datagram(req, ATTACKER, 434, 0), HA) == [], why


def test_front_expiry_does_not_grow_with_renewals() -> None:
    clock = Clock()
    proxy = make_proxy(clock)
    _, req = held(proxy)
    proxy.handle_datagram(upstream_reply(req), HA, 434, 0.01)
    for i in range(5000):
        clock.wall = WALL + 1 + i * 0.01
        out = proxy.handle_datagram(
            rrq(ident=ntp_from_unix(clock.wall) + i), COA, 434, 1 + i * 0.01
        )
        assert decode_udp(sends(out, COA)[0].payload).code == 0
    assert len(proxy.front._heap) <= 2
    # the upstream registration was renewed as the front needed, not per request
    assert proxy.counters["upstream_sent"] < 20


def test_garbage_at_the_front_and_the_back_is_dropped() -> None:
    proxy, req = held(make_proxy())
    before = state(proxy)
    rng = random.Random(4)
    good = [rrq(), upstream_reply(req)]
    for i in range(6000):
        if i % 3 == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(80)))
        else:
            base = good[i % 2]
            pos = rng.randrange(len(base))
            data = base[:pos] + bytes([base[pos] ^ (1 + rng.randrange(255))]) + base[pos + 1 :]
        out = proxy.handle_datagram(data, HA if i % 2 else ATTACKER, 434, 0.001)
        assert not sends(out, COA)
    assert state(proxy) == before


# --- the back: replies that are not the home agent's answer ----------------------------------


def test_forged_upstream_replies_change_nothing() -> None:
    proxy, req = held(make_proxy())
    before = state(proxy)
    other = SecurityAssociation(SPI, b"not the key")
    forged = {
        "not from the home agent": (upstream_reply(req), ATTACKER),
        "from the front's address": (upstream_reply(req), EXT),
        "other identification": (upstream_reply(req, ident=req.identification + 1), HA),
        "unauthenticated": (upstream_reply(req, sa=None), HA),
        "unauthenticated FA denial": (upstream_reply(req, 65, sa=None), HA),
        "wrong key": (upstream_reply(req, sa=other), HA),
        "unauthenticated 133": (upstream_reply(req, 133, sa=None), HA),
        "other home address": (upstream_reply(req, home="10.1.0.8"), HA),
        "truncated": (upstream_reply(req)[:25], HA),
    }
    for why, (data, src) in forged.items():
        dropped = proxy.counters["dropped"]
        out = proxy.handle_datagram(data, src, 434, 0.01)
        assert names(out) == ["message_dropped"] and not sends(out), why
        assert proxy.counters["dropped"] == dropped + 1 and state(proxy) == before, why
    # the genuine one releases the held reply; replayed afterwards, it changes nothing
    out = proxy.handle_datagram(upstream_reply(req), HA, 434, 0.02)
    assert sends(out, COA) and proxy.upstream(HOME)["registered"]
    before = state(proxy)
    out = proxy.handle_datagram(upstream_reply(req), HA, 434, 0.03)
    assert names(out) == ["message_dropped"] and state(proxy) == before


def test_forged_requests_do_not_touch_the_upstream_registration() -> None:
    """Requests naming the home address that the front denies (unauthenticated, wrongly
    keyed, or a replay of the mobile node's own) send nothing to the home agent, while the
    proxy is deregistering upstream or registered."""
    proxy, req = held(make_proxy())
    first = rrq()
    proxy.handle_datagram(first, COA, 434, 0.005)
    proxy.handle_datagram(upstream_reply(req), HA, 434, 0.01)
    out = proxy.handle_datagram(rrq(lifetime=0), COA, 434, 1.0)  # the MN deregisters
    assert len(sends(out, HA)) == 1 and proxy.upstream(HOME)["state"] == "deregistering"
    upstream = 0
    for i in range(100):
        for forged in (rrq(sa=None), rrq(sa=SecurityAssociation(SPI, b"x")), first):
            upstream += len(
                sends(proxy.handle_datagram(forged, ATTACKER, 434, 1.01 + i * 1e-3), HA)
            )
    assert upstream == 0
    # registered: the same, and the binding and upstream registration stay as they were
    proxy, req = held(make_proxy())
    first = rrq()
    proxy.handle_datagram(first, COA, 434, 0.005)
    proxy.handle_datagram(upstream_reply(req), HA, 434, 0.01)
    before = state(proxy)
    for forged in (rrq(sa=None), rrq(sa=SecurityAssociation(SPI, b"x")), first):
        assert not sends(proxy.handle_datagram(forged, ATTACKER, 434, 0.02), HA)
    assert state(proxy) == before
