"""One factor for every fixed wait: ``TESTBED_TIME_SCALE`` (default 1).

The testbed's waits (an agent's start-up, charon's start and IKE exchanges, the boundary
decision, a scenario's settle, steps and wait timeouts) are sized for a real machine. Under
software emulation (a stock kernel in a QEMU VM under TCG, about 50x slower) each of them
would expire before the work it waits for is done. One setting stretches them all, so a
slow machine checks function, not milliseconds. Protocol timers that only cost a
retransmission when they fire early (RFC 5944's, DHCP's) are left alone.
"""

from __future__ import annotations

import functools
import math
import os

ENV = "TESTBED_TIME_SCALE"


@functools.cache
def factor() -> float:
    """The factor from the environment (read once per process; agents inherit it)."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{ENV}={raw!r}: not a number (a factor such as 1 or 50)") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{ENV}={raw!r}: must be a positive factor (such as 1 or 50)")
    return value


def scaled(seconds: float) -> float:
    """``seconds`` stretched by the factor (a negative 'no wait' stays as it is)."""
    return seconds * factor() if seconds > 0 else seconds
