"""The relay's control socket, both ends: the server in the relay's event loop, and the
client helpers (``relay_command``, ``wait_ready``) the lab uses. Newline-delimited JSON, one
reply line per request line; the package's docstring lists the commands.
"""

from __future__ import annotations

import _socket
import math
import os
import time

from testbed.programs.relay.datapath import EPOLLIN, EPOLLOUT, ConfigError, log, validate_params

# typing costs ~8 ms of imports (it pulls in re and more); annotations are not
# evaluated at run time here (PEP 563), so the names are only needed by type checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from testbed.programs.relay.datapath import Pair, Relay

try:
    # The C halves of the json module: the same parser and string escaper without the
    # Python-level wrapper, which imports re (and with it enum) at ~5 ms.
    import _json

    _C_JSON = True
except ImportError:  # pragma: no cover - every CPython build has _json
    _C_JSON = False

CONTROL_MAX_LINE = 1 << 20

# ---------------------------------------------------------------------------------------------
# JSON without importing the json package (see the package docstring).


class _ScanContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, Any] = {}  # noqa: RUF012 - the C scanner keeps its own memo

    @staticmethod
    def parse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")


if _C_JSON:
    _scan = _json.make_scanner(_ScanContext)
    _enc_str = _json.encode_basestring_ascii


def json_loads(text: str | bytes) -> Any:
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8")
    if not _C_JSON:  # pragma: no cover
        import json

        return json.loads(text)
    s = text.strip()
    try:
        obj, end = _scan(s, 0)
    except StopIteration as e:
        raise ValueError(f"invalid JSON at offset {e.value}") from None
    if end != len(s):
        raise ValueError(f"extra data at offset {end}")
    return obj


