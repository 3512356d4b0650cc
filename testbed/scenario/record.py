"""The record of one run: its directory, what it measured before metrics, its event log.

A run directory holds::

    events/*.jsonl   one events file per process (the runner's own is runner.jsonl)
    events.jsonl     all of them merged by time, written when the run is over
    logs/            each process's output
    probes/          the UDP probe streams (down, up) and the TCP probe's records
    pcap/            one capture per network
    state/           the agents' state files
    configs/         the agents' configuration, as given to them
    vpn/LABEL/       a charon's log and configuration, kept when it stops
    resources.json   CPU time and memory of each process the run started, by kind
    summary.json     written atomically, last
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mipbase import events as eventlog

# the UDP probe streams: towards the mobile node, and from it
PROBE_DOWN, PROBE_UP = "down", "up"


@dataclass(frozen=True)
class RunDir:
    """Where a run puts what it produces."""

    path: Path

    @property
    def events(self) -> Path:
        return self.path / eventlog.PER_PROCESS

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def probes(self) -> Path:
        return self.path / "probes"

    @property
    def pcap(self) -> Path:
        return self.path / "pcap"

    @property
    def state(self) -> Path:
        return self.path / "state"

    @property
    def configs(self) -> Path:
        return self.path / "configs"

    def vpn(self, label: str) -> Path:
        return self.path / "vpn" / label

    def create(self) -> RunDir:
        for d in (self.events, self.logs, self.probes, self.pcap, self.state):
            d.mkdir(parents=True, exist_ok=True)
        return self


@dataclass
class RunRecord:
    """What one repetition produced, before metrics."""

    run_dir: Path
    index: int
    move_events: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    infrastructure: bool = False  # the error was the testbed's own (a daemon died, ...)
    interrupted: bool = False  # Ctrl-C or SIGTERM: what was measured up to then is kept
    started_ns: int = 0
    ended_ns: int = 0


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def merge_events(
    run_dir: Path, annotate: Callable[[list[dict[str, Any]]], None] | None = None
) -> list[dict[str, Any]]:
    """All events files of a run, sorted by time, into events.jsonl (annotated first)."""
    merged = eventlog.read_files(eventlog.per_process_files(run_dir))
    if annotate is not None:
        annotate(merged)
    eventlog.write_merged(run_dir / eventlog.MERGED, merged)
    return merged
