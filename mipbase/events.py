"""Structured event output shared by services and agents: JSON lines, CLOCK_MONOTONIC ns."""

from __future__ import annotations

import json
import time
from typing import Any, TextIO


class EventWriter:
    """Appends ``{"t_ns", "node", "event", ...}`` lines to a file (line-buffered)."""

    def __init__(self, stream: TextIO, node: str) -> None:
        self.stream = stream
        self.node = node

    @classmethod
    def open(cls, path: str, node: str) -> EventWriter:
        return cls(open(path, "a", buffering=1), node)

    def emit(self, event: str, t_ns: int | None = None, **fields: Any) -> None:
        record = {
            "t_ns": t_ns if t_ns is not None else time.monotonic_ns(),
            "node": self.node,
            "event": event,
            **fields,
        }
        self.stream.write(json.dumps(record, default=str) + "\n")

    def record(self, record: dict[str, Any]) -> None:
        """Pass through a record that already has t_ns and event."""
        self.stream.write(json.dumps({"node": self.node, **record}, default=str) + "\n")

    def close(self) -> None:
        self.stream.close()
