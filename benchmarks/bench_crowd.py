"""Benchmark (issue 19, item 3, a first measurement): handoff interruption over nodes
against the number of mobile nodes moving at once.

For each N, scenarios/crowd.yaml with N mobile nodes (its topology override's count) and a
timeline of two moves of all of them together: home -> visited (FA, mode f), then back home.
Prints per N the interruption p50/p95/max over every handoff of every node, the registration
(move -> registration_accepted) p50/p95, the most handoffs in progress at once, how many
recovered, the run's wall time, and the PSS of one MN agent process and of the HA sampled
mid-run. One agent process per MN.

Run as root:  .venv/bin/python benchmarks/bench_crowd.py [--nodes 1 5 10 20] [--repeat 1]
              [--sample 10]  (probe streams for 10 of them: the rest signalling only)

The figures depend on what else the machine runs: say so beside them.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.scenario.execute import run_scenario  # noqa: E402
from testbed.scenario.runner import RunOptions  # noqa: E402

TIMELINE = [
    {"move": {"node": "mn", "to": "visited"}},
    {"wait": {"event": "registration_accepted", "node": "mn", "timeout": "20s"}},
    {"after": "1s", "move": {"node": "mn", "to": "home"}},
    {"wait": {"event": "returned_home", "node": "mn", "timeout": "20s"}},
]


def scenario_for(nodes: int, directory: Path, sample: int | None = None) -> Path:
    spec = yaml.safe_load((ROOT / "scenarios" / "crowd.yaml").read_text())
    spec = copy.deepcopy(spec)
    spec["name"] = f"crowd-{nodes}"
    spec["topology"]["file"] = str(ROOT / "topologies" / "enterprise.yaml")
    spec["topology"]["overrides"]["nodes"]["mn"]["count"] = nodes
    spec["timeline"] = TIMELINE
    if sample is not None:  # probe streams for this many of them (the rest: signalling only)
        spec["probes"]["sample"] = sample
    spec["expect"] = [{"metric": "over_nodes.unrecovered", "equals": 0}]
    path = directory / f"crowd-{nodes}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def pss_kb(pid: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return None


def sample_memory(stop: threading.Event, out: dict[str, int]) -> None:
    """PSS of one MN agent and of the HA, the largest seen while the run goes on."""
    while not stop.wait(0.5):
        for role, pattern in (("mn", "agents.runtime.main mn "), ("ha", "agents.runtime.main ha ")):
            found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
            pids = [int(p) for p in found.stdout.split()]
            if pids:
                value = pss_kb(pids[0])
                if value is not None:
                    out[role] = max(out.get(role, 0), value)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--sample", type=int, help="probe streams for this many MNs only (default: every one)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (network namespaces)", file=sys.stderr)
        return 2
    load = os.getloadavg()[0]
    print(f"load average at start {load:.2f} on {os.cpu_count()} CPUs")
    header = (
        f"{'MNs':>4} {'handoffs':>8} {'recov':>5} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} "
        f"{'reg p50':>7} {'reg p95':>7} {'concur':>6} {'wall s':>6} {'MN PSS':>7} {'HA PSS':>7}"
    )
    print(header)
    with tempfile.TemporaryDirectory(prefix="bench-crowd-") as tmp:
        for nodes in args.nodes:
            path = scenario_for(nodes, Path(tmp), args.sample)
            memory: dict[str, int] = {}
            stop = threading.Event()
            sampler = threading.Thread(target=sample_memory, args=(stop, memory), daemon=True)
            sampler.start()
            started = time.monotonic()
            options = RunOptions(
                results=Path(tmp) / "results", progress=lambda _: None, figures=False, pcap="none"
            )
            outcome = run_scenario(path, options, repeat=args.repeat)
            wall = time.monotonic() - started
            stop.set()
            sampler.join()
            over = outcome.summary.get("over_nodes") or {}
            if not over:  # one mobile node: the aggregates of the handoffs themselves
                from testbed.scenario.many import aggregate

                _, over = aggregate(outcome.summary["handoffs"], ["mn"])
            i, r = over.get("interruption_ms") or {}, over.get("registration_ms") or {}

            def ms(value: float | None) -> str:
                return "-" if value is None else f"{value:.0f}"

            print(
                f"{nodes:>4} {over.get('handoffs', 0):>8} {over.get('recovered', 0):>5} "
                f"{ms(i.get('p50')):>7} {ms(i.get('p95')):>7} {ms(i.get('max')):>7} "
                f"{ms(r.get('p50')):>7} {ms(r.get('p95')):>7} {over.get('concurrent', 0):>6} "
                f"{wall:>6.1f} {memory.get('mn', 0) / 1024:>6.1f}M "
                f"{memory.get('ha', 0) / 1024:>6.1f}M",
                flush=True,
            )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
