"""Bringing the MN's IPsec tunnel back up: initiation retried with a bounded backoff.

A gateway that restarts sends DELETE, and our charon re-initiates at once (``close_action =
restart``), usually before the restarted gateway has loaded its connections. It answers
NO_PROPOSAL_CHOSEN, which charon takes as final: it does not try again, and nothing else
did (the path watchdog only echoes through a tunnel that exists), so the MN stayed outside
without a tunnel. Whoever needs the tunnel therefore keeps initiating until it is up, waiting
longer after each failure (bounded), and stops as soon as it is no longer needed: a move
(the next attachment brings its own attempt), back inside, shutdown. Every retry is an
event (``vpn_retry``: attempt, delay, the error that caused it), so runs show it.

Sans charon: the client is anything with ``state()`` and ``initiate(timeout_s)``, which is
what lets the unit tests drive it with a fake that fails N times.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

# the tunnel's state as charon reports it (see VpnClient.state)
UP, CONNECTING, DOWN = "up", "connecting", "down"


class TunnelClient(Protocol):
    def state(self) -> str: ...

    def initiate(self, timeout_s: float = 5.0) -> None: ...


@dataclass(frozen=True)
class Backoff:
    """Wait ``first_s`` after the first failure, ``factor`` times longer after each further
    one, never more than ``max_s``: a gateway back within a second is reached within about
    a second, one that stays away costs an IKE_SA_INIT every ``max_s``, no more."""

    first_s: float = 0.5
    factor: float = 2.0
    max_s: float = 8.0

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` (1, 2, ...) failed attempts in a row."""
        exponent = min(max(failures - 1, 0), 64)  # a long outage must not overflow the float
        return min(self.first_s * self.factor**exponent, self.max_s)


class TunnelKeeper:
    """Keeps initiating until the tunnel is up; ``cancel`` ends every pending attempt.

    ``keep_up`` runs on the VPN worker thread and blocks; ``ticket`` and ``cancel`` are for
    the event loop. A ticket taken when the work is submitted makes a cancel that comes
    before the worker gets to it count too (inside already: no initiation at all)."""

    def __init__(
        self,
        client: TunnelClient,
        report: Callable[..., None],
        backoff: Backoff = Backoff(),
        *,
        initiate_timeout_s: float = 3.0,
        scale: Callable[[float], float] = lambda s: s,
    ) -> None:
        self.client = client
        self.report = report  # (event name, **fields); must be safe to call from a thread
        self.backoff = backoff
        self.initiate_timeout_s = initiate_timeout_s
        self.scale = scale  # TESTBED_TIME_SCALE for the waits (a slow machine, same steps)
        self._generation = 0
        self._wake = threading.Event()

    def ticket(self) -> int:
        """What a ``keep_up`` submitted now is valid for (until the next ``cancel``)."""
        return self._generation

    def cancel(self) -> None:
        """The tunnel is no longer needed for what was asked (a move, inside, closing): a
        running ``keep_up`` returns at once, a queued one does nothing."""
        self._generation += 1
        self._wake.set()

    def keep_up(self, ticket: int | None = None, until: float | None = None) -> bool:
        """Initiate until the tunnel is up (True), or until cancelled or past ``until``
        (``time.monotonic()``; None: no limit) (False). Charon's own attempt in progress
        (CONNECTING) is waited for, not doubled: a second initiation would give a second
        CHILD_SA once both succeed."""
        ticket = self._generation if ticket is None else ticket
        failures = 0
        while True:
            self._wake.clear()  # before the check: a cancel from now on ends the wait below
            if ticket != self._generation or _past(until):
                return False
            state, error = self._attempt()
            if state == UP:
                return True
            if ticket != self._generation or _past(until):
                return False
            if state == CONNECTING:
                delay = self.scale(self.backoff.first_s)  # look again soon; not a failure
            else:
                failures += 1
                delay = self.scale(self.backoff.delay(failures))
                self.report(
                    "vpn_retry", attempt=failures + 1, delay_ms=round(delay * 1000), error=error
                )
            self._wake.wait(delay)

    def _attempt(self) -> tuple[str, str | None]:
        """One look at charon, and an initiation if there is no tunnel: the state after it
        and, if the initiation failed, why."""
        try:
            state = self.client.state()
            if state != DOWN:
                return state, None
            self.client.initiate(timeout_s=self.scale(self.initiate_timeout_s))
            return UP, None  # vici's initiate returns once the CHILD_SA is installed
        except Exception as exc:  # NO_PROPOSAL_CHOSEN, a timeout, charon's socket gone
            error = f"{type(exc).__name__}: {exc}"
            self.report("vpn_initiate_failed", error=error)
            return DOWN, error


def _past(until: float | None) -> bool:
    return until is not None and time.monotonic() >= until


def thread_safe_emit(loop: Any, events: Any) -> Callable[..., None]:
    """An event emitter for worker threads: the event is written on the loop's thread."""

    def emit(name: str, **fields: Any) -> None:
        loop.call_soon_threadsafe(lambda: events.emit(name, **fields))

    return emit
