"""charon's vici events as the testbed's structured events (``t_ns``, ``node``, ``event``).

State events come straight from vici: ``ike-updown``, ``ike-update`` (MOBIKE / NAT-T
endpoint changes; the new endpoints are at the top level of the message, the IKE SA section
still holds the old ones), ``ike-rekey``, ``child-updown``, ``child-rekey``. They become
``ike_updown``, ``ike_update``, ``ike_rekey``, ``child_updown``, ``child_rekey`` with the
fields decoded from bytes; ``t_ns`` is CLOCK_MONOTONIC when the event reached this process
(charon raises them synchronously; the delay is the socket and this thread, ~0.1-1 ms).

For signalling ladders every IKE message is also reported as an ``ike_message`` event
(``msg`` e.g. ``IKE_SA_INIT`` or ``INFORMATIONAL/UPDATE_SA_ADDRESSES``, ``dir`` tx/rx, ``to``
or ``from`` the peer address, ``msg_id``). vici has no per-message event, so these are read
from the instance's own log file (the "generating"/"sending packet" and "received
packet"/"parsed" lines of one charon thread; their wording is stable across 5.x). Their
``t_ns`` is the time charon wrote the line (millisecond resolution, floored). That is
coarser, but causal: a message's reception is never stamped before its transmission, which
vici's own ``log`` events do not give (charon queues them: they arrive 0.5-3 ms late, in
varying order). Without a log file the state events carry an inferred ``msg``/``to``/``from``.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from vici.protocol import Message, Packet, Transport

Event = dict[str, Any]
Callback = Callable[[Event], None]

STATE_EVENTS = ("ike-updown", "ike-update", "ike-rekey", "child-updown", "child-rekey")


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return {str(k): _text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _flag(sa: Mapping[str, Any], key: str) -> bool:
    return sa.get(key) == "yes"


def _sections(message: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The named sub-sections of a message (IKE SA name -> fields)."""
    return [(k, v) for k, v in message.items() if isinstance(v, dict)]


def ike_fields(name: str, sa: Mapping[str, Any]) -> Event:
    """The useful fields of an IKE SA section (vici ``list_ike`` layout)."""
    out: Event = {
        "ike": name,
        "ike_id": _int(sa.get("uniqueid")),
        "state": sa.get("state"),
        "local": sa.get("local-host"),
        "local_port": _int(sa.get("local-port")),
        "remote": sa.get("remote-host"),
        "remote_port": _int(sa.get("remote-port")),
        "local_id": sa.get("local-id"),
        "remote_id": sa.get("remote-id"),
        "initiator": _flag(sa, "initiator"),
        "spi_i": sa.get("initiator-spi"),
        "spi_r": sa.get("responder-spi"),
        # kernel-libipsec fakes NAT detection to force UDP encapsulation, so nat_remote /
        # nat_any are "yes" without any NAT; nat_local is only set by a real NAT in front.
        "nat_local": _flag(sa, "nat-local"),
        "nat_remote": _flag(sa, "nat-remote"),
        "nat_fake": _flag(sa, "nat-fake"),
        "nat_any": _flag(sa, "nat-any"),
    }
    if sa.get("local-vips"):
        out["vips"] = list(sa["local-vips"])
    if sa.get("remote-vips"):
        out["remote_vips"] = list(sa["remote-vips"])
    return out


def child_fields(child: Mapping[str, Any]) -> Event:
    return {
        "child": child.get("name"),
        "child_id": _int(child.get("uniqueid")),
        "child_state": child.get("state"),
        "spi_in": child.get("spi-in"),
        "spi_out": child.get("spi-out"),
        "encap": _flag(child, "encap"),
        "local_ts": list(child.get("local-ts") or []),
        "remote_ts": list(child.get("remote-ts") or []),
    }


