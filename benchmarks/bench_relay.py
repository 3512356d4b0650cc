"""Benchmark of the userspace delay relay (testbed/programs/relay/), as root.

    python benchmarks/bench_relay.py [--seconds 5] [--pings 200] [--starts 5]

Builds three namespaces of its own (random prefix), a direct veth between the end namespaces
as the baseline and a relayed path (relay in the middle namespace, bridge behind it as in the
testbed), and prints:

- start-to-ready of one relay process serving 20 pairs (Popen of `ip netns exec` to the first
  answered ping on the control socket);
- added latency: RTT (ICMP echo from Python with kernel receive timestamps, microsecond
  resolution) through the relay at 0 delay vs the direct veth (p50/p99);
- precision at 10 ms each way: RTT minus 20 ms (p50/p99/max), same probe;
- TCP throughput (iperf3 if /usr/bin/iperf3 exists, else a Python sender) direct, through the
  relay at 0 ms and 10 ms, and at 10 ms with the namespaces' TCP buffers raised to 64 MiB
  (default tcp_wmem caps a 20 ms RTT flow at ~4 MiB per RTT), with the relay's CPU use.

Everything it creates (namespaces, processes) is removed on exit, by name and by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from testbed.launch import relay_argv  # noqa: E402
from testbed.programs.relay.control import relay_command, wait_ready  # noqa: E402

IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"
IPERF3 = "/usr/bin/iperf3"
N_PAIRS = 20


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        p = f"tbb{secrets.token_hex(3)}"
        self.a, self.r, self.b = f"{p}-a", f"{p}-r", f"{p}-b"
        self.made: list[str] = []
        self.procs: list[subprocess.Popen[Any]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-relay-"))
        self.ctl = str(self.tmp / "relay.sock")
        self.relay: subprocess.Popen[Any] | None = None

    # -- plumbing ------------------------------------------------------------------------

    def sh(self, *args: str, timeout: float = 60) -> str:
        return subprocess.run(
            args, check=True, capture_output=True, text=True, timeout=timeout
        ).stdout

    def nsx(self, ns: str, *args: str, timeout: float = 60) -> str:
        return self.sh(IP, "netns", "exec", ns, *args, timeout=timeout)

    def build(self) -> None:
        for ns in (self.a, self.r, self.b):
            self.sh(IP, "netns", "add", ns)
            self.made.append(ns)
            self.sh(IP, "-n", ns, "link", "set", "lo", "up")
            self.nsx(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                     "net.ipv6.conf.default.disable_ipv6=1")  # fmt: skip
        r = ["-n", self.r]
        self.sh(IP, "-n", self.a, "link", "add", "eth0", "type", "veth", "peer", "name", "x0",
                "netns", self.r)  # fmt: skip
        self.sh(IP, "-n", self.b, "link", "add", "eth0", "type", "veth", "peer", "name", "pb",
                "netns", self.r)  # fmt: skip
        self.sh(IP, "-n", self.a, "link", "add", "d0", "type", "veth", "peer", "name", "d1",
                "netns", self.b)  # fmt: skip
        self.sh(IP, *r, "link", "add", "br0", "type", "bridge")
        self.sh(IP, *r, "link", "add", "y0", "type", "veth", "peer", "name", "y1")
        for i in range(1, N_PAIRS):  # idle pairs, so start-up is measured at a realistic size
            self.sh(IP, *r, "link", "add", f"p{i}a", "type", "veth", "peer", "name", f"p{i}b")
        for port in ("y1", "pb"):
            self.sh(IP, *r, "link", "set", port, "master", "br0")
        devs = ["br0", "x0", "y0", "y1", "pb"]
        devs += [f"p{i}{s}" for i in range(1, N_PAIRS) for s in "ab"]
        for dev in devs:
            self.sh(IP, *r, "link", "set", dev, "up")
        for ns, addrs in ((self.a, (("eth0", "10.0.0.1"), ("d0", "10.9.0.1"))),
                          (self.b, (("eth0", "10.0.0.2"), ("d1", "10.9.0.2")))):  # fmt: skip
            for dev, addr in addrs:
                self.sh(IP, "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                self.sh(IP, "-n", ns, "link", "set", dev, "up")

    def config(self) -> dict[str, Any]:
        pairs = [{"name": "bench", "a": "x0", "b": "y0"}]
        pairs += [{"name": f"idle{i}", "a": f"p{i}a", "b": f"p{i}b",
                   "a_to_b": {"delay_ms": 10}, "b_to_a": {"delay_ms": 10}}
                  for i in range(1, N_PAIRS)]  # fmt: skip
        return {"seed": 1, "pairs": pairs}

    def start_relay(self) -> float:
        cfg = self.tmp / "relay.json"
        cfg.write_text(json.dumps(self.config()))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [IP, "netns", "exec", self.r, *relay_argv(cfg, self.ctl)],
            cwd=REPO, env=env, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs.append(proc)
        wait_ready(self.ctl, timeout=10, proc=proc)
        dt = time.perf_counter() - t0
        self.relay = proc
        return dt

    def stop(self, proc: subprocess.Popen[Any]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def cleanup(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)
        for ns in self.made:
            subprocess.run([IP, "netns", "del", ns], capture_output=True)
        for f in self.tmp.iterdir():
            f.unlink()
        self.tmp.rmdir()

    def set_delay(self, ms: float) -> None:
        reply = relay_command(self.ctl, {"cmd": "set", "pair": "bench", "both": {"delay_ms": ms}})
        assert reply["ok"], reply
        time.sleep(0.05)

    def cpu_s(self) -> float:
        assert self.relay is not None
        fields = Path(f"/proc/{self.relay.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    # -- measurements --------------------------------------------------------------------

    def rtts(self, dst: str, count: int, interval: float) -> list[float]:
        """ICMP echo RTTs in ms, one probe in flight at a time, first 5 discarded (ARP).

        ping(8) prints only 0.1 ms at 20 ms, so this is a Python pinger: the far end is the
        kernel's echo reply (no process to wake) and the reply time is the kernel's receive
        timestamp (SO_TIMESTAMPNS), so neither end's scheduling latency is in the figure.
        """
        code = (
            "import json, os, socket, struct, time\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n"
            "s.setsockopt(socket.SOL_SOCKET, 35, 1); s.settimeout(1)  # SO_TIMESTAMPNS\n"
            "ident = os.getpid() & 0xFFFF; out = []\n"
            "def csum(b):\n"
            "    n = sum(struct.unpack('!%dH' % (len(b) // 2), b))\n"
            "    n = (n >> 16) + (n & 0xFFFF); n += n >> 16\n"
            "    return ~n & 0xFFFF\n"
            f"for seq in range({count} + 5):\n"
            "    body = struct.pack('!BBHHH', 8, 0, 0, ident, seq) + bytes(56)\n"
            "    pkt = body[:2] + struct.pack('!H', csum(body)) + body[4:]\n"
            "    t0 = time.time_ns()\n"
            f"    s.sendto(pkt, ('{dst}', 0))\n"
            "    try:\n"
            "        while True:\n"
            "            data, anc, _, _ = s.recvmsg(2048, 64)\n"
            "            ihl = (data[0] & 15) * 4\n"
            "            typ, _, _, rid, rseq = struct.unpack('!BBHHH', data[ihl:ihl + 8])\n"
            "            if typ == 0 and rid == ident and rseq == seq:\n"
            "                break\n"
            "    except TimeoutError:\n"
            "        continue\n"
            "    sec, nsec = struct.unpack('qq', anc[0][2][:16])\n"
            "    out.append((sec * 10**9 + nsec - t0) / 1e6)\n"
            f"    time.sleep({interval})\n"
            "print(json.dumps(out[5:]))\n"
        )
        out = self.nsx(self.a, sys.executable, "-c", code, timeout=count * (interval + 0.1) + 30)
        rtts: list[float] = json.loads(out)
        if len(rtts) < count * 0.95:
            raise RuntimeError(f"pinger to {dst}: only {len(rtts)}/{count} replies")
        return rtts

    def iperf(self, dst: str) -> tuple[float, int]:
        """(Mbit/s received, retransmits)."""
        port = "5201"
        srv = subprocess.Popen(
            [IP, "netns", "exec", self.b, IPERF3, "-s", "-1", "-p", port],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs.append(srv)
        try:
            deadline = time.monotonic() + 5
            while f":{port}" not in self.nsx(self.b, "ss", "-ltnH"):
                if time.monotonic() > deadline:
                    raise RuntimeError("iperf3 server did not start")
                time.sleep(0.01)
            out = self.nsx(self.a, IPERF3, "-c", dst, "-p", port, "-J", "-t",
                           str(self.args.seconds), timeout=self.args.seconds + 30)  # fmt: skip
            end = json.loads(out)["end"]
            return end["sum_received"]["bits_per_second"] / 1e6, end["sum_sent"]["retransmits"]
        finally:
            self.stop(srv)

    def pysend(self, dst: str) -> tuple[float, int]:
        """Fallback when iperf3 is missing: Python sender/receiver, Mbit/s (retransmits n/a)."""
        rx_code = (
            "import socket,time\n"
            "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            f"s.bind(('{dst}',5202));s.listen(1);print('up',flush=True)\n"
            "c,_=s.accept();n=0;t=time.monotonic();b=bytearray(1<<20)\n"
            "while (k:=c.recv_into(b)):n+=k\n"
            "print(n*8/(time.monotonic()-t)/1e6,flush=True)\n"
        )
        tx_code = (
            "import socket,time\n"
            f"c=socket.create_connection(('{dst}',5202));b=bytes(1<<20)\n"
            f"t=time.monotonic()+{self.args.seconds}\n"
            "while time.monotonic()<t:c.sendall(b)\n"
            "c.close()\n"
        )
        srv = subprocess.Popen([IP, "netns", "exec", self.b, sys.executable, "-c", rx_code],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
        self.procs.append(srv)
        try:
            assert srv.stdout is not None
            srv.stdout.readline()
            self.nsx(self.a, sys.executable, "-c", tx_code, timeout=self.args.seconds + 30)
            return float(srv.stdout.readline()), -1
        finally:
            self.stop(srv)

    def throughput(self, dst: str) -> tuple[float, int, float]:
        """(Mbit/s, retransmits, relay CPU % of one core during the run)."""
        c0, t0 = self.cpu_s(), time.monotonic()
        mbit, retr = (self.iperf if os.path.exists(IPERF3) else self.pysend)(dst)
        cpu = (self.cpu_s() - c0) / (time.monotonic() - t0) * 100
        return mbit, retr, cpu

    def big_tcp_buffers(self) -> None:
        for ns in (self.a, self.b):  # namespace-local sysctls; the root namespace is untouched
            self.nsx(ns, "sysctl", "-qw", "net.ipv4.tcp_rmem=4096 131072 67108864",
                     "net.ipv4.tcp_wmem=4096 16384 67108864")  # fmt: skip


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def throughput(bench: Bench, args: argparse.Namespace) -> None:
    tool = "iperf3" if os.path.exists(IPERF3) else "python sender (no iperf3)"
    print(f"\nTCP throughput, {tool}, {args.seconds} s each:")
    bench.set_delay(0)
    rows = [("direct veth", "10.9.0.2", None), ("relay 0 ms", "10.0.0.2", 0.0),
            ("relay 10 ms", "10.0.0.2", 10.0)]  # fmt: skip
    for label, dst, delay in rows:
        if delay is not None:
            bench.set_delay(delay)
        mbit, retr, cpu = bench.throughput(dst)
        print(f"  {label:32s} {mbit:8.0f} Mbit/s  retr {retr:5d}  relay CPU {cpu:4.0f}%")
    bench.big_tcp_buffers()
    mbit, retr, cpu = bench.throughput("10.0.0.2")
    print(f"  {'relay 10 ms, tcp_[rw]mem 64 MiB':32s} {mbit:8.0f} Mbit/s  retr {retr:5d}  "
          f"relay CPU {cpu:4.0f}%")  # fmt: skip

    stats = relay_command(bench.ctl, {"cmd": "stats", "pair": "bench"})["pairs"]["bench"]
    for d in ("a_to_b", "b_to_a"):
        s = stats[d]
        print(
            f"  relay {d}: {s['rx_frames']} frames, {s['rx_bytes'] / 1e9:.2f} GB, "
            f"dropped {s['dropped']} {s['drops']}, largest frame {s['max_frame_bytes']} B"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=5, help="duration of each throughput run")
    ap.add_argument("--pings", type=int, default=200)
    ap.add_argument("--starts", type=int, default=5, help="relay starts timed")
    ap.add_argument("--no-tcp", action="store_true", help="skip the throughput runs")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally: clean up
    bench = Bench(args)
    rerun = f"cd {REPO} && {sys.executable} benchmarks/bench_relay.py " + " ".join(sys.argv[1:])
    print(f"relay benchmark: kernel {os.uname().release}, {os.cpu_count()} CPUs, "
          f"python {sys.executable} ({sys.version.split()[0]})")  # fmt: skip
    try:
        bench.build()

        starts = []
        for _ in range(args.starts):
            starts.append(bench.start_relay() * 1000)
            assert bench.relay is not None
            bench.stop(bench.relay)
        print(f"\nstart-to-ready, {N_PAIRS} pairs (ip netns exec + interpreter + bind): "
              f"median {statistics.median(starts):.1f} ms, min {min(starts):.1f} ms "
              f"over {len(starts)} starts")  # fmt: skip

        bench.start_relay()
        bench.set_delay(0)
        direct = bench.rtts("10.9.0.2", args.pings, 0.005)
        relayed = bench.rtts("10.0.0.2", args.pings, 0.005)
        added = pct(relayed, 50) - pct(direct, 50), pct(relayed, 99) - pct(direct, 99)
        print(f"\nRTT, ICMP echo, kernel rx timestamps, {args.pings} probes at 5 ms interval (ms):")
        print(f"  direct veth       p50 {pct(direct, 50):.3f}  p99 {pct(direct, 99):.3f}")
        print(f"  relay at 0 delay  p50 {pct(relayed, 50):.3f}  p99 {pct(relayed, 99):.3f}")
        print(f"  added by relay    p50 {added[0]:+.3f}  p99 {added[1]:+.3f}"
              "  (two passes, one each way)")  # fmt: skip

        bench.set_delay(10)
        c0, t0 = bench.cpu_s(), time.monotonic()
        err = [x - 20.0 for x in bench.rtts("10.0.0.2", args.pings, 0.01)]
        cpu = (bench.cpu_s() - c0) / (time.monotonic() - t0) * 100
        print(f"\nprecision at 10 ms each way, {args.pings} probes at 10 ms interval, "
              "RTT - 20 ms (ms):")  # fmt: skip
        print(f"  min {min(err):+.3f}  p50 {pct(err, 50):+.3f}  p99 {pct(err, 99):+.3f}  "
              f"max {max(err):+.3f}   relay CPU {cpu:.1f}%")  # fmt: skip
        st = relay_command(bench.ctl, {"cmd": "stats", "pair": "bench"})["pairs"]["bench"]
        print("  relay's own release lateness (us): " + ", ".join(
            f"{d} mean {st[d]['late_us_mean']} max {st[d]['late_us_max']}"
            for d in ("a_to_b", "b_to_a")))  # fmt: skip
        print(f"  (for reference, p50 RTT at 0 delay: {pct(direct, 50):.3f} direct, "
              f"{pct(relayed, 50):.3f} relayed)")  # fmt: skip
        if not args.no_tcp:
            throughput(bench, args)
    finally:
        bench.cleanup()
    print(f"\nrerun: {rerun.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
