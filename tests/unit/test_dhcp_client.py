"""DHCP client state machine against a fake clock and a scripted server (no I/O)."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import pytest

from agents.dhcp.client import (
    BROADCAST,
    T_EXPIRE,
    T_REBIND,
    T_RENEW,
    T_RETRANSMIT,
    Action,
    Bound,
    CancelTimer,
    ClientConfig,
    DhcpClient,
    Event,
    Lease,
    SendDhcp,
    SetTimer,
    State,
    Unbound,
)
from agents.dhcp.codec import (
    BOOTREPLY,
    FLAG_BROADCAST,
    ZERO,
    DhcpMessage,
    MessageType,
    Opt,
    decode,
    encode,
)

MAC = bytes.fromhex("02000000aa01")
SERVER = IPv4Address("10.9.0.1")
OTHER = IPv4Address("10.9.0.2")
ADDR = IPv4Address("10.9.0.150")


def reply(
    request: DhcpMessage,
    mtype: MessageType,
    *,
    server: IPv4Address | None = SERVER,
    yiaddr: IPv4Address = ADDR,
    lease: int | None = 100,
    t1: int | None = None,
    t2: int | None = None,
    mask: str | None = "255.255.255.0",
    router: IPv4Address | None = SERVER,
    xid: int | None = None,
    rapid: bool = False,
) -> bytes:
    opts: list[tuple[int, bytes]] = [(Opt.MESSAGE_TYPE, bytes([mtype]))]
    if server is not None:
        opts.append((Opt.SERVER_ID, server.packed))
    if rapid:
        opts.append((Opt.RAPID_COMMIT, b""))
    if mtype != MessageType.NAK:
        for code, value in ((Opt.LEASE_TIME, lease), (Opt.T1, t1), (Opt.T2, t2)):
            if value is not None:
                opts.append((code, struct.pack("!I", value)))
        if mask is not None:
            opts.append((Opt.SUBNET_MASK, IPv4Address(mask).packed))
        if router is not None:
            opts.append((Opt.ROUTER, router.packed))
    else:
        opts.append((Opt.MESSAGE, b"wrong network"))
    msg = DhcpMessage(
        op=BOOTREPLY,
        xid=request.xid if xid is None else xid,
        chaddr=request.chaddr,
        yiaddr=ZERO if mtype == MessageType.NAK else yiaddr,
        options=tuple(opts),
    )
    return encode(msg)


@dataclass
class Harness:
    """A fake driver: keeps timers, collects sends/events, applies Bound/Unbound."""

    client: DhcpClient
    now: float = 0.0
    timers: dict[str, float] = field(default_factory=dict)
    sent: list[tuple[float, SendDhcp]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    applied: list[Bound | Unbound] = field(default_factory=list)

    def feed(self, actions: list[Action]) -> list[Action]:
        for a in actions:
            if isinstance(a, SendDhcp):
                self.sent.append((self.now, a))
            elif isinstance(a, SetTimer):
                assert a.at >= self.now
                self.timers[a.name] = a.at
            elif isinstance(a, CancelTimer):
                self.timers.pop(a.name)  # the machine only cancels what it armed
            elif isinstance(a, Event):
                self.events.append(a)
            else:
                self.applied.append(a)
        return actions

    def start(self, **kw: bool) -> list[Action]:
        return self.feed(self.client.start(self.now, **kw))

    def packet(self, data: bytes) -> list[Action]:
        return self.feed(self.client.handle_packet(data, self.now))

    def advance(self, to: float) -> None:
        """Fire due timers in deadline order up to time ``to``."""
        while True:
            due = [(at, n) for n, at in self.timers.items() if at <= to]
            if not due:
                break
            at, name = min(due)
            self.now = at
            del self.timers[name]
            self.feed(self.client.handle_timer(name, at))
        self.now = to

    def last(self) -> DhcpMessage:
        return decode(self.sent[-1][1].payload)

    def names(self) -> list[str]:
        return [e.name for e in self.events]

    def bind(self, **kw: object) -> Lease:
        """Run DISCOVER/OFFER/REQUEST/ACK and return the lease."""
        self.start()
        self.packet(reply(self.last(), MessageType.OFFER))
        self.packet(reply(self.last(), MessageType.ACK, **kw))  # type: ignore[arg-type]
        bound = self.applied[-1]
        assert isinstance(bound, Bound)
        return bound.lease


def make(**cfg: object) -> Harness:
    config = ClientConfig(chaddr=MAC, **cfg)  # type: ignore[arg-type]
    return Harness(DhcpClient(config, random.Random(7)))


def test_discover_contents() -> None:
    h = make()
    h.start()
    assert h.client.state is State.SELECTING
    send = h.sent[0][1]
    assert send.dst == BROADCAST and send.src == ZERO and send.broadcast
    msg = h.last()
    assert msg.message_type == MessageType.DISCOVER
    assert msg.flags == FLAG_BROADCAST and msg.chaddr == MAC and msg.xid == h.client.xid
    assert msg.client_id == b"\x01" + MAC
    assert Opt.ROUTER in msg.param_request and Opt.SUBNET_MASK in msg.param_request
    assert h.names() == ["dhcp_discover_sent"]
    assert h.timers == {T_RETRANSMIT: 0.25}


def test_discover_backoff_doubles_and_caps_with_same_xid() -> None:
    h = make(initial_timeout=0.25, max_timeout=2.0)
    h.start()
    h.advance(9.0)
    times = [t for t, _ in h.sent]
    assert times == [0.0, 0.25, 0.75, 1.75, 3.75, 5.75, 7.75]
    assert {decode(s.payload).xid for _, s in h.sent} == {h.client.xid}
    assert [decode(s.payload).secs for _, s in h.sent] == [0, 0, 0, 1, 3, 5, 7]


def test_jitter_stays_within_bounds() -> None:
    h = make(initial_timeout=1.0, max_timeout=1.0, jitter=0.1)
    h.start()
    h.advance(30.0)
    gaps = [b - a for (a, _), (b, _) in zip(h.sent, h.sent[1:], strict=False)]
    assert all(0.9 <= g <= 1.1 for g in gaps) and len(set(gaps)) > 1


def test_offer_request_ack() -> None:
    h = make()
    h.start()
    h.now = 0.01
    h.packet(reply(h.last(), MessageType.OFFER))
    assert h.client.state is State.REQUESTING
    req = h.last()
    assert req.message_type == MessageType.REQUEST and req.xid == h.client.xid
    assert req.requested_ip == ADDR and req.server_id == SERVER and req.ciaddr == ZERO
    assert h.sent[-1][1].dst == BROADCAST
    assert h.timers == {T_RETRANSMIT: pytest.approx(0.26)}
    h.now = 0.02
    h.packet(reply(req, MessageType.ACK, lease=100))
    assert h.client.state is State.BOUND
    bound = h.applied[-1]
    assert isinstance(bound, Bound) and bound.previous is None
    lease = bound.lease
    assert (lease.address, lease.prefix_len, lease.router, lease.server_id) == (
        ADDR,
        24,
        SERVER,
        SERVER,
    )
    # RFC 2131 4.4.1: lease times count from when the REQUEST went out (t = 0.01).
    assert lease.start == 0.01 and (lease.t1, lease.t2) == (50.0, 87.5)
    assert h.timers == {
        T_RENEW: pytest.approx(50.01),
        T_REBIND: pytest.approx(87.51),
        T_EXPIRE: pytest.approx(100.01),
    }
    assert h.names() == ["dhcp_discover_sent", "dhcp_offer", "dhcp_request_sent", "dhcp_ack"]
    ack = h.events[-1].data
    assert ack["address"] == str(ADDR) and ack["router"] == str(SERVER)
    assert ack["lease_time"] == 100 and ack["elapsed"] == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("mangle", "why"),
    [
        (lambda b: b[:4] + b"\0\0\0\0" + b[8:], "other xid"),
        (lambda b: b[:28] + b"\x02\x00\x00\x00\x00\x02" + b[34:], "other chaddr"),
        (lambda b: b"\x01" + b[1:], "a BOOTREQUEST"),
        (lambda b: b[:100], "truncated"),
    ],
)
def test_foreign_or_broken_replies_are_ignored(mangle, why: str) -> None:  # type: ignore[no-untyped-def]
    h = make()
    h.start()
    xid = h.client.xid
    out = h.packet(mangle(reply(h.last(), MessageType.OFFER)))
    assert h.client.state is State.SELECTING and h.client.xid == xid, why
    assert all(isinstance(a, Event) and a.name == "dhcp_ignored" for a in out)


def test_offer_without_server_id_is_ignored() -> None:
    h = make()
    h.start()
    h.packet(reply(h.last(), MessageType.OFFER, server=None))
    assert h.client.state is State.SELECTING and h.names()[-1] == "dhcp_ignored"


def test_ack_or_nak_from_another_server_is_ignored_while_requesting() -> None:
    h = make()
    h.start()
    h.packet(reply(h.last(), MessageType.OFFER))
    h.packet(reply(h.last(), MessageType.ACK, server=OTHER))
    h.packet(reply(h.last(), MessageType.NAK, server=OTHER))
    assert h.client.state is State.REQUESTING and not h.applied


def test_nak_restarts_with_new_xid() -> None:
    h = make()
    h.start()
    h.packet(reply(h.last(), MessageType.OFFER))
    old_xid = h.client.xid
    h.now = 0.1
    h.packet(reply(h.last(), MessageType.NAK))
    assert h.client.state is State.SELECTING and h.client.xid != old_xid
    assert h.last().message_type == MessageType.DISCOVER
    assert h.names()[-2:] == ["dhcp_nak", "dhcp_discover_sent"]
    assert h.events[-2].data["message"] == "wrong network"
    assert h.timers == {T_RETRANSMIT: pytest.approx(0.35)}


def test_unanswered_requests_fall_back_to_discover() -> None:
    h = make(max_request_attempts=3)
    h.start()
    h.packet(reply(h.last(), MessageType.OFFER))
    h.advance(0.25 + 0.5 + 0.999)
    kinds = [decode(s.payload).message_type for _, s in h.sent]
    assert kinds == [1, 3, 3, 3] and h.client.state is State.REQUESTING
    h.advance(2.0)
    assert h.client.state is State.SELECTING and h.last().message_type == MessageType.DISCOVER
    assert "dhcp_request_timeout" in h.names()


def test_renew_at_t1_unicasts_and_rebinds_at_t2() -> None:
    h = make(renew_retransmit_min=5.0)
    lease = h.bind(lease=200, t1=100, t2=150)
    h.advance(99.9)
    assert h.client.state is State.BOUND
    n = len(h.sent)
    h.advance(100.0)
    assert h.client.state is State.RENEWING
    send = h.sent[n][1]
    msg = decode(send.payload)
    # RFC 2131 4.3.2 RENEWING: unicast, ciaddr filled, no 50/54, no broadcast bit.
    assert send.dst == SERVER and send.src == ADDR
    assert msg.ciaddr == ADDR and msg.requested_ip is None and msg.server_id is None
    assert msg.flags == 0 and msg.secs == 0
    # RFC 2131 4.4.5: retransmit after half the time left until T2 (25, 12.5, 6.25 s), but
    # at least renew_retransmit_min (5 s), and never past T2.
    h.advance(149.9)
    renew_times = [t for t, s in h.sent[n:]]
    assert renew_times == pytest.approx([100.0, 125.0, 137.5, 143.75, 148.75])
    h.advance(150.0)
    assert h.client.state is State.REBINDING
    assert h.sent[-1][1].dst == BROADCAST and h.sent[-1][1].src == ADDR
    assert h.last().ciaddr == ADDR and h.last().server_id is None
    # Any server may answer a rebind.
    h.now = 151.0
    h.packet(reply(h.last(), MessageType.ACK, server=OTHER, lease=200))
    assert h.client.state is State.BOUND
    bound = h.applied[-1]
    assert isinstance(bound, Bound) and bound.previous == lease
    assert bound.lease.server_id == OTHER and bound.lease.start == 150.0
    assert h.timers[T_RENEW] == pytest.approx(250.0)
    assert "dhcp_renewing" in h.names() and "dhcp_rebinding" in h.names()


def test_renew_ack_extends_lease() -> None:
    h = make()
    h.bind(lease=100)
    h.advance(50.0)
    assert h.client.state is State.RENEWING
    h.now = 50.5
    h.packet(reply(h.last(), MessageType.ACK, lease=100))
    assert h.client.state is State.BOUND
    assert h.timers[T_EXPIRE] == pytest.approx(150.0)
    assert T_RETRANSMIT not in h.timers


def test_expiry_unbinds_and_restarts() -> None:
    h = make()
    lease = h.bind(lease=100)
    h.advance(100.0)
    assert "lease_expired" in h.names()
    assert h.applied[-1] == Unbound(lease, "expired")
    assert h.client.state is State.SELECTING and h.client.lease is None
    assert h.last().message_type == MessageType.DISCOVER and h.sent[-1][0] == 100.0


def test_nak_while_renewing_unbinds() -> None:
    h = make()
    lease = h.bind(lease=100)
    h.advance(50.0)
    h.packet(reply(h.last(), MessageType.NAK))
    assert h.applied[-1] == Unbound(lease, "nak")
    assert h.client.state is State.SELECTING and set(h.timers) == {T_RETRANSMIT}


def test_server_timers_used_when_consistent_defaults_otherwise() -> None:
    assert make().bind(lease=1000, t1=300, t2=600).t1 == 300.0
    bad = make().bind(lease=1000, t1=700, t2=600)
    assert (bad.t1, bad.t2) == (500.0, 875.0)


def test_infinite_lease_sets_no_timers() -> None:
    h = make()
    lease = h.bind(lease=0xFFFFFFFF)
    assert lease.lease_time is None and lease.expires_at is None
    assert h.timers == {}


def test_ack_without_lease_time_falls_back_to_offer_or_is_ignored() -> None:
    h = make()
    h.start()
    h.packet(reply(h.last(), MessageType.OFFER, lease=None))
    h.packet(reply(h.last(), MessageType.ACK, lease=None))
    assert h.client.state is State.REQUESTING and h.names()[-1] == "dhcp_ignored"


def test_missing_or_odd_mask_uses_classful_prefix() -> None:
    assert make().bind(mask=None).prefix_len == 8  # 10/8
    assert make().bind(mask="255.0.255.0").prefix_len == 8
    assert make().bind(mask="255.255.255.252").prefix_len == 30


def test_release() -> None:
    h = make()
    lease = h.bind()
    h.now = 10.0
    h.feed(h.client.release(h.now))
    send = h.sent[-1][1]
    msg = h.last()
    assert msg.message_type == MessageType.RELEASE and msg.ciaddr == ADDR
    assert msg.server_id == SERVER and send.dst == SERVER and send.src == ADDR
    assert h.applied[-1] == Unbound(lease, "released")
    assert h.client.state is State.INIT and h.timers == {}
    assert h.packet(reply(msg, MessageType.ACK)) == []  # idle: ignores everything


def test_link_down_keeps_lease_then_init_reboot_ack() -> None:
    h = make()
    lease = h.bind(lease=100)
    h.now = 10.0
    h.feed(h.client.link_down(h.now))
    assert h.timers == {} and h.client.state is State.INIT and h.client.lease == lease
    assert h.names()[-1] == "dhcp_link_down"
    h.now = 11.0
    h.start(try_reboot=True)
    assert h.client.state is State.REBOOTING
    msg = h.last()
    # RFC 2131 4.3.2 INIT-REBOOT: broadcast, ciaddr 0, option 50, no server id.
    assert h.sent[-1][1].dst == BROADCAST and msg.ciaddr == ZERO
    assert msg.requested_ip == ADDR and msg.server_id is None
    h.packet(reply(msg, MessageType.ACK))
    bound = h.applied[-1]
    assert isinstance(bound, Bound) and bound.previous == lease and bound.lease.start == 11.0


def test_stop_ends_the_exchange_but_keeps_a_bound_lease() -> None:
    """Issue 15 (c): a mobile node back home stops DISCOVERing; a lease in use stays."""
    h = make()
    h.start()
    h.advance(0.3)  # one retransmission
    sent = len(h.sent)
    h.feed(h.client.stop(h.now))
    assert h.client.state is State.INIT and h.timers == {}
    assert h.names()[-1] == "dhcp_stopped" and h.events[-1].data == {"state": "selecting"}
    h.advance(60.0)
    assert len(h.sent) == sent  # nothing more goes out
    assert h.packet(reply(h.last(), MessageType.OFFER)) == []  # nor is an answer taken
    h.start()  # the next carrier starts again
    assert h.client.state is State.SELECTING and len(h.sent) == sent + 1
    lease = h.bind(lease=100)
    assert h.client.stop(h.now) == []  # bound: left alone, renewals included
    assert h.client.state is State.BOUND and h.client.lease == lease and T_RENEW in h.timers


def test_init_reboot_nak_unbinds_and_discovers() -> None:
    h = make()
    lease = h.bind()
    h.feed(h.client.link_down(h.now))
    h.start(try_reboot=True)
    h.packet(reply(h.last(), MessageType.NAK, server=OTHER))  # any server may NAK a reboot
    assert h.applied[-1] == Unbound(lease, "nak")
    assert h.client.state is State.SELECTING


def test_start_after_move_without_reboot_unbinds_old_lease() -> None:
    h = make()
    lease = h.bind()
    h.feed(h.client.link_down(h.now))
    h.start()
    assert h.applied[-1] == Unbound(lease, "restart")
    assert h.client.state is State.SELECTING and h.last().message_type == MessageType.DISCOVER


def test_expired_lease_is_not_rebooted() -> None:
    h = make()
    lease = h.bind(lease=100)
    h.feed(h.client.link_down(h.now))
    h.now = 500.0
    h.start(try_reboot=True)
    assert h.applied[-1] == Unbound(lease, "expired")
    assert h.client.state is State.SELECTING


def test_stale_timer_is_ignored() -> None:
    h = make()
    h.bind()
    assert h.client.handle_timer(T_RETRANSMIT, 1.0) == []
    assert h.client.handle_timer("no-such-timer", 1.0) == []


def test_xid_from_injected_source() -> None:
    counter = iter(range(100, 200))
    client = DhcpClient(ClientConfig(chaddr=MAC), lambda: next(counter))
    client.start(0.0)
    assert client.xid == 100
    client.start(1.0)
    assert client.xid == 101


# --- Rapid Commit (RFC 4039) -------------------------------------------------------------


def test_discover_asks_for_rapid_commit_by_default() -> None:
    h = make()
    h.start()
    msg = h.last()
    assert msg.message_type == MessageType.DISCOVER
    assert msg.rapid_commit and msg.option(Opt.RAPID_COMMIT) == b""  # present, length 0
    assert h.events[0].data["rapid_commit"] is True
    # Only the DISCOVER asks: the REQUEST of a normal exchange does not carry option 80.
    h.packet(reply(msg, MessageType.OFFER))
    assert h.last().message_type == MessageType.REQUEST and not h.last().rapid_commit


def test_rapid_commit_ack_while_selecting_binds_at_once() -> None:
    h = make()
    h.start()  # DISCOVER at 0.0, retransmitted at 0.25
    h.advance(0.3)
    assert len(h.sent) == 2
    h.packet(reply(h.last(), MessageType.ACK, rapid=True, lease=100))
    assert h.client.state is State.BOUND
    # One exchange: nothing but DISCOVERs went out, and no OFFER was seen.
    assert [decode(s.payload).message_type for _, s in h.sent] == [MessageType.DISCOVER] * 2
    assert h.names() == ["dhcp_discover_sent", "dhcp_discover_sent", "dhcp_ack"]
    ack = h.events[-1].data
    assert ack["rapid_commit"] is True and ack["address"] == str(ADDR)
    assert ack["server"] == str(SERVER) and ack["elapsed"] == pytest.approx(0.3)
    bound = h.applied[-1]
    assert isinstance(bound, Bound) and bound.rapid_commit and bound.previous is None
    lease = bound.lease
    assert (lease.address, lease.prefix_len, lease.router, lease.server_id) == (
        ADDR,
        24,
        SERVER,
        SERVER,
    )
    # The lease counts from the first DISCOVER: the server's lease began after it.
    assert lease.start == 0.0
    assert h.timers == {T_RENEW: 50.0, T_REBIND: 87.5, T_EXPIRE: 100.0}
    # Renewing goes to the server that committed the lease, as after a normal ACK.
    h.advance(50.0)
    assert h.client.state is State.RENEWING and h.sent[-1][1].dst == SERVER


def test_rapid_commit_after_a_move_replaces_the_old_lease() -> None:
    h = make()
    h.bind()
    h.now = 10.0
    h.start()  # moved: the old lease is dropped, DISCOVER on the new network
    other = IPv4Address("10.10.0.150")
    h.packet(reply(h.last(), MessageType.ACK, rapid=True, server=OTHER, yiaddr=other))
    assert h.client.state is State.BOUND
    kinds = [(type(a).__name__, a.lease.address) for a in h.applied]
    assert kinds == [("Bound", ADDR), ("Unbound", ADDR), ("Bound", other)]
    bound = h.applied[-1]
    assert isinstance(bound, Bound) and bound.rapid_commit
    assert bound.lease.server_id == OTHER and bound.lease.start == 10.0


def test_ack_without_rapid_commit_while_selecting_is_ignored() -> None:
    h = make()
    h.start()
    out = h.packet(reply(h.last(), MessageType.ACK))
    assert out == [] and h.client.state is State.SELECTING and not h.applied
    assert h.timers == {T_RETRANSMIT: 0.25}
    # A server without Rapid Commit answers with an OFFER: the normal exchange follows.
    h.packet(reply(h.last(), MessageType.OFFER))
    h.packet(reply(h.last(), MessageType.ACK))
    assert h.client.state is State.BOUND
    assert h.names() == ["dhcp_discover_sent", "dhcp_offer", "dhcp_request_sent", "dhcp_ack"]
    bound = h.applied[-1]
    assert isinstance(bound, Bound) and not bound.rapid_commit
    assert h.events[-1].data["rapid_commit"] is False


def test_rapid_commit_ack_without_server_id_is_ignored() -> None:
    h = make()
    h.start()
    h.packet(reply(h.last(), MessageType.ACK, rapid=True, server=None))
    assert h.client.state is State.SELECTING and not h.applied
    assert h.events[-1] == Event("dhcp_ignored", {"reason": "rapid commit ack without server id"})


def test_rapid_commit_off() -> None:
    h = make(rapid_commit=False)
    h.start()
    msg = h.last()
    assert msg.message_type == MessageType.DISCOVER and not msg.rapid_commit
    assert Opt.RAPID_COMMIT not in dict(msg.options)
    assert h.events[0].data["rapid_commit"] is False
    # We did not ask, so a Rapid Commit ACK is not an answer to this DISCOVER.
    assert h.packet(reply(msg, MessageType.ACK, rapid=True)) == []
    assert h.client.state is State.SELECTING and not h.applied
    h.packet(reply(msg, MessageType.OFFER))
    assert h.client.state is State.REQUESTING


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        ClientConfig(chaddr=b"")
    with pytest.raises(ValueError):
        ClientConfig(chaddr=MAC, initial_timeout=3, max_timeout=1)


hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

_kinds = st.sampled_from(list(MessageType))
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("packet"), _kinds, st.booleans(), st.floats(0, 5), st.booleans()),
        st.tuples(st.just("advance"), st.floats(0, 80)),
        st.tuples(st.just("link_down")),
        st.tuples(st.just("start"), st.booleans()),
        st.tuples(st.just("release")),
        st.tuples(st.just("stop")),
        st.tuples(st.just("renew")),
        st.tuples(st.just("junk"), st.binary(max_size=400)),
    ),
    max_size=40,
)


@hypothesis.settings(deadline=None)
@hypothesis.given(_steps)
def test_random_histories_keep_invariants(steps: list[tuple]) -> None:  # type: ignore[type-arg]
    """Any interleaving of inputs: no exception, timers never in the past, and the
    Bound/Unbound stream is consistent (never unbind what was not bound)."""
    h = make()
    h.start()
    for step in steps:
        kind = step[0]
        if kind == "packet":
            _, mtype, same_server, dt, rapid = step
            h.advance(h.now + dt)
            if h.sent:
                server = SERVER if same_server else OTHER
                h.packet(reply(h.last(), mtype, server=server, lease=60, rapid=rapid))
        elif kind == "advance":
            h.advance(h.now + step[1])
        elif kind == "link_down":
            h.feed(h.client.link_down(h.now))
        elif kind == "start":
            h.start(try_reboot=step[1])
        elif kind == "release":
            h.feed(h.client.release(h.now))
        elif kind == "stop":
            h.feed(h.client.stop(h.now))
        elif kind == "renew":
            h.feed(h.client.renew(h.now))
        else:
            h.packet(step[1])
        assert all(at >= h.now - 1e-9 for at in h.timers.values())
        state, lease = h.client.state, h.client.lease
        if state is State.INIT:
            assert not h.timers
        elif state in (State.SELECTING, State.REQUESTING, State.REBOOTING):
            assert T_RETRANSMIT in h.timers
        else:
            assert lease is not None and (lease.lease_time is None or T_EXPIRE in h.timers)
    current: Lease | None = None
    for a in h.applied:
        if isinstance(a, Bound):
            current = a.lease
        else:
            assert a.lease == current
            current = None


def test_early_renew_only_when_bound() -> None:
    h = make()
    assert h.client.renew(0.0) == []
    h.bind(lease=100)
    h.now = 5.0
    h.feed(h.client.renew(h.now))
    assert h.client.state is State.RENEWING and T_RENEW not in h.timers
    assert h.sent[-1][1].dst == SERVER and h.last().ciaddr == ADDR
    h.packet(reply(h.last(), MessageType.ACK, lease=100))
    assert h.client.state is State.BOUND and h.timers[T_RENEW] == pytest.approx(55.0)


# --- forged replies (issue 20, item 4; docs/hostile-input.md) -------------------------------
# Those whose docstring says "Before:" failed before the rule they test.


def _bound_and_renewing(h: Harness) -> Lease:
    lease = h.bind(lease=100)
    h.advance(50.0)
    assert h.client.state is State.RENEWING
    return lease


def test_ack_or_nak_without_server_id_is_ignored() -> None:
    """RFC 2131 table 3: ACK and NAK MUST carry a server identifier. Before: while requesting,
    one without was taken as the chosen server's (a forged NAK restarted the exchange)."""
    for mtype in (MessageType.ACK, MessageType.NAK):
        h = make()
        h.start()
        h.packet(reply(h.last(), MessageType.OFFER))
        xid = h.client.xid
        h.packet(reply(h.last(), mtype, server=None))
        assert h.client.state is State.REQUESTING and h.client.xid == xid and not h.applied
        assert h.names()[-1] == "dhcp_ignored"