def _ike_state_event(kind: str, msg: Mapping[str, Any], infer: bool) -> list[Event]:
    events = []
    for name, sa in _sections(msg):
        if kind == "ike-rekey":
            old, new = sa.get("old", {}), sa.get("new", {})
            event = {"event": "ike_rekey", **ike_fields(name, new)}
            event["old_ike_id"] = _int(old.get("uniqueid"))
            event["old_spi_i"], event["old_spi_r"] = (
                old.get("initiator-spi"),
                old.get("responder-spi"),
            )
            events.append(event)
            continue
        fields = ike_fields(name, sa)
        if kind == "ike-updown":
            up = msg.get("up") == "yes"
            event = {"event": "ike_updown", "up": up, **fields}
            if infer and up:
                # the initiator sees the SA up on receiving the IKE_AUTH response, the
                # responder when it sends it
                key = "from" if fields["initiator"] else "to"
                event.update(msg="IKE_AUTH", dir="rx" if key == "from" else "tx")
                event[key] = fields["remote"]
        else:  # ike-update: the new endpoints are at the top level
            event = {"event": "ike_update", **fields}
            event.update(
                old_local=fields["local"],
                old_local_port=fields["local_port"],
                old_remote=fields["remote"],
                old_remote_port=fields["remote_port"],
                local=msg.get("local-host"),
                local_port=_int(msg.get("local-port")),
                remote=msg.get("remote-host"),
                remote_port=_int(msg.get("remote-port")),
            )
            moved = [
                side
                for side in ("local", "remote")
                if (event[side], event[f"{side}_port"])
                != (event[f"old_{side}"], event[f"old_{side}_port"])
            ]
            event["moved"] = "+".join(moved) or "none"
            if infer and moved:
                # the end that moved sends UPDATE_SA_ADDRESSES; the other receives it
                mover = moved == ["local"]
                event.update(msg="INFORMATIONAL/UPDATE_SA_ADDRESSES", dir="tx" if mover else "rx")
                event["to" if mover else "from"] = event["remote"]
        events.append(event)
    return events


def _child_state_event(kind: str, msg: Mapping[str, Any]) -> list[Event]:
    events = []
    for name, sa in _sections(msg):
        ike = {k: v for k, v in ike_fields(name, sa).items() if k in ("ike", "ike_id")}
        ike.update(local=sa.get("local-host"), remote=sa.get("remote-host"))
        for child in (sa.get("child-sas") or {}).values():
            if kind == "child-updown":
                events.append(
                    {
                        "event": "child_updown",
                        "up": msg.get("up") == "yes",
                        **ike,
                        **child_fields(child),
                    }
                )
            else:
                old, new = child.get("old", {}), child.get("new", {})
                event = {"event": "child_rekey", **ike, **child_fields(new)}
                event.update(
                    old_child_id=_int(old.get("uniqueid")),
                    old_spi_in=old.get("spi-in"),
                    old_spi_out=old.get("spi-out"),
                )
                events.append(event)
    return events


def state_events(kind: str, message: Mapping[str, Any], infer: bool = False) -> list[Event]:
    """Structured events (without ``t_ns``/``node``) for one vici event message."""
    msg = _text(message)
    if kind in ("ike-updown", "ike-update", "ike-rekey"):
        return _ike_state_event(kind, msg, infer)
    if kind in ("child-updown", "child-rekey"):
        return _child_state_event(kind, msg)
    return []


# -- IKE messages from the control log ------------------------------------------------------

_GENERATING = re.compile(r"^(generating|parsed) (\S+) (request|response) (\d+) \[ ?(.*?) ?\]$")
_PACKET = re.compile(
    r"^(sending|received) packet: from (\S+)\[(\d+)\] to (\S+)\[(\d+)\] \((\d+) bytes\)$"
)
_RETRANSMIT = re.compile(r"^retransmit (\d+) of request with message ID (\d+)$")

