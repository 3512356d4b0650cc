"""Sans-I/O DHCPv4 client state machine (RFC 2131 section 4.4, figure 5).

No sockets and no clock in here: every input carries ``now`` (seconds on any monotonic clock)
and every method returns a list of actions for a driver to carry out, in order. Timer
deadlines in :class:`SetTimer` are absolute times on the same clock as ``now``.

Deviations from RFC 2131 defaults, on purpose, because a mobile node's handoff time depends on
them (all configurable in :class:`ClientConfig`):

* retransmission starts at 0.25 s (RFC 2131 section 4.1 suggests 4 s) and is capped at 2 s
  (RFC: 64 s), without the +/-1 s randomisation unless ``jitter`` is set;
* the first DHCPOFFER is taken (section 4.4.1 allows collecting several);
* no ARP probe/DHCPDECLINE of the offered address (section 4.4.1 "SHOULD").

DHCP has no authentication (RFC 2131 section 7): anyone on the link who sees a broadcast
DISCOVER or REQUEST can answer it first. What a reply must satisfy to change anything is kept
as narrow as the RFC allows (issue 20, item 4; docs/hostile-input.md): a BOOTREPLY with our
``xid`` (new for every exchange, so nothing from before a link change matches) and our
``chaddr``; an OFFER or ACK whose ``yiaddr`` is a unicast address; an ACK or NAK with a server
identifier (RFC 2131 table 3), which while REQUESTING is the chosen offer's and while
RENEWING the lease's server's (the REQUEST went to it alone); an ACK that grants the address
asked for (the offer's, or the lease's in INIT-REBOOT, RENEWING and REBINDING). A frame that is
not a BOOTREPLY for this exchange is ignored before it is parsed, without an event.

Rapid Commit (RFC 4039) is asked for by default: DHCPDISCOVER carries option 80, and a server
that supports it answers with a DHCPACK (also carrying option 80) instead of a DHCPOFFER, so a
co-located care-of address after a move costs one round trip instead of two. Servers that do
not support it send a DHCPOFFER and the normal four-message exchange follows.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from agents.dhcp.codec import (
    BOOTREPLY,
    BOOTREQUEST,
    FLAG_BROADCAST,
    ZERO,
    DhcpMalformed,
    DhcpMessage,
    MessageType,
    Opt,
    decode,
    encode,
)

# Timers and events are the same types every state machine of the project returns.
from agents.mip.actions import CancelTimer, Event, SetTimer

BROADCAST = IPv4Address("255.255.255.255")
INFINITE = 0xFFFFFFFF  # RFC 2132 section 9.2: lease time 0xffffffff means infinity

# Timer names (the driver treats them as opaque strings).
T_RETRANSMIT = "dhcp.retransmit"
T_RENEW = "dhcp.t1"
T_REBIND = "dhcp.t2"
T_EXPIRE = "dhcp.expire"
ALL_TIMERS = (T_RETRANSMIT, T_RENEW, T_REBIND, T_EXPIRE)


# --- actions ------------------------------------------------------------------------------
# agents/mip/actions.py did not exist when this was written; these follow the same idea
# (plain frozen dataclasses: Send/SetTimer/CancelTimer/Event) so one driver loop can run both.


@dataclass(frozen=True)
class SendDhcp:
    """Send ``payload`` as a UDP datagram from port 68 to ``dst`` port 67.

    ``dst`` 255.255.255.255 means a link-layer broadcast on the interface; then ``src`` is the
    IP source to put in the frame (0.0.0.0 before the client has an address, RFC 2131 4.1).
    A unicast goes through normal routing from ``src`` (the bound address).
    """

    payload: bytes
    dst: IPv4Address
    src: IPv4Address = ZERO

    @property
    def broadcast(self) -> bool:
        return self.dst == BROADCAST


@dataclass(frozen=True)
class Lease:
    """A granted lease. Times are on the machine's clock; ``None`` durations mean infinite."""

    address: IPv4Address
    prefix_len: int
    router: IPv4Address | None
    server_id: IPv4Address
    # When the REQUEST that won it was first sent (RFC 2131 section 4.4.1); with Rapid
    # Commit (RFC 4039), the DISCOVER.
    start: float
    lease_time: int | None
    t1: float | None
    t2: float | None
    dns: tuple[IPv4Address, ...] = ()

    @property
    def expires_at(self) -> float | None:
        return None if self.lease_time is None else self.start + self.lease_time

    @property
    def network(self) -> IPv4Network:
        return IPv4Network(f"{self.address}/{self.prefix_len}", strict=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": str(self.address),
            "prefix_len": self.prefix_len,
            "router": None if self.router is None else str(self.router),
            "server": str(self.server_id),
            "lease_time": self.lease_time,
            "t1": self.t1,
            "t2": self.t2,
            "dns": [str(a) for a in self.dns],
        }


