"""Helpers for tests that build labs for real (root, namespaces)."""

from __future__ import annotations

import contextlib
import os
import secrets
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from testbed import netns
from testbed.lab.lab import Lab

ROOT = Path(__file__).resolve().parents[2]


def unique_name(tag: str) -> str:
    return f"t{os.getpid() % 100000}-{tag}"


def ping_rtts(lab: Lab, node: str, target: str, count: int = 20, interval: float = 0.01):
    result = lab.run(
        node,
        [
            "ping",
            "-n",
            "-q" if False else "-n",
            "-c",
            str(count),
            "-i",
            str(interval),
            "-W",
            "1",
            target,
        ],
        check=False,
    )
    rtts = [
        float(word.split("=")[1])
        for line in result.stdout.splitlines()
        for word in line.split()
        if word.startswith("time=")
    ]
    return rtts


def median(values: list[float]) -> float:
    return statistics.median(values)


def lab_leftovers(name: str) -> list[str]:
    """Namespaces of the lab that still exist."""
    return [ns for ns in netns.list_netns() if ns.startswith(f"tb-{name}.")]


def run_testbed(*args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "testbed.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        **kwargs,
    )


UDP_ECHO_SOURCE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(float(sys.argv[2]))
try:
    data, peer = s.recvfrom(2048)
    print(peer[0], flush=True)
    s.sendto(data, peer)
except socket.timeout:
    print("timeout", flush=True)
"""

UDP_SEND_SOURCE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[3]))
for _ in range(5):
    s.sendto(b"probe", (sys.argv[1], int(sys.argv[2])))
    try:
        s.recvfrom(2048); print("reply"); break
    except socket.timeout:
        pass
else:
    print("no reply")
"""


def udp_exchange(lab: Lab, client: str, server: str, address: str, port: int) -> tuple[str, str]:
    """Send UDP from client to address:port where server listens; (seen source, client result)."""
    listener = lab.popen(
        server,
        [sys.executable, "-c", UDP_ECHO_SOURCE, str(port), "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        import time

        time.sleep(0.15)
        sent = lab.run(
            client, [sys.executable, "-c", UDP_SEND_SOURCE, address, str(port), "0.3"], check=False
        )
        seen, _ = listener.communicate(timeout=5)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    return seen.strip(), sent.stdout.strip()


def in_window(events: list[dict], summary: dict, index: int) -> list[dict]:
    """The events of handoff ``index``: from its move to the next one (or the end)."""
    moves = summary["move_times_ns"]
    end = moves[index + 1] if index + 1 < len(moves) else float("inf")
    return [e for e in events if moves[index] <= e["t_ns"] < end]


@contextlib.contextmanager
def namespace_pair(tag: str) -> Iterator[tuple[str, str]]:
    """Two bare namespaces of our own (``tb<tag><random>a`` and ``...b``), removed after."""
    base = f"tb{tag}{secrets.token_hex(3)}"
    first, second = f"{base}a", f"{base}b"
    netns.create(first)
    try:
        netns.create(second)
        try:
            yield first, second
        finally:
            netns.delete(second)
    finally:
        netns.delete(first)


def ip(ns: str, *argv: str) -> str:
    """``ip -n NS ARGV...``, checked; its output."""
    done = subprocess.run(["ip", "-n", ns, *argv], check=True, capture_output=True, text=True)
    return done.stdout


@contextlib.contextmanager
def veth_namespace(tag: str) -> Iterator[str]:
    """A namespace of our own holding a veth pair ``va``-``vb``, both up; removed after."""
    name = f"tb{tag}{secrets.token_hex(3)}"
    netns.create(name)
    try:
        for argv in (
            ["link", "add", "va", "type", "veth", "peer", "name", "vb"],
            ["link", "set", "va", "up"],
            ["link", "set", "vb", "up"],
        ):
            ip(name, *argv)
        yield name
    finally:
        netns.delete(name)
    assert not netns.exists(name)


@contextlib.contextmanager
def agent_chain(tag: str, front: str, forward: bool = True) -> Iterator[dict[str, str]]:
    """Three namespaces of our own in a line: ``front`` (its eth0 on the visited link) --
    ``f``, a foreign agent's box (eth0 10.2.0.254/24 visited, eth1 10.1.0.254/24 home;
    forwarding unless ``forward`` is false) -- ``h``, a home agent's (eth0 10.1.0.1/24,
    the visited net via f). Names by key (``front``, ``f``, ``h``); removed after. For
    the hostile-input tests and benchmarks/fuzz_agents.py, which flood from ``front``."""
    base = f"tb{tag}{secrets.token_hex(3)}"
    names = {key: f"{base}{key}" for key in (front, "f", "h")}
    made: list[str] = []
    try:
        for name in names.values():
            netns.create(name)
            made.append(name)
        m, f, h = names[front], names["f"], names["h"]
        ip(m, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", f)
        ip(f, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", h)
        for ns, ifaces in ((m, ["lo", "eth0"]), (f, ["lo", "eth0", "eth1"]), (h, ["lo", "eth0"])):
            for iface in ifaces:
                ip(ns, "link", "set", iface, "up")
        ip(f, "addr", "add", "10.2.0.254/24", "dev", "eth0")
        ip(f, "addr", "add", "10.1.0.254/24", "dev", "eth1")
        ip(h, "addr", "add", "10.1.0.1/24", "dev", "eth0")
        ip(h, "route", "add", "10.2.0.0/24", "via", "10.1.0.254")
        if forward:
            netns.write_sysctls(f, {"net.ipv4.ip_forward": 1})
        yield names
    finally:
        for name in reversed(made):
            netns.delete(name)
