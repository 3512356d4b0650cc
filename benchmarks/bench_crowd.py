"""Benchmark (issue 19, item 3): handoffs against the number of mobile nodes moving at once,
and where the CPU time goes.

``--scenario mixed`` (default): scenarios/crowd-100.yaml at N mobile nodes, split as there
(half inside, a quarter outside with MOBIKE, the rest through the MIP proxy: N=10 is 5/2/3,
N=1 one inside), each moved three times. ``--scenario inside``: scenarios/crowd.yaml with N
MNs moved together to the FA's network and home again (the first measurement's).

Per N it prints three tables:

* handoffs: interruption p50/p95/max over the probed handoffs of every node, registration
  (move -> registration_accepted) p50/p95 over every node, the most handoffs in progress at
  once, recovered of probed, the run's wall time;
* CPU seconds while the nodes moved (the timeline, start-up excluded) by process kind: MN
  agents (sum), HA, FA, proxy, the MNs' charons, the gateways' charons, the delay relay,
  probes, the runner (with the ip/nft/tc commands it ran), against the two cores' capacity;
  the same over the whole run (start-up included);
* memory: PSS of an MN agent (mean, max), the HA, an MN's charon.

CPU times come from the run's ``resources.json``: the runner reads /proc/PID/stat of every
process it started (the lab records their PIDs) before stopping them.

Run as root, on a shared machine under the heavy-run lock:
    flock /tmp/tb-heavy.lock .venv/bin/python benchmarks/bench_crowd.py --nodes 1 10 50 100
    [--scenario inside] [--sample 12] [--repeat 1]

The figures depend on what else the machine runs: the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.scenario import resources  # noqa: E402
from testbed.scenario.execute import run_scenario  # noqa: E402
from testbed.scenario.runner import RunOptions  # noqa: E402

INSIDE_TIMELINE = [
    {"move": {"node": "mn", "to": "visited"}},
    {"wait": {"event": "registration_accepted", "node": "mn", "timeout": "20s"}},
    {"after": "1s", "move": {"node": "mn", "to": "home"}},
    {"wait": {"event": "returned_home", "node": "mn", "timeout": "20s"}},
]
# crowd-100.yaml's groups (inside, MOBIKE, MIP proxy) and the services only a group needs
GROUP_SERVICES = {"mn": (), "mk": ("gw-vpn",), "mp": ("proxy", "gw2-vpn")}
CPU_KINDS = (
    ("mn", "MN agents"),
    ("ha", "HA"),
    ("fa", "FA"),
    ("proxy", "proxy"),
    ("charon-mn", "MN charons"),
    ("charon-gw", "GW charons"),
    ("relay", "relay"),
    ("probe", "probes"),
    ("runner", "runner"),
)


def split(nodes: int) -> dict[str, int]:
    """crowd-100.yaml's groups at ``nodes`` MNs: half inside (rounded up), a quarter with
    MOBIKE, the rest through the proxy."""
    inside = math.ceil(nodes / 2)
    mobike = nodes // 4
    return {"mn": inside, "mk": mobike, "mp": nodes - inside - mobike}


def _names(node: str | list[str]) -> list[str]:
    return [node] if isinstance(node, str) else list(node)


def mixed_spec(spec: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    """crowd-100.yaml with ``counts`` MNs per group: a group of none is left out (its node
    template, crowd, probes, the services only it needs, and the steps that then name no
    node; since_step follows the steps kept)."""
    spec = copy.deepcopy(spec)
    gone = {g for g, n in counts.items() if n == 0}
    unused = {label for g in gone for label in GROUP_SERVICES[g]}
    spec["services"] = [s for s in spec["services"] if s["name"] not in unused]
    nodes = spec["topology"]["overrides"]["nodes"]
    for group, count in counts.items():
        if count:
            nodes[group]["count"] = count
        elif group != "mn":
            del nodes[group]
    spec["crowds"] = [c for c in spec["crowds"] if c["nodes"] not in gone]
    spec["probes"]["mobile"] = [m for m in _names(spec["probes"]["mobile"]) if m not in gone]
    kept: list[dict[str, Any]] = []
    index: dict[int, int] = {}  # old step -> new step (the next kept one, if it went)
    for old, step in enumerate(spec["timeline"]):
        action = step.get("move") or step.get("wait")
        if action is not None and "node" in action:
            left = [n for n in _names(action["node"]) if n not in gone]
            if not left:
                continue
            action["node"] = left if len(left) > 1 else left[0]
        for skipped in range(old, -1, -1):  # every dropped step before maps here
            if skipped in index:
                break
            index[skipped] = len(kept)
        kept.append(step)
    for step in kept:
        wait = step.get("wait")
        if wait and "since_step" in wait:
            wait["since_step"] = index[wait["since_step"]]
    if kept and "after" in kept[0]:  # the first move of all starts at once
        del kept[0]["after"]
    spec["timeline"] = kept
    return spec


def scenario_for(kind: str, nodes: int, directory: Path, sample: int | None) -> Path:
    name = "crowd.yaml" if kind == "inside" else "crowd-100.yaml"
    spec = yaml.safe_load((ROOT / "scenarios" / name).read_text())
    if kind == "inside":
        spec["topology"]["overrides"]["nodes"]["mn"]["count"] = nodes
        spec["timeline"] = copy.deepcopy(INSIDE_TIMELINE)
    else:
        spec = mixed_spec(spec, split(nodes))
    spec["name"] = f"crowd-{kind}-{nodes}"
    spec["topology"]["file"] = str(ROOT / "topologies" / "enterprise.yaml")
    if sample is not None:  # probe streams for this many of them (the rest: signalling only)
        spec["probes"]["sample"] = sample
    # the benchmark measures; whether each recovered is in its table
    spec["expect"] = []
    path = directory / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def mb(kb: float | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


def handoff_row(nodes: int, summary: dict[str, Any], wall: float) -> str:
    over = summary.get("over_nodes") or {}
    if not over:  # one mobile node: the aggregates of its handoffs
        from testbed.scenario.many import aggregate

        _, over = aggregate(summary["handoffs"], summary.get("mobiles") or ["mn"])
    i, r = over.get("interruption_ms") or {}, over.get("registration_ms") or {}
    probed = over.get("handoffs", 0) - over.get("unprobed", 0)
    return (
        f"{nodes:>4} {over.get('handoffs', 0):>8} {over.get('recovered', 0):>5}/{probed:<5} "
        f"{ms(i.get('p50')):>7} {ms(i.get('p95')):>7} {ms(i.get('max')):>7} "
        f"{ms(r.get('p50')):>7} {ms(r.get('p95')):>7} {r.get('n', 0):>5} "
        f"{over.get('concurrent', 0):>6} {wall:>6.1f}"
    )


def cpu_row(nodes: int, usage: dict[str, Any], field: str, span: float | None) -> str:
    kinds = usage.get("kinds", {})
    values = [(kinds.get(kind) or {}).get(field) or 0.0 for kind, _ in CPU_KINDS]
    total = sum(values)
    capacity = (os.cpu_count() or 1) * span if span else None
    share = f"{100 * total / capacity:>5.0f}%" if capacity else "     -"
    cells = " ".join(f"{v:>10.1f}" for v in values)
    return f"{nodes:>4} {cells} {total:>7.1f} {seconds(span):>6} {share}"


def memory_row(nodes: int, usage: dict[str, Any]) -> str:
    kinds = usage.get("kinds", {})

    def kind(name: str, stat: str) -> str:
        return mb((kinds.get(name) or {}).get(stat))

    return (
        f"{nodes:>4} {kind('mn', 'pss_kb_mean'):>11} {kind('mn', 'pss_kb_max'):>10} "
        f"{kind('ha', 'pss_kb_mean'):>8} {kind('charon-mn', 'pss_kb_mean'):>14} "
        f"{(kinds.get('mn') or {}).get('processes', 0):>9}"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 10, 50, 100])
    parser.add_argument("--scenario", choices=["mixed", "inside"], default="mixed")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--sample", type=int, help="probe streams for this many MNs only (mixed: 12)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (network namespaces)", file=sys.stderr)
        return 2
    if any(n < 1 for n in args.nodes):
        print("--nodes: at least 1 each", file=sys.stderr)
        return 2
    command = shlex.join([".venv/bin/python", "benchmarks/bench_crowd.py", *sys.argv[1:]])
    print(f"reproduce (as root): flock /tmp/tb-heavy.lock {command}")
    load = os.getloadavg()
    print(f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs")
    rows: list[tuple[int, dict[str, Any], float, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-crowd-") as tmp:
        for nodes in args.nodes:
            path = scenario_for(args.scenario, nodes, Path(tmp), args.sample)
            started = time.monotonic()
            options = RunOptions(
                results=Path(tmp) / "results", progress=lambda _: None, figures=False, pcap="none"
            )
            outcome = run_scenario(path, options, repeat=args.repeat)
            wall = time.monotonic() - started
            rep = outcome.run_dir if args.repeat == 1 else outcome.run_dir / "rep-00"
            usage = resources.read(rep / resources.FILE) or {}
            rows.append((nodes, outcome.summary, wall, usage))
            done = os.getloadavg()[0]
            print(f"  {nodes} MNs: {outcome.verdict}, {wall:.0f} s, load average {done:.1f}")
    print("\nhandoffs (ms; interruption over the probed ones, registration over all)")
    print(
        f"{'MNs':>4} {'handoffs':>8} {'recov/probed':>11} {'p50':>7} {'p95':>7} {'max':>7} "
        f"{'reg p50':>7} {'reg p95':>7} {'reg n':>5} {'concur':>6} {'wall s':>6}"
    )
    for nodes, summary, wall, _ in rows:
        print(handoff_row(nodes, summary, wall))
    for field, title, span_key in (
        ("timeline_cpu_s", "while the nodes moved (the timeline)", "timeline_s"),
        ("cpu_s", "over the whole run (start-up included)", "wall_s"),
    ):
        print(f"\nCPU seconds {title}, by process kind (first repetition)")
        names = " ".join(f"{label:>10}" for _, label in CPU_KINDS)
        print(f"{'MNs':>4} {names} {'total':>7} {'span s':>6} {'of 2':>6}")
        for nodes, _, _, usage in rows:
            print(cpu_row(nodes, usage, field, usage.get(span_key)))
    print("\nmemory (PSS, MB; one process each)")
    print(f"{'MNs':>4} {'MN agent':>11} {'MN max':>10} {'HA':>8} {'MN charon':>14} {'MN procs':>9}")
    for nodes, _, _, usage in rows:
        print(memory_row(nodes, usage))
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
