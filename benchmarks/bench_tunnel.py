"""Throughput of the userspace Mobile IP data plane (agents/dataplane), as root.

    python benchmarks/bench_tunnel.py [--seconds 5] [--repeat 1] [--reverse] [--min-mbps 500]

Builds the four-namespace lab of agents/dataplane/testnet.py (random prefix; rt also routes
the home network here, for the baseline), starts an HA engine (key dst) and a mobile-node
engine (key src, reverse tunnelling) as `python -m agents.dataplane.demo` processes, and
measures with iperf3 (TCP, one stream) from the cn:

- plain: cn -> care-of address 10.3.0.10, plain kernel routing over the same veths;
- ipip:  cn -> home address 10.1.0.10, HA -> MN IP in IP (RFC 2003), ACKs reverse-tunnelled;
- udp:   the same through RFC 3519 UDP encapsulation (MIP Tunnel Data on port 434);
- with --reverse also MN -> cn (iperf3 -R: data through the reverse tunnel).

Also ping RTT (20 probes) on each path and the CPU time the two engines used per run.
Everything it creates (namespaces, processes) is removed on exit, by name and by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.dataplane.packets import UDP_MTU  # noqa: E402
from agents.dataplane.testnet import COA, HOME, TunnelLab  # noqa: E402

IPERF3 = shutil.which("iperf3") or "/usr/bin/iperf3"
PING = shutil.which("ping") or "/usr/bin/ping"
PORT = 5201
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def iperf(lab: TunnelLab, target: str, seconds: float, reverse: bool) -> tuple[float, int]:
    argv = [IPERF3, "-c", target, "-p", str(PORT), "-t", str(seconds), "-J"]
    if reverse:
        argv.append("-R")
    res = lab.run(lab.cn, *argv, timeout=seconds + 30)
    data = json.loads(res.stdout)
    if "error" in data:
        raise RuntimeError(f"iperf3: {data['error']}")
    end = data["end"]
    return end["sum_received"]["bits_per_second"] / 1e6, int(end["sum_sent"].get("retransmits", 0))


def ping_rtt(lab: TunnelLab, target: str) -> float:
    res = lab.run(lab.cn, PING, "-n", "-c", "20", "-i", "0.01", "-W", "1", target)
    rtts = [float(w.split("=")[1]) for w in res.stdout.split() if w.startswith("time=")]
    return statistics.median(rtts) if rtts else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=1, help="runs per path (median reported)")
    ap.add_argument("--reverse", action="store_true", help="also MN -> cn (iperf3 -R)")
    ap.add_argument("--mtu", type=int, default=UDP_MTU, help="TUN MTU (1468 fits UDP too)")
    ap.add_argument("--min-mbps", type=float, default=500.0, help="goal for the tunnels")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    if not os.path.exists(IPERF3):
        print(f"no iperf3 at {IPERF3}", file=sys.stderr)
        return 2

    rows: list[tuple[str, float, int, float, float]] = []
    with TunnelLab(route_home=True) as lab:
        lab.build()
        ha, mn = lab.start_engines(mtu=args.mtu)
        server = lab.popen(
            lab.mn, IPERF3, "-s", "-p", str(PORT),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.3)
        directions = [False, True] if args.reverse else [False]
        for path, target in (("plain", COA), ("ipip", HOME), ("udp", HOME)):
            if path != "plain":
                lab.use(path)
            rtt = ping_rtt(lab, target)
            for reverse in directions:
                runs = []
                for _ in range(args.repeat):
                    cpu0 = cpu_seconds(ha.pid) + cpu_seconds(mn.pid)
                    mbps, retr = iperf(lab, target, args.seconds, reverse)
                    cpu = (cpu_seconds(ha.pid) + cpu_seconds(mn.pid) - cpu0) / args.seconds
                    runs.append((mbps, retr, cpu))
                mbps = statistics.median(r[0] for r in runs)
                retr = int(statistics.median(r[1] for r in runs))
                cpu = statistics.median(r[2] for r in runs)
                name = f"{path} {'mn->cn' if reverse else 'cn->mn'}"
                rows.append((name, mbps, retr, rtt, cpu))
        counters = {"ha": ha.counters(), "mn": mn.counters()}
        server.terminate()
        server.wait(timeout=5)

    print(f"\nMobile IP data plane, iperf3 TCP 1 stream, {args.seconds:g} s x {args.repeat}, "
          f"TUN MTU {args.mtu}, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'path':<16}{'Mbit/s':>10}{'retrans':>9}{'RTT ms':>9}{'engine CPU':>12}")
    for name, mbps, retr, rtt, cpu in rows:
        cpu_s = "-" if name.startswith("plain") else f"{cpu * 100:.0f} %"
        print(f"{name:<16}{mbps:>10.0f}{retr:>9}{rtt:>9.3f}{cpu_s:>12}")
    print(f"\nengine counters: {json.dumps(counters)}")
    tunnel_rates = [r[1] for r in rows if not r[0].startswith("plain")]
    ok = min(tunnel_rates) >= args.min_mbps
    print(f"goal: tunnels >= {args.min_mbps:g} Mbit/s: {'met' if ok else 'NOT met'} "
          f"(slowest {min(tunnel_rates):.0f})")  # fmt: skip
    print(f"rerun: sudo {sys.executable} benchmarks/bench_tunnel.py " + " ".join(sys.argv[1:]))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
