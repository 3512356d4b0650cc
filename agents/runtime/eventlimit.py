"""Repeated events under a flood become counts (issue 20: an agent's event file grew 931 MB in
five minutes, one line per dropped message and per denial).

The agent driver offers every event of the kinds below to a :class:`Aggregator` before writing
it. Per interval (default 1 s) and per kind (the event and the fields that say why: a drop's
reason, a denial's code and reason), the first ``full`` (default 5) are written as they are;
the rest are counted, with the sources they came from (the first ``max_sources`` seen with
their counts, the others as one count). At the end of an interval that suppressed anything, one
``events_suppressed`` event per kind says how many there were in all, how many were not
written and from where. Everything else an agent writes (registrations, bindings, handoff
phases) is never held back: the runner's metrics are made of those, never of the kinds here.

Numbers in a reason (an SPI, a length, a message type) do not make a new kind: they are
replaced by ``#`` for the key (the events written in full keep them). At most ``max_kinds``
kinds per interval; more go into one more kind of their event (``other_kinds``).

Sans-I/O: ``offer`` and ``flush`` take the caller's monotonic time. The caller flushes when
:meth:`due` has come (a timer, and before each ``offer``: a busy loop may run it late), then
writes what ``flush`` returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NOISY", "Aggregator"]

# event -> the fields that make its kind (what happened; the source is counted separately)
NOISY: dict[str, tuple[str, ...]] = {
    "message_dropped": ("reason",),
    "registration_denied": ("code", "reason"),
    "registration_received": (),
    "registration_reply_sent": ("code",),
    "request_relayed": (),
    "reply_relayed": ("code",),
    "request_superseded": (),
    "request_evicted": (),
    "pending_limit": ("limit",),
    "send_failed": ("error",),
    "icmp_error": ("type", "code"),
    "dhcp_ignored": ("reason",),
}
# kinds whose events a legitimate population makes many of at once (a crowd of mobile nodes
# registering after a move, each request and reply one line): more of them in full per
# interval before counting starts, still bounded under a flood (~100 lines/s per kind)
FULL: dict[str, int] = {"registration_received": 100, "registration_reply_sent": 100}
# where an event says its source (the first present)
_SOURCE_FIELDS = ("src", "dst", "home_address")
_DIGITS = re.compile(r"\d+")


def _kind_value(value: Any) -> Any:
    if isinstance(value, str):
        return _DIGITS.sub("#", value)[:80]
    return value


@dataclass(slots=True)
class _Kind:
    event: str
    fields: dict[str, Any]
    count: int = 0
    suppressed: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    other_sources: int = 0


class Aggregator:
    def __init__(
        self,
        interval: float = 1.0,
        full: int = 5,
        max_sources: int = 10,
        max_kinds: int = 256,
    ) -> None:
        self.interval = interval
        self.full = full
        self.max_sources = max_sources
        self.max_kinds = max_kinds
        self._kinds: dict[tuple[Any, ...], _Kind] = {}
        self._start: float | None = None
        self.suppressed = 0  # in all, since the start

    def offer(self, event: str, data: dict[str, Any], now: float) -> bool:
        """Whether to write this event in full now; if not, it is counted."""
        names = NOISY.get(event)
        if names is None:
            return True
        if self._start is None:
            self._start = now
        elif now >= self._start + self.interval and self.due() is None:
            self._kinds.clear()  # a quiet window ended: a new one (a due one waits for flush)
            self._start = now
        values = tuple(_kind_value(data.get(name)) for name in names)
        key = (event, *values)
        kind = self._kinds.get(key)
        if kind is None:
            if len(self._kinds) >= self.max_kinds:
                key = (event, "(other)")
                kind = self._kinds.get(key)
            if kind is None:
                other = key[1:] != values
                fields = {"other_kinds": True} if other else dict(zip(names, values, strict=True))
                kind = self._kinds[key] = _Kind(event, fields)
        kind.count += 1
        if kind.count <= FULL.get(event, self.full):
            return True
        kind.suppressed += 1
        self.suppressed += 1
        source = next((str(data[f]) for f in _SOURCE_FIELDS if data.get(f) is not None), "?")
        if source in kind.sources or len(kind.sources) < self.max_sources:
            kind.sources[source] = kind.sources.get(source, 0) + 1
        else:
            kind.other_sources += 1
        return False

    def due(self) -> float | None:
        """When the current window's summaries are due (``None``: nothing suppressed)."""
        if self._start is None or not any(k.suppressed for k in self._kinds.values()):
            return None
        return self._start + self.interval

    def flush(self, now: float) -> list[dict[str, Any]]:
        """The ``events_suppressed`` records (fields only) of the window so far, which then
        starts again."""
        out = []
        start = self._start if self._start is not None else now
        for kind in self._kinds.values():
            if not kind.suppressed:
                continue
            record: dict[str, Any] = {
                "of": kind.event,
                **kind.fields,
                "count": kind.count,
                "suppressed": kind.suppressed,
                "interval_s": round(max(now - start, 0.0), 3),
                "sources": dict(sorted(kind.sources.items(), key=lambda kv: -kv[1])),
            }
            if kind.other_sources:
                record["other_sources"] = kind.other_sources
            out.append(record)
        self._kinds.clear()
        self._start = None
        return out
