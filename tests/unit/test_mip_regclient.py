"""The registration client alone (agents.mip.regclient), with a fake clock: Identification,
backoff, reply matching, authentication, resynchronisation, giving up."""

from __future__ import annotations

import itertools

import pytest

from agents.mip.actions import CancelTimer, Event, Send, SetTimer
from agents.mip.auth import SecurityAssociation, append_auth
from agents.mip.constants import ExtType
from agents.mip.messages import (
    REPLY,
    RegistrationRequest,
    decode_reply,
    decode_request,
    encode,
)
from agents.mip.regclient import (
    Answer,
    Dropped,
    GiveUp,
    Outcome,
    Pending,
    RegistrationClient,
)
from agents.mip.replay import MobileReplayState, ntp_from_unix, unix_from_ntp

HOME, HA, COA = "10.1.0.50", "10.1.0.1", "10.2.0.77"
SA = SecurityAssociation(1000, bytes(range(16)))
FA_SA = SecurityAssociation(2000, bytes(range(16, 32)))
OTHER_SA = SecurityAssociation(1000, bytes(16))
TO = Send(b"", HA, 434, COA, 434, "wlan0")
T0 = 1_700_000_000.0  # the fake wall clock's start (UNIX seconds)


class Rig:
    """A client with a fake wall clock and counting random numbers."""

    def __init__(
        self,
        style: str = "timestamp",
        *,
        initial: float = 1.0,
        maximum: float = 16.0,
        max_resync: int = 3,
        fa_denials: bool = False,
    ) -> None:
        self.wall = T0
        self.rand = itertools.count(1)
        self.built: list[int] = []
        self.client: RegistrationClient[str] = RegistrationClient(
            SA,
            MobileReplayState(style),
            timer="t.retx",
            build=self.build,
            announce=lambda p: Event("sent", {"attempt": p.attempt, "ident": p.identification}),
            wallclock=lambda: self.wall,
            rand32=lambda: next(self.rand),
            retransmit_initial=initial,
            retransmit_max=maximum,
            max_resync=max_resync,
            fa_denials_unauthenticated=fa_denials,
        )

    def build(self, p: Pending[str]) -> bytes:
        self.built.append(p.identification)
        req = RegistrationRequest(HOME, p.home_agent, p.context, p.identification, p.lifetime, 0)
        return append_auth(encode(req), ExtType.MN_HA_AUTH, SA)

    def start(self, now: float = 0.0, **kw: object) -> list[object]:
        args: dict[str, object] = {"home_agent": HA, "lifetime": 600, "reason": "move", "to": TO}
        args.update(kw)
        return self.client.start(now, COA, **args)  # type: ignore[arg-type]


def sends(actions: list[object]) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def reply(ident: int, code: int = 0, lifetime: int = 600, sa: SecurityAssociation | None = SA):
    body = REPLY.pack(3, code, lifetime, bytes([10, 1, 0, 50]), bytes([10, 1, 0, 1]), ident)
    payload = body if sa is None else append_auth(body, ExtType.MN_HA_AUTH, sa)
    return decode_reply(payload), payload


# -- Identification --------------------------------------------------------------------------


def test_timestamp_identifications_follow_the_clock_and_never_repeat() -> None:
    rig = Rig()
    out = rig.start(0.0)
    (s,) = sends(out)
    first = decode_request(s.payload).identification
    assert first == ntp_from_unix(T0, 1)  # the wall clock, random low bits
    assert s == Send(s.payload, HA, 434, COA, 434, "wlan0")  # where ``to`` said, with the payload
    # the wall clock stands still: the next Identification is still later
    second = decode_request(sends(rig.client.retransmit(1.0))[0].payload).identification
    assert second > first and abs(unix_from_ntp(second) - T0) < 1e-3
    rig.wall += 5.0
    third = decode_request(sends(rig.client.retransmit(3.0))[0].payload).identification
    assert unix_from_ntp(third) == pytest.approx(T0 + 5.0, abs=1e-3)
    assert rig.built == [first, second, third]  # every retransmission rebuilt (RFC 5944 3.6.3)


def test_nonce_retransmissions_are_sent_unchanged() -> None:
    rig = Rig("nonce")
    (s1,) = sends(rig.start(0.0))
    (s2,) = sends(rig.client.retransmit(1.0))
    assert s1 == s2 and len(rig.built) == 1
    assert rig.client.pending is not None and rig.client.pending.attempt == 2


