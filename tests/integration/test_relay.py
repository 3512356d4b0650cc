"""The userspace delay relay, for real, in network namespaces of our own (needs root).

Topology (prefix P is random per test module run):

    P-a eth0 10.0.0.1 <-veth-> P-r x0 ~relay~ y0 <-veth-> y1 -[br0]- pb <-veth-> P-b eth0 10.0.0.2

P-r also holds spare veth pairs for the tests that disable a pair or start a second relay.
Only the namespaces and processes made here are touched; the root namespace is left alone.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testbed.launch import relay_argv
from testbed.programs.relay import control, datapath
from testbed.programs.relay.control import relay_command, wait_ready

REPO = Path(__file__).resolve().parents[2]
A_IP, B_IP = "10.0.0.1", "10.0.0.2"
IP = shutil.which("ip") or "/usr/sbin/ip"
PING = shutil.which("ping") or "/usr/bin/ping"

_skip_unless_root = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists(IP) or not os.path.exists(PING),
    reason="needs root, iproute2 and ping",
)


def needs_root(f: Any) -> Any:
    """Marks a test as running in namespaces (the project's `netns` marker) and root-only."""
    return pytest.mark.netns(_skip_unless_root(f))


def sh(*args: str, timeout: float = 10) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=timeout).stdout


def ns_ip(ns: str, *args: str) -> None:
    sh(IP, "-n", ns, *args)


@dataclass
class Topo:
    prefix: str
    a: str
    r: str
    b: str
    workdir: Path


@dataclass
class RelayProc:
    proc: subprocess.Popen[bytes]
    ctl: str
    log: Path
    ready_s: float

    def cmd(self, req: dict[str, Any]) -> dict[str, Any]:
        return relay_command(self.ctl, req)


