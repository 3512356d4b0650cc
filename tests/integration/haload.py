"""A home agent under load through its real sockets (issue 19, item 3): shared by
benchmarks/bench_ha_load.py and tests/integration/test_ha_load.py.

- :func:`population`: N mobile nodes, each with its own MN-HA security association, made by
  the generator that a scenario's ``crowds:`` use (names ``member_names``, SPI ``spi + k``,
  key ``sa_key(key_seed, name)``), so a load figure is about the associations a crowd has;
- :func:`ha_lab`: two namespaces of our own: ``h`` the home agent (eth0 its home link
  10.0.0.1/14, a veth whose far end stays in ``h``; eth1 a transit link) and ``g`` the load
  generator, where every care-of address of 172.16.0.0/12 is local (an AnyIP route), so one
  UDP socket sends from and receives at any of them;
- :class:`AgentProcess`: a real agent (``python -m agents.runtime.main ha``, the runner's
  command line), optionally under cProfile;
- :class:`Generator`: Registration Requests (co-located care-of addresses: no FA), encoded and
  MN-HA authenticated by the project's codec, a fresh Identification each (the MN's own
  :class:`~agents.mip.replay.MobileReplayState`), offered at a rate or as fast as they are
  answered; replies matched, their authenticators checked, latencies from the kernel's receive
  timestamp.

Namespaces are named ``tb-hl<pid>-<random>-h|g``: this process's PID and nothing the scenario
runner's ``tb-r<pid>-`` checks (tests/integration/test_scenarios.py) would take for its own.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import secrets
import select
import socket
import struct
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from labtools import ROOT, ip

from agents.mip.auth import SecurityAssociation
from agents.mip.constants import MIP_PORT, ExtType, RequestFlag
from agents.mip.errors import MalformedMessage
from agents.mip.extensions import AuthExtension
from agents.mip.messages import RegistrationRequest, decode_reply
from agents.mip.replay import MobileReplayState
from testbed import launch, netns
from testbed.scenario.crowd import sa_key
from testbed.topology.load import member_names

HA_ADDRESS = "10.0.0.1"
HOME_NETWORK = "10.0.0.0/14"  # room for 262k home addresses
CARE_OF_NETWORK = "172.16.0.0/12"  # local in the generator's namespace (AnyIP)
TRANSIT_H, TRANSIT_G = "192.168.77.1", "192.168.77.2"
# what the MN's co-located registration asks for: decapsulation by the MN, reverse tunnelling
FLAGS = RequestFlag.D | RequestFlag.T
IP_TRANSPARENT = 19  # <linux/in.h>: send from an address that is local only by a route
IP_PKTINFO = 8
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # (not in Python 3.11's socket)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_PKTINFO = struct.Struct("=I4s4s")
_TIMESPEC = struct.Struct("=qq")
_M32 = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Member:
    """One generated mobile node: what the HA's configuration and its requests need."""

    index: int
    name: str
    home_address: str
    care_of: str
    spi: int
    key: str  # hex, as in an agent configuration
    sa: SecurityAssociation


def population(
    count: int,
    *,
    home_network: str = HOME_NETWORK,
    care_of_network: str = CARE_OF_NETWORK,
    template: str = "mn",
    spi: int = 1000,
    key_seed: str = "mip-testbed",
) -> list[Member]:
    """``count`` mobile nodes as a crowd of ``template`` would have them (the k-th: name
    ``member_names``'s, SPI ``spi + k``, key HMAC-SHA256(``key_seed``, name)); home addresses
    from the 257th of ``home_network`` on (below: the HA's own), one care-of address each."""
    home = ipaddress.IPv4Network(home_network)
    coa = ipaddress.IPv4Network(care_of_network)
    if count > home.num_addresses - 258 or count > coa.num_addresses - 2:
        raise ValueError(f"{count} mobile nodes do not fit {home_network} / {care_of_network}")
    first_home = int(home.network_address) + 256
    first_coa = int(coa.network_address) + 1
    out = []
    for k, name in enumerate(member_names(template, count)):
        key = sa_key(key_seed, name)
        out.append(
            Member(
                k,
                name,
                str(ipaddress.IPv4Address(first_home + k)),
                str(ipaddress.IPv4Address(first_coa + k)),
                spi + k,
                key,
                SecurityAssociation(spi + k, key),
            )
        )
    return out


