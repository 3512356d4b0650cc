"""The Mobile IP data plane for real, in namespaces of our own (needs root).

Topology (see agents/dataplane/testnet.py; prefix random per module run):

    cn 10.1.0.100 -- h0 [HA 10.1.0.1 / 10.2.0.1] w0 -- [rt] -- eth0 [MN 10.3.0.10, mip0 10.1.0.10]

The HA's engine (key='dst', UDP 434 shared with the "agent" and served by the engine,
learn_peer on) tunnels the home address to the care-of address; the mobile node's engine
(key='src', the agent reads UDP 434 and hands tunnel data over) decapsulates into its TUN
and reverse-tunnels what it sends from the home address. rt cannot route to the home
network, so anything from the home address reaching the cn came through the reverse tunnel.
Only the namespaces and processes made here are touched; the root namespace is left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agents.dataplane.packets import UDP_MTU, ipv4_packet
from agents.dataplane.testnet import (
    CN,
    COA,
    HA_WIRE,
    HOME,
    RT_VISIT,
    RT_WIRE,
    TUN,
    DemoProc,
    TunnelLab,
)

PING = shutil.which("ping") or "/usr/bin/ping"

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or not os.path.exists(PING),
        reason="needs root, /dev/net/tun and ping",
    ),
]


@pytest.fixture(scope="module")
def lab() -> Iterator[TunnelLab]:
    with TunnelLab() as lab:
        lab.build()
        lab.start_engines()
        yield lab
    # TunnelLab.close() removed exactly what it made
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert lab.prefix not in left


def ping(lab: TunnelLab, ns: str, target: str, count: int = 3, *extra: str) -> bool:
    res = lab.run(ns, PING, "-n", "-c", str(count), "-i", "0.05", "-W", "1", *extra, target)
    return res.returncode == 0 and " 0% packet loss" in res.stdout


def delta(before: dict[str, int], after: dict[str, int], key: str) -> int:
    return after.get(key, 0) - before.get(key, 0)


UDP_LISTEN = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
try:
    data, peer = s.recvfrom(2048)
    print(peer[0], data.decode(), flush=True)
except socket.timeout:
    print("timeout", flush=True)
"""

UDP_SEND = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
s.sendto(sys.argv[4].encode(), (sys.argv[2], int(sys.argv[3])))
"""

# Sends N pseudo-random bytes to HOST:PORT and reads the echo concurrently; prints both
# SHA-256 digests. The echo server runs on the mobile node, bound to the home address.
TCP_CLIENT = r"""
import hashlib, random, socket, sys, threading
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = random.Random(1234).randbytes(n)
s = socket.create_connection((host, port), timeout=10)
def send():
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send); t.start()
h = hashlib.sha256(); got = 0
while True:
    chunk = s.recv(1 << 16)
    if not chunk:
        break
    h.update(chunk); got += len(chunk)
t.join()
print(hashlib.sha256(data).hexdigest(), h.hexdigest(), got)
"""

TCP_ECHO = r"""
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(1); srv.settimeout(10)
print("ready", flush=True)
c, peer = srv.accept(); c.settimeout(10)
while True:
    chunk = c.recv(1 << 16)
    if not chunk:
        break
    c.sendall(chunk)
c.close()
print(peer[0], flush=True)
"""

RAW_IPIP_SEND = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)  # the kernel adds the outer header
s.sendto(bytes.fromhex(sys.argv[2]), (sys.argv[1], 0))
"""


