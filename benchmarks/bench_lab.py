"""Benchmark: lab up/down times, and a 200-node topology next to plain Mininet.

Run as root:  .venv/bin/python benchmarks/bench_lab.py [--reps N] [--nodes 200]

Prints: enterprise up/down (median and max over N runs, with the userspace relay path of
this machine); a generated topology of NODES nodes (LANs of 20: 19 hosts + 1 router,
routers on a shared core network) built by the testbed and by plain Mininet (hosts in
their own namespaces, bridges inside one switch namespace node, so nothing lands in the
root namespace), with the ratio. Mininet's global init (fixLimits) and cleanup are not used.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mipbase.specfile import SpecSource  # noqa: E402
from testbed.lab.builder import build  # noqa: E402
from testbed.lab.teardown import destroy  # noqa: E402
from testbed.topology import load_topology, load_topology_source  # noqa: E402


def generated_topology(nodes: int) -> dict:
    lans = max(1, nodes // 20)
    networks: dict = {"core": {"subnet": "10.255.0.0/16"}}
    spec_nodes: dict = {}
    for lan in range(lans):
        networks[f"lan{lan}"] = {"subnet": f"10.{lan}.0.0/24"}
        spec_nodes[f"r{lan}"] = {
            "role": "router",
            "links": [{"network": f"lan{lan}"}, {"network": "core"}],
        }
        for host in range(19):
            spec_nodes[f"h{lan}x{host}"] = {
                "links": [{"network": f"lan{lan}"}],
                "routes": [{"to": "default", "via": f"r{lan}"}],
            }
    return {"name": "gen", "networks": networks, "nodes": spec_nodes}


def time_testbed(plan, name: str) -> tuple[float, float]:
    started = time.perf_counter()
    state = build(plan, name)
    up = time.perf_counter() - started
    started = time.perf_counter()
    destroy(state)
    return up, time.perf_counter() - started


def time_mininet(plan) -> tuple[float, float]:
    from mininet.net import Mininet
    from mininet.node import Host, Node

    Mininet.inited = True  # never fixLimits(): it rewrites global sysctls
    tag = f"m{os.getpid() % 10000}"
    started = time.perf_counter()
    net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False, ipBase="10.0.0.0/8")
    switch = net.addHost(f"{tag}sw", cls=Node, inNamespace=True)
    hosts = {name: net.addHost(f"{tag}{name}", cls=Host, ip=None) for name in plan.nodes}
    ports: dict[str, list[str]] = {n: [] for n in plan.networks}
    for node in plan.nodes.values():
        for index, iface in enumerate(node.interfaces):
            link = net.addLink(hosts[node.name], switch, intfName1=f"eth{index}")
            ports[iface.network].append(link.intf2.name)
            if iface.address:
                hosts[node.name].setIP(
                    str(iface.address.ip), iface.address.network.prefixlen, intf=link.intf1
                )
    commands = []
    for index, members in enumerate(ports.values()):
        commands.append(f"ip link add br{index} type bridge && ip link set br{index} up")
        commands += [f"ip link set {port} master br{index}" for port in members]
    switch.cmd(" ; ".join(commands))
    for node in plan.nodes.values():
        for route in node.routes:
            hosts[node.name].cmd(f"ip route add {route.dst} via {route.via}")
    up = time.perf_counter() - started
    started = time.perf_counter()
    for host in net.hosts:
        host.terminate()  # ends the shell; the unnamed namespace and its links go with it
    down = time.perf_counter() - started
    return up, down


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:7.1f} ms  max {max(values) * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--no-mininet", action="store_true")
    args = parser.parse_args()
    print(f"# {' '.join([sys.executable, *sys.argv])}")
    enterprise = load_topology(ROOT / "topologies" / "enterprise.yaml")
    ups, downs = [], []
    for rep in range(args.reps):
        up, down = time_testbed(enterprise, f"bench{os.getpid() % 10000}-{rep}")
        ups.append(up)
        downs.append(down)
    print(f"enterprise ({len(enterprise.nodes)} nodes) up:   {summary(ups)}   (goal < 1500 ms)")
    print(f"enterprise ({len(enterprise.nodes)} nodes) down: {summary(downs)}   (goal < 500 ms)")

    generated = load_topology_source(
        SpecSource("<generated>", generated_topology(args.nodes)), None
    )
    n = len(generated.nodes)
    up, down = time_testbed(generated, f"bgen{os.getpid() % 10000}")
    print(f"generated {n} nodes, testbed:  up {up * 1000:7.0f} ms  down {down * 1000:7.0f} ms")
    if not args.no_mininet:
        m_up, m_down = time_mininet(generated)
        print(
            f"generated {n} nodes, mininet:  up {m_up * 1000:7.0f} ms  down {m_down * 1000:7.0f} ms"
        )
        print(
            f"ratio testbed/mininet: up {up / m_up:.2f}  down {down / m_down:.2f}   "
            "(goal: up < 0.5)"
        )


if __name__ == "__main__":
    main()
