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


def test_since_step_counts_events_from_an_earlier_step(tmp_path: Path) -> None:
    """move A; move B; wait for A and B (since_step: 0): A was done while B was moving,
    before the step right before the wait began; counted from step 0, it is found."""
    t_first = time.monotonic_ns() - 30_000_000
    t_second = t_first + 20_000_000
    write(tmp_path, {"t_ns": t_first + 4_000_000, "event": "registration_accepted"})
    run = runner(tmp_path, [t_first, t_second])
    wait(run, WaitAction(event="registration_accepted", node="mn", timeout=30), 2)
    assert len(run.record.failures) == 1  # from the previous step (1) only: missed
    run.record.failures = []
    since = WaitAction(event="registration_accepted", node="mn", timeout=30, since_step=0)
    wait(run, since, 2)
    assert run.record.failures == []


def test_since_step_must_name_an_earlier_step(tmp_path: Path) -> None:
    import pytest

    from mipbase.specfile import SpecError
    from testbed.scenario.load import load_scenario

    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: s\ntopology: topologies/enterprise.yaml\ntimeline:\n"
        "  - {move: {node: mn, to: visited}}\n"
        "  - {wait: {event: dhcp_bound, node: mn, since_step: 1}}\n"
    )
    with pytest.raises(SpecError, match="since_step"):
        load_scenario(scenario)
