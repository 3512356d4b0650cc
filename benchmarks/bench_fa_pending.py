"""Benchmark of the foreign agent core under a pending-request flood (issue 20, finding 1).

    python benchmarks/bench_fa_pending.py [--sizes 2000,4000,8000,20000] [--max-pending N]

An attacker on the visited link sends unauthenticated Registration Requests with the FA's
care-of address and random home addresses; each becomes a pending request until the home
agent answers or ``pending_timeout`` (7 s) runs out. This feeds N such requests into
``ForeignAgent.handle_datagram`` (built beforehand, not timed), then fires every timer the
core armed, in time order, the way the agent driver does (a timer the core re-arms or
cancels is re-armed or cancelled here too), until nothing is pending. Prints per N:

- relay: seconds to take the N requests;
- expiry: seconds to expire them (the core alone, no sockets), and per entry;
- timers: how many timers the driver would hold at the peak;
- with ``--max-pending N``, how many requests the total limit evicted (the oldest make room
  for new ones; the default 0: no limit, as before the fix).

Before issue 20 every pending request had a timer of its own that the core found by scanning
all pending requests, and its timeout scanned them again (quadratic). Measured here (2 cores,
Python 3.11, no limit): 2k, 4k, 8k, 20k entries expired in 0.092, 0.332, 1.33, 10.4 s with
one driver timer each; now 0.019, 0.032, 0.16, 0.50 s (10-25 us each, a 78 built per entry)
with one timer. With the agent's default limit (``--max-pending 4096``) at most 4096 are
pending: 20k requests leave 4096 to expire, in 0.07 s.
"""

from __future__ import annotations

import argparse
import heapq
import inspect
import platform
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.mip.actions import CancelTimer, SetTimer  # noqa: E402
from agents.mip.fa import FaConfig, FaInterface, ForeignAgent  # noqa: E402
from agents.mip.messages import RegistrationRequest, encode  # noqa: E402

COA = "10.2.0.254"
HA = "10.1.0.1"


class TimerSim:
    """The driver's timers: name -> deadline, fired in deadline order."""

    def __init__(self) -> None:
        self.armed: dict[str, float] = {}
        self.heap: list[tuple[float, str]] = []
        self.peak = 0

    def feed(self, actions: list) -> None:
        for a in actions:
            if isinstance(a, SetTimer):
                self.armed[a.name] = a.at
                heapq.heappush(self.heap, (a.at, a.name))
            elif isinstance(a, CancelTimer):
                self.armed.pop(a.name, None)
        self.peak = max(self.peak, len(self.armed))

    def run(self, fa: ForeignAgent) -> int:
        fired = 0
        while self.heap:
            at, name = heapq.heappop(self.heap)
            if self.armed.get(name) != at:
                continue  # cancelled or re-armed later
            del self.armed[name]
            fired += 1
            self.feed(fa.handle_timer(name, at))
        return fired


def requests(n: int, seed: int) -> list[tuple[bytes, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        home = f"10.{rng.randrange(64, 128)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        ident = rng.getrandbits(64)
        req = RegistrationRequest(home, HA, COA, ident, rng.randrange(1, 601), 0x02, [])
        out.append((encode(req), home))
    return out


def make_fa(max_pending: int | None) -> ForeignAgent:
    kw = {}
    if "max_pending" in inspect.signature(FaConfig).parameters:
        kw["max_pending"] = max_pending
    cfg = FaConfig(COA, [FaInterface("eth1", COA, 24)], registration_lifetime=600, **kw)
    return ForeignAgent(cfg)


def run(n: int, max_pending: int | None, seed: int) -> dict:
    reqs = requests(n, seed)
    fa = make_fa(max_pending)
    timers = TimerSim()
    t0 = time.perf_counter()
    for i, (data, home) in enumerate(reqs):
        timers.feed(fa.handle_datagram(data, home, 434, i * 1e-4, "eth1"))
    relay = time.perf_counter() - t0
    pending = len(fa._pending)
    t0 = time.perf_counter()
    timers.run(fa)
    expiry = time.perf_counter() - t0
    assert not fa._pending, "pending requests left after every timer fired"
    return {
        "n": n,
        "pending": pending,
        "dropped": n - pending,
        "relay_s": relay,
        "expiry_s": expiry,
        "timers": timers.peak,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,4000,8000,20000")
    parser.add_argument(
        "--max-pending", type=int, default=0, help="the FA's total limit (0: none, as before)"
    )
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args(argv)
    limit = args.max_pending or None
    print(f"python {platform.python_version()}, {platform.machine()}; max_pending={limit}")
    print(
        f"{'N':>7} {'pending':>8} {'evicted':>8} {'relay s':>9} {'expiry s':>9} "
        f"{'us/entry':>9} {'timers':>7}"
    )
    for n in (int(s) for s in args.sizes.split(",")):
        r = run(n, limit, args.seed)
        per = r["expiry_s"] / max(r["pending"], 1) * 1e6
        print(
            f"{r['n']:>7} {r['pending']:>8} {r['dropped']:>8} {r['relay_s']:>9.3f} "
            f"{r['expiry_s']:>9.3f} {per:>9.1f} {r['timers']:>7}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