# Payload -> label for exchanges that are told apart by content (RFC 4555, RFC 7296)
_INFORMATIONAL = (
    ("N(UPD_SA_ADDR)", "INFORMATIONAL/UPDATE_SA_ADDRESSES"),
    ("D", "INFORMATIONAL/DELETE"),
    ("N(ADD_4_ADDR)", "INFORMATIONAL/ADDITIONAL_ADDRESSES"),
    ("N(ADD_6_ADDR)", "INFORMATIONAL/ADDITIONAL_ADDRESSES"),
    ("N(NO_ADD_ADDR)", "INFORMATIONAL/ADDITIONAL_ADDRESSES"),
    ("N(AUTH_FAILED)", "INFORMATIONAL/AUTHENTICATION_FAILED"),
)


def exchange_label(exchange: str, payloads: list[str]) -> str:
    """``INFORMATIONAL`` + ``[N(UPD_SA_ADDR) ...]`` -> ``INFORMATIONAL/UPDATE_SA_ADDRESSES``.

    An empty INFORMATIONAL is a liveness check (DPD, or MOBIKE's path check before an
    update); CREATE_CHILD_SA with REKEY_SA rekeys a CHILD_SA, without TS the IKE SA.
    """
    if exchange == "INFORMATIONAL":
        for payload, label in _INFORMATIONAL:
            if payload in payloads:
                return label
        return exchange
    if exchange == "CREATE_CHILD_SA":
        if "N(REKEY_SA)" in payloads:
            return "CREATE_CHILD_SA/REKEY"  # a CHILD_SA rekey
        if "KE" in payloads and "TSi" not in payloads:
            return "CREATE_CHILD_SA/REKEY_IKE"  # no traffic selectors: the IKE SA itself
    if exchange == "IKE_AUTH" and "N(AUTH_FAILED)" in payloads:
        return "IKE_AUTH/AUTHENTICATION_FAILED"
    return exchange


class MessageTracker:
    """Turns charon's log lines into ``ike_message`` events (pure state machine; no I/O).

    A sent message is logged as "generating X request N [...]" then "sending packet: from
    A[p] to B[q] (n bytes)" on the same thread; a received one as "received packet: ..."
    then "parsed X response N [...]", also on one thread. Responses get the label of their
    request, so both ends of an exchange name it alike.
    """

    def __init__(self) -> None:
        self.pending_tx: dict[str, Event] = {}  # thread -> generated, not yet sent
        self.pending_rx: dict[str, tuple[int, re.Match[str]]] = {}  # thread -> packet
        # (ike_id, who sent the request: "local"/"remote", msg_id) -> label of the request
        self.labels: dict[tuple[Any, str, int], str] = {}

    def feed(self, t_ns: int, log: Mapping[str, Any]) -> list[Event]:
        text = str(log.get("msg", ""))
        thread = str(log.get("thread", ""))
        ike = log.get("ikesa-name")
        ike_id = _int(log.get("ikesa-uniqueid"))
        m = _GENERATING.match(text)
        if m:
            verb, exchange, kind, msg_id, payload_text = m.groups()
            payloads = payload_text.split()
            requester = "local" if (verb == "generating") == (kind == "request") else "remote"
            key = (ike_id, requester, int(msg_id))
            label = exchange_label(exchange, payloads)
            if kind == "request":
                self.labels[key] = label
            else:
                label = self.labels.pop(key, label)
            if len(self.labels) > 256:  # exchanges whose response never came
                self.labels.pop(next(iter(self.labels)))
            event: Event = {
                "event": "ike_message",
                "msg": label,
                "exchange": exchange,
                "kind": kind,
                "msg_id": int(msg_id),
                "payloads": payloads,
                "ike": ike,
                "ike_id": ike_id,
            }
            if verb == "generating":
                self.pending_tx[thread] = event
                return []
            packet = self.pending_rx.pop(thread, None)
            if packet is None:
                return []
            t_rx, pm = packet
            event.update(
                t_ns=t_rx,
                dir="rx",
                **{"from": pm.group(2)},
                from_port=int(pm.group(3)),
                local=pm.group(4),
                local_port=int(pm.group(5)),
                bytes=int(pm.group(6)),
            )
            return [event]
        m = _PACKET.match(text)
        if m:
            if m.group(1) == "received":
                self.pending_rx[thread] = (t_ns, m)
                return []
            generated = self.pending_tx.get(thread)
            if generated is None:
                return []
            event = dict(generated)
            event.update(
                t_ns=t_ns,
                dir="tx",
                to=m.group(4),
                to_port=int(m.group(5)),
                local=m.group(2),
                local_port=int(m.group(3)),
                bytes=int(m.group(6)),
            )
            if generated.pop("retransmit", None) is not None:
                # a retransmission is sent once; later packets on this thread are not it
                del self.pending_tx[thread]
            return [event]
        m = _RETRANSMIT.match(text)
        if m:
            attempt, msg_id = int(m.group(1)), int(m.group(2))
            label = self.labels.get((ike_id, "local", msg_id), "?")
            self.pending_tx[thread] = {
                "event": "ike_message",
                "msg": label,
                "exchange": label.split("/")[0],
                "kind": "request",
                "msg_id": msg_id,
                "payloads": [],
                "ike": ike,
                "ike_id": ike_id,
                "retransmit": attempt,
            }
        return []


