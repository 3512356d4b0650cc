"""strongSwan IKEv2/MOBIKE for real: a gateway in front of an intranet, a mobile client that
gets a tunnel inner address (TIA), moves between two foreign networks and into and out of
a NAT (MOBIKE keeps the IKE SA), a client with a wrong PSK, certificate authentication, and
daemons that are always stopped and reaped.

        intra 10.0.1.0/24         dmz 192.0.2.0/24          pub1 203.0.113.0/24 (mn, eve)
    ha ------------------- gw ------------------- r -------
    .10                 .1    .10              .1   \\------ pub2 198.51.100.0/24
                                                                 |
                                                                nat .3 ---- hot 192.168.1.0/24
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mipbase import vici_client
from mipbase.events import EventWriter
from testbed import netns
from testbed.lab.builder import SW, build
from testbed.lab.lab import Lab
from testbed.launch import pinger_argv
from testbed.topology import load_topology
from testbed.vpn import profiles
from testbed.vpn.charon import Charon, CharonError
from testbed.vpn.node import VpnNode, readdress
from testbed.vpn.pki import make_pki

pytestmark = pytest.mark.netns

TOPOLOGY = Path(__file__).resolve().parents[2] / "topologies" / "vpn-roaming.yaml"

GATEWAY = "192.0.2.10"
INTRANET_HOST = "10.0.1.10"
NAT_OUTSIDE = "198.51.100.3"
PSK = "correct horse battery staple"
POOL = ipaddress.ip_network(profiles.TIA_POOL)
CERT_CLIENT = "eve@cert.vpn.test"
# where the mobile node can be: network -> (address, default router)
PLACES = {
    "pub1": ("203.0.113.50/24", "203.0.113.1"),
    "pub2": ("198.51.100.50/24", "198.51.100.1"),
    "hot": ("192.168.1.50/24", "192.168.1.1"),
}


class EventLog:
    """Every node's events, in arrival order, also written as JSON lines (EventWriter)."""

    def __init__(self, path: Path) -> None:
        self.events: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self.writer = EventWriter.open(str(path), "vpn")

    def append(self, event: dict[str, Any]) -> None:
        with self.cond:
            self.events.append(event)
            self.writer.record(event)
            self.cond.notify_all()

    def select(self, since_ns: int = 0, **match: Any) -> list[dict[str, Any]]:
        with self.cond:
            return [
                e
                for e in self.events
                if e["t_ns"] >= since_ns and all(e.get(k) == v for k, v in match.items())
            ]

    def wait(
        self,
        timeout: float,
        since_ns: int = 0,
        where: Callable[[dict], bool] | None = None,
        **match,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [e for e in self.select(since_ns, **match) if where is None or where(e)]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no event {match} within {timeout} s")
                self.cond.wait(left)


@dataclass
class Env:
    lab: Lab
    tmp: Path
    log: EventLog
    gw: VpnNode
    mn: VpnNode
    eve: VpnNode
    pki: Any
    mn_place: str = "pub1"
    started: list[tuple[int, int | None]] = field(default_factory=list)


def configure_gateway(gw: VpnNode, pki: Any) -> None:
    s = gw.vici
    vici_client.load_pool(s, "tia", profiles.TIA_POOL)
    vici_client.load_shared_psk(s, PSK, [profiles.GATEWAY_ID])  # any client id
    vici_client.load_conn(s, profiles.gateway_conn("rw", dpd_delay_s=5))
    vici_client.load_cert(s, pki.ca.cert_pem, flag="CA")
    vici_client.load_key(s, pki.gateway.key_pem)
    vici_client.load_conn(
        s,
        profiles.gateway_conn(
            "rw-cert",
            auth="pubkey",
            remote_id="*@cert.vpn.test",
            cert=pki.gateway.cert_pem,
            cacert=pki.ca.cert_pem,
        ),
    )


@pytest.fixture(scope="module")
def vpn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("vpn")
    plan = load_topology(TOPOLOGY)
    lab = Lab(build(plan, f"vpn{secrets.token_hex(3)}"), plan)
    log = EventLog(tmp / "events.jsonl")
    nodes: list[VpnNode] = []
    started: list[tuple[int, int | None]] = []
    try:
        pki = make_pki(tmp / "pki", profiles.GATEWAY_ID, [CERT_CLIENT])
        for name, options in (("gw", {"interfaces_use": ["eth0"]}), ("mn", {}), ("eve", {})):
            node = VpnNode(lab, name, log.append, run_dir=tmp / name, **options)
            nodes.append(node)
            node.start()
            started.append((node.charon.pid, node.charon.start_time))  # type: ignore[arg-type]
        gw, mn, eve = nodes
        configure_gateway(gw, pki)
        vici_client.load_shared_psk(mn.vici, PSK, [profiles.CLIENT_ID, profiles.GATEWAY_ID])
        vici_client.load_conn(mn.vici, profiles.client_conn(GATEWAY))
        yield Env(lab, tmp, log, gw, mn, eve, pki, started=started)
    finally:
        statuses = [node.stop() for node in nodes]
        lab.down()
        log.writer.close()
    # charon exits 0 on SIGTERM; and nothing we started is left (checked by PID + start time)
    assert statuses == [0] * len(nodes), statuses
    assert not [pid for pid, start in started if netns.process_running(pid, start)]


# -- helpers ---------------------------------------------------------------------------------


def ping(lab: Lab, node: str, target: str, count: int = 3) -> bool:
    argv = ["ping", "-n", "-c", str(count), "-i", "0.05", "-W", "1", target]
    return lab.run(node, argv, check=False).returncode == 0


def established(env: Env) -> dict[str, Any] | None:
    for sa in vici_client.list_sas(env.mn.vici, "home"):
        if sa["state"] == "ESTABLISHED" and vici_client.installed_children(sa):
            return sa
    return None


def ensure_up(env: Env) -> dict[str, Any]:
    sa = established(env)
    if sa is None:
        vici_client.initiate(env.mn.vici, "net", "home", timeout=5)
        sa = established(env)
    assert sa is not None
    return sa


def move_mn(env: Env, network: str) -> int:
    """Move the MN to ``network`` and re-address it; returns the move's start (link down)."""
    old, _ = PLACES[env.mn_place]
    new, router = PLACES[network]
    times = env.lab.move("mn", network)
    readdress(env.lab, "mn", old, new, router)
    env.mn_place = network
    return times.link_down_ns


@contextlib.contextmanager
def capture(lab: Lab, network: str, path: Path) -> Iterator[None]:
    """tcpdump on a network's bridge; returns once it is listening, stops on exit.

    ``--immediate-mode``: without it tcpdump hands packets over in blocks (up to 1 s), and a
    capture stopped sooner than that loses them (Lab.capture has this problem).
    """
    argv = ["tcpdump", "-i", network, "-n", "-U", "--immediate-mode", "-w", str(path)]
    proc = lab.popen(SW, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        assert "listening on" in proc.stderr.readline()
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def decoded(lab: Lab, path: Path) -> list[str]:
    return lab.run(SW, ["tcpdump", "-r", str(path), "-n"]).stdout.splitlines()


def esp_marker(env: Env) -> str:
    # kernel-libipsec always encapsulates ESP in UDP 4500; the kernel path only behind a NAT
    return "UDP-encap: ESP" if env.gw.charon.config.libipsec else "ESP(spi"


class Pinger:
    """testbed.programs.pinger in a node: ICMP echoes with CLOCK_MONOTONIC send/receive times."""

    def __init__(self, lab: Lab, node: str, target: str, interval_ms: float = 5.0) -> None:
        argv = pinger_argv(target, interval_ms)
        self.proc = lab.popen(node, argv, stdout=subprocess.PIPE, text=True)
        self.replies: list[tuple[int, int, int]] = []
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            seq, sent, received = map(int, line.split())
            self.replies.append((seq, sent, received))

    def first_reply_after(self, t_ns: int, timeout: float) -> int | None:
        """Receive time of the first reply to an echo sent after ``t_ns``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, sent, received in list(self.replies):
                if sent > t_ns:
                    return received
            time.sleep(0.005)
        return None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=5)
        self.thread.join(timeout=2)


# -- tests -----------------------------------------------------------------------------------


def test_client_gets_a_tia_and_reaches_the_intranet_through_the_tunnel(vpn: Env) -> None:
    t0 = time.monotonic_ns()
    sa = ensure_up(vpn)
    (tia,) = vici_client.virtual_ips(sa)
    assert ipaddress.ip_address(tia) in POOL
    gw_sas = vici_client.list_sas(vpn.gw.vici, "rw")
    assert [s["remote-vips"] for s in gw_sas] == [[tia]]
    assert vpn.mn.charon.ready_s is not None and vpn.mn.charon.ready_s < 2.0

    pcap = vpn.tmp / "pub1.pcap"
    with capture(vpn.lab, "pub1", pcap):
        assert ping(vpn.lab, "mn", INTRANET_HOST)  # MN -> intranet
        assert ping(vpn.lab, "ha", tia)  # intranet -> TIA: the gateway routes it back
    lines = decoded(vpn.lab, pcap)
    outer = [ln for ln in lines if f"203.0.113.50.4500 > {GATEWAY}.4500" in ln]
    assert any(esp_marker(vpn) in ln for ln in outer), lines
    assert not [ln for ln in lines if "ICMP" in ln], "plain ICMP on the outside network"

    # the ladder: IKE_SA_INIT and IKE_AUTH both ways, named alike on both ends
    sent = vpn.log.select(t0, node="mn", event="ike_message", dir="tx")
    assert [e["msg"] for e in sent][:2] == ["IKE_SA_INIT", "IKE_AUTH"]
    assert all(e["to"] == GATEWAY for e in sent[:2])
    got = vpn.log.select(t0, node="gw", event="ike_message", dir="rx", msg="IKE_AUTH")
    assert got and got[0]["from"] == "203.0.113.50" and got[0]["msg_id"] == 1
    up = vpn.log.wait(2, t0, node="mn", event="ike_updown", up=True)
    assert up["vips"] == [tia] and up["remote"] == GATEWAY


def test_mobike_move_keeps_the_ike_sa_and_traffic_resumes_fast(vpn: Env) -> None:
    before = ensure_up(vpn)
    if vpn.mn_place != "pub1":
        move_mn(vpn, "pub1")
    pinger = Pinger(vpn.lab, "mn", INTRANET_HOST)
    try:
        assert pinger.first_reply_after(time.monotonic_ns(), 2) is not None
        t_move = move_mn(vpn, "pub2")
        update = vpn.log.wait(3, t_move, node="mn", event="ike_update", ike="home")
        resumed = pinger.first_reply_after(t_move, 3)
    finally:
        pinger.stop()
    assert update["local"] == "198.51.100.50" and update["old_local"] == "203.0.113.50"
    assert update["ike_id"] == int(before["uniqueid"])
    gw_update = vpn.log.wait(2, t_move, node="gw", event="ike_update", ike="rw")
    assert gw_update["remote"] == "198.51.100.50"
    assert resumed is not None, "no reply through the tunnel after the move"
    assert (resumed - t_move) / 1e9 < 1.0, f"traffic resumed after {(resumed - t_move) / 1e6} ms"

    after = established(vpn)
    assert after is not None
    same = ("uniqueid", "initiator-spi", "responder-spi", "local-vips")
    assert {k: after[k] for k in same} == {k: before[k] for k in same}
    assert after["local-host"] == "198.51.100.50"
    # no new IKE SA: no IKE_SA_INIT, no SA went down; one UPDATE_SA_ADDRESSES from the MN
    assert not vpn.log.select(t_move, event="ike_message", msg="IKE_SA_INIT")
    assert not vpn.log.select(t_move, event="ike_updown")
    updates = vpn.log.select(
        t_move, node="mn", event="ike_message", msg="INFORMATIONAL/UPDATE_SA_ADDRESSES"
    )
    assert [(e["dir"], e["kind"]) for e in updates] == [("tx", "request"), ("rx", "response")]
    assert updates[0]["to"] == GATEWAY and updates[0]["local"] == "198.51.100.50"
    if vpn.mn.charon.config.libipsec:
        # kernel-libipsec cannot move an SA in place: the CHILD_SA is rekeyed (same IKE SA)
        vpn.log.wait(2, t_move, node="mn", event="child_rekey")
    else:  # XFRM updates the SA's addresses in place
        assert not vpn.log.select(t_move, node="mn", event="child_rekey")


def test_nat_traversal_into_and_out_of_a_nat(vpn: Env) -> None:
    before = ensure_up(vpn)
    pcap = vpn.tmp / "pub2.pcap"
    with capture(vpn.lab, "pub2", pcap):
        t_move = move_mn(vpn, "hot")
        gw_update = vpn.log.wait(
            3, t_move, node="gw", event="ike_update", where=lambda e: e["remote"] == NAT_OUTSIDE
        )
        deadline = time.monotonic() + 3
        while not ping(vpn.lab, "mn", INTRANET_HOST, count=1) and time.monotonic() < deadline:
            pass
        assert ping(vpn.lab, "mn", INTRANET_HOST)
    assert gw_update["ike_id"] == int(vici_client.list_sas(vpn.gw.vici, "rw")[0]["uniqueid"])
    sa = established(vpn)
    assert sa is not None and sa["uniqueid"] == before["uniqueid"]
    assert sa.get("nat-local") == "yes", "the MN should know it is behind a NAT"
    gw_sa = vici_client.list_sas(vpn.gw.vici, "rw")[0]
    assert (gw_sa["remote-host"], gw_sa["remote-port"]) == (NAT_OUTSIDE, "4500")
    lines = decoded(vpn.lab, pcap)
    assert any(
        f"{NAT_OUTSIDE}.4500 > {GATEWAY}.4500" in ln and "UDP-encap: ESP" in ln for ln in lines
    ), lines
    assert not [ln for ln in lines if "192.168.1.50" in ln], "private address leaked past NAT"

    # and out of the NAT again
    t_back = move_mn(vpn, "pub1")
    vpn.log.wait(3, t_back, node="gw", event="ike_update", remote="203.0.113.50")
    deadline = time.monotonic() + 3
    while not ping(vpn.lab, "mn", INTRANET_HOST, count=1) and time.monotonic() < deadline:
        pass
    sa = established(vpn)
    assert sa is not None and sa["uniqueid"] == before["uniqueid"]
    assert sa.get("nat-local") != "yes"
    assert not vpn.log.select(t_move, event="ike_message", msg="IKE_SA_INIT")


def test_wrong_psk_is_rejected(vpn: Env) -> None:
    eve = vpn.eve.vici
    vici_client.load_shared_psk(eve, "not the key", ["eve@vpn.test", profiles.GATEWAY_ID])
    vici_client.load_conn(eve, profiles.client_conn(GATEWAY, "bad", local_id="eve@vpn.test"))
    t0 = time.monotonic_ns()
    with pytest.raises(vici_client.VpnError) as failure:
        vici_client.initiate(eve, "net", "bad", timeout=5)
    assert (time.monotonic_ns() - t0) / 1e9 < 2.0
    assert any("AUTHENTICATION_FAILED" in line for line in failure.value.log), failure.value.log
    assert vici_client.list_sas(eve) == []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        rogue = [s for s in vici_client.list_sas(vpn.gw.vici) if s["remote-id"] == "eve@vpn.test"]
        if not rogue:
            break
        time.sleep(0.02)
    assert not rogue
    answer = vpn.log.wait(2, t0, node="eve", event="ike_message", dir="rx", msg="IKE_AUTH")
    assert answer["payloads"] == ["N(AUTH_FAILED)"]
    assert not vpn.log.select(t0, node="eve", event="ike_updown", up=True)
    assert not ping(vpn.lab, "eve", INTRANET_HOST, count=1)


def test_certificate_authentication(vpn: Env) -> None:
    eve = vpn.eve.vici
    cred = vpn.pki.clients[CERT_CLIENT]
    vici_client.load_cert(eve, vpn.pki.ca.cert_pem, flag="CA")
    vici_client.load_key(eve, cred.key_pem)
    conn = profiles.client_conn(
        GATEWAY,
        "cert",
        auth="pubkey",
        local_id=CERT_CLIENT,
        cert=cred.cert_pem,
        cacert=vpn.pki.ca.cert_pem,
    )
    vici_client.load_conn(eve, conn)
    t0 = time.monotonic_ns()
    vici_client.initiate(eve, "net", "cert", timeout=5)
    try:
        (sa,) = vici_client.list_sas(eve, "cert")
        (tia,) = vici_client.virtual_ips(sa)
        assert ipaddress.ip_address(tia) in POOL
        assert sa["remote-id"] == profiles.GATEWAY_ID
        (gw_sa,) = [s for s in vici_client.list_sas(vpn.gw.vici) if s["remote-id"] == CERT_CLIENT]
        assert gw_sa["name"] == "rw-cert"
        auth = vpn.log.wait(2, t0, node="eve", event="ike_message", dir="rx", msg="IKE_AUTH")
        assert "CERT" in auth["payloads"]  # the gateway proved itself with its certificate
        assert ping(vpn.lab, "eve", INTRANET_HOST)
    finally:
        vici_client.terminate(eve, ike="cert")
    assert vici_client.list_sas(eve, "cert") == []


def test_charon_is_stopped_and_reaped_on_every_path(vpn: Env) -> None:
    def gone(charon: Charon) -> bool:
        assert charon.pid is not None
        with contextlib.suppress(ChildProcessError):
            os.waitpid(charon.pid, os.WNOHANG)  # would reap it if stop() had not
            return False
        return not netns.process_running(charon.pid, charon.start_time)

    run_dir = vpn.tmp / "lifecycle"
    roles = lambda: [p.role for p in vpn.lab.state.processes]  # noqa: E731

    # an exception inside the with block
    with pytest.raises(RuntimeError), Charon.in_lab(vpn.lab, "ha", run_dir=run_dir) as charon:
        assert charon.running and "charon" in roles()
        raise RuntimeError("boom")
    assert gone(charon) and roles().count("charon") == 3

    # a daemon that dies before vici answers (no hash or crypto plugins: charon exits 66)
    bare = {"random", "nonce", "kernel-libipsec", "kernel-netlink", "socket-default", "vici"}
    charon = Charon.in_lab(vpn.lab, "ha", run_dir=run_dir, available_plugins=bare)
    with pytest.raises(CharonError, match="exited with"):
        charon.start()
    assert gone(charon) and roles().count("charon") == 3

    # a daemon that ignores SIGTERM (stopped): SIGKILL after the grace period
    charon = Charon.in_lab(vpn.lab, "ha", run_dir=run_dir)
    charon.start()
    assert charon.pid is not None
    os.kill(charon.pid, signal.SIGSTOP)  # our own child, by PID
    t0 = time.monotonic()
    assert charon.stop(grace_s=0.2) == -signal.SIGKILL
    assert time.monotonic() - t0 < 2
    assert gone(charon)
    assert roles().count("charon") == 3  # only the module's gw, mn, eve remain recorded
