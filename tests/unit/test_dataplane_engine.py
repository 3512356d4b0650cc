"""TunnelEngine logic without root: a datagram socketpair stands in for the TUN device, the
UDP tunnel runs over loopback, and a socketpair end stands in for the raw IPIP socket on
the receive side. Malformed input must be counted, never raised."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.dataplane import packets as P
from agents.dataplane.tunnels import COUNTERS, TunnelEngine

HOME = "10.1.0.10"
CN = "10.1.0.100"
HOME4 = bytes((10, 1, 0, 10))
CN4 = bytes((10, 1, 0, 100))
LO = "127.0.0.1"
LO4 = bytes((127, 0, 0, 1))

# Outcome counters of one received packet: exactly one of these moves per packet.
RX_OUTCOMES = (
    *P.DROP_REASONS,
    "rx_ipip",
    "rx_udp",
    "rx_unknown_peer",
    "rx_inner_mismatch",
    "rx_udp_port_mismatch",
    "tun_write_error",
    "rx_udp_other",
)


class FakeTun:
    """Datagram socketpair: the engine's end behaves like a TUN fd (one packet per read)."""

    def __init__(self) -> None:
        self.engine_end, self.test_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.engine_end.setblocking(False)
        self.test_end.settimeout(1.0)
        self.fd = self.engine_end.fileno()
        self.name = "faketun"

    def inject(self, pkt: bytes) -> None:  # as if the kernel routed pkt into the TUN
        self.test_end.send(pkt)

    def written(self) -> bytes:  # what the engine wrote to the TUN
        return self.test_end.recv(65535)

    def nothing_written(self) -> bool:
        self.test_end.settimeout(0.05)
        try:
            self.test_end.recv(65535)
        except TimeoutError:
            return True
        finally:
            self.test_end.settimeout(1.0)
        return False

    def close(self) -> None:
        self.engine_end.close()
        self.test_end.close()


class Rig:
    def __init__(self, key: str = "dst", **kw: object) -> None:
        self.tun = FakeTun()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((LO, 0))
        self.port = self.udp.getsockname()[1]
        self.peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the far tunnel end
        self.peer.bind((LO, 0))
        self.peer.settimeout(1.0)
        self.peer_port = self.peer.getsockname()[1]
        self.raw_engine, self.raw_test = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.messages: list[tuple[bytes, tuple[str, int]]] = []
        kw.setdefault("on_udp_message", lambda p, s: self.messages.append((p, s)))
        self.engine = TunnelEngine(
            self.tun,  # type: ignore[arg-type]
            key,  # type: ignore[arg-type]
            udp_socket=self.udp,
            raw_socket=self.raw_engine,
            **kw,  # type: ignore[arg-type]
        )

    def add_udp(self, home: str = HOME) -> None:
        self.engine.add(home, LO, "udp", peer_port=self.peer_port, local_port=self.port)

    def close(self) -> None:
        self.engine.close()
        for s in (self.udp, self.peer, self.raw_engine, self.raw_test):
            s.close()
        self.tun.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


def to_home(payload: bytes = b"data") -> bytes:
    return P.ipv4_packet(CN4, HOME4, 17, payload)


def from_home(payload: bytes = b"data", src: bytes = HOME4) -> bytes:
    return P.ipv4_packet(src, CN4, 17, payload)


def outcomes(engine: TunnelEngine) -> int:
    return sum(engine.counters[k] for k in RX_OUTCOMES)


# --- the table -------------------------------------------------------------------------