def test_only_the_leases_server_answers_a_renewal() -> None:
    """RENEWING: the REQUEST went to the lease's server alone (unicast). Before: an ACK or NAK
    from any other server with the xid was taken (a NAK dropped the address)."""
    h = make()
    lease = _bound_and_renewing(h)
    request = h.last()
    h.packet(reply(request, MessageType.NAK, server=OTHER))
    h.packet(reply(request, MessageType.ACK, server=OTHER, router=OTHER))
    assert h.client.state is State.RENEWING and h.client.lease == lease
    assert len(h.applied) == 1  # the first Bound only
    h.packet(reply(request, MessageType.ACK))
    assert h.client.state is State.BOUND and h.client.lease.server_id == SERVER


def test_an_ack_must_grant_the_address_asked_for() -> None:
    """Before: an ACK with our xid bound whatever address it carried, while requesting the
    offered one or renewing and rebinding the lease's."""
    other = IPv4Address("10.9.0.99")
    h = make()
    h.start()
    h.packet(reply(h.last(), MessageType.OFFER))
    h.packet(reply(h.last(), MessageType.ACK, yiaddr=other))
    assert h.client.state is State.REQUESTING and not h.applied
    h = make(renew_retransmit_min=5.0)
    lease = _bound_and_renewing(h)
    h.packet(reply(h.last(), MessageType.ACK, yiaddr=other))
    assert h.client.state is State.RENEWING and h.client.lease == lease
    h.advance(87.5)  # T2
    assert h.client.state is State.REBINDING
    h.packet(reply(h.last(), MessageType.ACK, server=OTHER, yiaddr=other))
    assert h.client.state is State.REBINDING and h.client.lease == lease
    h.packet(reply(h.last(), MessageType.ACK, server=OTHER))  # any server may rebind
    assert h.client.state is State.BOUND and h.client.lease.server_id == OTHER