def listen_udp(lab: TunnelLab, ns: str, port: int, timeout: float) -> Any:
    proc = lab.popen(
        ns, sys.executable, "-c", UDP_LISTEN, str(port), str(timeout),
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_ping_through_ipip(lab: TunnelLab) -> None:
    lab.use("ipip")
    ha0, mn0 = lab.ha_engine.counters(), lab.mn_engine.counters()
    assert ping(lab, lab.cn, HOME, 5)
    ha1, mn1 = lab.ha_engine.counters(), lab.mn_engine.counters()
    assert delta(ha0, ha1, "tx_ipip") >= 5 and delta(mn0, mn1, "rx_ipip") >= 5
    # the replies came back through the reverse tunnel
    assert delta(mn0, mn1, "tx_ipip") >= 5 and delta(ha0, ha1, "rx_ipip") >= 5


def test_ping_through_udp(lab: TunnelLab) -> None:
    lab.use("udp")
    ha0, mn0 = lab.ha_engine.counters(), lab.mn_engine.counters()
    assert ping(lab, lab.cn, HOME, 5)
    ha1, mn1 = lab.ha_engine.counters(), lab.mn_engine.counters()
    assert delta(ha0, ha1, "tx_udp") >= 5 and delta(mn0, mn1, "rx_udp") >= 5
    assert delta(mn0, mn1, "tx_udp") >= 5 and delta(ha0, ha1, "rx_udp") >= 5
    assert delta(ha0, ha1, "tx_ipip") == 0


@pytest.mark.parametrize("encap", ["ipip", "udp"])
def test_tcp_transfer(lab: TunnelLab, encap: str) -> None:
    lab.use(encap)
    port = 5001 if encap == "ipip" else 5002
    server = lab.popen(
        lab.mn, sys.executable, "-c", TCP_ECHO, HOME, str(port), stdout=subprocess.PIPE, text=True
    )
    assert server.stdout.readline().strip() == "ready"
    n = 3 * 1024 * 1024
    res = lab.python(lab.cn, TCP_CLIENT, HOME, str(port), str(n), timeout=30)
    assert res.returncode == 0, res.stderr
    sent, echoed, got = res.stdout.split()
    assert int(got) == n and sent == echoed
    server.wait(timeout=10)
    assert server.stdout.read().strip() == CN


def test_reverse_tunnel_source_is_home_address(lab: TunnelLab) -> None:
    lab.use("ipip")
    before = lab.ha_engine.counters()
    listener = listen_udp(lab, lab.cn, 6001, 5)
    res = lab.python(lab.mn, UDP_SEND, HOME, CN, "6001", "hello-from-home")
    assert res.returncode == 0, res.stderr
    out, _ = listener.communicate(timeout=10)
    assert out.split() == [HOME, "hello-from-home"]
    assert delta(before, lab.ha_engine.counters(), "rx_ipip") >= 1
    # ... and rt really cannot route to the home network: no shortcut around the HA.
    assert "10.1.0.0" not in lab.ip(lab.rt, "route", "show")


def test_proxy_arp_draws_home_address_traffic_to_ha(lab: TunnelLab) -> None:
    lab.use("ipip")
    ha_mac = lab.mac(lab.ha, "h0")
    lab.ha_engine("proxy_arp", home=HOME, ifname="h0", add=False)
    lab.ip(lab.cn, "neigh", "flush", "dev", "eth0")
    try:
        assert not ping(lab, lab.cn, HOME, 1)  # nobody answers ARP for the home address
    finally:
        lab.ha_engine("proxy_arp", home=HOME, ifname="h0", add=True)
    lab.ip(lab.cn, "neigh", "flush", "dev", "eth0")
    assert ping(lab, lab.cn, HOME, 2)
    assert lab.neigh(lab.cn, "eth0", HOME) == ha_mac


def test_gratuitous_arp_updates_correspondent_cache(lab: TunnelLab) -> None:
    ha_mac = lab.mac(lab.ha, "h0")
    # As if the mobile node had just left: the cn still has its old MAC for the address.
    lab.ip(lab.cn, "neigh", "replace", HOME, "lladdr", "02:00:00:00:00:99", "dev", "eth0",
           "nud", "stale")  # fmt: skip
    assert lab.neigh(lab.cn, "eth0", HOME) == "02:00:00:00:00:99"
    assert lab.ha_engine("garp", address=HOME, ifname="h0")["sent"] == 1
    deadline = time.monotonic() + 2
    while lab.neigh(lab.cn, "eth0", HOME) != ha_mac and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lab.neigh(lab.cn, "eth0", HOME) == ha_mac


def test_unknown_outer_source_dropped_and_counted(lab: TunnelLab) -> None:
    lab.use("ipip")
    inner = ipv4_packet(
        bytes(map(int, HOME.split("."))), bytes(map(int, CN.split("."))), 17,
        bytes.fromhex("1771177100100000") + b"spoofed!",  # UDP 6001 -> 6001, no checksum
    )  # fmt: skip
    before = lab.ha_engine.counters()
    listener = listen_udp(lab, lab.cn, 6001, 1.0)
    # from rt (10.2.0.2): not the peer of any tunnel
    res = lab.python(lab.rt, RAW_IPIP_SEND, HA_WIRE, inner.hex())
    assert res.returncode == 0, res.stderr
    # from the care-of address, but for an inner source that is not its home address
    other = ipv4_packet(
        bytes((10, 1, 0, 99)), bytes(map(int, CN.split("."))), 17,
        bytes.fromhex("1771177100100000") + b"spoofed!",
    )  # fmt: skip
    res = lab.python(lab.mn, RAW_IPIP_SEND, HA_WIRE, other.hex())
    assert res.returncode == 0, res.stderr
    out, _ = listener.communicate(timeout=5)
    assert out.strip() == "timeout"  # neither reached the cn
    after = lab.ha_engine.counters()
    assert delta(before, after, "rx_unknown_peer") == 1
    assert delta(before, after, "rx_inner_mismatch") == 1
    assert delta(before, after, "rx_ipip") == 0


def test_garbage_does_not_crash(lab: TunnelLab) -> None:
    lab.use("ipip")
    before = lab.ha_engine.counters()
    garbage_udp = r"""
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for p in (b"\x04", b"\x04\x04\x00\x00" + b"\x45" * 10, b"\x04\x37\x00\x00" + bytes(40),
          b"\x04\x2f\x00\x00" + bytes(40), b"\x01" + os.urandom(30), b"",
          b"\x04\x04\x00\x00\x60" + bytes(60), os.urandom(1400)):
    s.sendto(p, (sys.argv[1], 434))
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
for p in (b"", b"\x45", os.urandom(200), b"\x60" + bytes(59), b"\x46" + bytes(19)):
    raw.sendto(p, (sys.argv[1], 0))
"""
    res = lab.python(lab.mn, garbage_udp, HA_WIRE)
    assert res.returncode == 0, res.stderr
    time.sleep(0.1)
    assert lab.ha_engine.proc.poll() is None
    after = lab.ha_engine.counters()
    for key in ("rx_truncated", "rx_inner_truncated", "rx_udp_bad_next_header",
                "rx_inner_not_ipv4", "rx_udp_other"):  # fmt: skip
        assert delta(before, after, key) >= 1, (key, after)
    assert delta(before, after, "rx_udp_bad_next_header") == 2  # 55 minimal, 47 GRE
    # the non-tunnel message went to the agent's handler, not the TUN
    assert lab.ha_engine("counters")["agent_messages"]
    assert ping(lab, lab.cn, HOME, 2)


def test_udp_peer_port_learned_after_rebinding(lab: TunnelLab) -> None:
    lab.use("udp")
    before = lab.ha_engine.counters()
    # As after a NAT rebinding: the mobile node's packets now come from another port.
    lab.mn_engine("update", home=HOME, local_port=4344)
    try:
        assert ping(lab, lab.cn, HOME, 3)
        state = lab.ha_engine("counters")
        assert delta(before, state["counters"], "rx_udp_peer_learned") == 1
        assert state["tunnels"][0]["peer_port"] == 4344
        assert any(e["event"] == "tunnel_peer_learned" for e in state["events"])
    finally:
        lab.use("udp")  # back to port 434 at both ends
    assert ping(lab, lab.cn, HOME, 2)
    assert lab.ha_engine("counters")["tunnels"][0]["peer_port"] == 434


def test_deregistration_stops_tunnelling(lab: TunnelLab) -> None:
    lab.use("ipip")
    lab.ha_engine("remove", home=HOME)
    try:
        before = lab.ha_engine.counters()
        assert not ping(lab, lab.cn, HOME, 1)
        assert delta(before, lab.ha_engine.counters(), "tx_no_tunnel") >= 1
    finally:
        lab.ha_engine("add", home=HOME, peer=COA, encap="ipip")
    assert ping(lab, lab.cn, HOME, 2)


def test_tun_device_setup(lab: TunnelLab) -> None:
    for ns in (lab.ha, lab.mn):
        (info,) = json.loads(lab.ip(ns, "-j", "-d", "link", "show", "mip0"))
        assert info["mtu"] == UDP_MTU and "UP" in info["flags"]
        assert info["txqlen"] == 1000
        assert info["linkinfo"]["info_kind"] == "tun"
        assert lab.run(ns, "cat", "/proc/sys/net/ipv6/conf/mip0/disable_ipv6").stdout == "1\n"
        v6 = json.loads(lab.ip(ns, "-j", "-6", "addr", "show", "dev", "mip0"))
        assert not any(entry.get("addr_info") for entry in v6)  # not even link-local


PROBE = r"""
import os
from agents.dataplane.kernel import kernel_ipip_available, select_backend
ok = kernel_ipip_available()
print(ok, select_backend("ipip"), select_backend("udp"))
os.environ["TESTBED_TUNNEL"] = "userspace"
print(select_backend("ipip"))
"""


def test_backend_probe_in_a_namespace(lab: TunnelLab) -> None:
    res = lab.python(lab.rt, PROBE)
    assert res.returncode == 0, res.stderr
    first, second = res.stdout.splitlines()
    available, ipip_backend, udp_backend = first.split()
    assert ipip_backend == ("kernel" if available == "True" else "userspace")
    assert udp_backend == "userspace" and second == "userspace"
    assert "mipprobe" not in lab.ip(lab.rt, "link", "show")  # the probe link is gone


KERNEL_SIDE = r"""
import sys
from agents.dataplane.kernel import KernelIpipTunnel
key, home, peer, local = sys.argv[1:5]
kt = KernelIpipTunnel(key)
kt.add(home, peer, local=local)
print(kt.link_name(peer))  # links outlive this process; the lab's namespaces take them
"""


def test_kernel_ipip_backend_when_available() -> None:
    with TunnelLab() as lab:
        lab.build()
        probe = lab.python(lab.rt, PROBE)
        if not probe.stdout.startswith("True"):
            pytest.skip("this kernel has no ipip (the userspace path is the one tested)")
        res = lab.python(lab.ha, KERNEL_SIDE, "dst", HOME, COA, HA_WIRE)
        assert res.returncode == 0, res.stderr
        lab.ip(lab.ha, "neigh", "add", "proxy", HOME, "dev", "h0")
        lab.sysctl(lab.ha, "net.ipv4.neigh.h0.proxy_delay", "0")
        lab.ip(lab.mn, "addr", "add", f"{HOME}/32", "dev", "lo")
        res = lab.python(lab.mn, KERNEL_SIDE, "src", HOME, HA_WIRE, COA)
        assert res.returncode == 0, res.stderr
        assert ping(lab, lab.cn, HOME, 3)


def test_foreign_agent_decapsulates_and_reverse_tunnels() -> None:
    """FA care-of address: rt is the FA (CoA 10.2.0.2); the mobile node sits on the visited
    link with only its home address; the FA delivers and reverse-tunnels for it."""
    with TunnelLab() as lab:
        lab.build()
        ha = DemoProc(lab.ha, "--tun", TUN, "--key", "dst")
        lab.demos.append(ha)
        fa = DemoProc(lab.rt, "--tun", TUN, "--key", "src")
        lab.demos.append(fa)
        ha("add", home=HOME, peer=RT_WIRE, route=True)
        ha("proxy_arp", home=HOME, ifname="h0")
        fa("add", home=HOME, peer=HA_WIRE)
        lab.ip(lab.rt, "route", "add", f"{HOME}/32", "dev", "r1")
        fa("default_route", table=100)
        fa("source_rule", address=HOME, table=100)
        lab.ip(lab.mn, "addr", "flush", "dev", "eth0")
        lab.ip(lab.mn, "addr", "add", f"{HOME}/32", "dev", "eth0")
        lab.ip(lab.mn, "route", "add", RT_VISIT, "dev", "eth0")
        lab.ip(lab.mn, "route", "add", "default", "via", RT_VISIT)
        assert ping(lab, lab.cn, HOME, 3)
        ha_c, fa_c = ha.counters(), fa.counters()
        assert ha_c["tx_ipip"] >= 3 and fa_c["rx_ipip"] >= 3  # HA -> FA
        assert fa_c["tx_ipip"] >= 3 and ha_c["rx_ipip"] >= 3  # FA -> HA (reverse)
