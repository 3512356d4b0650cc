"""Userspace L2 delay relay: netem's delay and jitter for kernels that have no netem.

One process serves many interface pairs. For each pair it opens an AF_PACKET socket on both
interfaces and copies every frame that arrives on one to the other, after a per-direction
delay drawn from ``delay_ms`` plus a jitter sample. It runs inside the switch namespace::

    node eth0 <-veth-> X  ~~relay~~  Y <-veth-> Y' (enslaved to the bridge)

Usage::

    python -m testbed.programs.relay --config FILE.json --control /path/ctl.sock
    python -m testbed.programs.relay --config-json '{"pairs": [...]}' --control /path/ctl.sock

Config. Optional top-level keys: ``seed`` (without it each run draws fresh jitter);
``spin_us`` (default 150): how long before a release the loop stops sleeping and busy-polls,
since a timed sleep wakes ~50 us late (p99 some 100 us) on the VM; ``spin_budget_pct``
(default 5): the most of one CPU spent spinning, beyond which releases just sleep until due::

    {"seed": 1, "spin_us": 150, "spin_budget_pct": 5,
     "pairs": [{"name": "mn-home", "a": "ifA", "b": "ifB",
                "a_to_b": {"delay_ms": 10, "jitter_ms": 1},
                "b_to_a": {"delay_ms": 10}}]}

Per-direction parameters (all optional, unknown keys are rejected):

    delay_ms      mean delay, >= 0 (default 0)
    jitter_ms     >= 0 (default 0): stddev for "normal", half-width for "uniform"
    distribution  "normal" (default) or "uniform"; the total delay is truncated at 0
    reorder       false (default): a frame never overtakes an earlier frame of its direction
                  (release = max(previous release, arrival + sample), as netem with rate);
                  true: each frame is released at its own sample, so jitter reorders
    loss_pct      0..100 (default 0): random loss in the relay (the testbed normally does
                  loss in netfilter; this is for stand-alone use)
    limit         queued frames per direction before tail drop (default 10000)

A direction with zero delay and zero jitter forwards each frame at once (no timer), unless
earlier frames of that direction are still queued (they would be overtaken).

Control socket: a UNIX *stream* socket at ``--control``, newline-delimited JSON, one reply
line per request line, any number of requests per connection. It appears (atomically, by
rename) only after every pair is bound, so "the socket answers ping" means "ready".
Commands::

    {"cmd": "ping"}                          -> {"ok": true, "pid": .., "pairs": N, ...}
    {"cmd": "stats"} / {"cmd": "stats", "pair": NAME}
                                             -> {"ok": true, "pairs": {NAME: {...}}}
    {"cmd": "set", "pair": NAME, "a_to_b": {...}, "b_to_a": {...}, "both": {...}}
        merges the given keys into the direction's current parameters (keys not given stay);
        affects frames arriving from now on          -> {"ok": true, "pair": {...params}}
    {"cmd": "add", "pair": {<pair config>}}  -> open a new pair at run time
    {"cmd": "remove", "pair": NAME}          -> close a pair (its queued frames are dropped)
    {"cmd": "flush", "pair": NAME}           -> drop every frame of the pair in flight: those
        in its delay lines and those its sockets hold unread, both directions (counted as
        drops "flushed"); frames arriving from now on no longer wait behind them
                                             -> {"ok": true, "flushed": {"a_to_b": N, ...}}
    {"cmd": "shutdown"}                      -> reply, then exit as on SIGTERM

Errors are ``{"ok": false, "error": "..."}``; a malformed request never stops the relay.
``relay_command(path, request)`` and ``wait_ready(path)`` below are client helpers.

Stats per direction: rx_frames/rx_bytes (arrived), tx_frames/tx_bytes (sent on), dropped and
drops{loss, overflow, tx_error, truncated, disabled, flushed}, queue_frames/queue_bytes (in the
delay line now), max_frame_bytes (> 1514 proves GSO frames pass), late_us_mean/late_us_max (how far
past its release time a delayed frame was sent: the relay's own timing error), params. Byte
counts are Ethernet frame lengths without the 10-byte virtio_net_hdr; a GSO frame counts once.

Interfaces that go down stay bound (the kernel re-attaches the socket on link up); an
interface that disappears disables its pair (logged, shown in stats), the rest keep running.

Set-up notes: disable IPv6 on X, Y and Y' (or in the whole switch namespace), else the
switch namespace's own stack sends router solicitations/MLD out of them; give X and Y the
MTU of the node's link (a non-GSO frame larger than the outgoing MTU is dropped, counted as
tx_error); put tbf/htb on X or Y as usual (the relay's sends go through the qdisc).

Start-up (measured, 20 pairs, Popen of ``ip netns exec`` to first answered ping): ~26 ms,
of which ~3 ms is ``ip netns exec``, ~8-18 ms the interpreter (the project venv's site-packages
cost ~10 ms; ``python -S -m testbed.programs.relay`` run from the repository root skips them)
and ~7 ms compiling this file, because PYTHONDONTWRITEBYTECODE=1 is set here: ``python -m compileall
testbed`` once makes that a .pyc load. Binding 20 pairs takes ~1.6 ms. The imports are C-level
stdlib modules only: json/socket/signal/random/typing would add ~12 ms (enum, re, hashlib).
"""

