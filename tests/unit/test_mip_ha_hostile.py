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


def rrq(home: str = HOME, ident: int | None = None, sa=SA, lifetime: int = 600) -> bytes:
    ident = ident if ident is not None else ntp_from_unix(WALL) + next(_idents)
    data = encode(RegistrationRequest(home, HA, COA, ident, lifetime, 0))
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
