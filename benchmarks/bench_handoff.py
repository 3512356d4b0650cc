"""Benchmark: handoff interruption per mode (p50/p95 over >= 20 moves) next to the protocol
floor for the configured link delays, as a ratio.

Run as root:  .venv/bin/python benchmarks/bench_handoff.py [--repeat 7]

roam-inside gives one f, one c and one home handoff per repetition; mip-nat one c/IP-in-IP
from home, one c/UDP behind the NAT, one c/IP-in-IP back and one home. The floor of each
kind is what the link delays alone impose with an L2 trigger (see FLOORS): movement
detection by solicitation or DHCP (2 RTT), the registration round trip, and the first data
packet's one-way trip from the home agent. ARP, processing and the userspace data plane
come on top; the ratio says how much.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.scenario import metrics  # noqa: E402
from testbed.scenario.execute import run_scenario  # noqa: E402
from testbed.scenario.runner import RunOptions  # noqa: E402

# ms, from the default delays (per attachment and direction: intranet 1 ms, internet 10 ms,
# access networks 5 ms):
FLOORS = {
    # solicitation RTT MN<->FA 4 + registration MN->FA->HA->FA->MN 12 + first packet HA->MN 6
    ("roam-inside", "home->visited", "f"): 22.0,
    # DHCP 2 RTT MN<->core 8 + registration MN<->HA 8 + first packet HA->MN 4
    ("roam-inside", "visited->office", "c"): 20.0,
    # solicitation RTT MN<->HA 4 + deregistration 4 + first packet 2
    ("roam-inside", "office->home", "home"): 10.0,
    # DHCP 2 RTT MN<->isp 20 + registration MN<->HA 64 + first packet 32
    ("mip-nat", "home->public", "c"): 116.0,
    # DHCP 2 RTT MN<->nat 20 + registration 64 + first packet 32
    ("mip-nat", "public->hotspot", "c"): 116.0,
    ("mip-nat", "hotspot->public", "c"): 116.0,
    ("mip-nat", "public->home", "home"): 10.0,
    # RFC 5266 (roam-nat): mn<->gw one way 32 ms, mn<->HA through the tunnel ~36 ms.
    # DHCP 40 + IKE_SA_INIT/IKE_AUTH 128 + registration through the tunnel 72 + first packet 36
    ("roam-nat", "visited->public", "mc"): 276.0,
    # DHCP 40 + strongSwan's fixed 100 ms roam delay + MOBIKE exchange 64 + first packet 36
    ("roam-nat", "public->hotspot", "mc"): 240.0,
    ("roam-nat", "hotspot->visited", "f"): 22.0,
    ("roam-nat", "home->visited", "f"): 22.0,
    ("roam-nat", "visited->home", "home"): 10.0,
    # without MOBIKE the move into the NAT is a new IKE SA: DHCP 40 + IKE 128 + first 36
    ("roam-nat-nomobike", "public->hotspot", "mc"): 204.0,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7, help="repetitions per scenario")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        default=["roam-inside", "mip-nat", "roam-nat", "roam-nat-nomobike"],
    )
    args = parser.parse_args()
    print(f"# {sys.executable} {' '.join(sys.argv)}")
    samples: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    failures = 0
    with tempfile.TemporaryDirectory() as results:
        options = RunOptions(results=Path(results), pcap="none", progress=lambda _: None)
        for name in args.scenarios:
            outcome = run_scenario(ROOT / "scenarios" / f"{name}.yaml", options, repeat=args.repeat)
            failures += 0 if outcome.passed else 1
            for h in outcome.summary["handoffs"]:
                key = (name, f"{h['from']}->{h['to']}", h["mode"])
                if h["interruption_ms"] is not None:
                    samples[key].append(h["interruption_ms"])
    print(
        f"{'scenario':<12} {'move':<18} {'mode':<5} {'n':>3} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'floor':>6} {'p95/floor':>9}"
    )
    for key, values in sorted(samples.items()):
        floor = FLOORS.get(key)
        p50, p95 = metrics.percentile(values, 50), metrics.percentile(values, 95)
        ratio = f"{p95 / floor:9.2f}" if floor and p95 else "        -"
        print(
            f"{key[0]:<12} {key[1]:<18} {key[2]:<5} {len(values):>3} {p50:8.1f} {p95:8.1f} "
            f"{floor or 0:6.0f} {ratio}"
        )
    mobike = samples.get(("roam-nat", "public->hotspot", "mc"))
    without = samples.get(("roam-nat-nomobike", "public->hotspot", "mc"))
    if mobike and without:
        ratio = metrics.percentile(without, 95) / metrics.percentile(mobike, 95)
        print(f"outside move into the NAT, p95 without MOBIKE / with MOBIKE: {ratio:.2f}")
    if failures:
        print(f"({failures} scenario(s) had failed expectations)")


if __name__ == "__main__":
    main()
