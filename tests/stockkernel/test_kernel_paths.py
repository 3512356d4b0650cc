"""The kernel paths, for real, on a kernel that has them: netem, kernel IP-in-IP at the HA
and FA, strongSwan with XFRM ESP through kernel-netlink.

This machine's kernel has none of them, so these tests skip here; `ci/stock-kernel.sh` runs
them in a QEMU VM with Debian's stock kernel (under TCG, ~50x slower, with
TESTBED_TIME_SCALE set): they check function (modes reached, both streams recover in every
handoff, TCP survives, no agent error or traceback), never milliseconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mipbase.clock import factor
from testbed import features

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.netns


@pytest.fixture(scope="module", autouse=True)
def kernel_paths() -> features.Features:
    found = features.detect()
    lacking = [name for name in ("netem", "ipip", "esp") if not getattr(found, name)]
    if lacking:
        why = f"this kernel lacks {', '.join(lacking)}"
        if os.environ.get("TESTBED_REQUIRE_KERNEL_PATHS"):  # the VM stage: never vacuous
            pytest.fail(why)
        pytest.skip(f"{why}: ci/stock-kernel.sh runs these")
    return found


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """The VM stage keeps every run's results (TESTBED_VM_RESULTS, a shared folder)."""
    keep = os.environ.get("TESTBED_VM_RESULTS")
    return Path(keep) if keep else tmp_path


def run_scenario(scenario: str, results: Path) -> tuple[dict, Path, str]:
    started = time.monotonic()
    argv = [sys.executable, "-m", "testbed.cli", "run", f"scenarios/{scenario}.yaml"]
    result = subprocess.run(
        [*argv, "--results", str(results), "--no-figures", "--pcap", "none"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120 * factor(),
    )
    print(f"{scenario}: exit {result.returncode} in {time.monotonic() - started:.0f} s")
    print(result.stderr[-3000:])
    run_dir = max((results / scenario).iterdir(), key=lambda p: p.stat().st_mtime)
    return json.loads((run_dir / "summary.json").read_text()), run_dir, result.stderr


def events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def assert_function(summary: dict, run_dir: Path, modes: list[str]) -> list[dict]:
    """Modes reached, both streams back after every move, TCP intact, nothing broken."""
    assert summary["error"] is None, summary["error"]
    handoffs = summary["handoffs"]
    assert [h["mode"] for h in handoffs] == modes, [(h["to"], h["mode"]) for h in handoffs]
    for h in handoffs:
        recovered = h["interruption_down_ms"] is not None and h["interruption_up_ms"] is not None
        assert recovered, f"a stream never came back after the move to {h['to']}: {h}"
    assert summary["tcp"]["errors"] == 0 and summary["tcp"]["bytes_after_last_move"] > 0
    evs = events(run_dir)
    broken = [e for e in evs if e["event"] in ("agent_error", "dataplane_error", "run_error")]
    assert not broken, broken[:5]
    for log in (run_dir / "logs").glob("*.log"):
        assert "Traceback" not in log.read_text(errors="replace"), log
    lab_up = next(e for e in evs if e["event"] == "lab_up")
    assert lab_up["impairments"] == "netem"
    return evs


# --- netem -------------------------------------------------------------------------------

NETEM_TOPOLOGY = """\
name: netem-pair
networks:
  lan: {subnet: 10.78.0.0/24}
nodes:
  a:
    links: [{network: lan, address: 10.78.0.1, impair: {delay: 40ms, jitter: 5ms, loss: 10%}}]
  b:
    links: [{network: lan, address: 10.78.0.2}]
  c:
    links: [{network: lan, address: 10.78.0.3, impair: {delay: 20ms, rate: 1mbit}}]
"""


@pytest.fixture(scope="module")
def netem_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from testbed.lab.builder import build
    from testbed.lab.lab import Lab
    from testbed.topology import load_topology

    path = Path(tmp_path_factory.mktemp("topo")) / "netem.yaml"
    path.write_text(textwrap.dedent(NETEM_TOPOLOGY))
    plan = load_topology(path)
    lab = Lab(build(plan, f"k{os.getpid() % 100000}-netem"), plan)
    assert lab.state.impairment_path == "netem"
    yield lab
    lab.down()


def rtts(lab, node: str, target: str, count: int, interval: float = 0.05) -> list[float]:
    out = lab.run(
        node, ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "5", target], check=False
    ).stdout
    return [float(w.split("=")[1]) for w in out.split() if w.startswith("time=")]


