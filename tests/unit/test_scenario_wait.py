"""A timeline's wait step: which events count (the runner's own logic, on event files
written here; no namespaces)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

from mipbase import events as eventlog
from mipbase.events import EventWriter
from testbed.scenario.model import WaitAction
from testbed.scenario.runner import _Run
from testbed.scenario.steps import wait


def runner(tmp_path: Path, step_starts: list[int]) -> _Run:
    run = object.__new__(_Run)
    run.events_dir = tmp_path
    run.events = EventWriter.open(str(tmp_path / "runner.jsonl"), "runner")
    run.record = SimpleNamespace(failures=[])
    run._events_tail = eventlog.Tail(tmp_path)
    run.events_read = []
    run.step_starts = step_starts
    run._watched, run.vpn_nodes, run.lab = {}, {}, None  # nothing to watch
    return run


def write(tmp_path: Path, *events: dict) -> None:
    with (tmp_path / "mn.jsonl").open("a") as handle:
        for event in events:
            handle.write(json.dumps({"node": "mn", **event}) + "\n")


def test_an_event_from_the_previous_step_counts(tmp_path: Path) -> None:
    """A move can be over (returned home in 4 ms) before the wait after it starts."""
    t_move = time.monotonic_ns() - 20_000_000  # the move began 20 ms ago
    write(tmp_path, {"t_ns": t_move + 4_000_000, "event": "returned_home"})
    run = runner(tmp_path, [t_move, t_move + 5_000_000])
    wait(run, WaitAction(event="returned_home", node="mn", timeout=50), 1)
    assert run.record.failures == []


def test_an_event_before_the_previous_step_does_not(tmp_path: Path) -> None:
    t_move = time.monotonic_ns() - 20_000_000  # the move began 20 ms ago
    write(tmp_path, {"t_ns": t_move - 1, "event": "returned_home"})
    run = runner(tmp_path, [t_move, t_move + 5_000_000])
    wait(run, WaitAction(event="returned_home", node="mn", timeout=30), 1)
    (failure,) = run.record.failures
    assert failure["name"] == "timeline[1] wait for returned_home"


def test_a_later_wait_sees_what_an_earlier_one_read(tmp_path: Path) -> None:
    """move; wait for A; wait for B: B came while the first wait looked for A, which read
    it from the file; the second wait still finds it."""
    t_move = time.monotonic_ns() - 20_000_000  # the move began 20 ms ago
    write(
        tmp_path,
        {"t_ns": t_move + 4_000_000, "event": "registration_accepted", "mode": "f"},
        {"t_ns": t_move + 5_000_000, "event": "agent_discovered"},
    )
    run = runner(tmp_path, [t_move, t_move + 3_000_000])
    wait(run, WaitAction(event="agent_discovered", timeout=50), 1)
    assert run.events_read, "the first wait read both events"
    run.step_starts.append(time.monotonic_ns())
    wait(run, WaitAction(event="registration_accepted", match={"mode": "f"}, timeout=30), 2)
    assert run.record.failures == []
