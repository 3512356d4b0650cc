"""TCP probe: one long-lived connection from the mobile node (bound to its home address) to
the correspondent, which must survive every move.

``python -m testbed.programs.tcpprobe server --port P --dir D --node N`` on the correspondent;
``python -m testbed.programs.tcpprobe client --to ADDR:P --bind HOME --dir D --node N`` on the MN.
The client writes 1 KiB every ``--interval-ms``; the server records cumulative bytes every
50 ms in ``D/tcp.csv`` (``t_ns,bytes``). Both report ``tcp_connected`` / ``tcp_error`` /
``tcp_closed`` events to ``D/../events/tcp-<role>.jsonl``. A connection that breaks is
not re-opened: an error is exactly what a mobility scenario must not produce.
"""

from __future__ import annotations

import argparse
import select
import signal
import socket
import sys
import time
from pathlib import Path

from mipbase.events import EventWriter
from mipbase.stopping import StopFlag

SAMPLE_NS = 50_000_000


def _stop_flag() -> StopFlag:
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # the runner's "stop sending" is for UDP
    return StopFlag()


def server(args: argparse.Namespace, events: EventWriter) -> int:
    stop = _stop_flag()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", args.port))
    listener.listen(1)
    listener.settimeout(0.2)
    conn = None
    while conn is None and not stop:
        try:
            conn, peer = listener.accept()
        except TimeoutError:
            continue
        events.emit("tcp_connected", role="server", peer=f"{peer[0]}:{peer[1]}")
    total = 0
    next_sample = time.monotonic_ns() + SAMPLE_NS
    with (args.dir / "tcp.csv").open("w", buffering=1) as record:
        record.write("t_ns,bytes\n")
        while conn is not None and not stop:
            readable, _, _ = select.select([conn], [], [], 0.05)
            if readable:
                try:
                    data = conn.recv(65536)
                except OSError as exc:
                    events.emit("tcp_error", role="server", error=exc.strerror or str(exc))
                    break
                if not data:
                    events.emit("tcp_closed", role="server", bytes=total)
                    break
                total += len(data)
            now = time.monotonic_ns()
            if now >= next_sample:
                record.write(f"{now},{total}\n")
                next_sample = now + SAMPLE_NS
    events.emit("tcp_stopped", role="server", bytes=total)
    return 0


def _client_socket(bind: str | None) -> socket.socket:
    """From the home address even while it is away (IP_FREEBIND, as the UDP probe): the
    connection attempts fail until it is back, the client does not die at bind()."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if bind:
        sock.setsockopt(socket.SOL_IP, getattr(socket, "IP_FREEBIND", 15), 1)
        sock.bind((bind, 0))
    return sock


def client(args: argparse.Namespace, events: EventWriter) -> int:
    stop = _stop_flag()
    host, port = args.to.rsplit(":", 1)
    sock = _client_socket(args.bind)
    deadline = time.monotonic() + 10
    while not stop:
        try:
            sock.connect((host, int(port)))
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                events.emit("tcp_error", role="client", error=f"connect: {exc}")
                return 1
            sock.close()
            sock = _client_socket(args.bind)
            time.sleep(0.1)
    events.emit("tcp_connected", role="client", local=f"{sock.getsockname()}")
    chunk = bytes(1024)
    sent = 0
    sock.setblocking(False)
    while not stop:
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            pass  # the window is full while a move is in progress: that is fine
        except OSError as exc:
            events.emit("tcp_error", role="client", error=exc.strerror or str(exc), sent=sent)
            return 1
        time.sleep(args.interval_ms / 1000)
    events.emit("tcp_stopped", role="client", sent=sent)
    sock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="testbed.programs.tcpprobe")
    parser.add_argument("role", choices=["server", "client"])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--to")
    parser.add_argument("--bind")
    parser.add_argument("--interval-ms", type=float, default=10.0)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    events = EventWriter.open(args.events, args.node)
    try:
        return server(args, events) if args.role == "server" else client(args, events)
    finally:
        events.close()


if __name__ == "__main__":
    sys.exit(main())