from __future__ import annotations

import _random  # C Mersenne Twister; the random module would pull in hashlib
import _signal
import _socket
import gc
import heapq
import itertools
import math
import os
import select
import sys
import time

# typing costs ~8 ms of imports (it pulls in re and more); annotations are not
# evaluated at run time here (PEP 563), so the names are only needed by type checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

try:
    # The C halves of the json module: the same parser and string escaper without the
    # Python-level wrapper, which imports re (and with it enum) at ~5 ms.
    import _json

    _C_JSON = True
except ImportError:  # pragma: no cover - every CPython build has _json
    _C_JSON = False

# ---------------------------------------------------------------------------------------------
# Kernel constants (linux/if_packet.h, asm-generic/socket.h); not all are exported by _socket.
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
ETH_P_ALL = 0x0003
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
MSG_TRUNC = 0x20
VNET_HDR_LEN = 10

# A GSO frame is up to 64 KiB of IP plus headers; leave room for BIG TCP-sized frames too.
RECV_BUF = 256 * 1024
SOCK_RCVBUF = 16 * 1024 * 1024
SOCK_SNDBUF = 4 * 1024 * 1024
# Frames read per readiness event before returning to the timer heap, so one busy interface
# cannot hold up due releases on the others for long (a 64 KiB frame costs ~10-40 us).
RX_BATCH = 16
DEFAULT_LIMIT = 10000
# Busy-poll this long before each release instead of trusting the kernel's timed wakeup.
# Measured on the 2-CPU VM: release lateness p50/p99 52/489 us without, 0/35 us with 200 us,
# costing ~3% CPU at one release per 5 ms (more when releases are sparse but frequent).
DEFAULT_SPIN_US = 150
# At most this share of one CPU goes to spinning (per 100 ms window); beyond it the loop sleeps
# until due, i.e. dense traffic gets ~50 us lateness instead of a burnt core.
DEFAULT_SPIN_BUDGET_PCT = 5.0
SPIN_WINDOW_NS = 100_000_000
CONTROL_MAX_LINE = 1 << 20

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT

# Errors that mean "the interface is down or gone", as opposed to a full queue.
_IFACE_ERRNOS = frozenset({6, 19, 100})  # ENXIO, ENODEV, ENETDOWN
_TX_DROP_ERRNOS = frozenset({11, 105, 90})  # EAGAIN, ENOBUFS, EMSGSIZE

PARAM_KEYS = ("delay_ms", "jitter_ms", "distribution", "reorder", "loss_pct", "limit")


