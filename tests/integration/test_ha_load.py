"""The home agent for real under a generated population (issue 19, item 3): 200 mobile nodes,
each with its own MN-HA security association from the crowds' generator, register at 200/s
through the HA's real UDP socket (co-located care-of addresses, one per node, a fresh
Identification each), every one is accepted with an authenticated reply, and the HA's binding
cache holds all 200 (its state dump, as ``testbed state`` reads it, and its events).

The lab, the population and the generator are tests/integration/haload.py's, the same as
benchmarks/bench_ha_load.py measures with."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from haload import AgentProcess, Generator, ha_config, ha_lab, population

from testbed import netns

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and ip"),
]


def test_the_ha_accepts_a_generated_population_and_holds_every_binding(tmp_path: Path) -> None:
    started = time.monotonic()
    members = population(200)
    with ha_lab("t") as names:
        ha = AgentProcess(names["h"], "ha", ha_config(members), tmp_path)
        try:
            with Generator(names["g"], members) as gen:
                phase = gen.run("add", list(range(len(members))), rate=200)
            done_ns = time.monotonic_ns()
            assert (phase.sent, phase.accepted, phase.lost) == (200, 200, 0), phase
            assert not phase.denied and not phase.bad_auth and not phase.unmatched, phase
            # the binding cache as the runner sees it: the state file, written every second
            deadline = time.monotonic() + 5
            state = ha.state()
            while state is None or state["t_ns"] < done_ns:
                assert time.monotonic() < deadline, "no state dump after the registrations"
                time.sleep(0.1)
                state = ha.state()
            bindings = {b["home_address"]: b for b in state["bindings"]}
            assert len(bindings) == len(state["bindings"]) == 200
            for m in members:
                binding = bindings[m.home_address]
                assert (binding["care_of"], binding["encapsulation"]) == (m.care_of, "ipip")
            added = [e["home_address"] for e in ha.events({"binding_added"})]
            assert sorted(added) == sorted(m.home_address for m in members)
        finally:
            counters = ha.stop()
        assert counters["accepted"] == 200 and counters["denied"] == 0, counters
        assert counters["agent_errors"] == 0, counters
    assert not netns.exists(names["h"]) and not netns.exists(names["g"])
    assert time.monotonic() - started < 20