def test_add_update_remove(rig: Rig) -> None:
    eng = rig.engine
    t = eng.add(HOME, "10.3.0.10")
    assert (t.home, t.peer, t.encapsulation) == (HOME, "10.3.0.10", "ipip")
    assert eng.add(HOME, "10.3.0.11").peer == "10.3.0.11"  # re-registration replaces
    assert len(eng.tunnels()) == 1
    u = eng.update(HOME, encapsulation="udp", peer=LO, peer_port=rig.peer_port, local_port=rig.port)
    assert (u.peer, u.encapsulation, u.local_port) == (LO, "udp", rig.port)
    assert eng._peer_refs == {LO4: 1}  # the old peer is forgotten
    assert eng.remove(HOME) and not eng.remove(HOME)
    assert eng._peer_refs == {} and eng.get(HOME) is None
    with pytest.raises(KeyError):
        eng.update(HOME, peer="10.3.0.1")
    with pytest.raises(ValueError):
        eng.add(HOME, "10.3.0.1", "gre")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TunnelEngine(rig.tun, "both")  # type: ignore[arg-type]


def test_every_counter_is_preset(rig: Rig) -> None:
    assert set(rig.engine.counters) == set(COUNTERS)
    assert rig.engine.stats() == {}


# --- TUN -> wire -----------------------------------------------------------------------


def test_tun_to_udp_by_destination(rig: Rig) -> None:
    rig.add_udp()
    pkt = to_home()
    rig.tun.inject(pkt)
    rig.engine.on_readable(rig.tun.fd)
    data, src = rig.peer.recvfrom(65535)
    assert data == P.TUNNEL_DATA_HEADER + pkt
    assert src == (LO, rig.port)  # from the shared 434-like socket
    assert rig.engine.counters["tx_udp"] == 1


def test_tun_to_udp_by_source_with_pktinfo_local() -> None:
    rig = Rig("src")
    try:
        # wildcard-bound socket + a local address: the source comes from IP_PKTINFO
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("0.0.0.0", 0))
        eng = TunnelEngine(rig.tun, "src", udp_socket=udp, ipip=False)  # type: ignore[arg-type]
        port = udp.getsockname()[1]
        eng.add(HOME, LO, "udp", local=LO, peer_port=rig.peer_port, local_port=port)
        rig.tun.inject(from_home())
        rig.tun.inject(to_home())  # source is not a home address: no tunnel
        eng.on_readable()
        data, src = rig.peer.recvfrom(65535)
        assert data == P.TUNNEL_DATA_HEADER + from_home() and src == (LO, port)
        assert eng.counters["tx_udp"] == 1 and eng.counters["tx_no_tunnel"] == 1
        eng.close()
        udp.close()
    finally:
        rig.close()


def test_tun_junk_is_counted(rig: Rig) -> None:
    rig.add_udp()
    for junk in (b"", b"\x45", b"\x60" + bytes(39), to_home()[:19]):
        rig.tun.inject(junk)
    rig.tun.inject(P.ipv4_packet(CN4, bytes((10, 9, 9, 9)), 17, b"x"))
    rig.engine.on_readable(rig.tun.fd)
    assert rig.engine.counters["tx_not_ipv4"] == 4
    assert rig.engine.counters["tx_no_tunnel"] == 1
    assert rig.engine.counters["tx_udp"] == 0


def test_send_error_is_counted_not_raised(rig: Rig) -> None:
    rig.add_udp()
    # 65504 + 4 bytes of Tunnel Data header > 65507, the most a UDP datagram can carry
    rig.tun.inject(P.ipv4_packet(CN4, HOME4, 17, b"y" * (65504 - 20)))
    rig.engine.on_readable(rig.tun.fd)
    rig.tun.inject(to_home())
    rig.engine.on_readable(rig.tun.fd)
    assert rig.engine.counters["tx_error"] == 1 and rig.engine.last_error == "EMSGSIZE"
    assert rig.engine.counters["tx_udp"] == 1  # the next packet still went


def test_batches_until_eagain(rig: Rig) -> None:
    rig.add_udp()
    for i in range(10):
        rig.tun.inject(to_home(bytes([i])))
    rig.engine.on_readable(rig.tun.fd)
    assert rig.engine.counters["tx_udp"] == 10
    rig.engine.batch = 3
    for i in range(5):
        rig.tun.inject(to_home(bytes([i])))
    rig.engine.on_readable(rig.tun.fd)
    assert rig.engine.counters["tx_udp"] == 13  # the rest waits for the next readiness