def _log(msg: str) -> None:
    sys.stderr.write(f"relay[{os.getpid()}] {time.strftime('%H:%M:%S')} {msg}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# JSON without importing the json package (see module docstring).


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


# ---------------------------------------------------------------------------------------------
# Configuration


class ConfigError(ValueError):
    pass


def _num(d: dict[str, Any], key: str, lo: float, hi: float) -> float:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise ConfigError(f"{key} must be a number in [{lo}, {hi}], got {v!r}")
    return float(v)


def validate_params(update: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``update`` into ``base`` (or the defaults) and check every value."""
    if not isinstance(update, dict):
        raise ConfigError(f"direction parameters must be an object, got {update!r}")
    unknown = set(update) - set(PARAM_KEYS)
    if unknown:
        raise ConfigError(f"unknown parameter(s) {sorted(unknown)}; known: {list(PARAM_KEYS)}")
    p: dict[str, Any] = dict(base) if base else {
        "delay_ms": 0.0, "jitter_ms": 0.0, "distribution": "normal", "reorder": False,
        "loss_pct": 0.0, "limit": DEFAULT_LIMIT,
    }  # fmt: skip
    p.update(update)
    p["delay_ms"] = _num(p, "delay_ms", 0, 3_600_000)
    p["jitter_ms"] = _num(p, "jitter_ms", 0, 3_600_000)
    p["loss_pct"] = _num(p, "loss_pct", 0, 100)
    if p["distribution"] not in ("normal", "uniform"):
        raise ConfigError(f"distribution must be 'normal' or 'uniform', got {p['distribution']!r}")
    if not isinstance(p["reorder"], bool):
        raise ConfigError(f"reorder must be true or false, got {p['reorder']!r}")
    lim = p["limit"]
    if isinstance(lim, bool) or not isinstance(lim, int) or lim < 1:
        raise ConfigError(f"limit must be a positive integer, got {lim!r}")
    return p


def _check_pair_config(pc: Any) -> tuple[str, str, str, dict[str, Any], dict[str, Any]]:
    if not isinstance(pc, dict):
        raise ConfigError(f"a pair must be an object, got {pc!r}")
    unknown = set(pc) - {"name", "a", "b", "a_to_b", "b_to_a"}
    if unknown:
        raise ConfigError(f"pair has unknown key(s) {sorted(unknown)}")
    for key in ("name", "a", "b"):
        if not isinstance(pc.get(key), str) or not pc[key]:
            raise ConfigError(f"pair needs a non-empty string {key!r}: {pc!r}")
    if pc["a"] == pc["b"]:
        raise ConfigError(f"pair {pc['name']}: a and b are the same interface")
    return (
        pc["name"],
        pc["a"],
        pc["b"],
        validate_params(pc.get("a_to_b", {})),
        validate_params(pc.get("b_to_a", {})),
    )


# ---------------------------------------------------------------------------------------------
# Data path


def _seed_for(seed: int, label: str) -> int:
    # FNV-1a over the label, so each direction's jitter stream depends only on (seed, pair,
    # direction) and not on how many other pairs the run has.
    h = 0xCBF29CE484222325 ^ (seed & 0xFFFFFFFFFFFFFFFF)
    for ch in label.encode():
        h = ((h ^ ch) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


class Direction:
    """One way through a pair: impairment parameters, RNG, counters."""

    __slots__ = (
        "delay_ns", "dropped", "drops", "enabled", "fast", "jitter_ns", "label", "last_release",
        "late_max", "late_sum", "limit", "loss", "max_frame", "normal", "out", "pair", "params",
        "qbytes", "qlen", "released", "reorder", "rnd", "rx_bytes", "rx_frames", "spare",
        "tx_bytes", "tx_frames",
    )  # fmt: skip

    def __init__(self, pair: Pair, label: str, out: Any, params: dict[str, Any], seed: int):
        self.pair = pair
        self.label = label
        self.out = out  # socket the frames of this direction are sent on
        self.enabled = True
        self.rnd: Callable[[], float] = _random.Random(_seed_for(seed, label)).random
        self.spare: float | None = None
        self.last_release = 0
        self.qlen = 0
        self.qbytes = 0
        self.rx_frames = self.rx_bytes = self.tx_frames = self.tx_bytes = 0
        self.dropped = 0
        self.max_frame = 0
        self.released = self.late_sum = self.late_max = 0
        self.drops = {
            "loss": 0, "overflow": 0, "tx_error": 0, "truncated": 0, "disabled": 0, "flushed": 0,
        }  # fmt: skip
        self.apply(params)

    def apply(self, params: dict[str, Any]) -> None:
        self.params = params
        self.delay_ns = int(params["delay_ms"] * 1_000_000)
        self.jitter_ns = params["jitter_ms"] * 1_000_000
        self.normal = params["distribution"] == "normal"
        self.reorder = params["reorder"]
        self.loss = params["loss_pct"] / 100.0
        self.limit = params["limit"]
        self.fast = self.delay_ns == 0 and self.jitter_ns == 0
        self.spare = None

    def sample_ns(self) -> int:
        """Delay for one frame: delay + jitter sample, truncated at 0."""
        j = self.jitter_ns
        if not j:
            return self.delay_ns
        if self.normal:
            z = self.spare
            if z is None:
                # Box-Muller gives two independent normals per pair of uniforms.
                u1 = 1.0 - self.rnd()  # (0, 1], log() stays finite
                r = math.sqrt(-2.0 * math.log(u1))
                th = 2.0 * math.pi * self.rnd()
                z = r * math.cos(th)
                self.spare = r * math.sin(th)
            else:
                self.spare = None
            d = self.delay_ns + j * z
        else:
            d = self.delay_ns + j * (2.0 * self.rnd() - 1.0)
        return int(d) if d > 0 else 0

    def drop(self, why: str) -> None:
        self.dropped += 1
        self.drops[why] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "rx_frames": self.rx_frames, "rx_bytes": self.rx_bytes,
            "tx_frames": self.tx_frames, "tx_bytes": self.tx_bytes,
            "dropped": self.dropped, "drops": dict(self.drops),
            "queue_frames": self.qlen, "queue_bytes": self.qbytes,
            "max_frame_bytes": self.max_frame,
            "late_us_mean": round(self.late_sum / self.released / 1000, 1) if self.released else 0,
            "late_us_max": round(self.late_max / 1000, 1), "params": dict(self.params),
        }  # fmt: skip


class Pair:
    __slots__ = ("a", "a_to_b", "b", "b_to_a", "error", "ifindex", "name", "socks")

    def __init__(self, name: str, a: str, b: str) -> None:
        self.name = name
        self.a = a
        self.b = b
        self.socks: dict[str, Any] = {}
        self.ifindex: dict[str, int] = {}
        self.error: str | None = None
        self.a_to_b: Direction
        self.b_to_a: Direction

    @property
    def enabled(self) -> bool:
        return self.error is None

    def snapshot(self) -> dict[str, Any]:
        return {
            "a": self.a, "b": self.b, "enabled": self.enabled, "error": self.error,
            "a_to_b": self.a_to_b.snapshot(), "b_to_a": self.b_to_a.snapshot(),
        }  # fmt: skip


def open_packet_socket(ifname: str) -> tuple[Any, int, bool]:
    """AF_PACKET socket bound to one interface. Returns (socket, ifindex, ignores_outgoing)."""
    # Protocol 0 at creation: the socket receives nothing until bind() names the interface,
    # so no frame from another interface (or without a vnet header) can slip in first.
    s = _socket.socket(_socket.AF_PACKET, _socket.SOCK_RAW, 0)
    try:
        # Frames from veth carry CHECKSUM_PARTIAL and GSO metadata; without the virtio_net_hdr
        # that metadata is lost, checksums stay incomplete and every TCP connection fails.
        s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        try:
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            ignores_outgoing = True
        except OSError:  # kernel < 4.20: filter on sll_pkttype instead
            ignores_outgoing = False
        for force, plain, size in (
            (SO_RCVBUFFORCE, _socket.SO_RCVBUF, SOCK_RCVBUF),
            (SO_SNDBUFFORCE, _socket.SO_SNDBUF, SOCK_SNDBUF),
        ):
            try:
                s.setsockopt(_socket.SOL_SOCKET, force, size)
            except OSError:  # not root/CAP_NET_ADMIN: capped by net.core.*mem_max
                s.setsockopt(_socket.SOL_SOCKET, plain, size)
        s.setblocking(False)
        s.bind((ifname, ETH_P_ALL))  # CPython applies htons() to the protocol itself
        ifindex = _socket.if_nametoindex(ifname)
        # veth delivers every frame to packet sockets anyway; promiscuous mode matters for
        # devices that filter by MAC (macvlan, real NICs). Undone by the kernel on close.
        mreq = ifindex.to_bytes(4, sys.byteorder, signed=True)
        mreq += PACKET_MR_PROMISC.to_bytes(2, sys.byteorder) + bytes(10)
        s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    except BaseException:
        s.close()
        raise
    return s, ifindex, ignores_outgoing


def _discard_unread(sock: Any) -> int:
    """Read and drop every frame waiting in ``sock``; returns how many there were."""
    n = 0
    for _ in range(1_000_000):  # bounded: a busy link cannot keep us here for ever
        try:
            sock.recv(1, MSG_TRUNC)
        except (BlockingIOError, InterruptedError):
            break
        except OSError as e:
            if e.errno in _IFACE_ERRNOS:  # the pending "link went down": read, and cleared
                continue
            raise
        n += 1
    return n


class Relay:
    def __init__(
        self,
        seed: int | None = None,
        spin_us: float = DEFAULT_SPIN_US,
        spin_budget_pct: float = DEFAULT_SPIN_BUDGET_PCT,
    ) -> None:
        self.seed = seed if seed is not None else int.from_bytes(os.urandom(8), "little")
        self.spin_ns = int(spin_us * 1000)
        self.spin_budget = spin_budget_pct / 100.0
        self.pairs: dict[str, Pair] = {}
        self.heap: list[tuple[int, int, Direction, bytes]] = []
        self.seq = itertools.count()
        self.ep = select.epoll()
        self.handlers: dict[int, Callable[[int], None]] = {}
        self.buf = bytearray(RECV_BUF)
        self.mv = memoryview(self.buf)
        self.stop = False
        self.started = time.monotonic()
        self.ctl_path: str | None = None
        self.ctl_ino: int | None = None
        self.conns: dict[int, _Conn] = {}

    # -- pairs -----------------------------------------------------------------------------

    def add_pair(self, pc: Any) -> Pair:
        name, a, b, ab, ba = _check_pair_config(pc)
        if name in self.pairs:
            raise ConfigError(f"pair {name!r} exists")
        in_use = {i for p in self.pairs.values() if p.enabled for i in (p.a, p.b)}
        for ifname in (a, b):
            if ifname in in_use:
                raise ConfigError(f"interface {ifname} is already in another pair")
        pair = Pair(name, a, b)
        socks: list[tuple[str, Any, bool]] = []
        try:
            for ifname in (a, b):
                try:
                    s, idx, ign = open_packet_socket(ifname)
                except OSError as e:
                    raise ConfigError(f"pair {name}: cannot bind {ifname}: {e}") from None
                socks.append((ifname, s, ign))
                pair.socks[ifname] = s
                pair.ifindex[ifname] = idx
        except BaseException:
            for _, s, _ in socks:
                s.close()
            raise
        pair.a_to_b = Direction(pair, f"{name}/a_to_b", pair.socks[b], ab, self.seed)
        pair.b_to_a = Direction(pair, f"{name}/b_to_a", pair.socks[a], ba, self.seed)
        for (ifname, s, ign), d in zip(socks, (pair.a_to_b, pair.b_to_a), strict=True):
            fd = s.fileno()
            self.handlers[fd] = self._make_rx(pair, ifname, s, d, ign)
            self.ep.register(fd, EPOLLIN)
        self.pairs[name] = pair
        return pair

    def disable_pair(self, pair: Pair, why: str) -> None:
        if pair.error is None:
            pair.error = why
            _log(f"pair {pair.name} disabled: {why}")
        pair.a_to_b.enabled = pair.b_to_a.enabled = False
        for s in pair.socks.values():
            fd = s.fileno()
            if fd >= 0 and self.handlers.pop(fd, None) is not None:
                self.ep.unregister(fd)
            s.close()  # queued frames of this pair are counted as "disabled" when they fall due

    def remove_pair(self, name: str) -> None:
        pair = self.pairs.pop(name)
        self.disable_pair(pair, "removed")

    def flush_pair(self, pair: Pair) -> dict[str, int]:
        """Drop what is in flight through ``pair``, both ways: its frames in the delay lines
        and those still unread in its sockets. A node moved to another network must not get
        the old network's frames after the move (nor the old network the node's): a cable
        pulled out loses what was on it, as netem's queue is reset when its device goes down.
        Returns the frames dropped per direction."""
        directions = (pair.a_to_b, pair.b_to_a)
        heap = self.heap
        kept = [entry for entry in heap if entry[2] not in directions]
        flushed = {d.label: 0 for d in directions}
        for entry in heap:
            if entry[2] in directions:
                flushed[entry[2].label] += 1
        heap[:] = kept  # in place: the event loop holds this list
        heapq.heapify(heap)
        # a direction's frames arrive on the other end's socket: a_to_b's on a, b_to_a's on b
        for d, ifname in zip(directions, (pair.a, pair.b), strict=True):
            flushed[d.label] += _discard_unread(pair.socks[ifname])
            d.qlen = d.qbytes = 0
            d.last_release = 0  # what comes next does not wait behind the dropped frames
            d.dropped += flushed[d.label]
            d.drops["flushed"] += flushed[d.label]
        return {"a_to_b": flushed[pair.a_to_b.label], "b_to_a": flushed[pair.b_to_a.label]}

    def _iface_error(self, pair: Pair, ifname: str, err: OSError, d: Direction | None) -> None:
        """Interface down (transient: keep the pair) or gone (disable the pair)."""
        try:
            gone = _socket.if_nametoindex(ifname) != pair.ifindex[ifname]
        except OSError:
            gone = True
        if gone:
            self.disable_pair(pair, f"interface {ifname} vanished ({err.strerror})")
        elif d is not None:
            d.drop("tx_error")

    def _make_rx(
        self, pair: Pair, ifname: str, sock: Any, d: Direction, ignores_outgoing: bool
    ) -> Callable[[int], None]:
        """The receive handler for one interface: everything per frame lives here."""
        buf, mv = self.buf, self.mv
        heap, seq, push = self.heap, self.seq, heapq.heappush
        mono = time.monotonic_ns
        recv_into = sock.recv_into
        recvfrom_into = sock.recvfrom_into
        out_send = d.out.send
        size = len(buf)

        def rx(_mask: int) -> None:
            for _ in range(RX_BATCH):
                try:
                    if ignores_outgoing:
                        n = recv_into(buf, size, MSG_TRUNC)
                    else:
                        n, addr = recvfrom_into(buf, size, MSG_TRUNC)
                        if addr[2] == PACKET_OUTGOING:
                            continue
                except BlockingIOError:
                    return
                except InterruptedError:
                    continue
                except OSError as e:
                    if e.errno in _IFACE_ERRNOS:
                        _log(f"pair {pair.name}: recv on {ifname}: {e.strerror}")
                        self._iface_error(pair, ifname, e, None)
                        return
                    raise
                flen = n - VNET_HDR_LEN
                d.rx_frames += 1
                d.rx_bytes += flen
                if n > size:
                    d.drop("truncated")
                    continue
                if flen > d.max_frame:
                    d.max_frame = flen
                if d.loss and d.rnd() < d.loss:
                    d.drop("loss")
                    continue
                if d.fast and (d.qlen == 0 or d.reorder):
                    try:
                        out_send(mv[:n])
                    except OSError as e:
                        self._tx_error(d, e)
                        if not d.enabled:
                            return
                        continue
                    d.tx_frames += 1
                    d.tx_bytes += flen
                    continue
                if d.qlen >= d.limit:
                    d.drop("overflow")
                    continue
                t = mono() + d.sample_ns()
                if not d.reorder:
                    if t < d.last_release:
                        t = d.last_release
                    d.last_release = t
                d.qlen += 1
                d.qbytes += flen
                push(heap, (t, next(seq), d, mv[:n].tobytes()))

        return rx

    def _tx_error(self, d: Direction, e: OSError) -> None:
        if e.errno in _TX_DROP_ERRNOS:
            d.drop("tx_error")  # full queue, qdisc drop (tbf) or oversize: a loss, not a fault
        elif e.errno in _IFACE_ERRNOS or e.errno == 9:  # EBADF: socket closed by disable
            pair = d.pair
            out_if = pair.b if d is pair.a_to_b else pair.a
            self._iface_error(pair, out_if, e, d)
        else:
            d.drop("tx_error")
            _log(f"{d.label}: send: {e}")

    def release_due(self, now: int) -> None:
        heap = self.heap
        pop = heapq.heappop
        while heap and heap[0][0] <= now:
            t, _, d, frame = pop(heap)
            flen = len(frame) - VNET_HDR_LEN
            d.qlen -= 1
            d.qbytes -= flen
            if not d.enabled:
                d.drop("disabled")
                continue
            # How late the loop got to this frame: the relay's own timing error.
            late = now - t
            d.released += 1
            d.late_sum += late
            if late > d.late_max:
                d.late_max = late
            try:
                d.out.send(frame)
            except OSError as e:
                self._tx_error(d, e)
                continue
            d.tx_frames += 1
            d.tx_bytes += flen

    # -- event loop ------------------------------------------------------------------------

    def run(self) -> None:
        heap = self.heap
        ep_poll = self.ep.poll
        epfd = [self.ep.fileno()]
        sel = select.select
        mono = time.monotonic_ns
        handlers = self.handlers
        spin_ns = self.spin_ns
        budget_ns = self.spin_budget * SPIN_WINDOW_NS
        window_end = spent = charged_for = 0
        while not self.stop:
            now = mono()
            if heap and heap[0][0] <= now:
                try:
                    self.release_due(now)
                except Exception as e:  # the frame that failed is gone; carry on with the rest
                    _log(f"release failed: {type(e).__name__}: {e}")
            events = ep_poll(0)
            if not events:
                if not heap:
                    sel(epfd, [], [])
                    continue
                # epoll's timeout has millisecond granularity (CPython rounds it up), too
                # coarse for a 0.2 ms target; select() on the epoll fd waits in microseconds.
                # A timed wakeup still comes ~50 us late (p99 several 100 us on a busy VM), so
                # wake spin_ns early and poll (ep.poll(0), still serving arrivals) until due,
                # within a CPU budget: under heavy traffic releases are dense and spinning
                # before each would burn a core for little gain.
                now = mono()
                if now >= window_end:
                    window_end, spent = now + SPIN_WINDOW_NS, 0
                head = heap[0][0]
                wait = head - now
                if wait <= 0:
                    continue
                if spent < budget_ns and wait <= spin_ns:
                    if head != charged_for:  # charge each spin once, up front
                        spent += wait
                        charged_for = head
                    continue
                if spent < budget_ns:
                    wait -= spin_ns
                sel(epfd, [], [], wait / 1e9)
                continue  # release first, then read what arrived
            for fd, mask in events:
                h = handlers.get(fd)
                if h is None:
                    continue
                try:
                    h(mask)
                except Exception as e:  # a bug in one handler must not stop every link
                    _log(f"handler for fd {fd} failed: {type(e).__name__}: {e}")
                    self._fail_fd(fd, e)

    def _fail_fd(self, fd: int, e: Exception) -> None:
        for pair in self.pairs.values():
            if any(s.fileno() == fd for s in pair.socks.values()):
                self.disable_pair(pair, f"internal error: {type(e).__name__}: {e}")
                return
        conn = self.conns.get(fd)
        if conn is not None:
            self._close_conn(conn)

    # -- control socket --------------------------------------------------------------------

    def open_control(self, path: str) -> None:
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
        self.ctl_path = path
        self.ctl_ino = os.stat(path).st_ino
        self.listener = s
        self.handlers[s.fileno()] = self._accept
        self.ep.register(s.fileno(), EPOLLIN)

    def _accept(self, _mask: int) -> None:
        while True:
            try:
                c = self._accept_one()
            except BlockingIOError:
                return
            except OSError as e:
                _log(f"control accept: {e}")
                return
            conn = _Conn(c)
            self.conns[c.fileno()] = conn
            self.handlers[c.fileno()] = lambda mask, conn=conn: self._on_conn(conn, mask)
            self.ep.register(c.fileno(), EPOLLIN)

    def _accept_one(self) -> Any:
        # _socket.socket._accept returns a raw fd (socket.socket.accept wraps it likewise).
        fd, _addr = self.listener._accept()
        c = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
        c.setblocking(False)
        return c

    def _close_conn(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        self.conns.pop(fd, None)
        if self.handlers.pop(fd, None) is not None:
            self.ep.unregister(fd)
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
            self.ep.modify(fd, want)

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
            return {
                "ok": True, "pong": True, "pid": os.getpid(), "pairs": len(self.pairs),
                "uptime_s": round(time.monotonic() - self.started, 3), "seed": self.seed,
                "spin_us": self.spin_ns / 1000, "spin_budget_pct": self.spin_budget * 100,
            }  # fmt: skip
        if cmd == "stats":
            name = req.get("pair")
            if name is None:
                return {"ok": True, "pairs": {n: p.snapshot() for n, p in self.pairs.items()}}
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
            pair = self.add_pair(req.get("pair"))
            return {"ok": True, "pair": pair.snapshot()}
        if cmd == "remove":
            self._pair(req.get("pair"))
            self.remove_pair(req["pair"])
            return {"ok": True}
        if cmd == "flush":
            pair = self._pair(req.get("pair"))
            if not pair.enabled:
                raise ConfigError(f"pair {pair.name} is disabled: {pair.error}")
            return {"ok": True, "flushed": self.flush_pair(pair)}
        if cmd == "shutdown":
            self.stop = True
            return {"ok": True}
        raise ConfigError(f"unknown cmd {cmd!r} (ping, stats, set, add, remove, flush, shutdown)")

    def _pair(self, name: Any) -> Pair:
        if not isinstance(name, str) or name not in self.pairs:
            raise ConfigError(f"no pair {name!r}; pairs: {sorted(self.pairs)}")
        return self.pairs[name]

    def close(self) -> None:
        for pair in list(self.pairs.values()):
            for s in pair.socks.values():
                s.close()
        for conn in list(self.conns.values()):
            conn.sock.close()
        if self.ctl_path is not None:
            try:
                # Remove the socket only if it is still ours (a successor may have replaced it).
                if os.stat(self.ctl_path).st_ino == self.ctl_ino:
                    os.unlink(self.ctl_path)
            except OSError:
                pass
        self.ep.close()


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


# ---------------------------------------------------------------------------------------------
# Entry point

USAGE = """usage: python -m testbed.programs.relay (--config FILE.json | --config-json TEXT)
           --control PATH

Userspace L2 delay relay; run it inside the namespace that holds the interfaces.
See the module docstring (python -c 'import testbed.programs.relay as r; help(r)') for the config
and the control protocol."""


def _parse_args(argv: list[str]) -> dict[str, str]:
    # argparse costs ~5 ms of imports; three options do not need it.
    opts: dict[str, str] = {}
    it = iter(argv)
    for arg in it:
        if arg in ("-h", "--help"):
            print(USAGE)
            raise SystemExit(0)
        key, eq, val = arg.partition("=")
        if key not in ("--config", "--config-json", "--control"):
            raise ConfigError(f"unknown argument {arg!r}")
        if not eq:
            val = next(it, "")
        if not val:
            raise ConfigError(f"{key} needs a value")
        opts[key] = val
    if ("--config" in opts) == ("--config-json" in opts):
        raise ConfigError("give exactly one of --config FILE or --config-json TEXT")
    if "--control" not in opts:
        raise ConfigError("--control PATH is required")
    return opts


def _load_config(opts: dict[str, str]) -> dict[str, Any]:
    if "--config" in opts:
        with open(opts["--config"], "rb") as f:
            text = f.read()
    else:
        text = opts["--config-json"].encode()
    try:
        cfg = json_loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"config is not valid JSON: {e}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("pairs"), list):
        raise ConfigError('config must be an object with a "pairs" list')
    unknown = set(cfg) - {"pairs", "seed", "spin_us", "spin_budget_pct"}
    if unknown:
        raise ConfigError(f"config has unknown key(s) {sorted(unknown)}")
    seed = cfg.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    cfg.setdefault("spin_us", DEFAULT_SPIN_US)
    cfg.setdefault("spin_budget_pct", DEFAULT_SPIN_BUDGET_PCT)
    _num(cfg, "spin_us", 0, 10_000)
    _num(cfg, "spin_budget_pct", 0, 100)
    return cfg


def _lower_timer_slack() -> None:
    # The kernel may defer a timed wakeup by the task's timer slack (50 us by default);
    # 1 us keeps select()'s wakeups close to the frame's release time. Root only; harmless
    # to skip.
    try:
        with open(f"/proc/{os.getpid()}/timerslack_ns", "w") as f:
            f.write("1000")
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    t0 = time.monotonic()
    try:
        opts = _parse_args(sys.argv[1:] if argv is None else argv)
        cfg = _load_config(opts)
    except (ConfigError, OSError) as e:
        sys.stderr.write(f"relay: {e}\n{USAGE}\n")
        return 2
    relay = Relay(cfg.get("seed"), cfg["spin_us"], cfg["spin_budget_pct"])
    try:
        for pc in cfg["pairs"]:
            relay.add_pair(pc)
        _lower_timer_slack()
        # A signal only sets a flag; the wakeup fd makes the blocked select() return at once.
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        relay.handlers[rfd] = lambda _mask: os.read(rfd, 512) and None
        relay.ep.register(rfd, EPOLLIN)
        _signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)

        def on_signal(signum: int, _frame: Any) -> None:
            relay.stop = True

        _signal.signal(_signal.SIGTERM, on_signal)
        _signal.signal(_signal.SIGINT, on_signal)
        relay.open_control(opts["--control"])
    except (ConfigError, OSError) as e:
        _log(f"start-up failed: {e}")
        relay.close()
        return 2
    _log(
        f"ready: {len(relay.pairs)} pair(s), control {opts['--control']}, "
        f"{(time.monotonic() - t0) * 1000:.1f} ms after main()"
    )
    # Start-up objects (module code, config) go to the permanent generation: a full collection
    # then only scans what the data path allocates (measured: a 0.6 ms pause otherwise).
    gc.freeze()
    try:
        relay.run()
    finally:
        relay.close()
    _log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
