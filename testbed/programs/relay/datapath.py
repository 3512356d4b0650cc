"""The relay's data path: interface pairs, their delay lines and the event loop.

Each pair has an AF_PACKET socket on both interfaces; a frame that arrives on one is sent on
the other after its direction's delay (``Direction``), from a timer heap that the event loop
(``Relay.run``) releases, busy-polling shortly before a release within a CPU budget. The
direction parameters and their checks (``validate_params``) live here too: the control
socket's ``set`` and the start-up configuration both go through them. See the package's
docstring for the parameters and the measurements.
"""

from __future__ import annotations

import _random  # C Mersenne Twister; the random module would pull in hashlib
import _socket
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

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT

# Errors that mean "the interface is down or gone", as opposed to a full queue.
_IFACE_ERRNOS = frozenset({6, 19, 100})  # ENXIO, ENODEV, ENETDOWN
_TX_DROP_ERRNOS = frozenset({11, 105, 90})  # EAGAIN, ENOBUFS, EMSGSIZE

PARAM_KEYS = ("delay_ms", "jitter_ms", "distribution", "reorder", "loss_pct", "limit")


def log(msg: str) -> None:
    sys.stderr.write(f"relay[{os.getpid()}] {time.strftime('%H:%M:%S')} {msg}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# Configuration


class ConfigError(ValueError):
    pass


def check_number(d: dict[str, Any], key: str, lo: float, hi: float) -> float:
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
    p["delay_ms"] = check_number(p, "delay_ms", 0, 3_600_000)
    p["jitter_ms"] = check_number(p, "jitter_ms", 0, 3_600_000)
    p["loss_pct"] = check_number(p, "loss_pct", 0, 100)
    if p["distribution"] not in ("normal", "uniform"):
        raise ConfigError(f"distribution must be 'normal' or 'uniform', got {p['distribution']!r}")
    if not isinstance(p["reorder"], bool):
        raise ConfigError(f"reorder must be true or false, got {p['reorder']!r}")
    lim = p["limit"]
    if isinstance(lim, bool) or not isinstance(lim, int) or lim < 1:
        raise ConfigError(f"limit must be a positive integer, got {lim!r}")
    return p


def check_pair_config(pc: Any) -> tuple[str, str, str, dict[str, Any], dict[str, Any]]:
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


_DISCARD_BYTES = 64  # > sizeof(struct virtio_net_hdr_mrg_rxbuf), 12


def _discard_unread(sock: Any) -> int:
    """Read and drop every frame waiting in ``sock``; returns how many there were."""
    n = 0
    for _ in range(1_000_000):  # bounded: a busy link cannot keep us here for ever
        try:
            # room for the virtio_net_hdr at least: with PACKET_VNET_HDR a read shorter
            # than it fails with EINVAL whenever a frame is waiting (MSG_TRUNC: the rest of
            # the frame is dropped all the same)
            sock.recv(_DISCARD_BYTES, MSG_TRUNC)
        except (BlockingIOError, InterruptedError):
            break
        except OSError as e:
            if e.errno in _IFACE_ERRNOS:  # the pending "link went down": read, and cleared
                continue
            raise
        n += 1
    return n


class Relay:
    """The pairs and their delay lines, and the event loop that serves them. Other file
    descriptors (the control socket's) join the loop through ``handlers`` and ``ep``."""

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
        # what to do when the handler of an fd that is no pair's fails (a control connection)
        self.on_failure: dict[int, Callable[[], None]] = {}
        self.buf = bytearray(RECV_BUF)
        self.mv = memoryview(self.buf)
        self.stop = False
        self.started = time.monotonic()

    # -- pairs -----------------------------------------------------------------------------

    def add_pair(self, pc: Any) -> Pair:
        name, a, b, ab, ba = check_pair_config(pc)
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
            log(f"pair {pair.name} disabled: {why}")
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
                        log(f"pair {pair.name}: recv on {ifname}: {e.strerror}")
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
            log(f"{d.label}: send: {e}")

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
                    log(f"release failed: {type(e).__name__}: {e}")
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
                    log(f"handler for fd {fd} failed: {type(e).__name__}: {e}")
                    self._fail_fd(fd, e)

    def _fail_fd(self, fd: int, e: Exception) -> None:
        for pair in self.pairs.values():
            if any(s.fileno() == fd for s in pair.socks.values()):
                self.disable_pair(pair, f"internal error: {type(e).__name__}: {e}")
                return
        cleanup = self.on_failure.get(fd)
        if cleanup is not None:
            cleanup()

    def close(self) -> None:
        for pair in list(self.pairs.values()):
            for s in pair.socks.values():
                s.close()
        self.ep.close()