# One line of charon's file log as rendered by templates/strongswan.conf.j2:
#   "1763932330.539 13[NET] <home|1> sending packet: from ..."   (time_format = %s + ms)
# The IKE SA part is "<name|id>", "<id>" before the SA has a name, or absent.
_LOG_LINE = re.compile(r"^(\d+)\.(\d{3}) (\d+)\[(\w+)\] (?:<(?:(.*)\|)?(\d+)> )?(.*)$")


class WallClock:
    """Wall clock -> CLOCK_MONOTONIC for the log files' timestamps: one offset for the whole
    process, so that the same millisecond on two nodes maps to the same t_ns (with an offset
    per listener, microseconds of sampling jitter could put a reception before its
    transmission), taken again when the wall clock was stepped. A step (NTP or chrony
    setting a CI machine's clock; here 6 s during a suite round) used to shift every IKE
    message of the rest of the process by its size: IKE_AUTH stamped after the first packet
    through its SA, the set-up's IKE_SA_INIT after a later move (four tests failed)."""

    STEP_NS = 20_000_000  # farther than this from the offset: stepped (a slew is slower)

    def __init__(self) -> None:
        self.offset_ns = time.time_ns() - time.monotonic_ns()
        self.lock = threading.Lock()

    def monotonic_ns(self, wall_ns: int) -> int:
        """``wall_ns`` (a time charon wrote a line, read just now) on CLOCK_MONOTONIC."""
        now = time.time_ns() - time.monotonic_ns()
        with self.lock:
            if abs(now - self.offset_ns) > self.STEP_NS:
                self.offset_ns = now
            return wall_ns - self.offset_ns


WALL_CLOCK = WallClock()


def parse_log_line(line: str) -> tuple[int, dict[str, Any]] | None:
    """(wall-clock ns, the fields vici's ``log`` event would carry) or None."""
    m = _LOG_LINE.match(line.rstrip("\n"))
    if m is None:
        return None
    seconds, millis, thread, group, name, ike_id, text = m.groups()
    fields = {"thread": thread, "group": group, "msg": text}
    if ike_id is not None:
        fields["ikesa-uniqueid"] = ike_id
        fields["ikesa-name"] = name if name is not None else "(unnamed)"
    return (int(seconds) * 1000 + int(millis)) * 1_000_000, fields


# -- the listener ----------------------------------------------------------------------------