def ha_config(members: Sequence[Member], **overrides: Any) -> dict[str, Any]:
    """The HA agent configuration serving ``members`` on :func:`ha_lab`'s home link. No
    advertisements: no mobile node is on the home link, and they would only add noise."""
    config: dict[str, Any] = {
        "address": HA_ADDRESS,
        "interface": "eth0",
        "home_network": HOME_NETWORK,
        "advertise": False,
        "max_lifetime": 600,
        "mobile_nodes": [
            {"home_address": m.home_address, "spi": m.spi, "key": m.key} for m in members
        ],
    }
    config.update(overrides)
    return config


@contextlib.contextmanager
def ha_lab(tag: str = "") -> Iterator[dict[str, str]]:
    """``h`` (the home agent's) and ``g`` (the generator's) namespaces, joined by a transit
    link; removed after, on any exit (the caller stops what it started in them first)."""
    base = f"tb-hl{os.getpid() % 100000}-{tag}{secrets.token_hex(2)}"
    names = {"h": f"{base}-h", "g": f"{base}-g"}
    made: list[str] = []
    try:
        for name in names.values():
            netns.create(name)
            made.append(name)
        h, g = names["h"], names["g"]
        # the home link: proxy ARP entries and gratuitous ARPs go there; its far end stays in
        # h without an address (the frames are received and dropped, nothing answers)
        ip(h, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
        ip(h, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", g)
        for ns, ifaces in ((h, ("lo", "eth0", "eth0p", "eth1")), (g, ("lo", "eth0"))):
            for iface in ifaces:
                ip(ns, "link", "set", iface, "up")
        ip(h, "addr", "add", f"{HA_ADDRESS}/{HOME_NETWORK.split('/')[1]}", "dev", "eth0")
        ip(h, "addr", "add", f"{TRANSIT_H}/30", "dev", "eth1")
        ip(h, "route", "add", CARE_OF_NETWORK, "via", TRANSIT_G)
        ip(g, "addr", "add", f"{TRANSIT_G}/30", "dev", "eth0")
        ip(g, "route", "add", HOME_NETWORK, "via", TRANSIT_H)
        # every care-of address is ours in g: replies to any of them reach the one socket
        ip(g, "route", "add", "local", CARE_OF_NETWORK, "dev", "lo")
        yield names
    finally:
        for name in reversed(made):
            netns.delete(name)


def read_memory_kb(pid: int) -> dict[str, int]:
    """Pss and Rss (kB) of a process, from /proc/PID/smaps_rollup ({} once it is gone)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Pss", "Rss"):
                out[key.lower()] = int(rest.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (/proc/PID/stat), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # (the command may hold spaces)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def udp_counters(pid: int) -> dict[str, int]:
    """The Udp: line of /proc/net/snmp in the namespace of ``pid`` (RcvbufErrors: datagrams
    dropped because the socket's buffer was full)."""
    lines = [x.split() for x in Path(f"/proc/{pid}/net/snmp").read_text().splitlines()]
    names, values = [x for x in lines if x and x[0] == "Udp:"][:2]
    return dict(zip(names[1:], map(int, values[1:]), strict=True))


class AgentProcess:
    """A Mobile IP agent (``role``: ha, fa, mn) started in ``ns`` with the runner's command
    line (testbed.launch.agent_argv): its events, state file (``state``: every second, as the
    runner has it) and, with ``profile``, a cProfile dump written when it stops."""

    def __init__(
        self,
        ns: str,
        role: str,
        config: dict[str, Any],
        directory: Path,
        *,
        state: bool = True,
        events_max_mb: float | None = None,
        profile: Path | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.role = role
        self.config_file = directory / f"{role}.yaml"
        # flow style: one line per mobile node, a smaller file for the loader to scan
        self.config_file.write_text(yaml.safe_dump(config, default_flow_style=None))
        self.events_file = directory / f"{role}-events.jsonl"
        self.state_file = directory / f"{role}-state.json"
        argv = launch.agent_argv(role, self.config_file, self.events_file, role, self.state_file)
        if not state:
            argv = argv[: argv.index("--state")]
        if events_max_mb is not None:
            argv += ["--events-max-mb", str(events_max_mb)]
        if profile is not None:  # python -m cProfile -o FILE -m agents.runtime.main ...
            argv = [argv[0], "-m", "cProfile", "-o", str(profile), *argv[1:]]
        self.started = time.monotonic()
        # stderr to a file: a pipe nobody reads would stall the agent once full
        self.stderr_file = directory / f"{role}.stderr"
        with self.stderr_file.open("w") as stderr:
            self.proc = netns.popen(ns, argv, cwd=ROOT, stderr=stderr)
        self.pid = self.proc.pid
        deadline = time.monotonic() + start_timeout
        try:
            while not self._started():
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"the {role} exited ({self.proc.returncode}): {self._stderr()}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {role} did not start in {start_timeout:.0f} s")
                time.sleep(0.05)
        except BaseException:  # (Ctrl-C too: nobody else holds the process to stop it)
            self.kill()
            raise
        self.start_s = time.monotonic() - self.started

    def wait_event(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        """The first ``name`` event, waiting up to ``timeout`` s for it."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events({name})
            if found:
                return found[0]
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no {name} event from the {self.role}")
            time.sleep(0.05)

    def _started(self) -> bool:
        if not self.events_file.exists():
            return False
        with self.events_file.open("rb") as handle:
            return b'"agent_started"' in handle.read(4096)

    def _stderr(self) -> str:
        with contextlib.suppress(OSError):
            return self.stderr_file.read_text(errors="replace").strip()[-2000:]
        return ""

    def events(self, kinds: set[str] | None = None) -> list[dict[str, Any]]:
        """Its events so far (of ``kinds`` only: a large file is filtered before parsing)."""
        out = []
        with contextlib.suppress(FileNotFoundError), self.events_file.open("rb") as handle:
            for line in handle:
                if kinds is not None and not any(f'"{k}"'.encode() in line for k in kinds):
                    continue
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if kinds is None or event.get("event") in kinds:
                        out.append(event)
        return out

    def state(self) -> dict[str, Any] | None:
        """Its last state dump (``--state``), None before the first."""
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def memory_kb(self) -> dict[str, int]:
        return read_memory_kb(self.pid)

    def udp_counters(self) -> dict[str, int]:
        return udp_counters(self.pid)

    def stop(self, timeout: float = 60.0) -> dict[str, int]:
        """SIGTERM (an MN deregisters first), wait; its ``agent_stopped`` counters ({} if
        it wrote none)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        for event in reversed(self.events({"agent_stopped"})):
            return dict(event.get("counters", {}))
        return {}

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class Phase:
    """What one offered load got back."""

    name: str
    rate: float | None  # offered per second; None: as fast as answered (``window`` in flight)
    sent: int = 0
    accepted: int = 0  # code 0 or 1
    denied: Counter[int] = field(default_factory=Counter)
    lost: int = 0  # no reply within the timeout
    bad_auth: int = 0  # a reply whose MN-HA authenticator did not verify
    unmatched: int = 0  # late (after its timeout) or answering nothing we sent
    first_send: float = 0.0  # monotonic
    last_send: float = 0.0
    last_reply: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)  # accepted ones
    generator_cpu_s: float = 0.0

    @property
    def send_rate(self) -> float:
        span = self.last_send - self.first_send
        return self.sent / span if span > 0 else float("nan")

    @property
    def accepted_rate(self) -> float:
        span = max(self.last_reply, self.last_send) - self.first_send
        return self.accepted / span if span > 0 else float("nan")

    def latency_ms(self, q: float) -> float:
        """The ``q`` quantile (0-1, nearest rank) of accepted replies' latency, in ms."""
        if not self.latencies_ns:
            return float("nan")
        ordered = sorted(self.latencies_ns)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] / 1e6


class Requests:
    """Registration Requests of ``members`` (MN-HA authenticated by the project's codec), each
    with a fresh Identification from that MN's own replay state: strictly later than its
    previous one, whatever the rate."""

    def __init__(
        self,
        members: Sequence[Member],
        *,
        home_agent: str = HA_ADDRESS,
        lifetime: int = 600,
        seed: int = 1,
    ) -> None:
        self.members = members
        self.home_agent = home_agent
        self.lifetime = lifetime
        self._replay = [MobileReplayState() for _ in members]
        rng = random.Random(seed)
        self._rand32 = lambda: rng.getrandbits(32)  # (the bits finer than the clock)

    def request(self, member: Member) -> tuple[bytes, int]:
        """The request of ``member`` and its Identification."""
        ident = self._replay[member.index].next_identification(time.time(), self._rand32)
        msg = RegistrationRequest(
            member.home_address,
            self.home_agent,
            member.care_of,
            ident,
            self.lifetime,
            FLAGS,
            [AuthExtension(ExtType.MN_HA_AUTH, member.spi)],
        )
        return msg.encode({member.spi: member.sa}), ident


class Generator:
    """Registration Requests from ``members`` to the HA through one UDP socket in ``ns``
    (sent from each one's care-of address: IP_TRANSPARENT and :func:`ha_lab`'s local route)."""

    def __init__(
        self,
        ns: str,
        members: Sequence[Member],
        *,
        home_agent: str = HA_ADDRESS,
        lifetime: int = 600,
        seed: int = 1,
    ) -> None:
        self.members = members
        self.home_agent = home_agent
        self.requests = Requests(members, home_agent=home_agent, lifetime=lifetime, seed=seed)
        self._by_home = {m.home_address: m for m in members}
        # (home address, low 32 bits of the Identification) -> (realtime ns sent, monotonic)
        self._outstanding: dict[tuple[str, int], tuple[int, float]] = {}
        with netns.entered(ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.IPPROTO_IP, IP_TRANSPARENT, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            # this socket's own buffer (FORCE: root, past rmem_max; no sysctl changes): a
            # burst of replies must not be lost here and counted against the HA
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
            self.sock.bind(("0.0.0.0", MIP_PORT))
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()  # (an open socket would keep its namespace alive)

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, member: Member, phase: Phase) -> None:
        data, ident = self.requests.request(member)
        cmsg = [
            (
                socket.IPPROTO_IP,
                IP_PKTINFO,
                _PKTINFO.pack(0, socket.inet_aton(member.care_of), bytes(4)),
            )
        ]
        sent_ns, sent_mono = time.time_ns(), time.monotonic()
        try:
            self.sock.sendmsg([data], cmsg, 0, (self.home_agent, MIP_PORT))
        except (BlockingIOError, OSError):
            phase.lost += 1  # (never reached the wire: counted as lost)
            phase.sent += 1
            return
        self._outstanding[(member.home_address, ident & _M32)] = (sent_ns, sent_mono)
        phase.sent += 1
        phase.last_send = sent_mono

    def _receive(self, phase: Phase) -> int:
        """Everything waiting in the socket; how many datagrams."""
        n = 0
        while True:
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(2048, 256)
            except (BlockingIOError, InterruptedError):
                return n
            n += 1
            arrived = time.time_ns()
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    arrived = sec * 1_000_000_000 + nsec  # when the kernel had it
            try:
                reply = decode_reply(data)
            except MalformedMessage:
                phase.unmatched += 1
                continue
            sent = self._outstanding.pop((reply.home_address, reply.identification & _M32), None)
            member = self._by_home.get(reply.home_address)
            if sent is None or member is None:
                phase.unmatched += 1
                continue
            auth = reply.find(ExtType.MN_HA_AUTH)
            if not isinstance(auth, AuthExtension) or not member.sa.verify_extension(data, auth):
                phase.bad_auth += 1
                continue
            phase.last_reply = time.monotonic()
            if reply.code in (0, 1):
                phase.accepted += 1
                phase.latencies_ns.append(arrived - sent[0])
            else:
                phase.denied[reply.code] += 1

    def _expire(self, phase: Phase, timeout: float) -> None:
        limit = time.monotonic() - timeout
        old = [k for k, (_ns, mono) in self._outstanding.items() if mono < limit]
        for key in old:
            del self._outstanding[key]
        phase.lost += len(old)

    def run(
        self,
        name: str,
        order: Sequence[int],
        *,
        rate: float | None = None,
        window: int = 128,
        timeout: float = 2.0,
    ) -> Phase:
        """One request of ``members[i]`` for each i of ``order``: at ``rate`` per second
        (open loop: on schedule whatever comes back), or with ``rate`` None as fast as
        replies come with at most ``window`` unanswered. Then up to ``timeout`` s for the last
        replies; what never came is lost."""
        phase = Phase(name, rate)
        cpu0 = time.process_time()
        poll = select.poll()
        poll.register(self.sock, select.POLLIN)
        start = phase.first_send = phase.last_send = time.monotonic()
        i, total = 0, len(order)
        last_expiry = start
        while i < total:
            now = time.monotonic()
            if rate is not None:
                due = min(total, int((now - start) * rate) + 1)
            else:
                due = min(total, i + window - len(self._outstanding))
            batch = min(due - i, 32)  # (then read what came back: replies wait for nothing)
            for _ in range(batch):
                self._send(self.members[order[i]], phase)
                i += 1
            received = self._receive(phase)
            if now - last_expiry > 0.1:
                self._expire(phase, timeout)
                last_expiry = now
            if batch <= 0 and not received:
                if rate is not None:
                    wait_ms = max(0.0, (start + i / rate - time.monotonic()) * 1e3)
                else:
                    wait_ms = 50.0
                poll.poll(min(wait_ms, 50.0))
        end = time.monotonic() + timeout
        while self._outstanding and time.monotonic() < end:
            poll.poll(20)
            self._receive(phase)
        phase.lost += len(self._outstanding)
        self._outstanding.clear()
        phase.generator_cpu_s = time.process_time() - cpu0
        return phase
