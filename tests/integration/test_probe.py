"""The UDP and TCP probes as the runner starts them, in a namespace of our own."""

from __future__ import annotations

import json
import os
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


def test_a_probe_kept_waiting_sends_the_slots_it_missed_and_one_stopped_does_not(
    tmp_path: Path,
) -> None:
    """A sender the scheduler keeps waiting (here SIGSTOP for 40 ms) used to skip the slots
    it missed: a 2 ms stream sent fewer packets than its rate, and an outage on a busy
    machine cost fewer than outage/interval (139 for a 300 ms gap in a suite round). It
    now sends them at once; stopped for longer (400 ms) it starts again, no burst."""
    with veth_namespace("probe") as ns:
        ip(ns, "link", "set", "lo", "up")
        ip(ns, "addr", "add", "10.9.9.2/24", "dev", "vb")
        argv = probe_argv(
            tmp_path, 2.0, 64, 0, out_stream="up", to="10.9.9.2:9100", in_stream="up",
            listen=9100,
        )  # fmt: skip
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], cwd=ROOT)
        try:
            csv = tmp_path / "up.csv"
            deadline = time.monotonic() + 20
            while (not csv.exists() or csv.read_text().count("\n") < 50) and proc.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            sender = _probe_pid(proc.pid)
            for stopped_s in (0.04, 0.4):
                os.kill(sender, signal.SIGSTOP)
                time.sleep(stopped_s)
                os.kill(sender, signal.SIGCONT)
                time.sleep(0.3)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        rows = [r.split(",") for r in (tmp_path / "up.csv").read_text().splitlines()[1:]]
    sends = sorted((int(r[0]), int(r[1])) for r in rows)
    assert [s for s, _ in sends] == list(range(len(sends)))  # nothing lost through lo
    times = [t for _, t in sends]
    pauses = [i for i in range(1, len(times)) if times[i] - times[i - 1] > 20_000_000]
    assert len(pauses) == 2, [(times[i] - times[i - 1]) / 1e6 for i in pauses]
    for i, most, least in ((pauses[0], None, 12), (pauses[1], 3, None)):
        burst = sum(1 for t in times[i:] if t - times[i] < 1_500_000)  # within 1.5 ms
        if least is not None:
            assert burst >= least, burst  # ~20 missed slots, sent back to back
        if most is not None:
            assert burst <= most, burst  # stopped: no burst of ~200


def _probe_pid(wrapper: int) -> int:
    """The probe's own PID: ``ip netns exec`` execs it, or it is that process's child."""
    children = Path(f"/proc/{wrapper}/task/{wrapper}/children").read_text().split()
    return int(children[0]) if children else wrapper
