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


PAIR = """\
name: pair
networks:
  lan: {subnet: 10.78.0.0/24}
nodes:
  a:
    links: [{network: lan, address: 10.78.0.1, impair: {delay: 5ms}}]
  b:
    links: [{network: lan, address: 10.78.0.2}]
"""

# A process that builds a lab and goes on using it, as 'testbed run' does: "use" on stdin
# changes an impairment through the lab's relay (what died with ConnectionResetError when
# clean --all removed a live run's lab) and runs a command in a node, then it takes it down.
OWNER = """
import sys
from testbed.lab.builder import build
from testbed.lab.lab import Lab
from testbed.topology import load_topology
plan = load_topology(sys.argv[1])
lab = Lab(build(plan, sys.argv[2], kind="run"), plan)
print("up", flush=True)
if sys.stdin.readline().strip() == "use":
    iface = lab.interface("a")
    lab.set_impairment("a", iface.egress.overlaid(delay_ms=7), iface.ingress)
    lab.run("b", ["ping", "-c", "1", "-W", "2", "10.78.0.1"])
    print("still ok", flush=True)
lab.down()
"""


def test_clean_all_skips_a_lab_whose_owner_is_alive(tmp_path: Path) -> None:
    """Issue 15 (b): a run's lab is never removed by 'clean --all' while its owner lives;
    it is reported as skipped (name, owner, how to remove it by name). A killed run's lab
    and an idle 'testbed up' lab are removed. A state directory of its own, so that only
    this test's labs are ever looked at (other people's labs on this machine are not)."""
    import os
    import shutil
    import tempfile

    topology = tmp_path / "pair.yaml"
    topology.write_text(PAIR)
    state_dir = Path(tempfile.mkdtemp(prefix="tbclean", dir="/tmp"))  # short: unix sockets
    env = {**os.environ, "TESTBED_STATE_DIR": str(state_dir)}
    live, dead, idle = unique_name("live"), unique_name("dead"), unique_name("idle")
    owners: list[subprocess.Popen] = []

    def owner(name: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", OWNER, str(topology), name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env,
        )  # fmt: skip
        owners.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        return proc

    try:
        running = owner(live)
        killed = owner(dead)
        killed.kill()  # leaves its lab behind, as a run killed with SIGKILL does
        killed.wait()
        up = run_testbed("up", str(topology), "--name", idle, "--quiet", env=env)
        assert up.returncode == 0, up.stderr

        plain = run_testbed("clean", env=env)
        assert plain.returncode == 0, plain.stderr
        assert f"removed lab {dead} (3 namespaces)" in plain.stdout, plain.stdout
        assert not lab_leftovers(dead) and lab_leftovers(idle)

        everything = run_testbed("clean", "--all", env=env)
        assert everything.returncode == 0, everything.stderr
        out = everything.stdout
        assert len(lab_leftovers(live)) == 3, out  # untouched
        assert f"removed lab {live}" not in out, out
        assert f"removed lab {idle} (3 namespaces)" in out and not lab_leftovers(idle), out
        for report in (plain.stdout, out):
            assert f"skipped lab {live} (run): in use by PID {running.pid}" in report, report
            assert f"to remove it anyway: testbed down {live}" in report, report

        assert running.stdin is not None and running.stdout is not None
        running.stdin.write("use\n")
        running.stdin.flush()
        assert running.stdout.readline().strip() == "still ok"  # its relay still answers
        assert running.wait(timeout=30) == 0
        assert not lab_leftovers(live)
    finally:
        for proc in owners:  # only the processes this test started, by their Popen
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for name in (live, dead, idle):  # by name, in this test's own state directory
            if lab_leftovers(name):
                run_testbed("down", name, env=env)
        shutil.rmtree(state_dir, ignore_errors=True)


def test_two_students_labs_coexist_and_clean_apart(tmp_path: Path) -> None:
    """Issue 18, item 5: a class on one server. Alice's and Bob's labs of the same topology
    exist side by side (names ending in -STUDENT, each works); Alice's 'clean --all' removes
    her idle lab and leaves Bob's alone: his idle 'testbed up' lab (skipped, named: it is
    another student's) and his running lab (its owner is alive; its relay still answers
    afterwards). Bob's own clean removes his idle lab. A state directory of its own."""
    import os
    import shutil
    import tempfile

    topology = tmp_path / "pair.yaml"
    topology.write_text(PAIR)
    state_dir = Path(tempfile.mkdtemp(prefix="tbclass", dir="/tmp"))
    base = {**os.environ, "TESTBED_STATE_DIR": str(state_dir)}
    alice = {**base, "TESTBED_STUDENT": "alice"}
    bob = {**base, "TESTBED_STUDENT": "bob"}
    tag = unique_name("c")
    mine, his, his_run = f"{tag}-alice", f"{tag}-bob", f"{tag}-r-bob"
    running = None
    try:
        wrong = run_testbed("up", str(topology), "--name", tag, "--quiet", env=alice)
        assert wrong.returncode == 2 and f"name it {tag}-alice" in wrong.stderr, wrong.stderr
        for name, env in ((mine, alice), (his, bob)):
            up = run_testbed("up", str(topology), "--name", name, "--quiet", env=env)
            assert up.returncode == 0, up.stderr
        running = subprocess.Popen(
            [sys.executable, "-c", OWNER, str(topology), his_run],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=bob,
        )  # fmt: skip
        assert running.stdout is not None and running.stdout.readline().strip() == "up"
        listing = run_testbed("ls", env=base).stdout
        for name, who in ((mine, "alice"), (his, "bob")):
            assert any(line.split()[:2] == [name, "lab"] and who in line.split() for line in
                       listing.splitlines()), listing  # fmt: skip
        for name in (mine, his, his_run):  # same addresses, apart
            ping = run_testbed("exec", name, "b", "--", "ping", "-c1", "-W1", "10.78.0.1", env=base)
            assert ping.returncode == 0 and "1 received" in ping.stdout, (name, ping.stdout)

        cleaned = run_testbed("clean", "--all", env=alice)
        assert cleaned.returncode == 0, cleaned.stderr
        out = cleaned.stdout
        assert f"removed lab {mine} (3 namespaces)" in out and not lab_leftovers(mine), out
        assert f"removed lab {his}" not in out and len(lab_leftovers(his)) == 3, out
        assert f"removed lab {his_run}" not in out and len(lab_leftovers(his_run)) == 3, out
        assert f"skipped lab {his} (lab): student bob's, you are alice" in out, out
        assert f"skipped lab {his_run} (run): in use by PID {running.pid}" in out, out

        assert running.stdin is not None and running.stdout is not None
        running.stdin.write("use\n")
        running.stdin.flush()
        assert running.stdout.readline().strip() == "still ok"  # its relay still answers
        assert running.wait(timeout=30) == 0 and not lab_leftovers(his_run)

        cleaned = run_testbed("clean", "--all", "--student", "bob", env=base)
        assert f"removed lab {his} (3 namespaces)" in cleaned.stdout, cleaned.stdout
        assert not lab_leftovers(his)
    finally:
        if running is not None and running.poll() is None:  # only the process started here
            running.kill()
            running.wait()
        for name in (mine, his, his_run):
            if lab_leftovers(name):
                run_testbed("down", name, env=base)
        shutil.rmtree(state_dir, ignore_errors=True)
