"""Replay protection for registration messages (RFC 5944 section 5.7).

Timestamps (mandatory, section 5.7.1): the Identification is a 64-bit NTP timestamp -- high 32
bits seconds since 1900-01-01, low 32 bits fraction (bits finer than the clock SHOULD be
random). The home agent accepts it when it is within ``window`` seconds of its own clock and
later than the last accepted one; otherwise it denies with 133 and puts its own time in the
high 32 bits of the reply's Identification while copying the low 32 bits from the request, so
the mobile node (after checking those low bits) can resynchronise.

Nonces (optional, section 5.7.2): low 32 bits are the mobile node's nonce, high 32 bits the
nonce the home agent gave in its last reply; the home agent answers with a new nonce in the
high bits and copies the low bits.

No clock or randomness is read here: wall-clock time and random 32-bit numbers come in as
arguments, so every rule is testable with fake values.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agents.mip.constants import NTP_UNIX_OFFSET

__all__ = [
    "HomeReplayState",
    "MobileReplayState",
    "check_request",
    "default_rand32",
    "ntp_from_unix",
    "ntp_offset_seconds",
    "unix_from_ntp",
]

_M64 = (1 << 64) - 1
_M32 = 0xFFFFFFFF
_HALF64 = 1 << 63


def default_rand32() -> int:
    """32 random bits from the OS; the default randomness source for the state machines.

    Drivers may pass their own; tests pass deterministic ones.
    """
    return int.from_bytes(os.urandom(4), "big")


def ntp_from_unix(wall: float, random_low: int = 0, random_bits: int = 12) -> int:
    """NTP 64-bit timestamp of UNIX time ``wall``.

    The lowest ``random_bits`` bits of the fraction (finer than a microsecond clock for the
    default 12) are filled from ``random_low`` (RFC 5944 5.7.1: bits not available from the
    time source SHOULD be random).
    """
    secs = int(wall // 1)
    frac = int((wall - secs) * 4294967296.0) & _M32
    mask = (1 << random_bits) - 1
    frac = (frac & ~mask) | (random_low & mask)
    return (((secs + NTP_UNIX_OFFSET) & _M32) << 32) | frac


def unix_from_ntp(ident: int) -> float:
    """UNIX time of an NTP timestamp (era 0, i.e. before 2036-02-07)."""
    return (ident >> 32) - NTP_UNIX_OFFSET + (ident & _M32) / 4294967296.0


def ntp_offset_seconds(a: int, b: int) -> float:
    """``a - b`` in seconds for two NTP timestamps, wrap-safe (signed 64-bit difference)."""
    d = (a - b) & _M64
    if d >= _HALF64:
        d -= 1 << 64
    return d / 4294967296.0


def _later(a: int, b: int) -> bool:
    """Serial-number comparison of 64-bit values: is ``a`` after ``b``?"""
    d = (a - b) & _M64
    return 0 < d < _HALF64


@dataclass(slots=True)
class HomeReplayState:
    """What a home agent remembers per mobile node for replay protection."""

    last_accepted: int | None = None  # timestamps: last accepted Identification
    nonce: int | None = None  # nonces: the nonce we gave in our last reply (high 32 bits)


def check_request(
    style: str,
    identification: int,
    state: HomeReplayState,
    *,
    wall: float,
    window: float,
    rand32: Callable[[], int],
) -> tuple[bool, int]:
    """Home agent check of a request's Identification.

    Returns ``(ok, reply_identification)``. On success the caller must call
    :func:`commit` with the same state once the registration is accepted. For nonces, the
    reply identification carries a fresh nonce, which :func:`commit` (or a 133 denial) stores.
    """
    low = identification & _M32
    if style == "timestamp":
        ours = ntp_from_unix(wall, 0, 0)
        fresh = abs(ntp_offset_seconds(identification, ours)) <= window
        newer = state.last_accepted is None or _later(identification, state.last_accepted)
        if fresh and newer:
            return True, identification
        # RFC 5944 5.7.1: our time in the high 32 bits, the request's low 32 bits copied.
        return False, (ours & ~_M32 & _M64) | low
    if style == "nonce":
        new_nonce = rand32() & _M32
        ok = state.nonce is not None and (identification >> 32) == state.nonce
        return ok, (new_nonce << 32) | low
    raise ValueError(f"unknown replay protection style {style!r}")


def commit(style: str, state: HomeReplayState, request_ident: int, reply_ident: int) -> None:
    """Record an accepted request (timestamps) / the nonce just sent (nonces)."""
    if style == "timestamp":
        state.last_accepted = request_ident
    else:
        state.nonce = reply_ident >> 32


def issued_nonce(style: str, state: HomeReplayState, reply_ident: int) -> None:
    """After a denial: with nonces the reply still hands out the nonce to use next."""
    if style == "nonce":
        state.nonce = reply_ident >> 32


@dataclass(slots=True)
class MobileReplayState:
    """Mobile node side: produces Identifications and learns from replies."""

    style: str = "timestamp"
    clock_offset: float = 0.0  # seconds to add to our wall clock (learnt from 133 replies)
    last_sent: int = 0
    ha_nonce: int = 0  # nonces: what the HA gave us last (0 before the first reply)

    def next_identification(self, wall: float, rand32: Callable[[], int]) -> int:
        """A new Identification, strictly later than the previous one."""
        if self.style == "timestamp":
            ident = ntp_from_unix(wall + self.clock_offset, rand32())
            if self.last_sent and not _later(ident, self.last_sent):
                ident = (self.last_sent + 1) & _M64
        else:
            ident = ((self.ha_nonce & _M32) << 32) | (rand32() & _M32)
        self.last_sent = ident
        return ident

    def new_identification_for(self, attempt: int) -> bool:
        """Does transmission number ``attempt`` (0: the first) need a new Identification?
        Timestamps: every retransmission is a new registration with a new one; nonces: a
        retransmission is sent unchanged (RFC 5944 section 3.6.3)."""
        return attempt == 0 or self.style == "timestamp"

    def request_answered(
        self, sent: Mapping[int, float], reply_ident: int, code: int
    ) -> float | None:
        """When the request a reply answers was sent (``sent``: Identification -> time sent),
        None if it answers none of them."""
        for ident, at in sent.items():
            if self.reply_matches(ident, reply_ident, code):
                return at
        return None

    def reply_matches(self, request_ident: int, reply_ident: int, code: int) -> bool:
        """Does a reply's Identification answer our request (RFC 5944 section 3.6.2.1)?

        The low 32 bits must always match. For timestamps an accepting or non-133 reply copies
        the whole value; a 133 reply carries the home agent's time in the high bits. With
        nonces the high bits are the home agent's next nonce.
        """
        if (request_ident ^ reply_ident) & _M32:
            return False
        if self.style == "timestamp" and code != 133:
            return request_ident == reply_ident
        return True

    def learn(self, reply_ident: int, code: int, wall: float) -> None:
        """Take what a matching, authenticated reply teaches.

        Timestamps + 133: adopt the home agent's clock (its seconds, our fraction) so the next
        request is inside its window. Nonces: keep the home agent's nonce for the next request.
        """
        if self.style == "timestamp":
            if code == 133:
                ours = ntp_from_unix(wall + self.clock_offset, 0, 0)
                ha_secs = reply_ident >> 32
                self.clock_offset += ntp_offset_seconds(ha_secs << 32, ours & ~_M32 & _M64)
                # Our earlier Identifications were judged by the HA's clock, not ours: do not
                # let them hold the next one back (monotonicity is per clock base).
                self.last_sent = 0
        else:
            self.ha_nonce = reply_ident >> 32
