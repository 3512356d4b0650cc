"""Time for both sides: the scale of every fixed wait, and a node's wall clock.

One factor for every fixed wait: ``TESTBED_TIME_SCALE`` (default 1). The testbed's waits
(an agent's start-up, charon's start and IKE exchanges, the boundary decision, a
scenario's settle, steps and wait timeouts) are sized for a real machine. Under software
emulation (a stock kernel in a QEMU VM under TCG, about 50x slower) each of them would
expire before the work it waits for is done. One setting stretches them all, so a slow
machine checks function, not milliseconds. Protocol timers that only cost a
retransmission when they fire early (RFC 5944's, DHCP's) are left alone.

The wall clock (registration Identification timestamps, RFC 5944 5.7) is the machine's,
offset by ``TESTBED_CLOCK_SKEW_S`` seconds: a node whose clock is off, for tests and
demonstrations of replay protection.
"""

from __future__ import annotations

import functools
import math
import os
import time

ENV = "TESTBED_TIME_SCALE"
CLOCK_SKEW_S = float(os.environ.get("TESTBED_CLOCK_SKEW_S", "0"))


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


def wallclock() -> float:
    """This node's wall clock: ``time.time()`` plus ``TESTBED_CLOCK_SKEW_S``."""
    return time.time() + CLOCK_SKEW_S
