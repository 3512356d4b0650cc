"""The DHCP client against real dnsmasq servers, in namespaces of our own (needs root).

Topology (P = random prefix per module run; only these namespaces are created/deleted):

    P-s1 eth0 10.9.0.1/24  <-veth-> s1 -[br1]-+
                                              +- p0 (master br1 or br2) <-veth-> P-cli eth0
    P-s2 eth0 10.10.0.1/24 <-veth-> s2 -[br2]-+            (all bridges live in P-sw)

A move re-masters p0 from br1 to br2 (with carrier down/up), so the client keeps its
interface, MAC and stale address, like a mobile node roaming between two access networks.

The Rapid Commit test adds P-s3 (10.11.0.1/24, br3) with dnsmasq started exactly as the
testbed starts it (``testbed.launch.dnsmasq_argv``, so with ``--dhcp-rapid-commit``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
IP = shutil.which("ip") or "/usr/sbin/ip"
PING = shutil.which("ping") or "/usr/bin/ping"
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(os.path.exists(p) for p in (IP, PING, DNSMASQ)),
        reason="needs root, iproute2, ping and dnsmasq",
    ),
]

NETS = {
    1: ipaddress.IPv4Network("10.9.0.0/24"),
    2: ipaddress.IPv4Network("10.10.0.0/24"),
    3: ipaddress.IPv4Network("10.11.0.0/24"),  # only for the Rapid Commit test
}


def router(n: int) -> str:
    return str(NETS[n].network_address + 1)


def pool(n: int) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    return NETS[n].network_address + 100, NETS[n].network_address + 199


def sh(*args: str, timeout: float = 10) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=timeout).stdout


@dataclass
class Lab:
    prefix: str
    workdir: Path
    namespaces: list[str] = field(default_factory=list)
    servers: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def cli(self) -> str:
        return f"{self.prefix}-cli"

    @property
    def sw(self) -> str:
        return f"{self.prefix}-sw"

    def add_ns(self, name: str) -> str:
        sh(IP, "netns", "add", name)
        self.namespaces.append(name)
        sh(IP, "-n", name, "link", "set", "lo", "up")
        return name

    def connect(self, n: int) -> None:
        """Plug the client's cable into access network ``n`` (carrier drops meanwhile)."""
        sh(IP, "-n", self.sw, "link", "set", "p0", "down")
        sh(IP, "-n", self.sw, "link", "set", "p0", "master", f"br{n}")
        sh(IP, "-n", self.sw, "link", "set", "p0", "up")

    def cli_addrs(self) -> list[str]:
        out = json.loads(sh(IP, "-n", self.cli, "-j", "-4", "addr", "show", "dev", "eth0"))
        return [a["local"] for a in out[0]["addr_info"]] if out else []

    def cli_default_via(self) -> list[str]:
        out = json.loads(sh(IP, "-n", self.cli, "-j", "-4", "route", "show", "default"))
        return [r["gateway"] for r in out]

    def ping(self, addr: str) -> bool:
        argv = [IP, "netns", "exec", self.cli, PING, "-c1", "-W1", addr]
        return subprocess.run(argv, capture_output=True, timeout=5).returncode == 0

    def in_cli(self, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = [IP, "netns", "exec", self.cli, sys.executable, *argv]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def start_dnsmasq(lab: Lab, n: int) -> None:
    ns = f"{lab.prefix}-s{n}"
    lo, hi = pool(n)
    pidfile = lab.workdir / f"dnsmasq{n}.pid"
    argv = [
        IP, "netns", "exec", ns, DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null",
        "--port=0", "--interface=eth0", "--bind-interfaces", "--no-ping",
        "--dhcp-authoritative", "--user=root", "--group=root",
        f"--dhcp-range={lo},{hi},255.255.255.0,3600",
        f"--dhcp-option=option:router,{router(n)}",
        f"--dhcp-leasefile={lab.workdir / f'leases{n}'}", f"--pid-file={pidfile}",
        "--log-dhcp", f"--log-facility={lab.workdir / f'dnsmasq{n}.log'}",
    ]  # fmt: skip
    # `ip netns exec` execs dnsmasq in place, so this PID is dnsmasq's own.
    lab.servers[n] = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    end = time.monotonic() + 5
    while not pidfile.exists() or not pidfile.read_text().strip():
        if lab.servers[n].poll() is not None or time.monotonic() > end:
            pytest.fail(f"dnsmasq {n} did not start: {(lab.workdir / f'dnsmasq{n}.log')}")
        time.sleep(0.005)


def stop(lab: Lab) -> None:
    for proc in lab.servers.values():  # only the processes started here, by PID
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=3)
    for ns in reversed(lab.namespaces):  # only the namespaces created here
        subprocess.run([IP, "netns", "del", ns], capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(f"tbd{secrets.token_hex(3)}", tmp_path_factory.mktemp("dhcp"))
    try:
        for name in ("sw", "s1", "s2", "cli"):
            lab.add_ns(f"{lab.prefix}-{name}")
        sw = lab.sw
        # Bridges first, so no veth end has the same ifindex as its peer (both would be 2 in
        # fresh namespaces). Linux treats a carrier change on such a veth as non-urgent
        # (linkwatch_urgent_event: ifindex == iflink) and delays it up to 1 s: measured, the
        # bridge then dropped the first DISCOVERs for ~750 ms after each re-plug.
        for n in (1, 2):
            sh(IP, "-n", sw, "link", "add", f"br{n}", "type", "bridge")
            sh(IP, "-n", sw, "link", "set", f"br{n}", "up")
        sh(IP, "link", "add", "p0", "netns", sw, "type", "veth", "peer", "name", "eth0",
           "netns", lab.cli)  # fmt: skip
        for n in (1, 2):
            srv = f"{lab.prefix}-s{n}"
            sh(IP, "link", "add", f"s{n}", "netns", sw, "type", "veth", "peer", "name", "eth0",
               "netns", srv)  # fmt: skip
            sh(IP, "-n", sw, "link", "set", f"s{n}", "master", f"br{n}", "up")
            sh(IP, "-n", srv, "addr", "add", f"{router(n)}/24", "dev", "eth0")
            sh(IP, "-n", srv, "link", "set", "eth0", "up")
            start_dnsmasq(lab, n)
        lab.connect(1)
        yield lab
    finally:
        stop(lab)


def _in_pool(addr: str, n: int) -> bool:
    lo, hi = pool(n)
    return lo <= ipaddress.IPv4Address(addr) <= hi


def _acquire_cli(lab: Lab, n: int, label: str) -> dict[str, Any]:
    t0 = time.monotonic()
    res = lab.in_cli("-m", "agents.dhcp", "eth0", "--timeout", "5")
    wall_ms = (time.monotonic() - t0) * 1000
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1
    lease = json.loads(lines[0])
    print(
        f"\n[dhcp] {label}: {lease['address']} from {lease['server']} -- start->ACK "
        f"{lease['ack_ms']:.2f} ms, start->configured {lease['elapsed_ms']:.2f} ms "
        f"(whole CLI process {wall_ms:.0f} ms)"
    )
    assert _in_pool(lease["address"], n)
    assert lease["prefix_len"] == 24 and lease["router"] == router(n)
    assert lease["server"] == router(n) and lease["lease_time"] == 3600
    return lease


def test_cli_gets_and_configures_a_lease(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    lab.connect(1)
    with capsys.disabled():
        lease = _acquire_cli(lab, 1, "network 1")
    assert lab.cli_addrs() == [lease["address"]]
    assert lab.cli_default_via() == [router(1)]
    assert lab.ping(router(1))


def test_cli_move_to_second_network(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    lab.connect(1)
    with capsys.disabled():
        first = _acquire_cli(lab, 1, "before move")
        lab.connect(2)
        second = _acquire_cli(lab, 2, "after move")
    # The stale network-1 address (dynamic: it carries a lifetime) was removed.
    assert lab.cli_addrs() == [second["address"]] != [first["address"]]
    assert lab.cli_default_via() == [router(2)]
    assert lab.ping(router(2))


def test_cli_timeout_and_release(lab: Lab) -> None:
    lab.connect(1)
    res = lab.in_cli("-m", "agents.dhcp", "eth0", "--release", "--timeout", "5")
    assert res.returncode == 0, res.stderr
    assert lab.cli_addrs() == [] and lab.cli_default_via() == []
    log = (lab.workdir / "dnsmasq1.log").read_text()
    assert f"DHCPRELEASE(eth0) {json.loads(res.stdout)['address']}" in log
    res = lab.in_cli("-m", "agents.dhcp", "eth0", "--no-configure", "--timeout", "5")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["configured"] is False and lab.cli_addrs() == []
    # Unplugged (p0 without a bridge): no server answers.
    sh(IP, "-n", lab.sw, "link", "set", "p0", "nomaster")
    res = lab.in_cli("-m", "agents.dhcp", "eth0", "--timeout", "0.6")
    assert res.returncode == 1 and res.stdout == ""
    reason = res.stderr.strip()
    assert "\n" not in reason and "no lease on eth0 within 0.6 s" in reason
    assert "state selecting, 2 DISCOVER(s)" in reason  # at 0 and 0.25 s (next: 0.75 s)


EMBEDDED = textwrap.dedent(
    """
    import asyncio, json, subprocess, sys, time
    from agents.dhcp.driver import DhcpDriver

    move = sys.argv[1:]
    events = []

    def log(e):
        events.append(e)
        print(json.dumps(e), flush=True)

    async def main():
        drv = DhcpDriver("eth0", on_event=log)
        drv.attach()
        fut = drv.bound_future()
        drv.start()
        first = await asyncio.wait_for(fut, 5)
        fut = drv.bound_future()
        drv.renew()  # RENEWING: unicast REQUEST over the UDP socket, unicast ACK back
        renewed = await asyncio.wait_for(fut, 5)
        assert renewed.address == first.address
        drv.link_down()
        subprocess.run(move, check=True)
        fut = drv.bound_future()
        t0 = time.monotonic_ns()
        drv.start(try_reboot=True)  # INIT-REBOOT: the new network's server NAKs it
        moved = await asyncio.wait_for(fut, 5)
        print(json.dumps({"event": "moved", "ms": (time.monotonic_ns() - t0) / 1e6}))
        drv.release()
        drv.close()

    asyncio.run(main())
    """
)


def test_embedded_asyncio_driver_renew_move_release(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab.connect(1)
    script = lab.workdir / "embedded.py"
    script.write_text(EMBEDDED)
    move = [IP, "-n", lab.sw, "link", "set", "p0", "master", "br2"]
    res = lab.in_cli(str(script), *move)
    assert res.returncode == 0, res.stderr + res.stdout
    events = [json.loads(line) for line in res.stdout.splitlines()]
    names = [e["event"] for e in events]
    bound = [e for e in events if e["event"] == "dhcp_bound"]
    assert len(bound) == 3
    assert _in_pool(bound[0]["address"], 1) and bound[1]["address"] == bound[0]["address"]
    assert _in_pool(bound[2]["address"], 2) and bound[2]["router"] == router(2)
    renew = names.index("dhcp_renewing")
    assert names[renew + 1 : renew + 3] == ["dhcp_request_sent", "dhcp_ack"]
    nak = next(e for e in events if e["event"] == "dhcp_nak")
    assert nak["state"] == "rebooting" and nak["server"] == router(2)
    unbound = [e for e in events if e["event"] == "dhcp_unbound"]
    assert [u["reason"] for u in unbound] == ["nak", "released"]
    assert all(e["t_ns"] > 0 for e in events if "t_ns" in e)
    moved_ms = next(e["ms"] for e in events if e["event"] == "moved")
    with capsys.disabled():
        print(f"\n[dhcp] embedded move (INIT-REBOOT, NAK, DISCOVER..ACK): {moved_ms:.2f} ms")
    assert lab.cli_addrs() == [] and lab.cli_default_via() == []
    assert "DHCPRELEASE(eth0)" in (lab.workdir / "dnsmasq2.log").read_text()


# --- Rapid Commit (RFC 4039) against the testbed's own dnsmasq command line ----------------


@pytest.fixture(scope="module")
def rapid_net(lab: Lab) -> int:
    """Access network 3, served by dnsmasq as the lab builder runs it (``launch.dnsmasq_argv``)."""
    from testbed.launch import dnsmasq_argv
    from testbed.topology.plan import DhcpPlan

    n = 3
    srv = lab.add_ns(f"{lab.prefix}-s{n}")  # deleted by the lab fixture
    sh(IP, "-n", lab.sw, "link", "add", f"br{n}", "type", "bridge")
    sh(IP, "-n", lab.sw, "link", "set", f"br{n}", "up")
    sh(IP, "link", "add", f"s{n}", "netns", lab.sw, "type", "veth", "peer", "name", "eth0",
       "netns", srv)  # fmt: skip
    sh(IP, "-n", lab.sw, "link", "set", f"s{n}", "master", f"br{n}", "up")
    sh(IP, "-n", srv, "addr", "add", f"{router(n)}/24", "dev", "eth0")
    sh(IP, "-n", srv, "link", "set", "eth0", "up")
    lo, hi = pool(n)
    plan = DhcpPlan(
        network=f"n{n}",
        server=f"s{n}",
        iface="eth0",
        subnet=NETS[n],
        first=lo,
        last=hi,
        router=ipaddress.IPv4Address(router(n)),
        lease_s=3600,
    )
    argv = dnsmasq_argv(plan, lab.workdir)
    assert "--dhcp-rapid-commit" in argv  # the default of every testbed DHCP pool
    log = lab.workdir / f"dnsmasq{n}.log"
    pidfile = lab.workdir / f"dhcp-n{n}.pid"
    with log.open("wb") as out:  # --log-facility=-: the log goes to stderr
        lab.servers[n] = subprocess.Popen(
            [IP, "netns", "exec", srv, DNSMASQ, *argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    end = time.monotonic() + 5
    while not pidfile.exists() or not pidfile.read_text().strip():
        if lab.servers[n].poll() is not None or time.monotonic() > end:
            pytest.fail(f"dnsmasq {n} did not start: {log.read_text()}")
        time.sleep(0.005)
    return n


def _acquire_with_events(lab: Lab, *flags: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    res = lab.in_cli("-m", "agents.dhcp", "eth0", "--timeout", "5", "--events", *flags)
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in res.stderr.splitlines()]
    return json.loads(res.stdout), events


def _server_messages(log: str, xid: int) -> list[str]:
    """DHCP message types dnsmasq logged for one exchange, in order (lines carry the xid)."""
    found = []
    for line in log.splitlines():
        words = line.split()
        if len(words) >= 3 and words[1] == str(xid) and words[2].startswith("DHCP"):
            found.append(words[2].split("(", 1)[0])
    return found


def _discover_to_bound_ms(events: list[dict[str, Any]]) -> float:
    first = next(e["t_ns"] for e in events if e["event"] == "dhcp_discover_sent")
    bound = next(e["t_ns"] for e in events if e["event"] == "dhcp_bound")
    return (bound - first) / 1e6


def test_rapid_commit_binds_in_one_exchange_after_a_move(
    lab: Lab, rapid_net: int, capsys: pytest.CaptureFixture[str]
) -> None:
    n = rapid_net
    timings: dict[str, list[float]] = {"rapid": [], "normal": []}
    xids: dict[str, list[int]] = {"rapid": [], "normal": []}
    for _ in range(3):
        for mode, flags in (("rapid", ()), ("normal", ("--no-rapid-commit",))):
            lab.connect(1)  # network 1's dnsmasq has no Rapid Commit: it OFFERs as before
            first, events = _acquire_with_events(lab)
            names = [e["event"] for e in events]
            normal = ["dhcp_discover_sent", "dhcp_offer", "dhcp_request_sent", "dhcp_ack"]
            assert names == [*normal, "dhcp_bound"]
            assert first["rapid_commit"] is False and _in_pool(first["address"], 1)
            lab.connect(n)  # the move
            lease, events = _acquire_with_events(lab, *flags)
            names = [e["event"] for e in events]
            assert _in_pool(lease["address"], n) and lease["server"] == router(n)
            assert lease["router"] == router(n) and lease["lease_time"] == 3600
            assert lab.cli_addrs() == [lease["address"]]  # the network-1 address is gone
            ack = next(e for e in events if e["event"] == "dhcp_ack")
            bound = next(e for e in events if e["event"] == "dhcp_bound")
            if mode == "rapid":
                # DISCOVER -> ACK: no OFFER came and no REQUEST went out.
                assert names == ["dhcp_discover_sent", "dhcp_ack", "dhcp_bound"]
                assert events[0]["rapid_commit"] is True
                assert ack["rapid_commit"] is True and bound["rapid_commit"] is True
                assert bound["configured"] is True and lease["rapid_commit"] is True
            else:
                assert "dhcp_offer" in names and "dhcp_request_sent" in names
                assert ack["rapid_commit"] is False and lease["rapid_commit"] is False
            timings[mode].append(_discover_to_bound_ms(events))
            xids[mode].append(ack["xid"])
    assert lab.ping(router(n))
    # The server's view agrees: two messages per exchange with Rapid Commit, four without.
    log = (lab.workdir / f"dnsmasq{n}.log").read_text()
    for xid in xids["rapid"]:
        assert _server_messages(log, xid) == ["DHCPDISCOVER", "DHCPACK"]
    for xid in xids["normal"]:
        assert _server_messages(log, xid) == [
            "DHCPDISCOVER",
            "DHCPOFFER",
            "DHCPREQUEST",
            "DHCPACK",
        ]
    assert "option: 80 rapid-commit" in log
    with capsys.disabled():
        for mode, values in timings.items():
            shown = ", ".join(f"{v:.2f}" for v in values)
            print(f"\n[dhcp] move, DISCOVER sent -> bound, {mode}: {shown} ms")
