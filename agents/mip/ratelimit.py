"""Token buckets for the replies an agent sends to whoever asked (issue 20: reflection).

A home agent answers every Registration Request, and a foreign agent denies or times out the
ones it cannot relay, to the IP source the request claimed: without a limit each is a
reflector (14-23k replies/s measured at the HA, to any source address). RFC 5944 sets no rate
for denials; what it does say of the legitimate sender bounds what is needed: a mobile node
retransmits with exponential back-off (section 3.6.3), here from 0.25 s, so one mobile node
(or one foreign agent relaying for a few) needs a handful of replies per second. Denials
beyond a per-destination bucket (default 10/s, bursts of 20) and a bucket for all (default
500/s, bursts of 1000) are not sent; accepted registrations are never limited (they need the
mobile node's key and a fresh Identification, so they cannot be made up or replayed).

Sans-I/O like the machines: ``allow(key, now)`` with ``now`` from the caller's monotonic
clock. The per-key table holds at most ``max_keys`` buckets, least recently used first out: a
forgotten key starts again with a full bucket, which is no more than a new source gets.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["ReplyLimiter", "TokenBucket"]


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens a second up to ``burst``; each allowed event takes one."""

    rate: float
    burst: float
    tokens: float = -1.0  # full on first use
    last: float = 0.0

    def allow(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.last = self.burst, now
        elif now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class ReplyLimiter:
    """A bucket per destination and one for all; ``None`` rates disable that bucket."""

    def __init__(
        self,
        rate: float | None = 10.0,
        burst: float = 20.0,
        total_rate: float | None = 500.0,
        total_burst: float = 1000.0,
        max_keys: int = 4096,
    ) -> None:
        self.rate, self.burst = rate, burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._total = TokenBucket(total_rate, total_burst) if total_rate is not None else None
        self.limited = 0

    def allow(self, key: str, now: float) -> bool:
        """Whether a reply to ``key`` may go now (it is counted if so)."""
        if self.rate is not None:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
                if len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
            if not bucket.allow(now):
                self.limited += 1
                return False
        if self._total is not None and not self._total.allow(now):
            self.limited += 1
            return False
        return True

    def __len__(self) -> int:
        return len(self._buckets)