def test_netem_delay_jitter_and_loss(netem_lab) -> None:
    qdisc = netem_lab.run("a", ["tc", "qdisc", "show", "dev", "eth0"]).stdout
    assert "netem" in qdisc and "delay 40ms" in qdisc, qdisc
    got = rtts(netem_lab, "b", "10.78.0.1", count=100)
    # delay both ways through a's link; 10% loss on a's egress (the replies): about 90 back
    assert 60 <= len(got) < 100, len(got)
    assert min(got) >= 2 * (40 - 3 * 5), min(got)


def test_netem_rate_queues_briefly(netem_lab) -> None:
    """Offered twice what c's 1 Mbit/s link carries, its queue stays full: an echo reply
    queued behind the flood waits for the delay line and ~50 ms of queue, as on the
    userspace path, not for netem's default 1000 packets (12 s at 1 Mbit/s). (A flood far
    above the rate would drop nearly every reply at the tail instead.)"""
    qdisc = netem_lab.run("c", ["tc", "qdisc", "show", "dev", "eth0"]).stdout
    assert "rate 1Mbit" in qdisc and "limit" in qdisc, qdisc
    server = netem_lab.popen("b", ["iperf3", "-s", "-1", "-B", "10.78.0.2"])
    time.sleep(1)  # listening before the client connects (slowly, under emulation)
    flood = netem_lab.popen(
        "c", ["iperf3", "-c", "10.78.0.2", "-u", "-b", "2M", "-t", "10", "-l", "1400"]
    )
    try:
        time.sleep(3)  # the queue is full by now
        got = rtts(netem_lab, "b", "10.78.0.3", count=20, interval=0.2)
    finally:
        for proc in (flood, server):
            proc.kill()
            proc.wait()
    assert got, "no echo came back through the queue"
    # 20 ms of delay, ~50 ms of queue at 1 Mbit/s, and the emulated CPU's own slowness
    assert max(got) < 1000, got


# --- the shipped scenarios on the kernel paths ----------------------------------------


def test_roam_inside_with_netem_and_kernel_ipip(results: Path) -> None:
    """Modes f and c with the HA's and FA's tunnels in the kernel; in mode c the MN's
    userspace decapsulation meets the HA's offloaded inner checksums."""
    summary, run_dir, _ = run_scenario("roam-inside", results)
    evs = assert_function(summary, run_dir, ["f", "c", "home"])
    kernel = {e["node"] for e in evs if e["event"] == "tunnel_up" and e.get("backend") == "kernel"}
    assert {"ha", "fa"} <= kernel, kernel


def test_roam_nat_with_xfrm_esp(results: Path) -> None:
    """Mode mc through strongSwan's kernel-netlink (XFRM), MOBIKE into and out of the NAT,
    then f after mc (table 220's routes must not carry the request to the FA)."""
    summary, run_dir, _ = run_scenario("roam-nat", results)
    evs = assert_function(summary, run_dir, ["f", "mc", "mc", "f", "home"])
    esp = {e.get("esp") for e in evs if e["event"] == "service_started" and e.get("kind") == "vpn"}
    assert esp == {"kernel"}, esp


@pytest.mark.parametrize(
    ("scenario", "modes"),
    [
        ("proxy-roam", ["f", "proxy", "proxy", "f", "home"]),
        ("dual-roam", ["f", "dual", "dual", "f", "home"]),
    ],
)
def test_proxy_and_dual_stacks_on_kernel_paths(results: Path, scenario: str, modes: list[str]):
    summary, run_dir, _ = run_scenario(scenario, results)
    assert_function(summary, run_dir, modes)
