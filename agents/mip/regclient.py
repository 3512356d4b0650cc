"""The registration client (RFC 5944 section 3.6): one for the mobile node
(:mod:`agents.mip.mn`, and through it the dual-MIP x-MIP client, a second ``MobileNode``) and
the MIP proxy's registrations at the real home agent (:mod:`agents.mip.proxy`).

Sans-I/O, one registration (or deregistration) in flight at a time. What differs between its
users stays with them, as callbacks and arguments: how a request is built (``build``, from the
:class:`Pending` with its Identification), where it goes (a :class:`~agents.mip.actions.Send`
without payload), the event each transmission emits (``announce``), how many retransmissions
a registration gets, and what a denial leads to. What is shared is here:

* **Identification** (RFC 5944 5.7, 3.6.3), from :class:`~agents.mip.replay.MobileReplayState`:
  timestamps (NTP format, strictly increasing) give every transmission a new Identification and
  a newly built request; nonces resend the first one unchanged.
* **Retransmission** with binary exponential backoff (RFC 5944 3.6.3): the first wait is
  ``retransmit_initial``, each further one twice the last, at most ``retransmit_max``; after
  ``max_retransmissions`` retransmissions (``None``: never) the next timeout gives up
  (:class:`GiveUp`).
* **Reply matching** (RFC 5944 3.6.2.1): the reply must answer one of the Identifications sent
  for the pending registration (a 133 carries the home agent's time in the high bits), carry a
  valid MN-HA authenticator (an FA's denial, 64-127, cannot: accepted without one where
  ``fa_denials_unauthenticated``), and a valid MN-FA authenticator where the caller shares an SA
  with the FA. An authenticated reply teaches the replay state (133: the home agent's clock;
  nonces: its next nonce).
* **Resynchronisation**: an authenticated 133 is followed at most ``max_resync`` times
  (:attr:`Outcome.RESYNC`); the count starts again once a registration is accepted, or when the
  user says so (``resyncs = 0``).

The user owns the timer named ``timer``: it passes it to :meth:`RegistrationClient.retransmit`
when it fires and cancels it (:meth:`~RegistrationClient.abandon`) when it drops a pending
registration; a reply that :meth:`~RegistrationClient.handle_reply` resolves clears the
pending registration, and the user cancels the timer with its other actions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Generic, TypeVar

from agents.mip.actions import Action, CancelTimer, Event, Send, SetTimer
from agents.mip.auth import SecurityAssociation
from agents.mip.constants import ExtType, ReplyCode, denied_by_fa, is_accepted
from agents.mip.extensions import AuthExtension
from agents.mip.messages import RegistrationReply
from agents.mip.replay import MobileReplayState

__all__ = ["Answer", "Dropped", "GiveUp", "Outcome", "Pending", "RegistrationClient"]

C = TypeVar("C")


@dataclass(slots=True)
class Pending(Generic[C]):
    """A registration waiting for its reply. ``context``: the user's own (the mobile node's
    attachment; nothing for the proxy). ``home_agent``: the home agent the request names.
    ``to``: where each transmission goes (its payload is filled in)."""

    context: C
    home_agent: str
    lifetime: int
    reason: str
    dereg: bool
    first_sent: float
    to: Send
    max_retransmissions: int | None
    timeout: float  # the wait after the next transmission
    attempt: int = 0  # transmissions so far
    identification: int = 0  # of the latest transmission
    payload: bytes = b""  # the latest transmission
    sent: dict[int, float] = field(default_factory=dict)  # Identification -> time sent


class Outcome(Enum):
    """What an authenticated reply to the pending registration means."""

    ACCEPTED = "accepted"  # codes 0 and 1
    RESYNC = "resync"  # 133, to be followed: register again with the learnt clock / nonce
    DENIED = "denied"  # anything else (a 133 once ``max_resync`` are spent, too)


@dataclass(frozen=True, slots=True)
class Answer(Generic[C]):
    """A reply that answers the pending registration (now cleared): ``sent_at`` is when the
    request it answers went out (lifetimes count from there, RFC 5944 3.6.1.3); ``verified``:
    it carried a valid MN-HA authenticator."""

    outcome: Outcome
    pending: Pending[C]
    reply: RegistrationReply
    sent_at: float
    verified: bool


@dataclass(frozen=True, slots=True)
class Dropped:
    """A reply that answers nothing of ours or fails authentication: silently discarded."""

    reason: str


@dataclass(frozen=True, slots=True)
class GiveUp(Generic[C]):
    """The retransmissions are spent: the registration (now cleared) got no answer."""

    pending: Pending[C]


class RegistrationClient(Generic[C]):
    """Identification, transmission, backoff and reply matching of one node's registrations
    with one security association. See the module docstring."""

    def __init__(
        self,
        sa: SecurityAssociation,
        replay: MobileReplayState,
        *,
        timer: str,
        build: Callable[[Pending[C]], bytes],
        announce: Callable[[Pending[C]], Event],
        wallclock: Callable[[], float],
        rand32: Callable[[], int],
        retransmit_initial: float,
        retransmit_max: float,
        max_resync: int,
        fa_denials_unauthenticated: bool = False,
    ) -> None:
        self.sa = sa
        self.replay = replay
        self.timer = timer
        self._build = build
        self._announce = announce
        self._wall = wallclock
        self._rand32 = rand32
        self.retransmit_initial = retransmit_initial
        self.retransmit_max = retransmit_max
        self.max_resync = max_resync
        self.fa_denials_unauthenticated = fa_denials_unauthenticated
        self.pending: Pending[C] | None = None
        self.resyncs = 0  # 133s followed since the last acceptance (or the user's reset)

    def start(
        self,
        now: float,
        context: C,
        *,
        home_agent: str,
        lifetime: int,
        reason: str,
        to: Send,
        dereg: bool | None = None,
        max_retransmissions: int | None = None,
        first_sent: float | None = None,
    ) -> list[Action]:
        """Replace any pending registration with a new one and send it. ``dereg`` defaults to
        ``lifetime == 0``; ``first_sent`` (default ``now``): where its latency counts from."""
        self.pending = Pending(
            context,
            home_agent,
            lifetime,
            reason,
            lifetime == 0 if dereg is None else dereg,
            now if first_sent is None else first_sent,
            to,
            max_retransmissions,
            self.retransmit_initial,
        )
        return self._transmit(now)

    def retransmit(self, now: float) -> list[Action] | GiveUp[C]:
        """The retransmission timer fired: send again, or give up once the retransmissions
        are spent (nothing when no registration is pending)."""
        p = self.pending
        if p is None:
            return []
        if p.max_retransmissions is not None and p.attempt > p.max_retransmissions:
            self.pending = None
            return GiveUp(p)
        return self._transmit(now)

    def abandon(self) -> list[Action]:
        """Forget the pending registration (a move made it pointless): its timer goes."""
        if self.pending is None:
            return []
        self.pending = None
        return [CancelTimer(self.timer)]

    def once(
        self, now: float, context: C, *, home_agent: str, lifetime: int, reason: str, to: Send
    ) -> Pending[C]:
        """A request sent once, beside the pending one and never retransmitted (its reply is
        not awaited): built with a fresh Identification; the caller sends ``payload``."""
        p = Pending(context, home_agent, lifetime, reason, lifetime == 0, now, to, 0, 0.0)
        p.identification = self.replay.next_identification(self._wall(), self._rand32)
        p.payload = self._build(p)
        return p

    def handle_reply(
        self,
        reply: RegistrationReply,
        payload: bytes,
        *,
        mn_fa: SecurityAssociation | None = None,
    ) -> Answer[C] | Dropped:
        """Match ``reply`` (decoded from ``payload``) to the pending registration and check
        its authenticators (``mn_fa``: the SA shared with the FA it came through, if any)."""
        p = self.pending
        if p is None:
            return Dropped("no registration pending")
        code = reply.code
        sent_at = self.replay.request_answered(p.sent, reply.identification, code)
        if sent_at is None:
            return Dropped("identification does not match the request")
        mnha = reply.find(ExtType.MN_HA_AUTH)
        verified = False
        if isinstance(mnha, AuthExtension):
            if not self.sa.verify_extension(payload, mnha):
                return Dropped("bad MN-HA authenticator in reply")
            verified = True
        elif not (self.fa_denials_unauthenticated and denied_by_fa(code)):
            return Dropped("reply without MN-HA authentication")
        if mn_fa is not None:
            mnfa = reply.find(ExtType.MN_FA_AUTH)
            if not isinstance(mnfa, AuthExtension) or not mn_fa.verify_extension(payload, mnfa):
                return Dropped("bad or missing MN-FA authenticator in reply")
        if verified:
            self.replay.learn(reply.identification, code, self._wall())
        self.pending = None
        if is_accepted(code):
            self.resyncs = 0
            outcome = Outcome.ACCEPTED
        elif (
            code == ReplyCode.HA_IDENTIFICATION_MISMATCH
            and verified
            and self.resyncs < self.max_resync
        ):
            self.resyncs += 1
            outcome = Outcome.RESYNC
        else:
            outcome = Outcome.DENIED
        return Answer(outcome, p, reply, sent_at, verified)

    # -- internals -------------------------------------------------------------------------

    def _transmit(self, now: float) -> list[Action]:
        p = self.pending
        assert p is not None
        if self.replay.new_identification_for(p.attempt):
            p.identification = self.replay.next_identification(self._wall(), self._rand32)
            p.payload = self._build(p)
        p.sent[p.identification] = now
        p.attempt += 1
        timeout = p.timeout
        p.timeout = min(p.timeout * 2, self.retransmit_max)
        return [
            replace(p.to, payload=p.payload),
            SetTimer(self.timer, now + timeout),
            self._announce(p),
        ]