def start_relay(topo: Topo, config: dict[str, Any], tag: str) -> RelayProc:
    cfg = topo.workdir / f"{tag}.json"
    cfg.write_text(json.dumps(config))
    ctl = str(topo.workdir / f"{tag}.sock")
    log = topo.workdir / f"{tag}.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.monotonic()
    with open(log, "wb") as logf:
        # `ip netns exec` execs the command in place, so proc.pid is the relay itself.
        proc = subprocess.Popen(
            [IP, "netns", "exec", topo.r, *relay_argv(cfg, ctl)],
            cwd=REPO, env=env, stdout=logf, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_ready(ctl, timeout=10, proc=proc)
    except BaseException:
        stop_relay(proc)
        raise
    return RelayProc(proc, ctl, log, time.monotonic() - t0)


def stop_relay(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # by PID: only the process started here
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    return proc.returncode


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topo]:
    prefix = f"tbt{secrets.token_hex(3)}"
    t = Topo(prefix, f"{prefix}-a", f"{prefix}-r", f"{prefix}-b", tmp_path_factory.mktemp("relay"))
    made: list[str] = []
    try:
        for ns in (t.a, t.r, t.b):
            sh(IP, "netns", "add", ns)
            made.append(ns)
            ns_ip(ns, "link", "set", "lo", "up")
            # Namespace-local sysctl: no IPv6 chatter (RS/MLD) through the relay or from it.
            sh(IP, "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
               "net.ipv6.conf.default.disable_ipv6=1")  # fmt: skip
        ns_ip(t.a, "link", "add", "eth0", "type", "veth", "peer", "name", "x0", "netns", t.r)
        ns_ip(t.b, "link", "add", "eth0", "type", "veth", "peer", "name", "pb", "netns", t.r)
        ns_ip(t.r, "link", "add", "br0", "type", "bridge")
        spares = ("s0", "s1", "t0", "t1", "u0", "u1")
        for left, right in (("y0", "y1"), *((sp, f"{sp}p") for sp in spares)):
            ns_ip(t.r, "link", "add", left, "type", "veth", "peer", "name", right)
        for port in ("y1", "pb"):
            ns_ip(t.r, "link", "set", port, "master", "br0")
        for dev in ("br0", "x0", "y0", "y1", "pb", *spares, *(f"{sp}p" for sp in spares)):
            ns_ip(t.r, "link", "set", dev, "up")
        for ns, addr in ((t.a, A_IP), (t.b, B_IP)):
            ns_ip(ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            ns_ip(ns, "link", "set", "eth0", "up")
        yield t
    finally:
        for ns in made:  # only the namespaces created above, by name
            subprocess.run([IP, "netns", "del", ns], capture_output=True)


BASE_PARAMS = {"delay_ms": 10, "jitter_ms": 0, "reorder": False}


@pytest.fixture(scope="module")
def rly(topo: Topo) -> Iterator[RelayProc]:
    config = {
        "seed": 1,
        "pairs": [
            {"name": "main", "a": "x0", "b": "y0", "a_to_b": BASE_PARAMS, "b_to_a": BASE_PARAMS},
            {"name": "spare", "a": "s0", "b": "s1"},
        ],
    }
    r = start_relay(topo, config, "relay")
    try:
        yield r
    finally:
        rc = stop_relay(r.proc)
        assert rc == 0, r.log.read_text()


@pytest.fixture
def main_pair(rly: RelayProc) -> Iterator[RelayProc]:
    """The main pair at 10 ms each way, restored after the test whatever it changed."""
    assert rly.cmd({"cmd": "set", "pair": "main", "both": BASE_PARAMS})["ok"]
    yield rly
    assert rly.cmd({"cmd": "set", "pair": "main", "both": BASE_PARAMS})["ok"]


def ping(topo: Topo, count: int = 20, interval: float = 0.01) -> list[tuple[int, float]]:
    """(icmp_seq, rtt_ms) in the order the replies arrived."""
    out = subprocess.run(
        [IP, "netns", "exec", topo.a, PING, "-n", "-c", str(count), "-i", str(interval),
         "-W", "2", B_IP],
        capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    return [(int(s), float(t)) for s, t in re.findall(r"icmp_seq=(\d+) .*time=([\d.]+)", out)]


def warm(topo: Topo) -> None:
    # First exchange pays for ARP in both directions; keep it out of RTT statistics.
    assert ping(topo, count=1), "no reply through the relay"


def median_rtt(topo: Topo, count: int = 20) -> float:
    rtts = [t for _, t in ping(topo, count)]
    assert len(rtts) >= count - 1, f"lost replies: {rtts}"
    return statistics.median(rtts)


# ---------------------------------------------------------------------------------------------
# Through namespaces


@needs_root
def test_ping_rtt_reflects_delay(topo: Topo, main_pair: RelayProc) -> None:
    warm(topo)
    med = median_rtt(topo)
    assert 20.0 <= med <= 21.5, med


@needs_root
def test_live_set_changes_rtt(topo: Topo, main_pair: RelayProc) -> None:
    warm(topo)
    reply = main_pair.cmd({"cmd": "set", "pair": "main", "a_to_b": {"delay_ms": 30}})
    assert reply["ok"], reply
    assert reply["pair"]["a_to_b"]["delay_ms"] == 30
    assert reply["pair"]["b_to_a"]["delay_ms"] == 10  # untouched direction keeps its value
    time.sleep(0.05)  # let frames queued at the old delay drain
    med = median_rtt(topo)
    assert 40.0 <= med <= 41.5, med
    assert main_pair.cmd({"cmd": "set", "pair": "main", "both": {"delay_ms": 0}})["ok"]
    time.sleep(0.05)
    assert median_rtt(topo) < 1.5  # zero delay: forwarded at once


@needs_root
def test_jitter_keeps_order_unless_reorder(topo: Topo, main_pair: RelayProc) -> None:
    warm(topo)
    jit = {"delay_ms": 5, "jitter_ms": 4, "distribution": "uniform"}
    assert main_pair.cmd({"cmd": "set", "pair": "main", "a_to_b": jit})["ok"]
    replies = ping(topo, count=60, interval=0.002)
    seqs = [s for s, _ in replies]
    rtts = [t for _, t in replies]
    assert len(seqs) >= 58
    assert seqs == sorted(seqs), "frames overtook each other without reorder"
    assert max(rtts) - min(rtts) > 2.0, rtts  # the jitter is there
    assert min(rtts) >= 11.0 - 0.2  # 10 ms back + >= 1 ms forward (5 - 4)
    assert main_pair.cmd({"cmd": "set", "pair": "main", "a_to_b": {"reorder": True}})["ok"]
    seqs = [s for s, _ in ping(topo, count=60, interval=0.002)]
    assert seqs != sorted(seqs), "reorder: true but no frame was overtaken"


@needs_root
def test_tcp_transfer_through_relay(topo: Topo, main_pair: RelayProc) -> None:
    # Fails without PACKET_VNET_HDR: veth hands the relay frames with partial checksums.
    size = 8 * 1024 * 1024
    receiver = (
        "import hashlib, socket, sys\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('{B_IP}', 5001)); s.listen(1); print('listening', flush=True)\n"
        "c, _ = s.accept(); h = hashlib.sha256(); n = 0\n"
        "while (d := c.recv(1 << 20)):\n    h.update(d); n += len(d)\n"
        "print(n, h.hexdigest(), flush=True)\n"
    )
    sender = (
        "import hashlib, random, socket\n"
        f"data = random.Random(7).randbytes({size})\n"
        f"c = socket.create_connection(('{B_IP}', 5001), timeout=10); c.sendall(data); c.close()\n"
        "print(len(data), hashlib.sha256(data).hexdigest(), flush=True)\n"
    )
    before = main_pair.cmd({"cmd": "stats", "pair": "main"})["pairs"]["main"]["a_to_b"]
    rx = subprocess.Popen(
        [IP, "netns", "exec", topo.b, sys.executable, "-c", receiver],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert rx.stdout is not None
        assert rx.stdout.readline().strip() == "listening"
        sent = subprocess.run(
            [IP, "netns", "exec", topo.a, sys.executable, "-c", sender],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout.split()  # fmt: skip
        got = rx.stdout.readline().split()
        rx.wait(timeout=10)
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    assert got == sent
    assert int(got[0]) == size
    after = main_pair.cmd({"cmd": "stats", "pair": "main"})["pairs"]["main"]["a_to_b"]
    assert after["rx_bytes"] - before["rx_bytes"] >= size
    # Segmentation offload survived the relay: frames larger than the MTU went through whole.
    assert after["max_frame_bytes"] > 1514


@needs_root
def test_stats_count_frames(topo: Topo, main_pair: RelayProc) -> None:
    warm(topo)

    def snap() -> dict[str, Any]:
        reply = main_pair.cmd({"cmd": "stats"})
        assert reply["ok"]
        return reply["pairs"]["main"]

    before = snap()
    assert len(ping(topo, count=10)) == 10
    time.sleep(0.03)  # the last reply's frames have left the delay line
    after = snap()
    assert after["enabled"] and after["error"] is None
    for d in ("a_to_b", "b_to_a"):
        rx = after[d]["rx_frames"] - before[d]["rx_frames"]
        tx = after[d]["tx_frames"] - before[d]["tx_frames"]
        assert rx >= 10 and tx == rx, (d, rx, tx)
        assert after[d]["rx_bytes"] - before[d]["rx_bytes"] >= 10 * 98  # 84-byte ping + Ethernet
        assert after[d]["dropped"] == before[d]["dropped"]
        assert after[d]["queue_frames"] == 0 and after[d]["queue_bytes"] == 0


@needs_root
def test_malformed_control_gets_errors(rly: RelayProc) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(rly.ctl)
        bad = [
            b"not json",
            b"[1, 2]",
            b'{"cmd": "nope"}',
            b'{"cmd": "set", "pair": "ghost", "a_to_b": {"delay_ms": 1}}',
            b'{"cmd": "set", "pair": "main", "a_to_b": {"delay": 1}}',
            b'{"cmd": "set", "pair": "main", "a_to_b": {"delay_ms": -5}}',
            b'{"cmd": "set", "pair": "main", "b_to_a": {"distribution": "pareto"}}',
            b'{"cmd": "add", "pair": {"name": "x", "a": "nosuchif0", "b": "nosuchif1"}}',
            b'{"cmd": "stats", "pair": 3}',
            b'{"cmd": "ping", "x": NaN}',
        ]
        s.sendall(b"\n".join([*bad, b'{"cmd": "ping"}']) + b"\n")
        buf = b""
        while buf.count(b"\n") < len(bad) + 1:
            chunk = s.recv(65536)
            assert chunk, "relay closed the connection"
            buf += chunk
    replies = [json.loads(line) for line in buf.splitlines()]
    assert all(r["ok"] is False and r["error"] for r in replies[:-1]), replies
    assert replies[-1]["ok"] is True and replies[-1]["pong"] is True
    params = rly.cmd({"cmd": "stats", "pair": "main"})["pairs"]["main"]["a_to_b"]["params"]
    assert params["delay_ms"] == 10  # the rejected sets changed nothing
    assert rly.proc.poll() is None


@needs_root
def test_vanished_interface_disables_only_its_pair(topo: Topo, rly: RelayProc) -> None:
    ns_ip(topo.r, "link", "del", "s0")  # takes its peer s0p with it
    deadline = time.monotonic() + 3
    while True:
        spare = rly.cmd({"cmd": "stats"})["pairs"]["spare"]
        if not spare["enabled"] or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert spare["enabled"] is False and "s0" in spare["error"], spare
    assert rly.proc.poll() is None
    warm(topo)  # the main pair still carries traffic
    assert rly.cmd({"cmd": "ping"})["ok"]


@needs_root
def test_link_flap_keeps_pair(topo: Topo, main_pair: RelayProc) -> None:
    # A node move may toggle the link (down, re-master, up): the pair must survive it.
    ns_ip(topo.r, "link", "set", "x0", "down")
    time.sleep(0.02)
    ns_ip(topo.r, "link", "set", "x0", "up")
    deadline = time.monotonic() + 5
    while not ping(topo, count=1) and time.monotonic() < deadline:
        pass
    stats = main_pair.cmd({"cmd": "stats", "pair": "main"})["pairs"]["main"]
    assert stats["enabled"], stats["error"]
    assert 20.0 <= median_rtt(topo, 10) <= 21.5


@needs_root
def test_flush_drops_frames_in_flight(topo: Topo, main_pair: RelayProc) -> None:
    """What a node's interface had in flight is gone after a flush (a move calls it), and
    what comes next does not wait behind it (issue 15: a move off a slow network)."""
    warm(topo)
    assert main_pair.cmd({"cmd": "set", "pair": "main", "a_to_b": {"delay_ms": 500}})["ok"]
    late = subprocess.Popen(
        [IP, "netns", "exec", topo.a, PING, "-n", "-c", "3", "-i", "0.01", "-W", "1", B_IP],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(0.2)  # the three echo requests wait in the 500 ms delay line
        queued = main_pair.cmd({"cmd": "stats", "pair": "main"})["pairs"]["main"]["a_to_b"]
        assert queued["queue_frames"] >= 3, queued
        reply = main_pair.cmd({"cmd": "flush", "pair": "main"})
        assert reply["ok"] and reply["flushed"]["a_to_b"] >= 3, reply
        after = main_pair.cmd({"cmd": "stats", "pair": "main"})["pairs"]["main"]["a_to_b"]
        assert after["queue_frames"] == 0 and after["drops"]["flushed"] >= 3, after
        # a move sets the new network's delay; its frames go at that delay, not after the
        # 500 ms the flushed ones would have waited
        assert main_pair.cmd({"cmd": "set", "pair": "main", "both": BASE_PARAMS})["ok"]
        assert median_rtt(topo, 3) <= 21.5
        out, _ = late.communicate(timeout=10)
    finally:
        if late.poll() is None:
            late.kill()  # by PID: only the ping started here
            late.wait()
    assert "icmp_seq=" not in out, out  # no reply to what was flushed
    assert main_pair.cmd({"cmd": "flush", "pair": "ghost"})["ok"] is False


@needs_root
def test_add_and_remove_pair(rly: RelayProc) -> None:
    pc = {"name": "late", "a": "u0", "b": "u1", "a_to_b": {"delay_ms": 5}}
    reply = rly.cmd({"cmd": "add", "pair": pc})
    assert reply["ok"], reply
    assert reply["pair"]["a_to_b"]["params"]["delay_ms"] == 5
    assert not rly.cmd({"cmd": "add", "pair": pc})["ok"]  # name taken
    clash = {"name": "other", "a": "u0", "b": "t0"}
    assert "already" in rly.cmd({"cmd": "add", "pair": clash})["error"]
    assert "late" in rly.cmd({"cmd": "stats"})["pairs"]
    assert rly.cmd({"cmd": "remove", "pair": "late"})["ok"]
    assert "late" not in rly.cmd({"cmd": "stats"})["pairs"]
    assert rly.cmd({"cmd": "ping"})["pairs"] == 2


@needs_root
def test_start_ready_and_sigterm(topo: Topo) -> None:
    config = {"pairs": [{"name": "t", "a": "t0", "b": "t1", "a_to_b": {"delay_ms": 1}}]}
    r = start_relay(topo, config, "second")
    try:
        assert r.ready_s < 2.0, r.ready_s  # typically ~30 ms; generous for a loaded machine
        pong = r.cmd({"cmd": "ping"})
        assert pong["pairs"] == 1
        assert pong["pid"] == r.proc.pid  # `ip netns exec` exec'd in place: signals reach it
        r.proc.send_signal(signal.SIGTERM)
        assert r.proc.wait(timeout=5) == 0, r.log.read_text()
        assert not os.path.exists(r.ctl), "control socket left behind"
    finally:
        stop_relay(r.proc)


@needs_root
def test_bad_config_exits_with_error(topo: Topo) -> None:
    config = {"pairs": [{"name": "t", "a": "nosuch0", "b": "t1"}]}
    cfg = topo.workdir / "bad.json"
    cfg.write_text(json.dumps(config))
    res = subprocess.run(
        [IP, "netns", "exec", topo.r, *relay_argv(cfg, topo.workdir / "bad.sock")],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=10,
    )  # fmt: skip
    assert res.returncode == 2
    assert "nosuch0" in res.stderr
    assert not (topo.workdir / "bad.sock").exists()


# ---------------------------------------------------------------------------------------------
# Pure logic (no namespaces needed)


def test_json_helpers_match_json_module() -> None:
    samples: list[Any] = [
        {"cmd": "set", "pair": "mn-home", "a_to_b": {"delay_ms": 10.5, "jitter_ms": 0}},
        {"a": [1, -2, 3.25, True, False, None, 'é\n"x'], "b": {}, "c": []},
    ]
    for obj in samples:
        assert control.json_loads(json.dumps(obj)) == obj
        assert json.loads(control.json_dumps(obj)) == obj
    for bad in ("", "{", '{"a": 1} x', "NaN", '{"a": Infinity}'):
        with pytest.raises(ValueError):
            control.json_loads(bad)


def test_params_validation_and_merge() -> None:
    p = datapath.validate_params({"delay_ms": 10})
    assert p["jitter_ms"] == 0 and p["distribution"] == "normal" and p["reorder"] is False
    q = datapath.validate_params({"jitter_ms": 2}, p)
    assert q["delay_ms"] == 10 and q["jitter_ms"] == 2
    for bad in ({"delay_ms": -1}, {"delay_ms": "10"}, {"jitter_ms": True}, {"loss_pct": 101},
                {"limit": 0}, {"reorder": 1}, {"distribution": "x"}, {"dely_ms": 1}):  # fmt: skip
        with pytest.raises(datapath.ConfigError):
            datapath.validate_params(bad)


@pytest.mark.parametrize("dist", ["normal", "uniform"])
def test_jitter_samples(dist: str) -> None:
    pair = datapath.Pair("p", "a", "b")
    params = datapath.validate_params({"delay_ms": 10, "jitter_ms": 2, "distribution": dist})
    d = datapath.Direction(pair, "p/a_to_b", None, params, seed=1)
    xs = [d.sample_ns() / 1e6 for _ in range(20000)]
    assert abs(statistics.fmean(xs) - 10) < 0.1
    want_sd = 2 if dist == "normal" else 2 / 3**0.5
    assert abs(statistics.pstdev(xs) - want_sd) < 0.1
    if dist == "uniform":
        assert min(xs) >= 8 and max(xs) <= 12
    # Same seed, same stream: runs are reproducible.
    d2 = datapath.Direction(pair, "p/a_to_b", None, params, seed=1)
    assert [d2.sample_ns() / 1e6 for _ in range(100)] == xs[:100]
    # Truncation at zero.
    d0 = datapath.Direction(pair, "p/b_to_a", None, datapath.validate_params({"jitter_ms": 5}), 1)
    assert min(d0.sample_ns() for _ in range(1000)) == 0


def test_flush_drops_frames_waiting_in_a_vnet_header_socket(tmp_path: Path) -> None:
    """relay flush failed with EINVAL ('relay flush of mn-eth0: [Errno 22]', a set-up
    error ending the run) whenever a frame was still unread in the pair's socket: a read
    shorter than the virtio_net_hdr is refused on a PACKET_VNET_HDR socket."""
    from labtools import veth_namespace

    script = (
        "import socket, time\n"
        "from testbed.programs.relay.datapath import _discard_unread, open_packet_socket\n"
        "s, _, _ = open_packet_socket('va')\n"
        "out = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
        "out.bind(('vb', 0))\n"
        "for _ in range(5):\n"
        "    out.send(b'\\xff' * 12 + b'\\x88\\xb5' + bytes(50))\n"
        "time.sleep(0.1)\n"
        "print(_discard_unread(s))\n"
    )
    with veth_namespace("flush") as ns:
        done = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", script],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 5  # ours, and whatever the new link sent itself (IPv6 ND)