@pytest.mark.parametrize(
    "bad", ["255.255.255.255", "224.0.0.5", "127.0.0.1", "0.1.2.3", "240.0.0.1"]
)
def test_offers_and_acks_of_addresses_no_host_may_have_are_ignored(bad: str) -> None:
    """Before: such an address was offered, requested and configured (a co-located care-of
    address of 255.255.255.255 registered with the home agent)."""
    h = make()
    h.start()
    h.packet(reply(h.last(), MessageType.OFFER, yiaddr=IPv4Address(bad)))
    assert h.client.state is State.SELECTING and h.names()[-1] == "dhcp_ignored"
    h.packet(reply(h.last(), MessageType.ACK, yiaddr=IPv4Address(bad), rapid=True))
    assert h.client.state is State.SELECTING and not h.applied


def test_frames_for_other_exchanges_are_ignored_without_an_event() -> None:
    """Before: every malformed BOOTP-sized frame to port 68 was parsed and made a
    dhcp_ignored event, whoever's it was (a flood of them, an event each)."""
    h = make()
    h.start()
    rng = random.Random(11)
    good = reply(h.last(), MessageType.OFFER)
    for _ in range(2000):
        junk = bytes([2]) + bytes(rng.randrange(256) for _ in range(rng.randrange(300)))
        h.packet(junk)
        h.packet(good[:4] + rng.randbytes(4) + good[8:])  # another xid
    assert h.client.state is State.SELECTING and h.names() == ["dhcp_discover_sent"]
    assert h.client.counters == {"not_ours": 4000, "malformed": 0, "refused": 0}


