"""Hostile input against a home agent and a foreign agent, or a mobile node, in namespaces
(issue 20, items 3 and 4).

    sudo .venv/bin/python benchmarks/fuzz_agents.py [--packets 200000] [--rate 8000] [--seed 1]
    sudo .venv/bin/python benchmarks/fuzz_agents.py --target mn [--packets 100000] [--rate 4000]

Three namespaces of its own (as tests/integration/test_fa_hostile.py): ``m`` the visited
link's hosts (an attacker at 10.2.0.50 and a hand-played mobile node, home address
10.1.0.100, that never answers ARP), ``f`` the FA (10.2.0.254 / 10.1.0.254), ``h`` the HA
(10.1.0.1). The attacker sends ``--packets`` datagrams, round robin over these kinds (seeded):

- random bytes, to the HA and to the FA;
- valid requests with a bit flipped; truncated requests;
- requests for unknown home addresses with bad authenticators, to the HA (131s);
- requests with the FA's care-of address, random home addresses and a home agent that never
  answers, to the FA (pending for 7 s);
- requests naming 255.255.255.255 / multicast / loopback home agents, to the FA;
- RFC 3519 tunnel data with garbage inner packets, to the HA;
- one-byte frames to port 434 with spoofed IP sources and another MAC, to the FA.

Meanwhile, every 0.5 s, the mobile node registers through the FA and the time to its reply
is taken. Printed: packets sent per kind, replies the attacker got back, the agents' counters
(from agent_stopped), RSS and event-file growth of each agent, FA neighbour entries at the
attacker's MAC, the registrations' latencies, and the goals of issue 20 (0 crashes, RSS growth
under 10 MB, event files under 10 MB, registrations under 50 ms while the flood's pending
requests expire), each PASS or FAIL. Exit status 1 when a goal fails.

Measured here (2 cores, 200,000 packets at 8k/s, seed 1, 25 s; two runs before): before
issue 20 the attacker got 53-54k replies back, the HA's event file grew 11.2 MB and the FA's
24-39 MB, the FA's RSS 51 -> 70-77 MiB with 3.5-6.2k agent errors, 502 FA neighbour entries
pointed at the attacker's MAC (second run), and 9 of 23-24 registrations through the FA got
no answer within 2 s (max 1.6-1.9 s); now 538 replies, +0.22 and +0.36 MB, RSS 51.2 -> 54.4
MiB, 0 errors, no such entry, 68 of 68 answered (median 3.1 ms, max 19.8 ms).

``--target mn`` (see main_mn): a real mobile node registered through a real FA, renewing every
3.2 s (lifetime 4 s), on a link where the attacker (sending from the FA's namespace, with its
own MAC) floods what docs/hostile-input.md says may change nothing: advertisements unicast to
the MN (an H one from the home agent's address), FAs granting no lifetime, agents offering
nothing, broken checksums, garbage ICMP; DHCP garbage, replies to other xids and to the MN's
own DISCOVERs (sniffed) offering addresses no host may have; registration replies with other
Identifications, unauthenticated or wrongly keyed, FA denials from other sources, garbage and
tunnel data to port 434. Goals: no crash, RSS growth under 10 MB, events under 10 MB, no move
and no agent or lease from the attacker, every renewal answered under 50 ms.

Measured here (2 cores, shared with other work): 1,000,000 packets at 8k/s (seed 2, 125 s):
0 errors, RSS 43.2 -> 43.6 MiB, events +0.77 MB (729,576 drops counted, not written), no move,
agent or lease from the attacker (63 of the MN's DISCOVERs answered by it), 39 renewals
accepted but one only on its retransmission (770 ms: the genuine reply lost among ~2.7k/s
datagrams to the same port on a loaded machine), so the last goal FAILs; 300,000 at 4k/s
(75 s): all PASS, 23 of 23 renewals, median 2.8 ms, max 8.9 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from agents.mip.auth import SecurityAssociation  # noqa: E402
from agents.mip.constants import ExtType  # noqa: E402
from agents.mip.extensions import AuthExtension  # noqa: E402
from agents.mip.ipv4 import build_ipv4  # noqa: E402
from agents.mip.messages import RegistrationRequest, decode_reply, decode_request  # noqa: E402
from agents.mip.replay import ntp_from_unix  # noqa: E402
from testbed import netns  # noqa: E402

sys.path.insert(0, str(REPO / "tests" / "integration"))
from labtools import agent_chain  # noqa: E402  (test helpers: one builder of this chain)

HOME, HA, COA, KEY, SPI = "10.1.0.100", "10.1.0.1", "10.2.0.254", "6d6e2d6861", 256
ATTACKER, EVIL = "10.2.0.50", "02:00:00:00:00:66"
KINDS = (
    "random_bytes_ha",
    "random_bytes_fa",
    "bitflip_ha",
    "truncated_fa",
    "bad_auth_ha",
    "pending_fa",
    "bad_home_agent_fa",
    "tunnel_garbage_ha",
    "spoofed_frame_fa",
)


def ip(ns: str, *argv: str) -> str:
    return netns.run(ns, ["ip", *argv]).stdout


@contextlib.contextmanager
def namespaces() -> Iterator[dict[str, str]]:
    """``m`` the attacker (and the MN's home address, which does not answer ARP) -- ``f``
    the FA -- ``h`` the HA (labtools.agent_chain)."""
    with agent_chain("fz", "m") as names:
        m, f = names["m"], names["f"]
        ip(m, "addr", "add", f"{ATTACKER}/24", "dev", "eth0")
        ip(m, "addr", "add", f"{HOME}/32", "dev", "eth0")
        netns.write_sysctls(
            m, {"net.ipv4.conf.eth0.arp_ignore": 8, "net.ipv4.conf.all.arp_ignore": 8}
        )
        ip(m, "route", "add", "10.1.0.0/24", "via", COA)  # the attacker reaches the HA too
        # the attacker's own address answers (its replies are counted); the MN's does not
        attacker_mac = json.loads(ip(m, "-j", "link", "show", "eth0"))[0]["address"]
        ip(
            f,
            "neigh",
            "replace",
            ATTACKER,
            "lladdr",
            attacker_mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        )
        yield names


class Agent:
    def __init__(self, ns: str, role: str, config: dict, tmp: Path) -> None:
        self.config_file = tmp / f"{role}.yaml"
        self.config_file.write_text(yaml.safe_dump(config))
        self.events_file = tmp / f"{role}-events.jsonl"
        argv = [sys.executable, "-m", "testbed.cli", "agent", role, "--config"]
        argv += [str(self.config_file), "--events", str(self.events_file), "--node", role]
        self.proc = netns.popen(ns, argv, cwd=REPO)
        deadline = time.monotonic() + 20
        while not self.events_file.exists() or "agent_started" not in self.events_file.read_text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{role} did not start")
            time.sleep(0.05)

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def size(self) -> int:
        return self.events_file.stat().st_size

    def stop(self) -> dict:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        for line in reversed(self.events_file.read_text().splitlines()):
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == "agent_stopped":
                    return event.get("counters", {})
        return {}


def request(home: str = HOME, ha: str = HA, ident: int | None = None, key: str = KEY) -> bytes:
    ident = ident if ident is not None else ntp_from_unix(time.time())
    msg = RegistrationRequest(
        home, ha, COA, ident, 600, 0, [AuthExtension(ExtType.MN_HA_AUTH, SPI)]
    )
    return msg.encode({SPI: SecurityAssociation(SPI, key)})


def mac_of(ns: str, iface: str) -> str:
    return json.loads(ip(ns, "-j", "link", "show", iface))[0]["address"]


def frame(dst_mac: str, src: str, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 434, 434, 8 + len(payload), 0) + payload
    ether = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(EVIL.replace(":", ""))
    return ether + b"\x08\x00" + build_ipv4(src, COA, 17, udp)


class Registrar(threading.Thread):
    """The genuine mobile node: a registration through the FA every ``period`` s."""

    def __init__(self, ns: str, period: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.ns, self.period = ns, period
        self.latencies: list[tuple[float, float]] = []  # (when sent, ms)
        self.failures: list[float] = []  # when sent
        self.stop = threading.Event()

    def run(self) -> None:
        with netns.entered(self.ns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((HOME, 434))
        sock.settimeout(2.0)
        try:
            while not self.stop.is_set():
                sent = time.monotonic()
                req = request()
                ident = decode_request(req).identification
                sock.sendto(req, (COA, 434))
                try:
                    while True:  # the reply to this one (a late one to an earlier: skipped)
                        data, _ = sock.recvfrom(2048)
                        with contextlib.suppress(ValueError):
                            reply = decode_reply(data)
                            if reply.identification == ident and reply.code == 0:
                                break
                    self.latencies.append((sent, (time.monotonic() - sent) * 1e3))
                except (TimeoutError, OSError):
                    self.failures.append(sent)
                self.stop.wait(self.period)
        finally:
            sock.close()


def flood(names: dict[str, str], packets: int, rate: float, seed: int) -> tuple[Counter, int]:
    rng = random.Random(seed)
    m = names["m"]
    fa_mac = mac_of(names["f"], "eth0")
    with netns.entered(m):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    udp.bind((ATTACKER, 0))
    udp.setblocking(False)
    raw.bind(("eth0", 0))
    valid = request()
    sent: Counter = Counter()
    replies = 0
    start = time.monotonic()
    try:
        for i in range(packets):
            kind = KINDS[i % len(KINDS)]
            home = f"10.{rng.randrange(64, 128)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            try:
                if kind == "random_bytes_ha":
                    udp.sendto(rng.randbytes(rng.randrange(1, 120)), (HA, 434))
                elif kind == "random_bytes_fa":
                    udp.sendto(rng.randbytes(rng.randrange(1, 120)), (COA, 434))
                elif kind == "bitflip_ha":
                    data = bytearray(valid)
                    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
                    udp.sendto(bytes(data), (HA, 434))
                elif kind == "truncated_fa":
                    udp.sendto(valid[: rng.randrange(len(valid))], (COA, 434))
                elif kind == "bad_auth_ha":
                    bad = request(f"10.1.0.{rng.randrange(2, 250)}", key="00" * 8)
                    udp.sendto(bad, (HA, 434))
                elif kind == "pending_fa":
                    udp.sendto(request(home, "10.1.0.99", rng.getrandbits(64)), (COA, 434))
                elif kind == "bad_home_agent_fa":
                    ha = rng.choice(("255.255.255.255", "224.0.0.11", "127.0.0.1", "0.0.0.0"))
                    udp.sendto(request(home, ha, rng.getrandbits(64)), (COA, 434))
                elif kind == "tunnel_garbage_ha":
                    udp.sendto(b"\x04\x04\x00\x00" + rng.randbytes(rng.randrange(1, 60)), (HA, 434))
                else:
                    src = f"10.{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                    raw.send(frame(fa_mac, src, b"\x01"))
                sent[kind] += 1
            except (BlockingIOError, OSError):
                sent["send_errors"] += 1
            if i % 200 == 199:
                with contextlib.suppress(BlockingIOError, OSError):
                    while True:
                        udp.recv(2048)
                        replies += 1
                time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
        with contextlib.suppress(BlockingIOError, OSError):
            while True:
                udp.recv(2048)
                replies += 1
    finally:
        udp.close()
        raw.close()
    return sent, replies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=("ha-fa", "mn"), default="ha-fa")
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=8000.0, help="packets per second")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    if args.target == "mn":
        return main_mn(args)
    with tempfile.TemporaryDirectory() as tmp, namespaces() as names:
        tmp_path = Path(tmp)
        ha_config = {
            "address": HA,
            "interface": "eth0",
            "home_network": "10.1.0.0/24",
            "advertise": False,
            "mobile_nodes": [{"home_address": HOME, "spi": SPI, "key": KEY}],
        }
        ha = Agent(names["h"], "ha", ha_config, tmp_path)
        fa = Agent(names["f"], "fa", {"address": COA, "interface": "eth0"}, tmp_path)
        agents = {"ha": ha, "fa": fa}
        registrar = Registrar(names["m"])
        registrar.start()
        time.sleep(1.0)  # the first registration sets up tunnels and routes
        rss0 = {k: a.rss_kb() for k, a in agents.items()}
        size0 = {k: a.size() for k, a in agents.items()}
        t0 = time.monotonic()
        sent, replies = flood(names, args.packets, args.rate, args.seed)
        t1 = time.monotonic()
        flood_s = t1 - t0
        time.sleep(8.0)  # the pending requests expire (7 s) while the mobile node registers
        registrar.stop.set()
        registrar.join(timeout=5)
        rss1 = {k: a.rss_kb() for k, a in agents.items()}
        size1 = {k: a.size() for k, a in agents.items()}
        neighbours = json.loads(ip(names["f"], "-j", "neigh", "show", "dev", "eth0") or "[]")
        poisoned = [n["dst"] for n in neighbours if n.get("lladdr") == EVIL]
        alive = {k: a.proc.poll() is None for k, a in agents.items()}
        counters = {k: a.stop() for k, a in agents.items()}

    total = sum(v for k, v in sent.items() if k != "send_errors")
    print(f"sent {total} packets in {flood_s:.1f} s (seed {args.seed}): {dict(sent)}")
    print(f"replies to the attacker: {replies}")
    for k in agents:
        c = counters[k]
        keys = (
            "requests", "relayed", "accepted", "denied", "dropped", "rate_limited",
            "pending_evicted", "pending_refused", "link_learned", "link_ignored",
            "events_suppressed", "agent_errors", "tunnel_data",
        )  # fmt: skip
        shown = {key: c[key] for key in keys if key in c}
        print(
            f"{k}: RSS {rss0[k] / 1024:.1f} -> {rss1[k] / 1024:.1f} MiB, events "
            f"+{(size1[k] - size0[k]) / 1e6:.2f} MB, counters {shown}"
        )
    windows = {"during the flood": (t0, t1), "while its pending requests expire": (t1, t1 + 9)}
    expiring: list[float] = []
    lost_expiring = 0
    for name, (a, b) in windows.items():
        lat = sorted(ms for t, ms in registrar.latencies if a <= t < b)
        lost = sum(1 for t in registrar.failures if a <= t < b)
        if lat:
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            print(
                f"registrations through the FA {name}: {len(lat)} answered, {lost} not "
                f"(2 s); median {statistics.median(lat):.1f} ms, p99 {p99:.1f}, max "
                f"{lat[-1]:.1f}, {sum(1 for x in lat if x >= 50)} at 50 ms or more"
            )
        if b == t1 + 9:
            expiring, lost_expiring = lat, lost
    print(f"FA neighbour entries at the attacker's MAC: {len(poisoned)} {poisoned[:5]}")
    goals = {
        "no crash": all(alive.values())
        and not any(c.get("agent_errors") for c in counters.values()),
        "RSS growth under 10 MB": all(rss1[k] - rss0[k] < 10 * 1024 for k in agents),
        "event files under 10 MB": all(size1[k] < 10e6 for k in agents),
        "registrations under 50 ms while the pending flood expires": bool(expiring)
        and expiring[-1] < 50
        and not lost_expiring,
        "no neighbour from a spoofed frame": not poisoned,
    }
    for goal, ok in goals.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {goal}")
    return 0 if all(goals.values()) else 1


# --- the mobile node as the target (issue 20, item 4) --------------------------------------

MN_KINDS = (
    "advert_unicast_home",
    "advert_no_lifetime",
    "advert_no_service",
    "advert_bad_checksum",
    "icmp_garbage",
    "dhcp_garbage",
    "dhcp_other_xid",
    "reply_other_ident",
    "reply_wrong_key",
    "fa_denial_other_source",
    "udp_garbage",
    "tunnel_garbage",
)
ALL_SYSTEMS_MAC = bytes.fromhex("01005e000001")
BCAST_MAC = b"\xff" * 6


@contextlib.contextmanager
def mn_namespaces() -> Iterator[dict[str, str]]:
    """``n`` the mobile node (eth0 only) -- ``f`` the FA, where the attacker sends from too
    (10.2.0.254 / 10.1.0.254) -- ``h`` the HA (10.1.0.1): labtools.agent_chain."""
    with agent_chain("fm", "n") as names:
        yield names


def _advert(src: str, flags: int, reg_life: int = 1800, coas: list[str] | None = None) -> bytes:
    from agents.mip.icmp import AgentAdvertisement, MobilityAgentExtension, encode_icmp

    ext = MobilityAgentExtension(300, reg_life, flags, coas or [])
    return encode_icmp(AgentAdvertisement(30, [(src, 0)], ext, [24]))


def _dhcp_reply(xid: int, chaddr: bytes, mtype: int, yiaddr: str, server: str) -> bytes:
    from ipaddress import IPv4Address

    from agents.dhcp.codec import BOOTREPLY, ZERO, DhcpMessage, MessageType, Opt, encode

    opts = (
        (Opt.MESSAGE_TYPE, bytes([mtype])),
        (Opt.SERVER_ID, IPv4Address(server).packed),
        (Opt.LEASE_TIME, (3600).to_bytes(4, "big")),
        (Opt.RAPID_COMMIT, b""),
    )
    y = ZERO if mtype == MessageType.NAK else IPv4Address(yiaddr)
    return encode(DhcpMessage(op=BOOTREPLY, xid=xid, chaddr=chaddr, yiaddr=y, options=opts))


def _sniffed_discovers(raw: socket.socket) -> list[tuple[int, bytes]]:
    from agents.dhcp.codec import MessageType, decode

    found = []
    for _ in range(32):
        try:
            frame = raw.recv(2048)
        except (BlockingIOError, InterruptedError, OSError):
            break
        if frame[6:12] == bytes.fromhex(EVIL.replace(":", "")) or frame[12:14] != b"\x08\x00":
            continue
        packet = frame[14:]
        ihl = (packet[0] & 15) * 4
        if packet[9] != 17 or packet[ihl + 2 : ihl + 4] != b"\x00\x43":
            continue
        with contextlib.suppress(Exception):
            msg = decode(packet[ihl + 8 :])
            if msg.op == 1 and msg.message_type == MessageType.DISCOVER:
                found.append((msg.xid, msg.chaddr))
    return found


def flood_mn(names: dict[str, str], packets: int, rate: float, seed: int) -> Counter:
    from ipaddress import IPv4Address

    from agents.dhcp.codec import MessageType
    from agents.dhcp.frames import ipv4_udp
    from agents.mip.auth import append_auth
    from agents.mip.codec import encode
    from agents.mip.constants import AdvFlag
    from agents.mip.messages import RegistrationReply

    rng = random.Random(seed)
    mn_mac = bytes.fromhex(mac_of(names["n"], "eth0").replace(":", ""))
    evil = bytes.fromhex(EVIL.replace(":", ""))
    with netns.entered(names["f"]):
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    raw.bind(("eth0", 0x0800))
    raw.setblocking(False)
    bcast, zero = IPv4Address("255.255.255.255"), IPv4Address("0.0.0.0")
    wrong = SecurityAssociation(SPI, b"not the key")
    sent: Counter = Counter()
    start = time.monotonic()

    def send(kind: str, dst_mac: bytes, packet: bytes) -> None:
        try:
            raw.send(dst_mac + evil + b"\x08\x00" + packet)
            sent[kind] += 1
        except OSError:
            sent["send_errors"] += 1

    def udp434(src: str, payload: bytes) -> bytes:
        return build_ipv4(
            src, HOME, 17, struct.pack("!HHHH", 434, 434, 8 + len(payload), 0) + payload
        )

    try:
        for i in range(packets):
            kind = MN_KINDS[i % len(MN_KINDS)]
            src = f"10.2.0.{rng.randrange(20, 90)}"  # no agent's own address (docs: inherent)
            ident = rng.getrandbits(64)
            if kind == "advert_unicast_home":
                adv = _advert(HA, AdvFlag.H | AdvFlag.F, coas=[HA])
                send(kind, mn_mac, build_ipv4(HA, HOME, 1, adv, ttl=1))
            elif kind == "advert_no_lifetime":
                adv = _advert(src, AdvFlag.F, 0, [src])
                send(kind, ALL_SYSTEMS_MAC, build_ipv4(src, "224.0.0.1", 1, adv, ttl=1))
            elif kind == "advert_no_service":
                adv = _advert(src, rng.choice((0, AdvFlag.R, AdvFlag.F | AdvFlag.B)), coas=[src])
                send(kind, BCAST_MAC, build_ipv4(src, "255.255.255.255", 1, adv, ttl=1))
            elif kind == "advert_bad_checksum":
                adv = bytearray(_advert(src, AdvFlag.F, coas=[src]))
                adv[2] ^= 0x5A
                send(kind, BCAST_MAC, build_ipv4(src, "224.0.0.1", 1, bytes(adv), ttl=1))
            elif kind == "icmp_garbage":
                junk = b"\x09" + rng.randbytes(rng.randrange(1, 60))
                send(kind, BCAST_MAC, build_ipv4(src, "224.0.0.1", 1, junk, ttl=1))
            elif kind == "dhcp_garbage":
                junk = b"\x02" + rng.randbytes(rng.randrange(1, 400))
                send(kind, BCAST_MAC, ipv4_udp(IPv4Address(src), bcast, 67, 68, junk))
            elif kind == "dhcp_other_xid":
                data = _dhcp_reply(rng.getrandbits(32), mn_mac, MessageType.ACK, src, src)
                send(kind, BCAST_MAC, ipv4_udp(IPv4Address(src), bcast, 67, 68, data))
                for xid, chaddr in _sniffed_discovers(raw):
                    for mtype, yiaddr in ((MessageType.ACK, "255.255.255.255"),
                                          (MessageType.OFFER, "224.0.0.5")):  # fmt: skip
                        data = _dhcp_reply(xid, chaddr, mtype, yiaddr, src)
                        send("dhcp_sniffed_xid", BCAST_MAC, ipv4_udp(zero, bcast, 67, 68, data))
            elif kind in ("reply_other_ident", "reply_wrong_key"):
                body = encode(RegistrationReply(0, 4, HOME, HA, ident, []))
                sa = (
                    SecurityAssociation(SPI, bytes.fromhex(KEY))
                    if kind == "reply_other_ident"
                    else wrong
                )
                send(kind, mn_mac, udp434(rng.choice((COA, HA, src)), append_auth(body, 32, sa)))
            elif kind == "fa_denial_other_source":
                body = encode(RegistrationReply(65, 0, HOME, HA, ident, []))
                send(kind, mn_mac, udp434(rng.choice((HA, src)), body))
            elif kind == "udp_garbage":
                send(kind, mn_mac, udp434(src, rng.randbytes(rng.randrange(1, 120))))
            else:
                junk = b"\x04\x04\x00\x00" + rng.randbytes(rng.randrange(1, 60))
                send(kind, mn_mac, udp434(rng.choice((HA, COA, src)), junk))
            if i % 200 == 199:
                time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    finally:
        raw.close()
    return sent


def main_mn(args: argparse.Namespace) -> int:
    started: list[Agent] = []
    try:
        return _main_mn(args, started)
    finally:
        for agent in started:  # (an agent that failed to start, or an error on the way)
            if agent.proc.poll() is None:
                agent.proc.kill()
                agent.proc.wait(timeout=10)


def _main_mn(args: argparse.Namespace, started: list[Agent]) -> int:
    with tempfile.TemporaryDirectory() as tmp, mn_namespaces() as names:
        tmp_path = Path(tmp)
        ha_config = {
            "address": HA,
            "interface": "eth0",
            "home_network": "10.1.0.0/24",
            "advertise": False,
            "mobile_nodes": [{"home_address": HOME, "spi": SPI, "key": KEY}],
        }
        ha = Agent(names["h"], "ha", ha_config, tmp_path)
        started.append(ha)
        fa = Agent(names["f"], "fa", {"address": COA, "interface": "eth0"}, tmp_path)
        started.append(fa)
        mn_config = {
            "home_address": HOME,
            "home_agent": HA,
            "home_network": "10.1.0.0/24",
            "home_router": "10.1.0.254",
            "interface": "eth0",
            "spi": SPI,
            "key": KEY,
            "lifetime": 4,  # renewals every 3.2 s, during the flood
            "dhcp": True,  # (no server: the client DISCOVERs, and the attacker answers)
        }
        mn = Agent(names["n"], "mn", mn_config, tmp_path)
        started.append(mn)
        agents = {"ha": ha, "fa": fa, "mn": mn}

        def events() -> list[dict]:
            return [json.loads(x) for x in mn.events_file.read_text().splitlines() if x]

        deadline = time.monotonic() + 10
        while not any(e["event"] == "registration_accepted" for e in events()):
            if time.monotonic() > deadline:
                print("the mobile node did not register", file=sys.stderr)
                return 1
            time.sleep(0.1)
        time.sleep(0.5)
        rss0, size0 = mn.rss_kb(), mn.size()
        t0 = time.monotonic_ns()
        sent = flood_mn(names, args.packets, args.rate, args.seed)
        t1 = time.monotonic_ns()
        time.sleep(4.0)  # one more renewal after the flood
        rss1, size1 = mn.rss_kb(), mn.size()
        alive = {k: a.proc.poll() is None for k, a in agents.items()}
        counters = {k: a.stop() for k, a in agents.items()}
        during = [e for e in events() if t0 <= e["t_ns"] <= t1]

    total = sum(v for k, v in sent.items() if k != "send_errors")
    flood_s = (t1 - t0) / 1e9
    print(f"sent {total} packets in {flood_s:.1f} s (seed {args.seed}): {dict(sent)}")
    c = counters["mn"]
    keys = ("advertisements", "replies", "dropped", "requests_sent", "events_suppressed",
            "agent_errors", "tunnel_data")  # fmt: skip
    print(
        f"mn: RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB, events "
        f"+{(size1 - size0) / 1e6:.2f} MB, counters { {k: c[k] for k in keys if k in c} }"
    )
    kinds = Counter(e["event"] for e in during)
    renewals = [e["latency"] * 1e3 for e in during if e["event"] == "registration_accepted"]
    sent_regs = kinds["registration_sent"] + kinds["registration_retransmitted"]
    print(
        f"during the flood: {len(renewals)} renewals accepted of {sent_regs} requests sent, "
        f"latency median {statistics.median(renewals) if renewals else 0:.1f} ms, max "
        f"{max(renewals, default=0):.1f}, {sum(1 for x in renewals if x >= 50)} at 50 ms or more; "
        f"moves {kinds['movement_detected']}, "
        f"agents discovered {kinds['agent_discovered']}, leases {kinds['dhcp_bound']}, "
        f"denials {kinds['registration_denied']}, DISCOVERs answered by the attacker "
        f"{sent['dhcp_sniffed_xid'] // 2}"
    )
    expected = int(flood_s / 3.2)
    goals = {
        "no crash": all(alive.values())
        and not any(x.get("agent_errors") for x in counters.values()),
        "RSS growth under 10 MB": rss1 - rss0 < 10 * 1024,
        "event file under 10 MB": size1 < 10e6,
        "no move, agent or lease from the attacker": not (
            kinds["movement_detected"] or kinds["agent_discovered"] or kinds["dhcp_bound"]
        ),
        "every renewal answered under 50 ms": len(renewals) >= max(1, expected - 1)
        and sent_regs == len(renewals)
        and max(renewals, default=0) < 50
        and not kinds["registration_denied"],
    }
    for goal, ok in goals.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {goal}")
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