# --- wire -> TUN, UDP ------------------------------------------------------------------


def test_udp_tunnel_data_served_by_engine(rig: Rig) -> None:
    rig.add_udp()
    pkt = from_home()
    rig.peer.sendto(P.encapsulate_udp(pkt) + b"pad", (LO, rig.port))
    rig.peer.sendto(b"\x01registration request", (LO, rig.port))
    time.sleep(0.02)
    rig.engine.on_readable(rig.udp.fileno())
    assert rig.tun.written() == pkt  # padding after the inner total length is cut
    assert rig.engine.counters["rx_udp"] == 1
    assert rig.messages == [(b"\x01registration request", (LO, rig.peer_port))]
    assert rig.engine.get(HOME).last_rx is not None


def test_handle_udp_tunnel_data_shared_socket(rig: Rig) -> None:
    rig.add_udp()
    pkt = from_home()
    assert rig.engine.handle_udp_tunnel_data(P.encapsulate_udp(pkt), (LO, rig.peer_port), 5.0)
    assert rig.tun.written() == pkt
    assert rig.engine.get(HOME).last_rx == 5.0


def test_udp_peer_checks(rig: Rig) -> None:
    rig.add_udp()
    eng = rig.engine
    good = (LO, rig.peer_port)
    assert not eng.handle_udp_tunnel_data(P.encapsulate_udp(from_home()), ("127.0.0.2", 434))
    assert eng.counters["rx_unknown_peer"] == 1
    spoof = from_home(src=bytes((10, 1, 0, 99)))  # not this peer's home address
    assert not eng.handle_udp_tunnel_data(P.encapsulate_udp(spoof), good)
    assert eng.counters["rx_inner_mismatch"] == 1
    other_port = (LO, rig.peer_port + 1)
    assert not eng.handle_udp_tunnel_data(P.encapsulate_udp(from_home()), other_port)
    assert eng.counters["rx_udp_port_mismatch"] == 1
    assert eng.get(HOME).peer_port == rig.peer_port  # not learned: learn_peer is off
    assert rig.tun.nothing_written()


def test_udp_peer_port_learned() -> None:
    events: list[dict[str, object]] = []
    rig = Rig(learn_peer=True, on_event=events.append)
    try:
        rig.add_udp()
        new = (LO, rig.peer_port + 7)
        assert rig.engine.handle_udp_tunnel_data(P.encapsulate_udp(from_home()), new)
        assert rig.engine.get(HOME).udp_addr == new
        assert rig.engine.counters["rx_udp_peer_learned"] == 1
        assert events[-1]["event"] == "tunnel_peer_learned"
        assert events[-1]["new_port"] == new[1]
        # only the port is learned: another address is still unknown
        assert not rig.engine.handle_udp_tunnel_data(
            P.encapsulate_udp(from_home()), ("127.0.0.3", new[1])
        )
        assert rig.engine.counters["rx_unknown_peer"] == 1
    finally:
        rig.close()


def test_loose_inner_accepts_any_address_from_known_peer() -> None:
    rig = Rig(strict_inner=False)
    try:
        rig.add_udp()
        bcast = P.ipv4_packet(CN4, b"\xff\xff\xff\xff", 17, b"b")  # key dst: inner src
        assert rig.engine.handle_udp_tunnel_data(P.encapsulate_udp(bcast), (LO, rig.peer_port))
        assert rig.tun.written() == bcast
        assert not rig.engine.handle_udp_tunnel_data(P.encapsulate_udp(bcast), ("127.0.0.9", 1))
    finally:
        rig.close()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=80), st.sampled_from([(LO, 1), ("127.0.0.2", 434), ("junk", 1)]))
def test_udp_garbage_counted_once_never_raised(rig: Rig, payload: bytes, src: tuple) -> None:
    rig.add_udp()
    before = outcomes(rig.engine)
    rig.engine.handle_udp_tunnel_data(payload, src)
    assert outcomes(rig.engine) == before + 1


# --- wire -> TUN, IP in IP (raw socket double) -----------------------------------------


