"""A plain DHCP host: on every carrier-on, get a lease from the network's real DHCP server.

``python -m agents.dhcp.watch --iface eth0 --node mn --events FILE`` runs in the
node's namespace. On carrier off it forgets its addresses (as NetworkManager does), on
carrier on it runs DHCP (our sans-I/O client, ``agents.dhcp``). Every step is a structured
event. It is the "no mobility support" baseline: the home address is gone after a move.
"""

from __future__ import annotations

import argparse
import selectors
import subprocess
import sys
import time

from agents.dhcp.driver import DhcpDriver
from mipbase.events import EventWriter
from mipbase.linkwatch import LinkWatcher
from mipbase.stopping import StopFlag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.dhcp.watch")
    parser.add_argument("--iface", default="eth0")
    parser.add_argument("--node", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--initial", action="store_true", help="also get a lease at start")
    args = parser.parse_args(argv)
    events = EventWriter.open(args.events, args.node)
    stop = StopFlag()

    links = LinkWatcher(args.iface)
    driver = DhcpDriver(args.iface, on_event=events.record)
    events.emit("dhcp_watch_started", iface=args.iface, carrier=links.carrier)
    if args.initial and links.carrier:
        driver.start()
    selector = selectors.DefaultSelector()
    selector.register(links.fileno(), selectors.EVENT_READ, "netlink")
    selector.register(driver.fileno(), selectors.EVENT_READ, "dhcp")
    try:
        while not stop:
            deadline = driver.next_deadline()
            timeout = 0.5 if deadline is None else max(0.0, deadline - time.monotonic())
            for key, _ in selector.select(timeout):
                if key.data == "dhcp":
                    driver.on_readable()
                    continue
                for now_up in links.read():
                    if now_up:
                        events.emit("carrier_up", iface=args.iface, phase="carrier_up")
                        events.emit("movement_detected", iface=args.iface, trigger="l2")
                        driver.start()
                    else:
                        events.emit("carrier_down", iface=args.iface, phase="carrier_down")
                        driver.link_down()
                        # a host without mobility support drops its addresses with the link
                        subprocess.run(["ip", "addr", "flush", "dev", args.iface], check=False)
            deadline = driver.next_deadline()
            if deadline is not None and deadline <= time.monotonic():
                driver.on_timer()
    finally:
        events.emit("dhcp_watch_stopped")
        driver.close()
        links.close()
        events.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
