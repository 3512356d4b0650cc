"""The UDP and TCP probes as the runner starts them, in a namespace of our own."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from labtools import ROOT, ip, veth_namespace

from testbed.launch import probe_argv

pytestmark = pytest.mark.netns


def test_a_probe_started_while_its_home_address_is_away_runs_on(tmp_path: Path) -> None:
    """A mobile node's probe sends from the home address. Started while that address is on
    no interface (a slow start under load, a move), it once died at bind() and the run
    saw no stream at all; now its sends fail, counted, until the address is back."""
    with veth_namespace("probe") as ns:
        ip(ns, "link", "set", "lo", "up")  # both ends in one namespace: through lo
        ip(ns, "addr", "add", "10.9.9.2/24", "dev", "vb")
        argv = probe_argv(
            tmp_path,
            2.0,
            64,
            0,
            out_stream="up",
            to="10.9.9.2:9100",
            source="10.9.9.1",  # not on any interface yet
            in_stream="up",
            listen=9100,
        )
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], cwd=ROOT)
        try:
            time.sleep(0.6)
            assert proc.poll() is None, "the probe died while its address was away"
            ip(ns, "addr", "add", "10.9.9.1/24", "dev", "va")
            time.sleep(0.6)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        info = json.loads((tmp_path / "up.sent.json").read_text())
        received = (tmp_path / "up.csv").read_text().splitlines()[1:]
    assert info["send_errors"] > 50  # ~0.6 s at 2 ms, refused while the address was away
    assert len(received) > 50 and all(",10.9.9.1," in row for row in received)


def test_a_probe_says_when_it_is_bound_and_sends_from_the_time_it_is_given(
    tmp_path: Path,
) -> None:
    """The runner starts both ends together once both are bound (a fixed head start was
    too short for a Python start-up in a loaded or emulated machine)."""
    with veth_namespace("probe") as ns:
        ip(ns, "link", "set", "lo", "up")
        ip(ns, "addr", "add", "10.9.9.2/24", "dev", "vb")
        ready, start = tmp_path / ".ready", tmp_path / ".start_ns"
        argv = probe_argv(
            tmp_path,
            2.0,
            64,
            0,
            out_stream="up",
            to="10.9.9.2:9100",
            in_stream="up",
            listen=9100,
            ready=ready,
            start_file=start,
        )
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], cwd=ROOT)
        try:
            deadline = time.monotonic() + 10
            while not ready.exists():
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.01)
            time.sleep(0.3)
            assert (tmp_path / "up.csv").read_text().count("\n") == 1  # nothing sent yet
            start.write_text(str(time.monotonic_ns()))
            time.sleep(0.4)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
    assert (tmp_path / "up.csv").read_text().count("\n") > 100