@dataclass(frozen=True)
class Bound:
    """Configure ``lease`` on the interface; remove ``previous`` first if it differs.

    ``rapid_commit``: the lease came from a Rapid Commit DHCPACK to our DISCOVER (RFC 4039),
    so that the driver's own events can say how the address was obtained.
    """

    lease: Lease
    previous: Lease | None = None
    rapid_commit: bool = False


@dataclass(frozen=True)
class Unbound:
    """Stop using ``lease`` (remove its address and route). ``reason``: expired/nak/..."""

    lease: Lease
    reason: str


Action = SendDhcp | SetTimer | CancelTimer | Event | Bound | Unbound


class State(StrEnum):
    """RFC 2131 figure 5. INIT doubles as "idle" (before start, after link down/release)."""

    INIT = "init"
    SELECTING = "selecting"
    REQUESTING = "requesting"
    REBOOTING = "rebooting"
    BOUND = "bound"
    RENEWING = "renewing"
    REBINDING = "rebinding"


@dataclass(frozen=True)
class ClientConfig:
    chaddr: bytes  # the interface's MAC address
    client_id: bytes | None = None  # default: 0x01 + chaddr (RFC 2132 section 9.14)
    initial_timeout: float = 0.25
    max_timeout: float = 2.0
    jitter: float = 0.0  # +/- fraction of each retransmission delay
    # RFC 2131 3.1 step 5 / 3.2 step 3: after this many unanswered REQUESTs, back to INIT.
    max_request_attempts: int = 4
    # RFC 2131 4.4.5: in RENEWING/REBINDING retransmit after half the remaining time, >= 60 s.
    renew_retransmit_min: float = 60.0
    # RFC 2131 4.1: set when we cannot take a unicast before configuring. The driver can (it
    # receives on a packet socket), but broadcast replies also work with a plain UDP socket.
    broadcast_flag: bool = True
    # RFC 4039: ask for the two-message exchange (option 80 in DHCPDISCOVER). Off only to
    # measure or to mimic a client without it; servers that lack it just ignore the option.
    rapid_commit: bool = True
    param_request: tuple[int, ...] = (
        Opt.SUBNET_MASK,
        Opt.ROUTER,
        Opt.DNS,
        Opt.LEASE_TIME,
        Opt.SERVER_ID,
        Opt.T1,
        Opt.T2,
    )

    def __post_init__(self) -> None:
        if not 0 < len(self.chaddr) <= 16:
            raise ValueError("chaddr must be 1..16 bytes")
        if not 0 < self.initial_timeout <= self.max_timeout:
            raise ValueError("need 0 < initial_timeout <= max_timeout")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a fraction in [0, 1)")
        if self.max_request_attempts < 1:
            raise ValueError("max_request_attempts must be >= 1")


def _assignable(addr: IPv4Address) -> bool:
    """A unicast address a server may give a client (not 0/8, loopback, multicast, 240/4 or
    broadcast)."""
    return not (addr.packed[0] == 0 or addr.is_loopback or addr.is_multicast or addr.is_reserved)