class EventListener:
    """Structured events of one charon, passed to ``callback`` (e.g. ``EventWriter.record``).

    State events come from a vici session of its own (``listen`` takes a session over),
    registered in :meth:`start`, so nothing after ``start()`` returns is missed. With
    ``log_file`` (the instance's file log) IKE messages are followed there too. Both run in
    background threads; calls to ``callback`` are serialised.
    """

    def __init__(
        self,
        vici_socket: Path | str,
        node: str,
        callback: Callback,
        *,
        log_file: Path | str | None = None,
        poll_s: float = 0.002,
    ) -> None:
        self.vici_socket = str(vici_socket)
        self.node = node
        self.callback = callback
        self.log_file = Path(log_file) if log_file is not None else None
        self.poll_s = poll_s
        self.tracker = MessageTracker()
        self.error: BaseException | None = None  # why a thread ended, if not by stop()
        self._sock: socket.socket | None = None
        self._transport: Transport | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._emit_lock = threading.Lock()
        self._early: list[tuple[int, Any]] = []  # events that arrived while registering
        self._log: Any = None

    def start(self, timeout: float = 5.0) -> EventListener:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.vici_socket)
            self._transport = Transport(sock)
            for kind in STATE_EVENTS:
                self._register(kind)
            if self.log_file is not None:
                self._log = open(self.log_file, errors="replace")  # noqa: SIM115 (thread owns it)
                self._log.seek(0, 2)  # only what happens from now on
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        self._sock = sock
        self._spawn(self._run_vici, "vici")
        if self._log is not None:
            self._spawn(self._run_log, "log")
        return self

    def _spawn(self, target: Callable[[], None], what: str) -> None:
        thread = threading.Thread(target=target, name=f"{what}-events-{self.node}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _register(self, kind: str) -> None:
        assert self._transport is not None
        self._transport.send(Packet.register_event(kind))
        while True:
            packet = Packet.parse(self._transport.receive())
            if packet.response_type == Packet.EVENT:
                self._early.append((time.monotonic_ns(), packet))
                continue
            if packet.response_type != Packet.EVENT_CONFIRM:
                raise RuntimeError(f"charon refused vici event registration for {kind!r}")
            return

    def _emit(self, events: list[Event], t_ns: int) -> None:
        with self._emit_lock:
            for event in events:
                self.callback({"t_ns": event.pop("t_ns", t_ns), "node": self.node, **event})

    def _run_vici(self) -> None:
        assert self._transport is not None
        try:
            for t_ns, packet in self._early:
                self._dispatch(t_ns, packet)
            self._early.clear()
            while not self._stopping.is_set():
                raw = self._transport.receive()
                t_ns = time.monotonic_ns()
                packet = Packet.parse(raw)
                if packet.response_type == Packet.EVENT:
                    self._dispatch(t_ns, packet)
        except OSError as exc:  # the socket was shut down (stop) or charon went away
            if not self._stopping.is_set():
                self.error = exc
        except Exception as exc:  # a bad message or a failing callback: keep the reason
            self.error = exc

    def _dispatch(self, t_ns: int, packet: Any) -> None:
        kind = packet.event_type.decode()
        message = Message.deserialize(packet.payload)
        self._emit(state_events(kind, message, infer=self.log_file is None), t_ns)

    def _run_log(self) -> None:
        """Follow the log file (charon flushes every line) and feed the message tracker."""
        partial = ""
        try:
            while True:
                chunk = self._log.readline()
                if not chunk:
                    if self._stopping.is_set():
                        return
                    time.sleep(self.poll_s)
                    continue
                partial += chunk
                if not partial.endswith("\n"):
                    continue  # charon is still writing this line
                line, partial = partial, ""
                parsed = parse_log_line(line)
                if parsed is not None:
                    wall_ns, fields = parsed
                    t_ns = WALL_CLOCK.monotonic_ns(wall_ns)
                    self._emit(self.tracker.feed(t_ns, fields), t_ns)
        except Exception as exc:
            self.error = exc

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EventListener:
        if not self._threads:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
