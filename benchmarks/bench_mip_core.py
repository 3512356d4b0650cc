"""Benchmark of the Mobile IPv4 protocol core (agents/mip), plain Python, one core.

    python benchmarks/bench_mip_core.py [--nodes 10000] [--rounds 3] [--codec-n 50000]

Prints:

- codec: encode + decode + verify of a Registration Request with MN-HA authentication
  (HMAC-MD5), per second;
- home agent: requests per second through ``HomeAgent.handle_datagram`` for ``--nodes``
  distinct mobile nodes -- first registrations (new bindings: tunnel, proxy ARP, events) and
  renewals (same care-of address) separately, each request authenticated, replay-checked,
  answered with an authenticated reply; the requests are built beforehand and not timed;
- memory per binding (tracemalloc: bytes allocated by the home agent while the cache filled,
  divided by the number of bindings; the mobile node table is allocated before).

Goal (issue 4): at least 20,000 authenticated requests per second through the HA core.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.mip.auth import SecurityAssociation  # noqa: E402
from agents.mip.extensions import AuthExtension  # noqa: E402
from agents.mip.ha import HaConfig, HomeAgent, MobileNodeConfig  # noqa: E402
from agents.mip.messages import RegistrationRequest, decode_udp, encode  # noqa: E402
from agents.mip.replay import ntp_from_unix  # noqa: E402

WALL = 1_700_000_000.0
HA_ADDR = "10.0.0.1"


def home_of(i: int) -> str:
    return f"10.{64 + ((i >> 16) & 63)}.{(i >> 8) & 255}.{i & 255}"


def key_of(i: int) -> bytes:
    return i.to_bytes(4, "big") * 4


def bench_codec(n: int) -> float:
    sa = SecurityAssociation(256, bytes(range(16)))
    sas = {256: sa}
    ident = ntp_from_unix(WALL)
    t0 = time.perf_counter()
    for k in range(n):
        req = RegistrationRequest(
            "10.1.0.7", "10.1.0.1", "192.0.2.7", ident + k, 1800, 0x02, [AuthExtension(32, 256)]
        )
        data = encode(req, sas)
        msg = decode_udp(data)
        ext = msg.extensions[-1]
        if not sa.verify(data[: ext.offset + 6], ext.authenticator):  # type: ignore[union-attr]
            raise AssertionError("authenticator did not verify")
    return n / (time.perf_counter() - t0)


def build_requests(nodes: int, ident_base: int) -> list[tuple[bytes, str]]:
    out = []
    for i in range(nodes):
        sa = SecurityAssociation(256 + i, key_of(i))
        coa = f"198.{18 + ((i >> 16) & 1)}.{(i >> 8) & 255}.{i & 255}"
        req = RegistrationRequest(
            home_of(i), HA_ADDR, coa, ident_base + i, 600, 0, [AuthExtension(32, 256 + i)]
        )
        out.append((encode(req, {sa.spi: sa}), coa))
    return out


def run_ha(ha: HomeAgent, requests: list[tuple[bytes, str]], now: float) -> float:
    handle = ha.handle_datagram
    gc.collect()
    t0 = time.perf_counter()
    for payload, coa in requests:
        handle(payload, coa, 434, now)
    return len(requests) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3, help="renewal rounds (best is reported)")
    ap.add_argument("--codec-n", type=int, default=50_000)
    args = ap.parse_args()

    print(f"# Python {platform.python_version()} on {platform.machine()}, one core")
    print(f"codec  encode+decode+verify (RRQ + MN-HA HMAC-MD5): {bench_codec(args.codec_n):,.0f}/s")

    mns = [MobileNodeConfig(home_of(i), 256 + i, key_of(i)) for i in range(args.nodes)]
    ha = HomeAgent(
        HaConfig(HA_ADDR, "10.64.0.0/10", mns, max_lifetime=1800, replay_window=3600),
        wallclock=lambda: WALL,
    )
    base = ntp_from_unix(WALL - 600)
    first = build_requests(args.nodes, base)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    rate_new = run_ha(ha, first, 0.0)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    assert ha.binding_count == args.nodes, ha.counters
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    # Timing without tracemalloc overhead: a fresh agent.
    ha2 = HomeAgent(
        HaConfig(HA_ADDR, "10.64.0.0/10", mns, max_lifetime=1800, replay_window=3600),
        wallclock=lambda: WALL,
    )
    rate_new = run_ha(ha2, first, 0.0)
    renew_rates = []
    for r in range(args.rounds):
        reqs = build_requests(args.nodes, base + (r + 1) * (1 << 32))
        renew_rates.append(run_ha(ha2, reqs, 10.0 * (r + 1)))
    assert ha2.counters["accepted"] == args.nodes * (args.rounds + 1), ha2.counters
    print(f"ha     first registrations ({args.nodes:,} MNs, new bindings): {rate_new:,.0f} req/s")
    best = max(renew_rates)
    print(f"ha     renewals ({args.nodes:,} MNs, best of {args.rounds}): {best:,.0f} req/s")
    print(f"ha     memory per binding (tracemalloc): {grown / args.nodes:,.0f} bytes")
    goal = min(rate_new, best) >= 20_000
    print(f"goal   >= 20,000 authenticated requests/s: {'met' if goal else 'NOT met'}")
    print(f"rerun: python benchmarks/bench_mip_core.py --nodes {args.nodes} --rounds {args.rounds}")


if __name__ == "__main__":
    main()
