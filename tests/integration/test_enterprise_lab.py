"""The enterprise topology, built for real: reachability follows the firewall and NAT policy,
moves produce carrier events, delay shows in RTT, and teardown leaves nothing behind."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from labtools import ROOT, lab_leftovers, median, ping_rtts, udp_exchange, unique_name
from pyroute2 import IPRoute

from testbed import netns
from testbed.lab.builder import build
from testbed.lab.lab import Lab
from testbed.topology import load_topology

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    plan = load_topology(ROOT / "topologies" / "enterprise.yaml")
    name = unique_name("ent")
    state = build(plan, name)
    lab = Lab(state, plan)
    yield lab
    lab.down()
    assert not lab_leftovers(name)


def assert_gone(pids: list[int], within_s: float = 3.0) -> None:
    """Every process ended (the relay is not waited for by teardown: give it a moment)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        running = [pid for pid in pids if netns.process_running(pid, None)]
        if not running:
            return
        time.sleep(0.05)
    raise AssertionError(f"still running: {running}")


def reachable(lab: Lab, node: str, target: str) -> bool:
    return lab.run(node, ["ping", "-c", "1", "-W", "1", target], check=False).returncode == 0


def place(lab: Lab, node: str, network: str, address: str, gateway: str) -> None:
    """Move the MN and configure a static address (DHCP is tested elsewhere)."""
    lab.move(node, network)
    lab.run(node, ["ip", "addr", "flush", "dev", "eth0"])
    lab.run(node, ["ip", "addr", "add", address, "dev", "eth0"])
    lab.run(node, ["ip", "route", "replace", "default", "via", gateway])


def test_intranet_reachability(lab: Lab) -> None:
    assert reachable(lab, "cn", "10.1.0.1")  # cn reaches ha
    assert reachable(lab, "cn", "10.2.0.254")  # the visited network's router
    assert reachable(lab, "cn", "10.3.0.254")
    assert reachable(lab, "cn", "192.0.2.10")  # the DMZ
    assert reachable(lab, "cn", "203.0.113.1")  # the Internet, through the firewall's NAT


def test_internet_cannot_reach_home_or_dmz_except_ike(lab: Lab) -> None:
    assert not reachable(lab, "isp", "10.1.0.1")
    assert not reachable(lab, "nat", "192.0.2.10")  # ICMP to gw is not opened
    seen, _ = udp_exchange(lab, "nat", "gw", "192.0.2.10", 500)  # IKE is
    assert seen == "198.51.100.3"
    seen, _ = udp_exchange(lab, "nat", "gw", "192.0.2.10", 5000)  # other UDP is not
    assert seen == "timeout"


def test_public_host_cannot_reach_home(lab: Lab) -> None:
    try:
        place(lab, "mn", "public", "203.0.113.50/24", "203.0.113.1")
        assert reachable(lab, "mn", "203.0.113.1")
        assert not reachable(lab, "mn", "10.1.0.1")
        seen, _ = udp_exchange(lab, "mn", "gw", "192.0.2.10", 4500)
        assert seen == "203.0.113.50"
    finally:
        place(lab, "mn", "home", "10.1.0.100/24", "10.1.0.254")


def test_hotspot_host_is_seen_with_the_nat_address(lab: Lab) -> None:
    try:
        place(lab, "mn", "hotspot", "192.168.1.50/24", "192.168.1.1")
        seen, reply = udp_exchange(lab, "mn", "gw", "192.0.2.10", 4500)
        assert seen == "198.51.100.3" and reply == "reply"
    finally:
        place(lab, "mn", "home", "10.1.0.100/24", "10.1.0.254")
    assert reachable(lab, "mn", "10.1.0.1")


def test_default_delays_show_in_rtt(lab: Lab) -> None:
    # mn -> ha crosses two 1 ms attachments each way: 4 ms RTT
    inside = median(ping_rtts(lab, "mn", "10.1.0.1"))
    assert 4.0 <= inside <= 5.0, inside
    # isp -> nat on the Internet: 10 ms per attachment and direction: 40 ms RTT
    outside = median(ping_rtts(lab, "isp", "198.51.100.3"))
    assert 40.0 <= outside <= 41.0, outside


def test_move_produces_carrier_events_inside_the_node(lab: Lab) -> None:
    with netns.entered(lab.ns("mn")):
        monitor = IPRoute()
        monitor.bind()
    try:
        times = lab.move("mn", "visited", gap_ms=50)
        lab.move("mn", "home")
        deadline = time.monotonic() + 2
        carriers: list[int] = []
        while time.monotonic() < deadline and len(carriers) < 4:
            for msg in monitor.get():
                if msg.get("event") == "RTM_NEWLINK" and msg.get("ifname") == "eth0":
                    carriers.append(msg.get("carrier"))
        assert carriers[:2] == [0, 1], carriers
        assert (times.link_up_ns - times.link_down_ns) / 1e6 >= 50
    finally:
        monitor.close()
    assert lab.state.attachments["mn"]["eth0"] == "home"
    assert reachable(lab, "mn", "10.1.0.1")


