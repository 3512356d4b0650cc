"""The lifecycle CLI end to end, as a user types it: up, ls, exec, cli, move, capture, down."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from labtools import ROOT, lab_leftovers, run_testbed, unique_name

pytestmark = pytest.mark.netns


def test_lifecycle(tmp_path: Path) -> None:
    name = unique_name("cli")
    up = run_testbed("up", "topologies/enterprise.yaml", "--name", name)
    assert up.returncode == 0, up.stderr
    assert f"lab {name} is up" in up.stdout and "mn " in up.stdout
    try:
        assert run_testbed("up", "topologies/enterprise.yaml", "--name", name).returncode == 2
        listing = run_testbed("ls")
        assert name in listing.stdout and "ready" in listing.stdout

        ping = run_testbed("exec", name, "cn", "--", "ping", "-c1", "-W1", "10.1.0.1")
        assert ping.returncode == 0 and "1 received" in ping.stdout

        moved = run_testbed("move", name, "mn", "visited", "--gap", "20")
        assert moved.returncode == 0 and "moved to visited" in moved.stdout
        assert "visited" in run_testbed("show", name).stdout.split("mn ")[1].splitlines()[1]
        bad = run_testbed("move", name, "mn", "nowhere")
        assert bad.returncode == 2 and "no network 'nowhere'" in bad.stderr

        pcap = tmp_path / "visited.pcap"
        capture = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "testbed.cli",
                "capture",
                name,
                "visited",
                "-w",
                str(pcap),
                "--duration",
                "2",
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        import time

        time.sleep(0.7)
        run_testbed("exec", name, "mn", "--", "ip", "addr", "add", "10.2.0.50/24", "dev", "eth0")
        run_testbed("exec", name, "mn", "--", "ping", "-c3", "-i", "0.1", "10.2.0.254")
        capture.wait(timeout=10)
        read = subprocess.run(
            ["tcpdump", "-n", "-r", str(pcap), "icmp"], capture_output=True, text=True
        )
        assert "10.2.0.50 > 10.2.0.254: ICMP echo request" in read.stdout

        shell = subprocess.run(
            [sys.executable, "-m", "testbed.cli", "cli", name],
            input="cn ping -c1 -W1 10.1.0.1\nnet\nexit\n",
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=30,
        )
        # Mininet's CLI writes node output through its logger, to stderr
        assert "1 received" in shell.stderr and "10.1.0.100/24" in shell.stdout
    finally:
        down = run_testbed("down", name)
    assert down.returncode == 0 and f"lab {name} removed" in down.stdout
    assert not lab_leftovers(name)
    assert name not in run_testbed("ls").stdout
    assert run_testbed("down", name).returncode == 2


def test_doctor_and_validate() -> None:
    doctor = run_testbed("doctor")
    assert doctor.returncode == 0, doctor.stdout
    assert "delay/jitter" in doctor.stdout and "charon-systemd" in doctor.stdout
    ok = run_testbed("validate", "topologies/enterprise.yaml")
    assert ok.returncode == 0 and "ok" in ok.stdout
    schema = run_testbed("schema", "topology")
    assert schema.returncode == 0 and '"networks"' in schema.stdout
