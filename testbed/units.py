"""Parsing of the human units used in topology and scenario files.

Durations are milliseconds (``10ms``, ``1.5s``, ``250us`` or a bare number of ms), rates are
bits per second (``100mbit``, ``1gbit``, ``512kbit`` or a bare number), loss is a fraction
(``1%``, ``0.5%`` or a bare fraction between 0 and 1).
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(-?[0-9]*\.?[0-9]+)\s*(us|ms|s|m|h)?\s*$")
_DURATION_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0, None: 1.0}
_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)?\s*$", re.I)
_RATE_BPS = {
    None: 1,
    "bit": 1,
    "kbit": 1_000,
    "mbit": 1_000_000,
    "gbit": 1_000_000_000,
    "bps": 8,
    "kbps": 8_000,
    "mbps": 8_000_000,
    "gbps": 8_000_000_000,
}


def duration_ms(value: object) -> float:
    """Milliseconds from ``10ms``/``1.5s``/``250us``/a number of ms; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 10ms, got {value!r}")
    if isinstance(value, int | float):
        ms = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"expected a duration such as 10ms or 1.5s, got {value!r}")
        ms = float(match.group(1)) * _DURATION_MS[match.group(2)]
    if ms < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    return ms


def rate_bps(value: object) -> int:
    """Bits per second from ``100mbit``/``1gbit``/``10mbps``/a number of bit/s."""
    if isinstance(value, bool):
        raise ValueError(f"expected a rate such as 100mbit, got {value!r}")
    if isinstance(value, int | float):
        bps = float(value)
    else:
        match = _RATE.match(str(value))
        if not match:
            raise ValueError(f"expected a rate such as 100mbit or 1gbit, got {value!r}")
        unit = match.group(2).lower() if match.group(2) else None
        bps = float(match.group(1)) * _RATE_BPS[unit]
    if bps <= 0:
        raise ValueError(f"a rate must be positive: {value!r}")
    return int(bps)


def loss_fraction(value: object) -> float:
    """A probability in [0, 1] from ``1%`` or a bare fraction."""
    if isinstance(value, bool):
        raise ValueError(f"expected a loss such as 1% or 0.01, got {value!r}")
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            fraction = float(value.strip()[:-1]) / 100.0
        except ValueError:
            raise ValueError(f"expected a loss such as 1%, got {value!r}") from None
    else:
        try:
            fraction = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"expected a loss such as 1% or 0.01, got {value!r}") from None
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"loss must lie between 0% and 100%, got {value!r}")
    return fraction