def test_ipip_receive_checks_peer_and_inner(rig: Rig) -> None:
    eng = rig.engine
    eng.add(HOME, "10.3.0.10")
    coa = bytes((10, 3, 0, 10))
    ha = bytes((10, 2, 0, 1))
    good = from_home(b"ok")
    rig.raw_test.send(P.encapsulate_ipip(good, coa, ha))
    rig.raw_test.send(P.encapsulate_ipip(good, bytes((10, 3, 0, 99)), ha))  # unknown peer
    rig.raw_test.send(P.encapsulate_ipip(from_home(src=bytes((10, 1, 0, 5))), coa, ha))
    rig.raw_test.send(P.encapsulate_ipip(b"\x60" + bytes(39), coa, ha))
    rig.raw_test.send(b"\x45\x00")
    eng.on_readable()
    assert rig.tun.written() == good
    assert rig.tun.nothing_written()
    c = eng.counters
    assert (c["rx_ipip"], c["rx_unknown_peer"], c["rx_inner_mismatch"]) == (1, 1, 1)
    assert (c["rx_inner_not_ipv4"], c["rx_truncated"]) == (1, 1)


def test_ipip_receive_key_src_checks_inner_destination() -> None:
    rig = Rig("src")
    try:
        rig.engine.add(HOME, "10.2.0.1")  # mobile node: its HA is the peer
        ha = bytes((10, 2, 0, 1))
        coa = bytes((10, 3, 0, 10))
        rig.raw_test.send(P.encapsulate_ipip(to_home(), ha, coa))
        rig.raw_test.send(P.encapsulate_ipip(from_home(), ha, coa))  # not *to* the home
        rig.engine.on_readable()
        assert rig.tun.written() == to_home()
        assert rig.engine.counters["rx_ipip"] == 1
        assert rig.engine.counters["rx_inner_mismatch"] == 1
    finally:
        rig.close()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=120))
def test_ipip_garbage_counted_once_never_raised(rig: Rig, data: bytes) -> None:
    rig.engine.add(HOME, "10.3.0.10")
    before, accepted = outcomes(rig.engine), rig.engine.counters["rx_ipip"]
    rig.raw_test.send(data)
    rig.engine.on_readable()
    assert outcomes(rig.engine) == before + 1
    if rig.engine.counters["rx_ipip"] > accepted:
        rig.tun.written()  # keep the fake TUN empty for the next example


# --- loops -----------------------------------------------------------------------------


def test_selector_run(rig: Rig) -> None:
    rig.add_udp()
    rig.tun.inject(to_home())
    assert rig.engine.run(lambda: rig.engine.counters["tx_udp"] == 1, timeout=2)
    assert not rig.engine.run(lambda: False, timeout=0.05)
    assert rig.tun.fd in rig.engine.filenos() and rig.udp.fileno() in rig.engine.filenos()


def test_asyncio_attach(rig: Rig) -> None:
    rig.add_udp()

    async def main() -> None:
        rig.engine.attach()
        rig.tun.inject(to_home())
        rig.peer.sendto(P.encapsulate_udp(from_home()), (LO, rig.port))
        for _ in range(100):
            if rig.engine.counters["tx_udp"] and rig.engine.counters["rx_udp"]:
                break
            await asyncio.sleep(0.01)
        rig.engine.detach()

    asyncio.run(main())
    assert rig.engine.counters["tx_udp"] == 1 and rig.engine.counters["rx_udp"] == 1
    assert rig.tun.written() == from_home()


def test_engine_opens_its_own_udp_port_on_demand() -> None:
    tun = FakeTun()
    eng = TunnelEngine(tun, "dst", ipip=False)  # type: ignore[arg-type]
    try:
        eng.add(HOME, LO, "udp", local_port=0)  # port 0: any free port, for the test
        assert len(eng.filenos()) == 2
        with pytest.raises(ValueError):
            eng.add(HOME, "10.3.0.10", "ipip")  # no raw socket in this engine
    finally:
        eng.close()
        tun.close()


