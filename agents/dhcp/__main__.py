"""``python -m agents.dhcp IFACE``: get a lease in the current namespace, print it as JSON.

Exit status 0 with one JSON line on stdout; 1 with one line on stderr when no lease came in
time (or the interface/sockets are unusable). ``--release`` gives the lease back (DHCPRELEASE,
address and route removed) right after printing it -- for measurements that must not hold
pool addresses.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from agents.dhcp.driver import DhcpDriver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.dhcp", description=__doc__)
    parser.add_argument("iface")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--no-configure", action="store_true", help="do not touch the link")
    parser.add_argument("--release", action="store_true", help="release after printing")
    parser.add_argument(
        "--initial-timeout", type=float, default=0.25, help="first retransmission (s)"
    )
    parser.add_argument("--events", action="store_true", help="JSON event lines on stderr")
    parser.add_argument(
        "--no-rapid-commit",
        action="store_true",
        help="do not ask for Rapid Commit (RFC 4039): always DISCOVER/OFFER/REQUEST/ACK",
    )
    args = parser.parse_args(argv)

    def show(record: dict[str, Any]) -> None:
        print(json.dumps(record), file=sys.stderr, flush=True)

    t0 = time.monotonic_ns()
    try:
        drv = DhcpDriver(
            args.iface,
            configure=not args.no_configure,
            on_event=show if args.events else None,
            initial_timeout=args.initial_timeout,
            max_timeout=max(2.0, args.initial_timeout),
            rapid_commit=not args.no_rapid_commit,
        )
    except (OSError, ValueError) as exc:
        print(f"dhcp: cannot use {args.iface}: {exc}", file=sys.stderr)
        return 1
    with drv:
        t_start = time.monotonic_ns()
        drv.start()
        if not drv.run(lambda: drv.lease is not None, args.timeout):
            print(
                f"dhcp: no lease on {args.iface} within {args.timeout:g} s ({drv.describe()})",
                file=sys.stderr,
            )
            return 1
        lease = drv.lease
        assert lease is not None
        bound = next(e for e in reversed(drv.events) if e["event"] == "dhcp_bound")
        t_bound = bound["t_ns"]
        t_ack = next(e["t_ns"] for e in reversed(drv.events) if e["event"] == "dhcp_ack")
        if not args.no_configure and not bound["configured"]:
            failed = [e for e in drv.events if e["event"] == "dhcp_configure_failed"]
            error = failed[-1]["error"] if failed else "unknown error"
            print(f"dhcp: got {lease.address} but could not configure it: {error}", file=sys.stderr)
            return 1
        record = {
            "ifname": args.iface,
            **lease.to_dict(),
            "configured": bound["configured"],
            "rapid_commit": bound["rapid_commit"],
            "t_start_ns": t_start,
            "t_bound_ns": t_bound,
            "ack_ms": round((t_ack - t_start) / 1e6, 3),
            "elapsed_ms": round((t_bound - t_start) / 1e6, 3),
            "setup_ms": round((t_start - t0) / 1e6, 3),
        }
        print(json.dumps(record), flush=True)
        if args.release:
            drv.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
