"""Benchmark: what one route change costs on the handoff path, pyroute2 against raw
rtnetlink (mipbase/rtnl.py), in a namespace of its own (run as root).

    .venv/bin/python benchmarks/bench_rtnl.py [--n 2000]

Each sample replaces one route (``ip route replace 10.200.X.0/24 dev va``) and waits for
the kernel's answer:

- pyroute2 as the agents used it: ``IPRoute.route`` on a worker thread (pyroute2 0.9's
  synchronous API cannot run on a thread whose asyncio loop runs), the caller blocking on
  the result;
- pyroute2 called directly on the same thread (its floor, not usable from an agent's loop);
- one raw request per call (``Rtnl.call``);
- a batch of five raw requests in one ``sendmsg`` (a mode c move makes about five), per
  request.

Prints microseconds per request: median and p95.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mipbase import rtnl  # noqa: E402
from testbed import netns  # noqa: E402


def timed(fn, n: int, per: int = 1) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    samples = []
    for i in range(n):
        start = time.perf_counter_ns()
        fn(i)
        samples.append((time.perf_counter_ns() - start) / 1000 / per)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    name = f"tbbr{secrets.token_hex(3)}"
    netns.create(name)
    try:
        subprocess.run(
            ["ip", "-n", name, "link", "add", "va", "type", "veth", "peer", "name", "vb"],
            check=True,
        )
        subprocess.run(["ip", "-n", name, "link", "set", "va", "up"], check=True)
        with netns.entered(name):
            run(args.n)
    finally:
        netns.delete(name)


def run(n: int) -> None:
    import socket

    from pyroute2 import IPRoute

    index = socket.if_nametoindex("va")

    def dst(i: int) -> str:
        return f"10.200.{i % 250}.0/24"

    results = {}
    with ThreadPoolExecutor(max_workers=1) as pool:
        ipr = pool.submit(IPRoute).result()
        results["pyroute2 on a worker thread"] = timed(
            lambda i: pool.submit(lambda: ipr.route("replace", dst=dst(i), oif=index)).result(), n
        )
        pool.submit(ipr.close).result()
    with IPRoute() as direct:
        results["pyroute2 on the calling thread"] = timed(
            lambda i: direct.route("replace", dst=dst(i), oif=index), n
        )
    with rtnl.Rtnl() as link:
        results["raw request"] = timed(
            lambda i: link.call(rtnl.route("replace", dst(i), oif=index)), n
        )
        results["raw batch of 5, per request"] = timed(
            lambda i: link.run(
                [rtnl.route("replace", dst(i * 5 + k), oif=index) for k in range(5)]
            ),
            n // 5,
            per=5,
        )
    print(f"route replace, {n} samples, microseconds per request")
    print(f"{'how':34} {'median':>8} {'p95':>8}")
    for how, (median, p95) in results.items():
        print(f"{how:34} {median:8.1f} {p95:8.1f}")


if __name__ == "__main__":
    main()