def test_send_udp(rig: Rig) -> None:
    assert rig.engine.send_udp((LO, rig.peer_port), b"keepalive", local_port=rig.port)
    assert rig.peer.recvfrom(100) == (b"keepalive", (LO, rig.port))


# --- tunnel MTU (RFC 2003 section 4) ----------------------------------------------------

PEER = "10.10.0.1"
PEER4 = bytes((10, 10, 0, 1))


class FakeRaw:
    """The raw IPIP socket: records what is sent, raises what it is told to, and serves
    error-queue entries (``struct sock_extended_err`` + offender) as Linux would."""

    def __init__(self) -> None:
        self.pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.send_error: int | None = None
        self.recv_error: int | None = None  # sk_err: reported once by the next receive
        self.errors: list[tuple[list[tuple[int, int, bytes]], tuple[str, int]]] = []
        self.options: list[tuple[int, int, int]] = []

    def fileno(self) -> int:
        return self.pair[0].fileno()

    def setblocking(self, flag: bool) -> None:
        self.pair[0].setblocking(flag)

    def setsockopt(self, level: int, name: int, value: int) -> None:
        self.options.append((level, name, value))

    def recv_into(self, buf: bytearray) -> int:
        if self.recv_error is not None:
            err, self.recv_error = self.recv_error, None
            raise OSError(err, "fake")
        return self.pair[0].recv_into(buf)

    def recvmsg(self, bufsize: int, ancbufsize: int, flags: int) -> tuple:
        assert flags == 0x2000  # MSG_ERRQUEUE
        if not self.errors:
            raise BlockingIOError
        ancdata, addr = self.errors.pop(0)
        return b"", ancdata, 0, addr

    def sendmsg(self, buffers: tuple, anc: tuple, flags: int, addr: tuple[str, int]) -> int:
        if self.send_error is not None:
            raise OSError(self.send_error, "fake")
        data = b"".join(buffers)
        self.sent.append((data, addr))
        return len(data)

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        self.sent.append((bytes(data), addr))
        return len(data)

    def queue_error(self, origin: int, kind: int, code: int, info: int, about: str,
                    offender: str = "192.0.2.10", err: int = 90) -> None:  # fmt: skip
        ee = struct.pack("=IBBBBII", err, origin, kind, code, 0, info, 0)
        sin = struct.pack("=H", socket.AF_INET) + bytes(2) + socket.inet_aton(offender) + bytes(8)
        self.errors.append(([(socket.IPPROTO_IP, 11, ee + sin)], (about, 0)))

    def close(self) -> None:
        for s in self.pair:
            s.close()


MtuRig = tuple[TunnelEngine, FakeTun, FakeRaw]


@pytest.fixture
def mtu_rig() -> Iterator[MtuRig]:
    tun, raw = FakeTun(), FakeRaw()
    eng = TunnelEngine(tun, "dst", raw_socket=raw)  # type: ignore[arg-type]
    yield eng, tun, raw
    eng.close()
    raw.close()
    tun.close()


def big(size: int, df: bool = True) -> bytes:
    return P.ipv4_packet(CN4, HOME4, 6, bytes(size - 20), df=df)


def test_raw_socket_reports_errors(mtu_rig: MtuRig) -> None:
    eng, _, raw = mtu_rig
    assert (socket.IPPROTO_IP, 11, 1) in raw.options and eng._recverr
    assert eng.add(HOME, PEER).mtu == 0xFFFF and eng.path_mtu(PEER) is None