def _classful_prefix(addr: IPv4Address) -> int:
    # RFC 2131 gives no default; without option 1 fall back to the classful mask (as dhclient).
    first = addr.packed[0]
    return 8 if first < 128 else 16 if first < 192 else 24


def _prefix_len(mask: IPv4Address | None, addr: IPv4Address) -> int:
    if mask is None:
        return _classful_prefix(addr)
    try:
        return IPv4Network(f"0.0.0.0/{mask}").prefixlen
    except ValueError:  # non-contiguous mask
        return _classful_prefix(addr)


class DhcpClient:
    """The client machine. Inputs return ``list[Action]``; see the module docstring."""

    def __init__(
        self, config: ClientConfig, rng: random.Random | Callable[[], int] | None = None
    ) -> None:
        self.config = config
        if rng is None:
            rng = random.SystemRandom()
        self._rng = rng
        self.state = State.INIT
        self.lease: Lease | None = None  # current, or the last one (kept across link_down)
        self.xid = 0
        self.offer: DhcpMessage | None = None
        self.attempts = 0  # transmissions in the current exchange
        self._began = 0.0  # start of the exchange, for 'secs' (RFC 2131 section 2)
        self._request_first_sent = 0.0
        self._timers: dict[str, float] = {}
        # replies not taken: for no exchange of ours (no event), malformed, refused (events)
        self.counters: dict[str, int] = {"not_ours": 0, "malformed": 0, "refused": 0}

    # --- helpers --------------------------------------------------------------------------

    def _new_xid(self) -> int:
        if isinstance(self._rng, random.Random):
            return self._rng.getrandbits(32)
        return self._rng() & 0xFFFFFFFF

    def _uniform(self, a: float, b: float) -> float:
        return self._rng.uniform(a, b) if isinstance(self._rng, random.Random) else (a + b) / 2

    @property
    def client_id(self) -> bytes:
        return self.config.client_id or b"\x01" + self.config.chaddr

    def _set(self, name: str, at: float) -> SetTimer:
        self._timers[name] = at
        return SetTimer(name, at)

    def _cancel(self, *names: str) -> list[Action]:
        out: list[Action] = []
        for name in names:
            if self._timers.pop(name, None) is not None:
                out.append(CancelTimer(name))
        return out

    def _backoff(self, now: float) -> SetTimer:
        # RFC 2131 section 4.1: exponential backoff, here from a LAN-sized first timeout.
        cfg = self.config
        delay = min(cfg.initial_timeout * 2 ** max(self.attempts - 1, 0), cfg.max_timeout)
        if cfg.jitter:
            delay *= 1 + self._uniform(-cfg.jitter, cfg.jitter)
        return self._set(T_RETRANSMIT, now + delay)

    def _message(
        self, mtype: MessageType, now: float, ciaddr: IPv4Address = ZERO, **opts: bytes
    ) -> bytes:
        options: list[tuple[int, bytes]] = [(Opt.MESSAGE_TYPE, bytes((mtype,)))]
        options.append((Opt.CLIENT_ID, self.client_id))
        for code, key in ((Opt.REQUESTED_IP, "requested"), (Opt.SERVER_ID, "server")):
            if key in opts:
                options.append((code, opts[key]))
        if mtype in (MessageType.DISCOVER, MessageType.REQUEST):
            options.append((Opt.PARAM_REQUEST, bytes(self.config.param_request)))
        if mtype == MessageType.DISCOVER and self.config.rapid_commit:
            # RFC 4039 section 3: asked for in DISCOVER only (a REQUEST gets an ACK anyway).
            options.append((Opt.RAPID_COMMIT, b""))
        # RFC 2131 section 4.1: the broadcast bit only when the client has no address yet.
        flags = FLAG_BROADCAST if self.config.broadcast_flag and ciaddr == ZERO else 0
        msg = DhcpMessage(
            op=BOOTREQUEST,
            xid=self.xid,
            chaddr=self.config.chaddr,
            secs=min(max(int(now - self._began), 0), 0xFFFF),
            flags=flags,
            ciaddr=ciaddr,
            options=tuple(options),
        )
        return encode(msg)

    def _unbind(self, reason: str) -> list[Action]:
        if self.lease is None:
            return []
        lease, self.lease = self.lease, None
        return [Unbound(lease, reason)]

    # --- transmissions --------------------------------------------------------------------

    def _send_discover(self, now: float) -> list[Action]:
        self.attempts += 1
        if self.attempts == 1:
            # With Rapid Commit the DISCOVER is what wins the lease, so lease times count
            # from it (RFC 2131 4.4.1, earliest send: never later than the server's clock).
            self._request_first_sent = now
        payload = self._message(MessageType.DISCOVER, now)
        data = {"xid": self.xid, "attempt": self.attempts, "rapid_commit": self.config.rapid_commit}
        return [
            SendDhcp(payload, BROADCAST),
            Event("dhcp_discover_sent", data),
            self._backoff(now),
        ]

    def _send_request(self, now: float) -> list[Action]:
        self.attempts += 1
        if self.attempts == 1:
            self._request_first_sent = now
        out: list[Action] = []
        if self.state is State.REQUESTING:
            assert self.offer is not None and self.offer.server_id is not None
            # RFC 2131 4.3.2 SELECTING: ciaddr 0, 'requested IP' and 'server identifier' set.
            payload = self._message(
                MessageType.REQUEST,
                now,
                requested=self.offer.yiaddr.packed,
                server=self.offer.server_id.packed,
            )
            out.append(SendDhcp(payload, BROADCAST))
            out.append(self._backoff(now))
        elif self.state is State.REBOOTING:
            assert self.lease is not None
            # RFC 2131 4.3.2 INIT-REBOOT: ciaddr 0, 'requested IP' set, no server identifier.
            payload = self._message(MessageType.REQUEST, now, requested=self.lease.address.packed)
            out.append(SendDhcp(payload, BROADCAST))
            out.append(self._backoff(now))
        else:
            assert self.lease is not None
            # RFC 2131 4.3.2 RENEWING (unicast to the server) / REBINDING (broadcast): ciaddr
            # set, neither option 50 nor 54.
            addr = self.lease.address
            payload = self._message(MessageType.REQUEST, now, ciaddr=addr)
            if self.state is State.RENEWING:
                out.append(SendDhcp(payload, self.lease.server_id, src=addr))
                until = self._timers.get(T_REBIND)
            else:
                out.append(SendDhcp(payload, BROADCAST, src=addr))
                until = self._timers.get(T_EXPIRE)
            # RFC 2131 4.4.5: wait half the remaining time (at least 60 s by default).
            if until is not None:
                delay = max((until - now) / 2, self.config.renew_retransmit_min)
                if now + delay < until:
                    out.append(self._set(T_RETRANSMIT, now + delay))
        out.insert(
            1,
            Event(
                "dhcp_request_sent",
                {"xid": self.xid, "attempt": self.attempts, "state": str(self.state)},
            ),
        )
        return out

    # --- inputs ---------------------------------------------------------------------------

    def start(self, now: float, *, try_reboot: bool = False) -> list[Action]:
        """Begin acquiring (link up). ``try_reboot``: first ask to keep the last lease
        (INIT-REBOOT, RFC 2131 3.2) -- only sensible when back on the same network."""
        out = self._cancel(*ALL_TIMERS)
        self.offer = None
        self.attempts = 0
        self._began = now
        self.xid = self._new_xid()
        expires = self.lease.expires_at if self.lease else None
        if try_reboot and self.lease is not None and (expires is None or expires > now):
            self.state = State.REBOOTING
            return out + self._send_request(now)
        out += self._unbind("expired" if expires is not None and expires <= now else "restart")
        self.state = State.SELECTING
        return out + self._send_discover(now)

    def link_down(self, now: float) -> list[Action]:
        """Stop all exchanges. The lease is kept (for ``start(try_reboot=True)``) and not
        unconfigured: on a move, the next ``start`` unbinds or replaces it."""
        out = self._cancel(*ALL_TIMERS)
        self.state = State.INIT
        self.offer = None
        return [*out, Event("dhcp_link_down", {})]

    def stop(self, now: float) -> list[Action]:
        """Stop acquiring: the embedding agent needs no address here (a mobile node back
        home). The exchange in progress ends and the client waits in INIT for the next
        ``start``; a bound lease is left as it is, renewals included (its address is in
        use), as is one kept across ``link_down``."""
        if self.state not in (State.SELECTING, State.REQUESTING, State.REBOOTING):
            return []
        stopped = self.state
        out = self._cancel(*ALL_TIMERS)
        self.state = State.INIT
        self.offer = None
        return [*out, Event("dhcp_stopped", {"state": str(stopped)})]

    def release(self, now: float) -> list[Action]:
        """Give the lease back (RFC 2131 4.4.6: DHCPRELEASE unicast to the server)."""
        out = self._cancel(*ALL_TIMERS)
        if self.lease is not None and self.state in (State.BOUND, State.RENEWING, State.REBINDING):
            self.xid = self._new_xid()
            self._began = now
            payload = self._message(
                MessageType.RELEASE,
                now,
                ciaddr=self.lease.address,
                server=self.lease.server_id.packed,
            )
            out.append(SendDhcp(payload, self.lease.server_id, src=self.lease.address))
            out.append(Event("dhcp_release_sent", {"address": str(self.lease.address)}))
        self.state = State.INIT
        self.offer = None
        return out + self._unbind("released")

    def renew(self, now: float) -> list[Action]:
        """Renew now instead of at T1 (e.g. to check the lease after a suspected move)."""
        if self.state is not State.BOUND:
            return []
        return self._cancel(T_RENEW) + self._start_renewing(now)

    def _start_renewing(self, now: float) -> list[Action]:
        # RFC 2131 4.4.5: at T1 unicast a REQUEST to the server that granted the lease.
        self.state = State.RENEWING
        self.xid = self._new_xid()
        self.attempts = 0
        self._began = now
        return [Event("dhcp_renewing", {}), *self._send_request(now)]

    def handle_timer(self, name: str, now: float) -> list[Action]:
        if self._timers.pop(name, None) is None:
            return []  # cancelled or never armed: a stale timer from the driver
        if name == T_RETRANSMIT:
            return self._on_retransmit(now)
        if name == T_RENEW and self.state is State.BOUND:
            return self._start_renewing(now)
        if name == T_REBIND and self.state in (State.BOUND, State.RENEWING):
            # RFC 2131 4.4.5: at T2 broadcast the REQUEST to any server.
            self.state = State.REBINDING
            self.attempts = 0
            out: list[Action] = [*self._cancel(T_RETRANSMIT), Event("dhcp_rebinding", {})]
            return out + self._send_request(now)
        if name == T_EXPIRE:
            # RFC 2131 4.4.5: lease gone -> stop using the address, back to INIT.
            lease = self.lease
            out = [Event("lease_expired", {"address": str(lease.address) if lease else None})]
            return out + self._unbind("expired") + self.start(now)
        return []

    def _on_retransmit(self, now: float) -> list[Action]:
        if self.state is State.SELECTING:
            return self._send_discover(now)
        if self.state in (State.REQUESTING, State.REBOOTING):
            if self.attempts >= self.config.max_request_attempts:
                # RFC 2131 3.1 step 5 / 3.2 step 3: no answer to REQUEST -> restart at INIT.
                reason = f"no reply to {self.attempts} requests"
                return [Event("dhcp_request_timeout", {"reason": reason}), *self.start(now)]
            return self._send_request(now)
        if self.state in (State.RENEWING, State.REBINDING):
            return self._send_request(now)
        return []

    def handle_packet(self, data: bytes, now: float) -> list[Action]:
        if self.state is State.INIT:
            return []
        if len(data) < 8 or data[0] != BOOTREPLY or int.from_bytes(data[4:8], "big") != self.xid:
            self.counters["not_ours"] += 1
            return []  # not for this exchange, whatever else it is: no parse, no event
        try:
            msg = decode(data)
        except DhcpMalformed as exc:
            self.counters["malformed"] += 1
            return [Event("dhcp_ignored", {"reason": f"malformed: {exc.reason}"})]
        if msg.op != BOOTREPLY or msg.xid != self.xid:
            return []  # not for this exchange (RFC 2131 4.4.1: match on xid)
        if msg.chaddr[: len(self.config.chaddr)] != self.config.chaddr:
            self.counters["not_ours"] += 1
            return []
        out = self._on_reply(msg, now)
        if not out or (isinstance(out[0], Event) and out[0].name == "dhcp_ignored"):
            self.counters["refused"] += 1
        return out

    def _on_reply(self, msg: DhcpMessage, now: float) -> list[Action]:
        mtype = msg.message_type
        if mtype == MessageType.OFFER and self.state is State.SELECTING:
            return self._on_offer(msg, now)
        if mtype == MessageType.ACK and self.state is State.SELECTING:
            return self._on_rapid_ack(msg, now)
        if mtype == MessageType.ACK and self.state not in (State.SELECTING, State.BOUND):
            return self._on_ack(msg, now)
        if mtype == MessageType.NAK and self.state not in (State.SELECTING, State.BOUND):
            return self._on_nak(msg, now)
        return []

    def _on_offer(self, msg: DhcpMessage, now: float) -> list[Action]:
        if msg.server_id is None or msg.yiaddr == ZERO:
            # RFC 2131 table 3: an OFFER MUST carry a server identifier and yiaddr.
            return [Event("dhcp_ignored", {"reason": "offer without server id or yiaddr"})]
        if not _assignable(msg.yiaddr):
            return [Event("dhcp_ignored", {"reason": f"offer of {msg.yiaddr}"})]
        self.offer = msg
        self.state = State.REQUESTING
        self.attempts = 0
        event = Event(
            "dhcp_offer",
            {"address": str(msg.yiaddr), "server": str(msg.server_id), "xid": self.xid},
        )
        return [event, *self._cancel(T_RETRANSMIT), *self._send_request(now)]

    def _on_rapid_ack(self, msg: DhcpMessage, now: float) -> list[Action]:
        # RFC 4039 section 3: while selecting, only an ACK carrying Rapid Commit answers our
        # DISCOVER -- and only if we asked for it. Any other ACK is not part of this exchange
        # and is dropped silently, as it was before Rapid Commit.
        if not (self.config.rapid_commit and msg.rapid_commit):
            return []
        if msg.server_id is None:
            # RFC 2131 table 3: an ACK MUST carry it. There is no OFFER to fall back on here,
            # and the last lease's server is on the network we left; renewals need it.
            return [Event("dhcp_ignored", {"reason": "rapid commit ack without server id"})]
        return self._on_ack(msg, now, rapid=True)

    def _wrong_server(self, msg: DhcpMessage) -> str | None:
        """Why an ACK or NAK cannot be the answer to our REQUEST, None if it can: it must name
        its server (RFC 2131 table 3), and in REQUESTING that is the offer's (our REQUEST named
        it), in RENEWING the lease's (our REQUEST was unicast to it)."""
        if msg.server_id is None:
            return "without server id"
        if self.state is State.REQUESTING:
            assert self.offer is not None
            expected = self.offer.server_id
        elif self.state is State.RENEWING:
            assert self.lease is not None
            expected = self.lease.server_id
        else:  # SELECTING (Rapid Commit), REBOOTING, REBINDING: any server may answer
            return None
        return None if msg.server_id == expected else "from another server"

    def _asked_for(self) -> IPv4Address | None:
        """The address our REQUEST asked for (None: any, a Rapid Commit DISCOVER)."""
        if self.state is State.REQUESTING:
            assert self.offer is not None
            return self.offer.yiaddr
        if self.state in (State.REBOOTING, State.RENEWING, State.REBINDING):
            assert self.lease is not None
            return self.lease.address
        return None

    def _on_ack(self, msg: DhcpMessage, now: float, *, rapid: bool = False) -> list[Action]:
        wrong = self._wrong_server(msg)
        if wrong is not None:
            return [Event("dhcp_ignored", {"reason": f"ack {wrong}"})]
        if msg.yiaddr == ZERO:
            return [Event("dhcp_ignored", {"reason": "ack without yiaddr"})]
        if not _assignable(msg.yiaddr):
            return [Event("dhcp_ignored", {"reason": f"ack of {msg.yiaddr}"})]
        asked = self._asked_for()
        if asked is not None and msg.yiaddr != asked:
            return [Event("dhcp_ignored", {"reason": f"ack of {msg.yiaddr}, not {asked}"})]
        lease_time = msg.lease_time
        if lease_time is None and self.offer is not None:
            lease_time = self.offer.lease_time
        if lease_time is None:
            # RFC 2131 table 3: an ACK to a REQUEST MUST carry the lease time.
            return [Event("dhcp_ignored", {"reason": "ack without lease time"})]
        server = msg.server_id
        assert server is not None  # (_wrong_server)
        lease = self._make_lease(msg, lease_time, server)
        previous = self.lease
        self.lease = lease
        self.state = State.BOUND
        self.offer = None
        out: list[Action] = self._cancel(*ALL_TIMERS)
        out.append(
            Event(
                "dhcp_ack",
                {
                    **lease.to_dict(),
                    "xid": self.xid,
                    "elapsed": now - self._began,
                    "rapid_commit": rapid,
                },
            )
        )
        out.append(Bound(lease, previous, rapid_commit=rapid))
        if lease.lease_time is not None:
            assert lease.t1 is not None and lease.t2 is not None
            # Lease times count from our first DISCOVER/REQUEST (RFC 2131 4.4.1); after a
            # slow exchange on a short lease they may already have passed: act at once.
            out.append(self._set(T_RENEW, max(now, lease.start + lease.t1)))
            out.append(self._set(T_REBIND, max(now, lease.start + lease.t2)))
            out.append(self._set(T_EXPIRE, max(now, lease.start + lease.lease_time)))
        return out

    def _make_lease(self, msg: DhcpMessage, lease_time: int, server: IPv4Address) -> Lease:
        if lease_time == INFINITE:
            duration: int | None = None
            t1: float | None = None
            t2: float | None = None
        else:
            duration = lease_time
            # RFC 2131 4.4.5: defaults T1 = 0.5 * lease, T2 = 0.875 * lease; keep the server's
            # values only when they are ordered T1 < T2 < lease.
            t1 = float(msg.t1) if msg.t1 is not None else 0.5 * lease_time
            t2 = float(msg.t2) if msg.t2 is not None else 0.875 * lease_time
            if not 0 < t1 < t2 < lease_time:
                t1, t2 = 0.5 * lease_time, 0.875 * lease_time
        routers = msg.routers
        return Lease(
            address=msg.yiaddr,
            prefix_len=_prefix_len(msg.subnet_mask, msg.yiaddr),
            router=routers[0] if routers else None,
            server_id=server,
            start=self._request_first_sent,
            lease_time=duration,
            t1=t1,
            t2=t2,
            dns=msg.dns_servers,
        )

    def _on_nak(self, msg: DhcpMessage, now: float) -> list[Action]:
        wrong = self._wrong_server(msg)
        if wrong is not None:
            return [Event("dhcp_ignored", {"reason": f"nak {wrong}"})]
        # RFC 2131 3.1 step 5 / 4.4.5: on DHCPNAK drop the address and restart at INIT.
        event = Event(
            "dhcp_nak",
            {
                "server": None if msg.server_id is None else str(msg.server_id),
                "message": msg.text,
                "state": str(self.state),
            },
        )
        return [event, *self._unbind("nak"), *self.start(now)]
