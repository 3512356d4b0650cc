"""Probe endpoint: sends one sequence-numbered, timestamped UDP stream and records another.

Run inside a node: ``python -m testbed.programs.probe --out-stream down --to 10.1.0.100:9000
--in-stream up --listen 9000 --interval-ms 2 --dir RUN/probes``. Each datagram carries a
magic, the sequence number and the send time on CLOCK_MONOTONIC, which all network
namespaces share, so ``t_recv - t_send`` is an exact one-way delay and gaps are exact.

Received packets are appended to ``DIR/<in-stream>.csv`` (``seq,t_send_ns,t_recv_ns,src,sport``);
the number sent goes to ``DIR/<out-stream>.sent.json`` at exit. SIGUSR1 stops sending (the
rest in flight still arrives), SIGTERM/SIGINT end the process and flush both files.
Datagrams that are not probes (wrong magic or size) are counted and dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path

from mipbase.stopping import StopFlag

MAGIC = b"TBPR"
HEADER = struct.Struct("!4sIQ")  # magic, seq, t_send_ns
FLUSH_NS = 100_000_000  # received records reach the file at least this often


IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # linux/in.h


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="testbed.programs.probe")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--out-stream", help="name of the stream this endpoint sends")
    p.add_argument("--to", help="ADDRESS:PORT to send to")
    p.add_argument("--source", help="send from this address (a mobile node's home address)")
    p.add_argument("--in-stream", help="name of the stream this endpoint receives")
    p.add_argument("--listen", type=int, help="UDP port to receive on")
    p.add_argument("--interval-ms", type=float, default=2.0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--start-ns", type=int, default=0, help="CLOCK_MONOTONIC time to start")
    p.add_argument("--ready", type=Path, help="created once the sockets are bound")
    p.add_argument(
        "--start-file",
        type=Path,
        help="send from the CLOCK_MONOTONIC time written here (waits for it; --start-ns ignored)",
    )
    return p.parse_args(argv)


CATCH_UP_NS = 100_000_000  # late by at most this much: the missed slots go now


def next_slot(scheduled: int, now: int, interval_ns: int) -> int:
    """When to send after the packet scheduled at ``scheduled`` went at ``now``. A sender
    the scheduler kept waiting a few ms (a busy 2-core machine at a move: stalls up to
    17 ms measured) sends the slots it missed at once, so a stream keeps its rate and the
    packets an outage cost stay ~outage/interval: skipping them made a 300 ms gap cost
    139 packets instead of ~150. One stopped for longer starts again from now (no burst
    of everything it missed)."""
    following = scheduled + interval_ns
    if following < now - CATCH_UP_NS:
        return now + interval_ns
    return following


def _start_time(path: Path, now: int) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return max(now, int(text)) if text.isdigit() else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    stop = StopFlag()
    sending = True

    def on_drain(_signum: int, _frame: object) -> None:
        # stop sending but keep receiving, so packets in flight are not counted as lost
        nonlocal sending
        sending = False

    signal.signal(signal.SIGUSR1, on_drain)

    rx = tx = None
    record = None
    if args.listen:
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        rx.bind(("0.0.0.0", args.listen))
        rx.setblocking(False)
        record = open(args.dir / f"{args.in_stream}.csv", "w", buffering=1 << 16)  # noqa: SIM115
        record.write("seq,t_send_ns,t_recv_ns,src,sport\n")
    target = None
    if args.to:
        host, port = args.to.rsplit(":", 1)
        target = (host, int(port))
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if args.source:
            # Sent from the home address as a mobile node's applications do; while the
            # address is on no interface (mid-move) the kernel refuses the send, which is
            # counted like a lost packet, rather than leaking it untunnelled. Bound with
            # IP_FREEBIND: a probe that starts while the address is away (a slow start, a
            # move) runs on instead of dying at bind() and leaving no stream at all.
            tx.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
            tx.bind((args.source, 0))
        tx.setblocking(False)
    if args.ready is not None:
        args.ready.touch()
    padding = bytes(max(0, args.size - HEADER.size))
    interval_ns = int(args.interval_ms * 1e6)
    # with --start-file: not before the runner has seen both ends bound and says when
    next_send: int | None = None if args.start_file else max(time.monotonic_ns(), args.start_ns)
    seq = sent = send_errors = foreign = 0
    flushed_ns = 0
    rx_list = [rx] if rx else []
    try:
        while not stop:
            now = time.monotonic_ns()
            if not sending and tx is not None:
                tx.close()
                tx = None
            if next_send is None and tx is not None:
                next_send = _start_time(args.start_file, now)
            if tx is not None and next_send is not None and now >= next_send:
                try:
                    tx.sendto(HEADER.pack(MAGIC, seq, now) + padding, target)
                    sent += 1
                except OSError:
                    # no route / unreachable while the node moves: the packet is lost,
                    # exactly as the metrics should see it
                    send_errors += 1
                seq += 1
                next_send = next_slot(next_send, now, interval_ns)
                continue
            if tx is None:
                wait = 0.05
            elif next_send is None:
                wait = 0.005  # looking for the start time
            else:
                wait = (next_send - now) / 1e9
            try:
                readable, _, _ = select.select(rx_list, [], [], max(wait, 0))
            except InterruptedError:
                continue
            if readable and rx is not None and record is not None:
                while True:
                    try:
                        data, src = rx.recvfrom(2048)
                    except (BlockingIOError, InterruptedError):
                        break
                    t_recv = time.monotonic_ns()
                    if len(data) < HEADER.size or data[:4] != MAGIC:
                        foreign += 1
                        continue
                    _, rseq, t_send = HEADER.unpack_from(data)
                    record.write(f"{rseq},{t_send},{t_recv},{src[0]},{src[1]}\n")
            if record is not None and now - flushed_ns >= FLUSH_NS:
                # readers follow the records live (testbed watch): on disk within 0.1 s
                record.flush()
                flushed_ns = now
    finally:
        if record is not None:
            record.close()
        if args.out_stream:
            info = {
                "sent": sent,
                "send_errors": send_errors,
                "last_seq": seq - 1,
                "interval_ms": args.interval_ms,
                "foreign": foreign,
                "pid": os.getpid(),
            }
            tmp = args.dir / f".{args.out_stream}.sent.json"
            tmp.write_text(json.dumps(info))
            os.replace(tmp, args.dir / f"{args.out_stream}.sent.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