def test_df_packet_beyond_tunnel_mtu_is_refused_with_icmp(mtu_rig: MtuRig) -> None:
    eng, tun, raw = mtu_rig
    eng.add(HOME, PEER)
    assert eng.learn_path_mtu(PEER, 1400, reported_by="192.0.2.10") == 1400
    assert eng.get(HOME).mtu == 1380  # type: ignore[union-attr]
    for pkt in (big(1380), big(1381), big(1480, df=False)):
        tun.inject(pkt)
    eng.on_readable(tun.fd)
    (fits, _), (icmp, to), (nodf, _) = raw.sent
    assert fits[20:] == big(1380) and nodf[20:] == big(1480, df=False)  # both tunnelled
    assert to == ("10.1.0.100", 0) and icmp[9] == 1 and icmp[16:20] == CN4
    assert struct.unpack_from("!BBHHH", icmp, 20)[::4] == (3, 1380)  # type 3, MTU 1380
    assert icmp[28:48] == big(1381)[:20]
    assert (eng.counters["tx_ipip"], eng.counters["tx_frag_needed"]) == (2, 1)
    assert eng.get(HOME).to_dict()["mtu"] == 1380  # type: ignore[union-attr]


def test_path_mtu_only_goes_down_until_it_expires(
    mtu_rig: MtuRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    eng, tun, raw = mtu_rig
    eng.learn_path_mtu(PEER, 1400)
    assert eng.learn_path_mtu(PEER, 1450) == 1400  # RFC 1191: no increase from an ICMP
    assert eng.learn_path_mtu(PEER, 1300) == 1300
    t = eng.add(HOME, PEER)  # a tunnel set up later to the same peer inherits it
    assert t.mtu == 1280
    assert eng.add("10.1.0.11", "10.10.0.2").mtu == 0xFFFF  # another peer does not
    later = time.monotonic() + 601
    monkeypatch.setattr("agents.dataplane.tunnels.time.monotonic", lambda: later)
    tun.inject(big(1400))
    eng.on_readable(tun.fd)
    assert [len(d) for d, _ in raw.sent] == [1420]  # expired: the packet probes the path
    assert t.mtu == 0xFFFF and eng.path_mtu(PEER) is None
    events = [e for e in eng.events if e["event"] == "tunnel_mtu"]
    assert [e["path_mtu"] for e in events] == [1400, 1300, None]


def test_error_queue_teaches_the_path_mtu(mtu_rig: MtuRig) -> None:
    eng, _, raw = mtu_rig
    eng.add(HOME, PEER)
    raw.queue_error(2, 3, 4, 1400, PEER)  # ICMP frag needed from the VPN gateway
    raw.queue_error(2, 3, 1, 0, PEER)  # host unreachable: not about the MTU
    raw.queue_error(2, 3, 4, 1200, "10.9.9.9")  # about no peer of ours
    raw.queue_error(2, 3, 4, 40, PEER)  # an MTU no tunnel can use
    eng.on_readable(raw.fileno())  # woken with nothing to read: the error queue
    assert eng.path_mtu(PEER) == 1400 and eng.get(HOME).mtu == 1380  # type: ignore[union-attr]
    assert eng.counters["pmtu_icmp"] == 1 and eng.counters["rx_errqueue_other"] == 3
    event = next(e for e in eng.events if e["event"] == "tunnel_mtu")
    assert (event["peer"], event["reported_by"]) == (PEER, "192.0.2.10")
    raw.recv_error = 90  # the next ICMP also sets sk_err: reported once, then the queue
    raw.queue_error(2, 3, 4, 1300, PEER, offender="198.51.100.1")
    eng.on_readable(raw.fileno())
    assert eng.path_mtu(PEER) == 1300 and eng.counters["rx_socket_error"] == 0


def test_emsgsize_teaches_the_path_mtu_and_refuses_the_packet(mtu_rig: MtuRig) -> None:
    eng, tun, raw = mtu_rig
    eng.add(HOME, PEER)
    raw.send_error = 90  # EMSGSIZE: the kernel knows a smaller MTU to the peer
    raw.queue_error(1, 0, 0, 1400, PEER, offender="0.0.0.0")  # SO_EE_ORIGIN_LOCAL
    tun.inject(big(1480))
    eng.on_readable(tun.fd)
    assert eng.counters["tx_error"] == 1 and eng.counters["pmtu_local"] == 1
    ((icmp, to),) = raw.sent
    assert to == ("10.1.0.100", 0) and struct.unpack_from("!H", icmp, 26) == (1380,)