def test_a_new_registration_gets_a_new_identification() -> None:
    rig = Rig()
    rig.start(0.0)
    a = rig.client.pending
    rig.start(0.1, reason="again")
    b = rig.client.pending
    assert a is not None and b is not None and b.identification > a.identification
    assert b.attempt == 1 and b.reason == "again" and b.sent == {b.identification: 0.1}


# -- backoff and giving up -------------------------------------------------------------------


def _timer(actions: list[object]) -> float:
    (t,) = [a for a in actions if isinstance(a, SetTimer)]
    assert t.name == "t.retx"
    return t.at


def test_backoff_doubles_up_to_the_maximum() -> None:
    rig = Rig(initial=1.0, maximum=16.0)
    now = 0.0
    at = _timer(rig.start(now))
    waits = [at - now]
    for _ in range(6):
        now = at
        at = _timer(rig.client.retransmit(now))  # type: ignore[arg-type]
        waits.append(at - now)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0]


def test_each_transmission_is_announced_after_the_send_and_its_timer() -> None:
    rig = Rig(initial=0.5, maximum=4.0)
    out = rig.start(2.0)
    assert [type(a) for a in out] == [Send, SetTimer, Event]
    assert out[1] == SetTimer("t.retx", 2.5)
    assert out[2].data["attempt"] == 1  # type: ignore[attr-defined]
    out = rig.client.retransmit(2.5)
    assert isinstance(out, list) and out[2].data["attempt"] == 2  # type: ignore[attr-defined]


def test_gives_up_after_the_retransmissions_allowed() -> None:
    rig = Rig(initial=0.5, maximum=4.0)
    rig.start(0.0, max_retransmissions=2)
    assert sends(rig.client.retransmit(0.5))  # type: ignore[arg-type]
    assert sends(rig.client.retransmit(1.5))  # type: ignore[arg-type]
    gave_up = rig.client.retransmit(3.5)
    assert isinstance(gave_up, GiveUp) and gave_up.pending.attempt == 3
    assert rig.client.pending is None
    assert rig.client.retransmit(7.5) == []  # nothing pending any more


def test_without_a_limit_it_never_gives_up() -> None:
    rig = Rig(initial=0.1, maximum=0.2)
    rig.start(0.0, max_retransmissions=None)
    for i in range(50):
        assert sends(rig.client.retransmit(float(i)))  # type: ignore[arg-type]


def test_a_deregistration_is_a_lifetime_of_zero_unless_said_otherwise() -> None:
    rig = Rig()
    rig.start(0.0, lifetime=0)
    assert rig.client.pending is not None and rig.client.pending.dereg
    rig.start(0.0, lifetime=0, dereg=False)
    assert rig.client.pending is not None and not rig.client.pending.dereg


def test_abandon_cancels_the_timer_once() -> None:
    rig = Rig()
    rig.start(0.0)
    assert rig.client.abandon() == [CancelTimer("t.retx")]
    assert rig.client.pending is None and rig.client.abandon() == []


def test_once_leaves_the_pending_registration_alone() -> None:
    rig = Rig()
    rig.start(0.0)
    pending = rig.client.pending
    assert pending is not None
    p = rig.client.once(0.5, "10.9.9.9", home_agent="10.3.0.1", lifetime=0, reason="left", to=TO)
    assert rig.client.pending is pending and p.dereg and p.attempt == 0
    req = decode_request(p.payload)
    assert req.care_of_address == "10.9.9.9" and req.home_agent == "10.3.0.1"
    assert req.identification > pending.identification  # one sequence for both


# -- replies ---------------------------------------------------------------------------------


def test_a_reply_must_answer_a_pending_registration() -> None:
    rig = Rig()
    assert rig.client.handle_reply(*reply(1)) == Dropped("no registration pending")
    rig.start(0.0)
    p = rig.client.pending
    assert p is not None
    assert rig.client.handle_reply(*reply(p.identification + 1)) == Dropped(
        "identification does not match the request"
    )
    assert rig.client.pending is p  # still waiting


def test_a_reply_to_an_earlier_transmission_counts_from_when_that_was_sent() -> None:
    rig = Rig()
    rig.start(10.0)
    p = rig.client.pending
    assert p is not None
    first = p.identification
    rig.client.retransmit(11.0)
    answer = rig.client.handle_reply(*reply(first))
    assert isinstance(answer, Answer)
    assert answer.outcome is Outcome.ACCEPTED and answer.sent_at == 10.0 and answer.verified
    assert answer.pending.attempt == 2 and answer.pending.context == COA
    assert rig.client.pending is None


