"""Bulk TCP both ways between the mobile node and a correspondent, once the MN is outside.

Run as a scenario's ``kind: command`` services (see ``test_boundary.py``)::

    python bulktcp.py server --port 9100
    python bulktcp.py client --to CN:9100 --bind HOME --events GLOB --size 1048576

The client opens one connection at once (the MN still at home: the MSS of a 1500-byte
link), waits until the MN is outside in mode ``mc`` (its Mobile IP source rule, priority
120, is installed), opens a second connection from there, and on each moves ``--size``
bytes from the correspondent to the MN and then from the MN to the correspondent. A
direction that makes no progress for ``--stall`` seconds fails, and so does its connection
(the rest of its transfers are skipped). Events (``bulk_phase`` per transfer, then
``bulk_done`` with ``ok``) go to the events file of the run (``--events``: a path or a glob
that matches one events directory) and to stdout.

Wire protocol, per request: the client sends ``D`` or ``U`` and 8 bytes of length. ``D``:
the server sends that many bytes. ``U``: the client sends them, the server answers with
8 bytes, the count it received.
"""

from __future__ import annotations

import argparse
import glob
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

_REQ = struct.Struct("!cQ")
_ACK = struct.Struct("!Q")
CHUNK = 65536


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        part = conn.recv(n - len(data))
        if not part:
            raise ConnectionError("closed")
        data += part
    return bytes(data)


def _serve(conn: socket.socket) -> None:
    with conn:
        payload = bytes(CHUNK)
        while True:
            try:
                op, size = _REQ.unpack(_recv_exact(conn, _REQ.size))
            except (ConnectionError, OSError):
                return
            try:
                if op == b"D":
                    left = size
                    while left:
                        left -= conn.send(payload[: min(left, CHUNK)])
                elif op == b"U":
                    got = 0
                    while got < size:
                        part = conn.recv(min(CHUNK, size - got))
                        if not part:
                            return
                        got += len(part)
                    conn.sendall(_ACK.pack(got))
                else:
                    return
            except OSError:
                return


def server(args: argparse.Namespace) -> int:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", args.port))
    listener.listen(4)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_serve, args=(conn,), daemon=True).start()


class Events:
    def __init__(self, where: str | None, node: str) -> None:
        self.node = node
        self.file = None
        if where:
            path = Path(where)
            if any(c in where for c in "*?["):
                dirs = sorted(glob.glob(where))
                if len(dirs) != 1:
                    raise SystemExit(f"--events {where!r} matches {dirs}, not one directory")
                path = Path(dirs[0]) / "bulk-tcp.jsonl"
            self.file = path.open("a", buffering=1)

    def emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"t_ns": time.monotonic_ns(), "node": self.node, "event": event,
                           **fields})  # fmt: skip
        print(line, flush=True)
        if self.file is not None:
            self.file.write(line + "\n")


def _connect(args: argparse.Namespace, deadline_s: float = 10.0) -> socket.socket:
    host, port = args.to.rsplit(":", 1)
    end = time.monotonic() + deadline_s
    while True:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if args.bind:
            sock.bind((args.bind, 0))
        try:
            sock.settimeout(2.0)
            sock.connect((host, int(port)))
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def _mss(sock: socket.socket) -> int | None:
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
    except OSError:
        return None


def _down(sock: socket.socket, size: int) -> int:
    sock.sendall(_REQ.pack(b"D", size))
    got = 0
    while got < size:
        part = sock.recv(min(CHUNK, size - got))  # socket.timeout: no progress
        if not part:
            raise ConnectionError(f"closed after {got} bytes")
        got += len(part)
    return got


def _up(sock: socket.socket, size: int) -> int:
    sock.sendall(_REQ.pack(b"U", size))
    payload = bytes(CHUNK)
    left = size
    while left:
        left -= sock.send(payload[: min(left, CHUNK)])  # socket.timeout: window stuck
    (acked,) = _ACK.unpack(_recv_exact(sock, _ACK.size))
    return acked


def _outside() -> bool:
    """Mode mc: the MN's data plane steers its home address into table 121 (priority 120)."""
    out = subprocess.run(
        ["ip", "-4", "rule", "show", "priority", "120"], capture_output=True, text=True
    ).stdout
    return "lookup" in out


def client(args: argparse.Namespace) -> int:
    events = Events(args.events, args.node)
    conns: dict[str, socket.socket] = {"home": _connect(args)}
    events.emit("bulk_connected", connection="home", mss=_mss(conns["home"]))
    end = time.monotonic() + args.wait
    while not _outside():
        if time.monotonic() > end:
            events.emit("bulk_done", ok=False, error="never outside in mode mc")
            return 1
        time.sleep(0.05)
    time.sleep(args.delay)
    events.emit("bulk_outside")
    try:
        conns["outside"] = _connect(args, 5.0)
    except OSError as exc:
        events.emit("bulk_phase", connection="outside", direction="connect", ok=False,
                    error=str(exc))  # fmt: skip
    results = []
    for name, sock in conns.items():
        sock.settimeout(args.stall)
        for direction, run in (("down", _down), ("up", _up)):
            started = time.monotonic()
            try:
                moved = run(sock, args.size)
                ok, error = moved == args.size, None
            except (OSError, ConnectionError) as exc:
                moved, ok, error = None, False, f"{type(exc).__name__}: {exc}"
            seconds = round(time.monotonic() - started, 3)
            result = {"connection": name, "direction": direction, "ok": ok, "bytes": moved,
                      "seconds": seconds, "mss": _mss(sock), "error": error}  # fmt: skip
            results.append(result)
            events.emit("bulk_phase", **result)
            if not ok:
                break
        sock.close()
    ok = len(results) == 4 and all(r["ok"] for r in results)
    events.emit("bulk_done", ok=ok, phases=results)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bulktcp")
    parser.add_argument("role", choices=["server", "client"])
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--to")
    parser.add_argument("--bind")
    parser.add_argument("--events")
    parser.add_argument("--node", default="mn")
    parser.add_argument("--size", type=int, default=1 << 20)
    parser.add_argument("--stall", type=float, default=5.0, help="s without progress: failed")
    parser.add_argument("--wait", type=float, default=30.0, help="s to wait for mode mc")
    parser.add_argument("--delay", type=float, default=0.3, help="s after mode mc is set up")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return server(args) if args.role == "server" else client(args)


if __name__ == "__main__":
    sys.exit(main())
