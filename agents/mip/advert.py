"""Sending Agent Advertisements: periodic and in answer to solicitations (RFC 5944 s. 2.3).

Used by the foreign agent and, when it advertises on its home link, the home agent. It owns its
timers (``<prefix>.advertise.<iface>`` and ``<prefix>.solicited.<iface>``) and hands them back
through :meth:`Advertiser.handle_timer`.

Rules implemented:

* sequence numbers count advertisements per interface from 0 and wrap to 256, not 0, so a
  mobile node can tell a wrap from a reboot (RFC 5944 section 2.3.1);
* the ICMP lifetime defaults to three advertisement intervals (RFC 1256 section 4.1 default
  AdvertisementLifetime = 3 x MaxAdvertisementInterval), so two lost advertisements do not
  make mobile nodes think the agent is gone;
* answers to solicitations are rate limited per interface (``min_solicited_interval``): a
  solicitation arriving too soon after the last answer is answered when the interval has
  passed, not dropped. Periodic advertisements do not count: one sent just before a mobile
  node arrived must not hold back the answer it is waiting for after a move;
* RFC 3012 challenges: when ``challenge_source`` is given, every advertisement carries a fresh
  challenge, and the last ``challenge_window`` ones per interface stay acceptable.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from agents.mip.actions import Action, Send, SetTimer
from agents.mip.constants import ALL_SYSTEMS
from agents.mip.icmp import (
    CODE_MOBILITY_ONLY,
    AgentAdvertisement,
    MobilityAgentExtension,
    encode_icmp,
)

__all__ = ["Advertiser", "AdvertisingInterface"]


@dataclass(slots=True)
class AdvertisingInterface:
    """One link to advertise on: our address there, its prefix length, offered care-of
    addresses (a foreign agent's CoA; empty for a home agent that is not also an FA)."""

    name: str
    address: str
    prefix_len: int
    care_of_addresses: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _IfState:
    sequence: int = 0
    last_answer: float = -math.inf  # last advertisement sent in answer to a solicitation
    solicited_pending: bool = False
    challenges: deque[bytes] = field(default_factory=deque)
    # challenges issued earlier but no longer acceptable: to tell "stale" from "unknown"
    expired: deque[bytes] = field(default_factory=lambda: deque(maxlen=64))


class Advertiser:
    def __init__(
        self,
        interfaces: list[AdvertisingInterface],
        *,
        flags: int,
        registration_lifetime: int,
        interval: float,
        lifetime: int | None = None,
        dst: str = ALL_SYSTEMS,
        min_solicited_interval: float = 1.0,
        routes_traffic: bool = True,
        challenge_source: Callable[[], bytes] | None = None,
        challenge_window: int = 2,
        timer_prefix: str = "agent",
    ) -> None:
        self.interfaces = {i.name: i for i in interfaces}
        self.flags = flags
        self.registration_lifetime = registration_lifetime
        self.interval = interval
        self.lifetime = lifetime if lifetime is not None else max(1, math.ceil(3 * interval))
        self.dst = dst
        self.min_solicited_interval = min_solicited_interval
        self.code = 0 if routes_traffic else CODE_MOBILITY_ONLY
        self.challenge_source = challenge_source
        self.challenge_window = challenge_window
        self.prefix = timer_prefix
        self._state = {name: _IfState() for name in self.interfaces}

    # -- timers ----------------------------------------------------------------------------

    def _periodic(self, iface: str) -> str:
        return f"{self.prefix}.advertise.{iface}"

    def _solicited(self, iface: str) -> str:
        return f"{self.prefix}.solicited.{iface}"

    def start(self, now: float) -> list[Action]:
        """Advertise on every interface now and arm the periodic timers."""
        out: list[Action] = []
        for name in self.interfaces:
            out += self._advertise(name, now)
            out.append(SetTimer(self._periodic(name), now + self.interval))
        return out

    def handle_timer(self, name: str, now: float) -> list[Action] | None:
        """Actions for one of our timers, ``None`` if ``name`` is not ours."""
        for iface in self.interfaces:
            if name == self._periodic(iface):
                return [*self._advertise(iface, now), SetTimer(name, now + self.interval)]
            if name == self._solicited(iface):
                self._state[iface].solicited_pending = False
                self._state[iface].last_answer = now
                return self._advertise(iface, now)
        return None

    def handle_solicitation(self, iface: str | None, now: float) -> list[Action]:
        """Answer an Agent Solicitation received on ``iface`` (``None``: on all)."""
        names = list(self.interfaces) if iface is None else [iface]
        out: list[Action] = []
        for name in names:
            st = self._state.get(name)
            if st is None:
                continue
            earliest = st.last_answer + self.min_solicited_interval
            if now >= earliest:
                st.last_answer = now
                out += self._advertise(name, now)
            elif not st.solicited_pending:
                st.solicited_pending = True
                out.append(SetTimer(self._solicited(name), earliest))
        return out

    # -- challenges ------------------------------------------------------------------------

    def challenge_status(self, iface: str | None, challenge: bytes) -> str:
        """``"current"``, ``"stale"`` (issued, no longer in the window) or ``"unknown"``."""
        states = self._state.values() if iface is None else [self._state.get(iface)]
        for st in states:
            if st is not None and challenge in st.challenges:
                return "current"
        for st in states:
            if st is not None and challenge in st.expired:
                return "stale"
        return "unknown"

    # -- building --------------------------------------------------------------------------

    def build(self, iface: str) -> AgentAdvertisement:
        """The advertisement for ``iface`` (advances the sequence number)."""
        ifc = self.interfaces[iface]
        st = self._state[iface]
        seq = st.sequence
        st.sequence = 256 if seq >= 0xFFFF else seq + 1
        challenge = None
        if self.challenge_source is not None:
            challenge = self.challenge_source()
            st.challenges.append(challenge)
            while len(st.challenges) > self.challenge_window:
                st.expired.append(st.challenges.popleft())
        return AgentAdvertisement(
            lifetime=self.lifetime,
            routers=[(ifc.address, 0)],
            agent=MobilityAgentExtension(
                seq, self.registration_lifetime, self.flags, list(ifc.care_of_addresses)
            ),
            prefix_lengths=[ifc.prefix_len],
            challenge=challenge,
            code=self.code,
        )

    def _advertise(self, iface: str, now: float) -> list[Action]:
        payload = encode_icmp(self.build(iface))
        ifc = self.interfaces[iface]
        return [Send(payload, self.dst, 0, src=ifc.address, iface=iface, kind="icmp", ttl=1)]