def json_dumps(obj: Any) -> str:
    if not _C_JSON:  # pragma: no cover
        import json

        return json.dumps(obj)
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, int):
        return int.__repr__(obj)
    if isinstance(obj, float):
        return float.__repr__(obj) if math.isfinite(obj) else "null"
    if isinstance(obj, str):
        return _enc_str(obj)
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{_enc_str(str(k))}: {json_dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ", ".join(json_dumps(v) for v in obj) + "]"
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


class Control:
    """The control socket of a running relay: accepts connections and answers their
    requests from within the relay's event loop (``Relay.handlers``)."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.path: str | None = None
        self.ino: int | None = None
        self.conns: dict[int, _Conn] = {}

    def open(self, path: str) -> None:
        if len(path.encode()) > 107:
            raise ConfigError(f"control socket path too long (max 107 bytes): {path}")
        tmp = f"{path}.{os.getpid()}.tmp"
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        if os.path.lexists(tmp):  # left over from a crashed relay with our pid
            os.unlink(tmp)
        s.bind(tmp)
        s.listen(16)
        s.setblocking(False)
        # The socket appears under its real name only when it already listens, so a poller
        # never sees ECONNREFUSED from a half-made socket.
        os.rename(tmp, path)
        self.path = path
        self.ino = os.stat(path).st_ino
        self.listener = s
        self.relay.handlers[s.fileno()] = self._accept
        self.relay.ep.register(s.fileno(), EPOLLIN)

    def _accept(self, _mask: int) -> None:
        while True:
            try:
                c = self._accept_one()
            except BlockingIOError:
                return
            except OSError as e:
                log(f"control accept: {e}")
                return
            conn = _Conn(c)
            self.conns[c.fileno()] = conn
            self.relay.handlers[c.fileno()] = lambda mask, conn=conn: self._on_conn(conn, mask)
            self.relay.on_failure[c.fileno()] = lambda conn=conn: self._close_conn(conn)
            self.relay.ep.register(c.fileno(), EPOLLIN)

    def _accept_one(self) -> Any:
        # _socket.socket._accept returns a raw fd (socket.socket.accept wraps it likewise).
        fd, _addr = self.listener._accept()
        c = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
        c.setblocking(False)
        return c

    def _close_conn(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        self.conns.pop(fd, None)
        self.relay.on_failure.pop(fd, None)
        if self.relay.handlers.pop(fd, None) is not None:
            self.relay.ep.unregister(fd)
        conn.sock.close()

    def _on_conn(self, conn: _Conn, mask: int) -> None:
        if mask & EPOLLOUT:
            self._flush(conn)
        if not mask & ~EPOLLOUT:
            return
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._close_conn(conn)
            return
        if not data:
            self._close_conn(conn)
            return
        conn.inbuf += data
        while True:
            nl = conn.inbuf.find(b"\n")
            if nl < 0:
                break
            line = bytes(conn.inbuf[:nl])
            del conn.inbuf[: nl + 1]
            if line.strip():
                reply = self.handle_command_line(line)
                conn.outbuf += json_dumps(reply).encode() + b"\n"
        if len(conn.inbuf) > CONTROL_MAX_LINE:
            conn.outbuf += json_dumps({"ok": False, "error": "request line too long"}).encode()
            conn.outbuf += b"\n"
            conn.inbuf.clear()
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        while conn.outbuf:
            try:
                n = conn.sock.send(conn.outbuf)
            except BlockingIOError:
                break
            except OSError:
                self._close_conn(conn)
                return
            del conn.outbuf[:n]
        want = EPOLLIN | (EPOLLOUT if conn.outbuf else 0)
        if want != conn.mask:
            conn.mask = want
            self.relay.ep.modify(fd, want)

    def handle_command_line(self, line: bytes) -> dict[str, Any]:
        try:
            req = json_loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            return {"ok": False, "error": f"bad JSON: {e}"}
        try:
            return self.handle_command(req)
        except ConfigError as e:
            return {"ok": False, "error": str(e)}
        except Exception as e:  # a control request must never take the data path down
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}

    def handle_command(self, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict):
            raise ConfigError("request must be a JSON object")
        cmd = req.get("cmd")
        if cmd == "ping":
            relay = self.relay
            return {
                "ok": True, "pong": True, "pid": os.getpid(), "pairs": len(relay.pairs),
                "uptime_s": round(time.monotonic() - relay.started, 3), "seed": relay.seed,
                "spin_us": relay.spin_ns / 1000, "spin_budget_pct": relay.spin_budget * 100,
            }  # fmt: skip
        if cmd == "stats":
            name = req.get("pair")
            if name is None:
                return {"ok": True, "pairs": {n: p.snapshot() for n, p in self.relay.pairs.items()}}
            return {"ok": True, "pairs": {name: self._pair(name).snapshot()}}
        if cmd == "set":
            pair = self._pair(req.get("pair"))
            unknown = set(req) - {"cmd", "pair", "a_to_b", "b_to_a", "both"}
            if unknown:
                raise ConfigError(f"set: unknown key(s) {sorted(unknown)}")
            both = req.get("both", {})
            # Validate everything before applying anything, so an error changes nothing.
            new_ab = validate_params({**both, **req.get("a_to_b", {})}, pair.a_to_b.params)
            new_ba = validate_params({**both, **req.get("b_to_a", {})}, pair.b_to_a.params)
            pair.a_to_b.apply(new_ab)
            pair.b_to_a.apply(new_ba)
            return {"ok": True, "pair": {"a_to_b": new_ab, "b_to_a": new_ba}}
        if cmd == "add":
            pair = self.relay.add_pair(req.get("pair"))
            return {"ok": True, "pair": pair.snapshot()}
        if cmd == "remove":
            self._pair(req.get("pair"))
            self.relay.remove_pair(req["pair"])
            return {"ok": True}
        if cmd == "flush":
            pair = self._pair(req.get("pair"))
            if not pair.enabled:
                raise ConfigError(f"pair {pair.name} is disabled: {pair.error}")
            return {"ok": True, "flushed": self.relay.flush_pair(pair)}
        if cmd == "shutdown":
            self.relay.stop = True
            return {"ok": True}
        raise ConfigError(f"unknown cmd {cmd!r} (ping, stats, set, add, remove, flush, shutdown)")

    def _pair(self, name: Any) -> Pair:
        if not isinstance(name, str) or name not in self.relay.pairs:
            raise ConfigError(f"no pair {name!r}; pairs: {sorted(self.relay.pairs)}")
        return self.relay.pairs[name]

    def close(self) -> None:
        for conn in list(self.conns.values()):
            conn.sock.close()
        self.conns.clear()
        if self.path is not None:
            try:
                # Remove the socket only if it is still ours (a successor may have replaced it).
                if os.stat(self.path).st_ino == self.ino:
                    os.unlink(self.path)
            except OSError:
                pass
            self.path = None


class _Conn:
    __slots__ = ("inbuf", "mask", "outbuf", "sock")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.mask = EPOLLIN


# ---------------------------------------------------------------------------------------------
# Client helpers


def relay_command(sock_path: str, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to a running relay and return its reply (raises OSError if down)."""
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(json_dumps(request).encode() + b"\n")
        data = bytearray()
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("relay closed the control connection without a reply")
            data += chunk
    finally:
        s.close()
    reply = json_loads(bytes(data))
    if not isinstance(reply, dict):
        raise ValueError(f"unexpected reply {reply!r}")
    return reply


def wait_ready(sock_path: str, timeout: float = 5.0, proc: Any = None) -> dict[str, Any]:
    """Poll the control socket until the relay answers ping; ``proc`` (a Popen) fails fast."""
    deadline = time.monotonic() + timeout
    while True:
        if os.path.exists(sock_path):
            try:
                return relay_command(sock_path, {"cmd": "ping"}, timeout=1.0)
            except OSError:
                pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"relay exited with status {proc.returncode} before ready")
        if time.monotonic() > deadline:
            raise TimeoutError(f"relay control socket {sock_path} not ready after {timeout} s")
        time.sleep(0.001)
