"""ICMP echo prober with CLOCK_MONOTONIC times, for measuring when a tunnel carries again.

Run inside a node: ``python -m testbed.programs.pinger 10.0.1.10 --interval-ms 5``. Prints one
line per reply as it arrives: ``seq t_send_ns t_recv_ns`` (CLOCK_MONOTONIC is shared by all
network namespaces, so these compare directly with the testbed's event times). Prints
``ready`` once the socket is open. Ends on SIGTERM/SIGINT or after ``--count`` echoes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import socket
import struct
import sys
import time

from mipbase.stopping import StopFlag

ECHO_REQUEST, ECHO_REPLY = 8, 0
PAYLOAD = struct.Struct("!Q")  # the send time travels in the echo, so replies need no table


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, t_ns: int) -> bytes:
    body = PAYLOAD.pack(t_ns)
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq & 0xFFFF)
    return (
        struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(header + body), ident, seq & 0xFFFF) + body
    )


def parse_reply(packet: bytes, ident: int) -> tuple[int, int] | None:
    """(seq, t_send_ns) of our echo reply in a raw IPv4 packet, else None."""
    if len(packet) < 20:
        return None
    ihl = (packet[0] & 0x0F) * 4
    icmp = packet[ihl:]
    if len(icmp) < 8 + PAYLOAD.size:
        return None
    kind, _code, _sum, rid, seq = struct.unpack("!BBHHH", icmp[:8])
    if kind != ECHO_REPLY or rid != ident:
        return None
    (t_send,) = PAYLOAD.unpack(icmp[8 : 8 + PAYLOAD.size])
    return seq, t_send


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="testbed.programs.pinger")
    p.add_argument("target")
    p.add_argument("--interval-ms", type=float, default=5.0)
    p.add_argument("--count", type=int, default=0, help="0: until terminated")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)

    stop = StopFlag()
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    ident = os.getpid() & 0xFFFF
    interval = int(args.interval_ms * 1e6)
    print("ready", flush=True)
    seq, next_send = 0, time.monotonic_ns()
    while not stop and (args.count == 0 or seq < args.count):
        now = time.monotonic_ns()
        if now >= next_send:
            # no route while the node is between networks: that echo is simply lost
            with contextlib.suppress(OSError):
                sock.sendto(echo_request(ident, seq, now), (args.target, 0))
            seq += 1
            next_send += interval
            if next_send < now:  # fell behind (suspended): do not burst to catch up
                next_send = now + interval
        timeout = max(0.0, (next_send - time.monotonic_ns()) / 1e9)
        try:
            readable, _, _ = select.select([sock], [], [], timeout)
        except InterruptedError:
            continue
        if readable:
            while True:
                try:
                    packet = sock.recv(2048)
                except BlockingIOError:
                    break
                t_recv = time.monotonic_ns()
                reply = parse_reply(packet, ident)
                if reply is not None:
                    print(f"{reply[0]} {reply[1]} {t_recv}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