def test_a_bound_client_takes_nothing_unasked() -> None:
    """While bound nothing is asked: OFFER, ACK and NAK with the last xid, from any server,
    other chaddrs in every state, and replies to the exchange before a link change."""
    h = make()
    lease = h.bind()
    request = h.last()
    n = len(h.events)
    for mtype in (MessageType.OFFER, MessageType.ACK, MessageType.NAK):
        for server in (SERVER, OTHER):
            h.packet(reply(request, mtype, server=server, yiaddr=IPv4Address("10.9.0.9")))
    assert h.client.state is State.BOUND and h.client.lease == lease and len(h.events) == n
    assert h.client.counters["refused"] == 6
    # another client's replies (chaddr), in the states that take replies
    h.advance(50.0)
    foreign = DhcpMessage(op=BOOTREPLY, xid=h.client.xid, chaddr=bytes.fromhex("020000000001"))
    h.packet(reply(foreign, MessageType.NAK))
    assert h.client.state is State.RENEWING and h.client.lease == lease
    # a move: what answers the old exchange (its xid) is the old link's
    h.feed(h.client.link_down(h.now))
    h.start()
    for mtype in (MessageType.OFFER, MessageType.ACK, MessageType.NAK):
        h.packet(reply(request, mtype, rapid=True))
    assert h.client.state is State.SELECTING and len(h.applied) == 2  # Bound, Unbound(restart)
