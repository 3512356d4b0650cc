"""A four-namespace Mobile IP data-plane lab for tests and benchmarks (root only).

    cn eth0 10.1.0.100/24 --- h0 10.1.0.1 [ha] w0 10.2.0.1 --- r0 10.2.0.2 [rt] r1 10.3.0.1
                                                                          |
                                          mn eth0 10.3.0.10/24 (care-of) -+   mip0: 10.1.0.10

The correspondent node (cn) sits on the home link 10.1.0.0/24, where the mobile node's home
address 10.1.0.10 lives. The HA proxies ARP for it and tunnels to the care-of address
10.3.0.10 behind a router (rt). The mobile node decapsulates into its own TUN, where the home
address is configured, and reverse-tunnels (RFC 3024) everything sent from the home address
through a source rule. rt has no route to the home network (unless ``route_home=True``), so
traffic from the home address can only reach the cn through the reverse tunnel.

Everything is made inside the lab's own namespaces (veth pairs are created in one namespace
with their peer in the other; the root namespace is not touched). :meth:`TunnelLab.close`
stops the processes it started, by PID, and deletes only the namespaces it created.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from agents.dataplane.packets import UDP_MTU

REPO = Path(__file__).resolve().parents[2]
IP = shutil.which("ip") or "/usr/sbin/ip"

CN, HA_HOME, HA_WIRE, RT_WIRE, RT_VISIT, COA = (
    "10.1.0.100",
    "10.1.0.1",
    "10.2.0.1",
    "10.2.0.2",
    "10.3.0.1",
    "10.3.0.10",
)
HOME = "10.1.0.10"
REVERSE_TABLE = 100
TUN = "mip0"


def sh(*args: str, timeout: float = 10, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout)


class DemoProc:
    """One ``python -m agents.dataplane.demo`` in a namespace, spoken to in JSON lines."""

    def __init__(self, ns: str, *args: str, python: str = sys.executable) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        # `ip netns exec` execs in place: self.proc.pid is the demo process itself.
        self.proc = subprocess.Popen(
            [IP, "netns", "exec", ns, python, "-m", "agents.dataplane.demo", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=REPO, env=env,
        )  # fmt: skip
        assert self.proc.stdout is not None and self.proc.stdin is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.stop()
            raise RuntimeError(f"demo in {ns} did not start: {err.strip()[-2000:]}")
        self.ready: dict[str, Any] = json.loads(line)

    def __call__(self, op: str, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **req}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"demo exited ({self.proc.poll()})")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"{op} failed: {reply.get('error')}")
        return reply

    def counters(self) -> dict[str, int]:
        return self("counters")["counters"]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self("quit")
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)  # by PID: only our own process
                try:
                    self.proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=3)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        return self.proc.returncode


class TunnelLab:
    def __init__(self, prefix: str | None = None, *, route_home: bool = False) -> None:
        self.prefix = prefix or f"tbdp{secrets.token_hex(3)}"
        self.cn, self.ha, self.rt, self.mn = (
            f"{self.prefix}-{n}" for n in ("cn", "ha", "rt", "mn")
        )
        self.route_home = route_home
        self.made: list[str] = []
        self.procs: list[subprocess.Popen[Any]] = []
        self.demos: list[DemoProc] = []
        self.ha_engine: DemoProc | None = None
        self.mn_engine: DemoProc | None = None

    # --- namespaces -----------------------------------------------------------------------

    def ip(self, ns: str, *args: str) -> str:
        return sh(IP, "-n", ns, *args).stdout

    def sysctl(self, ns: str, key: str, value: str) -> None:
        # Through `ip netns exec`, so the write lands in that namespace's /proc/sys/net.
        sh(IP, "netns", "exec", ns, "sh", "-c", f"echo {value} > /proc/sys/{key.replace('.', '/')}")

    def veth(self, ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
        self.ip(ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", ns_b)

    def addr(self, ns: str, dev: str, cidr: str) -> None:
        self.ip(ns, "addr", "add", cidr, "dev", dev)
        self.ip(ns, "link", "set", dev, "up")

    def build(self) -> TunnelLab:
        for ns in (self.cn, self.ha, self.rt, self.mn):
            sh(IP, "netns", "add", ns)
            self.made.append(ns)
            self.ip(ns, "link", "set", "lo", "up")
        self.veth(self.cn, "eth0", self.ha, "h0")
        self.veth(self.ha, "w0", self.rt, "r0")
        self.veth(self.rt, "r1", self.mn, "eth0")
        self.addr(self.cn, "eth0", f"{CN}/24")
        self.addr(self.ha, "h0", f"{HA_HOME}/24")
        self.addr(self.ha, "w0", f"{HA_WIRE}/24")
        self.addr(self.rt, "r0", f"{RT_WIRE}/24")
        self.addr(self.rt, "r1", f"{RT_VISIT}/24")
        self.addr(self.mn, "eth0", f"{COA}/24")
        self.ip(self.cn, "route", "add", "default", "via", HA_HOME)
        self.ip(self.ha, "route", "add", "10.3.0.0/24", "via", RT_WIRE)
        self.ip(self.mn, "route", "add", "default", "via", RT_VISIT)
        if self.route_home:  # plain routing cn <-> care-of address, for a baseline
            self.ip(self.rt, "route", "add", "10.1.0.0/24", "via", HA_WIRE)
        for ns in (self.ha, self.rt):
            self.sysctl(ns, "net.ipv4.ip_forward", "1")
        return self

    # --- engines --------------------------------------------------------------------------

    def start_engines(
        self,
        ha_args: tuple[str, ...] = ("--udp-mode", "engine", "--learn-peer"),
        mn_args: tuple[str, ...] = ("--udp-mode", "agent"),
        encap: str = "ipip",
        python: str = sys.executable,
        mtu: int = UDP_MTU,
    ) -> tuple[DemoProc, DemoProc]:
        """An HA (key dst) and a mobile node (key src) engine, bound as after a registration
        with a co-located care-of address and reverse tunnelling. The default TUN MTU suits
        both encapsulations (UDP costs 12 bytes more than IP in IP)."""
        common = ("--tun", TUN, "--mtu", str(mtu))
        ha = DemoProc(self.ha, *common, "--key", "dst", *ha_args, python=python)
        self.demos.append(ha)
        mn = DemoProc(self.mn, *common, "--key", "src", *mn_args, python=python)
        self.demos.append(mn)
        self.ha_engine, self.mn_engine = ha, mn
        ha("add", home=HOME, peer=COA, encap=encap, route=True)
        ha("proxy_arp", home=HOME, ifname="h0")
        mn("address", address=HOME)
        mn("default_route", table=REVERSE_TABLE, src=HOME)
        mn("source_rule", address=HOME, table=REVERSE_TABLE)
        mn("add", home=HOME, peer=HA_WIRE, encap=encap)
        return ha, mn

    def use(self, encap: str) -> None:
        """Both ends on ``encap``, UDP ports back at 434 (undoes a learned NAT port)."""
        assert self.ha_engine is not None and self.mn_engine is not None
        self.ha_engine("update", home=HOME, encap=encap, peer=COA, peer_port=434)
        self.mn_engine("update", home=HOME, encap=encap, peer=HA_WIRE, local_port=434)

    # --- running things in the namespaces -------------------------------------------------

    def run(self, ns: str, *argv: str, timeout: float = 20, check: bool = False):
        return sh(IP, "netns", "exec", ns, *argv, timeout=timeout, check=check)

    def popen(self, ns: str, *argv: str, **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen([IP, "netns", "exec", ns, *argv], **kw)
        self.procs.append(proc)
        return proc

    def python(
        self, ns: str, source: str, *args: str, timeout: float = 20, python: str = sys.executable
    ):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return subprocess.run(
            [IP, "netns", "exec", ns, python, "-c", source, *args],
            capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO,
        )  # fmt: skip

    def mac(self, ns: str, dev: str) -> str:
        return json.loads(self.ip(ns, "-j", "link", "show", dev))[0]["address"]

    def neigh(self, ns: str, dev: str, address: str) -> str | None:
        """The cached MAC of ``address`` (None if there is no usable entry)."""
        for entry in json.loads(self.ip(ns, "-j", "neigh", "show", "dev", dev)):
            if entry.get("dst") == address and "lladdr" in entry:
                return str(entry["lladdr"])
        return None

    # --- teardown -------------------------------------------------------------------------

    def close(self) -> None:
        for demo in self.demos:
            with contextlib.suppress(Exception):
                demo.stop()
        self.demos.clear()
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()  # by PID, only what this lab started
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=3)
        self.procs.clear()
        for ns in reversed(self.made):
            sh(IP, "netns", "del", ns, check=False)
        self.made.clear()

    def __enter__(self) -> TunnelLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "CN",
    "COA",
    "HA_HOME",
    "HA_WIRE",
    "HOME",
    "RT_VISIT",
    "RT_WIRE",
    "TUN",
    "DemoProc",
    "TunnelLab",
]