def neighbour_mac(lab: Lab, node: str, address: str) -> str | None:
    out = lab.run(node, ["ip", "-j", "neigh", "show", address]).stdout
    entries = json.loads(out or "[]")
    return entries[0].get("lladdr") if entries else None


def interface_mac(lab: Lab, node: str, network: str) -> str:
    iface = next(i.name for i in lab.plan.nodes[node].interfaces if i.network == network)
    return json.loads(lab.run(node, ["ip", "-j", "link", "show", iface]).stdout)[0]["address"]


def test_dhcp_servers_run(lab: Lab) -> None:
    roles = {p.role for p in lab.state.processes}
    assert {"dhcp:office", "dhcp:public", "dhcp:hotspot"} <= roles
    for proc in lab.state.processes:
        assert netns.process_start_time(proc.pid) == proc.start_time, proc


def test_bad_topology_builds_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = (ROOT / "topologies" / "enterprise.yaml").read_text()
    bad.write_text(text.replace("via: fa}", "via: nobody}"))
    before = set(netns.list_netns())
    from labtools import run_testbed

    result = run_testbed("up", str(bad), "--name", unique_name("bad"))
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and f"{bad}:" in line and "routes[0].via" in line, line
    assert "unknown node 'nobody'" in line
    assert set(netns.list_netns()) == before


def test_two_labs_coexist_and_down_leaves_nothing() -> None:
    plan_a = load_topology(ROOT / "topologies" / "enterprise.yaml")
    plan_b = dataclasses.replace(
        load_topology(ROOT / "topologies" / "enterprise.yaml"), neighbours="cold"
    )
    a = Lab(build(plan_a, unique_name("a")), plan_a)
    try:
        # before any traffic: warm (the default) knows the static neighbours, cold does not
        assert neighbour_mac(a, "nat", "198.51.100.2") == interface_mac(a, "fw", "internet")
        assert neighbour_mac(a, "fa", "10.0.0.1") == interface_mac(a, "core", "backbone")
        b = Lab(build(plan_b, unique_name("b")), plan_b)
        try:
            assert neighbour_mac(b, "nat", "198.51.100.2") is None
            assert reachable(a, "cn", "10.1.0.1") and reachable(b, "cn", "10.1.0.1")
            a.move("mn", "visited")  # a move in one lab does not touch the other
            assert b.state.attachments["mn"]["eth0"] == "home"
            pids = [p.pid for p in a.state.processes + b.state.processes]
        finally:
            b.down()
    finally:
        a.down()
    assert not lab_leftovers(a.name) and not lab_leftovers(b.name)
    assert_gone(pids)
    assert not a.state.dir.exists() and not b.state.dir.exists()


def test_clean_removes_a_killed_run() -> None:
    name = unique_name("killed")
    script = (
        "import signal, sys\n"
        "from testbed.lab.builder import build\n"
        "from testbed.topology import load_topology\n"
        f"build(load_topology('{ROOT}/topologies/enterprise.yaml'), '{name}', kind='run')\n"
        "print('up', flush=True)\n"
        "signal.pause()\n"
    )
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
    state = Lab.open(name).state
    proc.kill()
    proc.wait()
    assert lab_leftovers(name), "the killed run should have left its namespaces"
    from testbed.lab.clean import clean

    removed = clean().removed
    assert any(name in r for r in removed)
    assert not lab_leftovers(name)
    assert_gone([p.pid for p in state.processes])


def test_cli_runs_node_commands_as_typed(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node names inside a command's arguments stay words (Mininet would put addresses there:
    ``ha ip neigh show proxy`` ran ``ip neigh show 192.0.2.11``)."""
    import mininet.cli

    from testbed.lab.mncli import LabCLI, mininet_view

    printed: list[str] = []
    monkeypatch.setattr(mininet.cli, "output", printed.append)  # what the CLI prints

    names = [n for n in ("proxy", "core", "mn") if n in lab.plan.nodes]
    assert names, lab.plan.nodes
    script = tmp_path / "commands"
    script.write_text(f"ha echo args: {' '.join(names)}\nha ip -br addr show dev eth0\n")
    net = mininet_view(lab)
    quiet, keep_open = os.pipe()  # a terminal nobody types into
    try:
        with os.fdopen(quiet) as stdin:
            LabCLI(net, lab, stdin=stdin, script=str(script))
    finally:
        os.close(keep_open)
        for host in net.hosts:
            host.terminate()
    out = "".join(printed)
    assert f"args: {' '.join(names)}" in out, out
    ha = lab.plan.nodes["ha"].interfaces[0]
    assert str(ha.address.ip) in out, out  # the command ran in ha's namespace