@pytest.mark.parametrize(
    ("sa", "reason"),
    [
        (None, "reply without MN-HA authentication"),
        (OTHER_SA, "bad MN-HA authenticator in reply"),
    ],
)
def test_replies_must_be_authenticated(sa: SecurityAssociation | None, reason: str) -> None:
    rig = Rig()
    rig.start(0.0)
    p = rig.client.pending
    assert p is not None
    assert rig.client.handle_reply(*reply(p.identification, sa=sa)) == Dropped(reason)
    assert rig.client.pending is p


def test_an_fa_denial_needs_no_mn_ha_authenticator_where_allowed() -> None:
    for allowed in (True, False):
        rig = Rig(fa_denials=allowed)
        rig.start(0.0)
        p = rig.client.pending
        assert p is not None
        answer = rig.client.handle_reply(*reply(p.identification, code=69, sa=None))
        if allowed:
            assert isinstance(answer, Answer) and answer.outcome is Outcome.DENIED
            assert not answer.verified
        else:
            assert answer == Dropped("reply without MN-HA authentication")
    # an HA denial still needs one
    rig = Rig(fa_denials=True)
    rig.start(0.0)
    p = rig.client.pending
    assert p is not None
    answer = rig.client.handle_reply(*reply(p.identification, code=129, sa=None))
    assert answer == Dropped("reply without MN-HA authentication")


def test_the_mn_fa_authenticator_is_checked_when_an_sa_is_shared_with_the_fa() -> None:
    rig = Rig()
    rig.start(0.0)
    p = rig.client.pending
    assert p is not None
    rep, payload = reply(p.identification)
    assert rig.client.handle_reply(rep, payload, mn_fa=FA_SA) == Dropped(
        "bad or missing MN-FA authenticator in reply"
    )
    signed = append_auth(payload, ExtType.MN_FA_AUTH, FA_SA)
    answer = rig.client.handle_reply(decode_reply(signed), signed, mn_fa=FA_SA)
    assert isinstance(answer, Answer) and answer.outcome is Outcome.ACCEPTED


def test_a_133_resynchronises_to_the_home_agents_clock_up_to_max_resync_times() -> None:
    rig = Rig(max_resync=2)
    ha_time = T0 + 3600.0  # the home agent's clock is an hour ahead
    for n in (1, 2):
        rig.start(0.0)
        p = rig.client.pending
        assert p is not None
        ident = (ntp_from_unix(ha_time, 0, 0) & ~0xFFFFFFFF) | (p.identification & 0xFFFFFFFF)
        answer = rig.client.handle_reply(*reply(ident, code=133))
        assert isinstance(answer, Answer) and answer.outcome is Outcome.RESYNC
        assert rig.client.resyncs == n
    rig.start(0.0)
    p = rig.client.pending
    assert p is not None
    assert unix_from_ntp(p.identification) == pytest.approx(ha_time, abs=1.0)  # learnt
    answer = rig.client.handle_reply(*reply(p.identification | (1 << 40), code=133))
    assert isinstance(answer, Answer) and answer.outcome is Outcome.DENIED  # spent
    # an acceptance starts the count again
    rig.start(0.0)
    p = rig.client.pending
    assert p is not None
    answer = rig.client.handle_reply(*reply(p.identification))
    assert isinstance(answer, Answer) and answer.outcome is Outcome.ACCEPTED
    assert rig.client.resyncs == 0


def test_an_unauthenticated_133_is_not_followed() -> None:
    rig = Rig(fa_denials=True)  # even where unauthenticated replies get through
    rig.start(0.0)
    p = rig.client.pending
    assert p is not None
    # a 133 without authenticator is dropped: only FA codes may come without one
    assert isinstance(rig.client.handle_reply(*reply(p.identification, 133, sa=None)), Dropped)


def test_nonces_take_the_home_agents_nonce_for_the_next_request() -> None:
    rig = Rig("nonce")
    rig.start(0.0)
    p = rig.client.pending
    assert p is not None
    ha_nonce = 0xABCDEF01
    answer = rig.client.handle_reply(*reply((ha_nonce << 32) | (p.identification & 0xFFFFFFFF)))
    assert isinstance(answer, Answer) and answer.outcome is Outcome.ACCEPTED
    rig.start(1.0)
    p = rig.client.pending
    assert p is not None and p.identification >> 32 == ha_nonce
