"""MOBIKE handoff time through strongSwan (charon-systemd, vici), as root.

    python benchmarks/bench_mobike.py [--moves 20] [--nat] [--delay-ms 0] [--interval-ms 5]

Builds a small lab (gateway gw in front of intranet host ha; mobile node mn on one of two
foreign networks, pub1 and pub2 or, with --nat, a network behind a masquerading router),
brings up an IKEv2 tunnel (PSK, TIA from a pool, MOBIKE) and moves mn back and forth N
times: link down, re-master to the other network, link up, old address removed, new
address and default route added. An ICMP prober in mn (testbed.programs.pinger, every
--interval-ms) pings ha through the tunnel; per move it reports, from the move's start:

- ike_update: the MN's and the gateway's vici ``ike-update`` events (MOBIKE done);
- first reply: the first echo reply to an echo sent after the move (traffic resumed);

and checks that the IKE SA stays the same (no IKE_SA_INIT, same SPIs). strongSwan waits a
fixed 100 ms after the address change before it starts MOBIKE (kernel-netlink ROAM_DELAY),
so ~100 ms + 1 RTT is the floor. Everything is removed on exit (lab down; charons stopped
by PID).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mipbase import vici_client  # noqa: E402
from testbed.lab.builder import build  # noqa: E402
from testbed.lab.lab import Lab  # noqa: E402
from testbed.launch import pinger_argv  # noqa: E402
from testbed.topology import load_topology  # noqa: E402
from testbed.vpn import profiles  # noqa: E402
from testbed.vpn.node import VpnNode, readdress  # noqa: E402

GATEWAY = "192.0.2.10"
TARGET = "10.0.1.10"
PSK = "bench mobike psk"
TOPOLOGY = REPO / "topologies" / "vpn-roaming.yaml"
PLACES = {
    "pub1": ("203.0.113.50/24", "203.0.113.1"),
    "pub2": ("198.51.100.50/24", "198.51.100.1"),
    "hot": ("192.168.1.50/24", "192.168.1.1"),
}


class Events:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.cond = threading.Condition()

    def append(self, event: dict[str, Any]) -> None:
        with self.cond:
            self.items.append(event)
            self.cond.notify_all()

    def first(self, since: int, timeout: float, **match: Any) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.items:
                    if e["t_ns"] >= since and all(e.get(k) == v for k, v in match.items()):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def count(self, since: int, **match: Any) -> int:
        with self.cond:
            return sum(
                1
                for e in self.items
                if e["t_ns"] >= since and all(e.get(k) == v for k, v in match.items())
            )


class Pinger:
    def __init__(self, lab: Lab, node: str, target: str, interval_ms: float) -> None:
        argv = pinger_argv(target, interval_ms)
        self.proc = lab.popen(node, argv, stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        self.replies: list[tuple[int, int]] = []  # (t_send, t_recv)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            _, sent, received = map(int, line.split())
            with self.lock:
                self.replies.append((sent, received))

    def first_after(self, t_ns: int, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for sent, received in self.replies:
                    if sent > t_ns:
                        return received
            time.sleep(0.002)
        return None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=5)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def summary(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"p50 {statistics.median(values):7.1f}  p95 {pct(values, 95):7.1f}  "
        f"min {min(values):7.1f}  max {max(values):7.1f}  (n={len(values)})"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--moves", type=int, default=20)
    ap.add_argument("--nat", action="store_true", help="move between pub1 and a NATed network")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay on pub1/pub2/hot")
    ap.add_argument("--interval-ms", type=float, default=5.0, help="ICMP probe interval")
    ap.add_argument("--settle-ms", type=float, default=300.0, help="pause after each move")
    ap.add_argument("--json", type=Path, help="write the samples here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="bench-mobike-"))
    overrides = None
    if args.delay_ms:
        d = {"impair": {"delay": f"{args.delay_ms}ms"}}
        overrides = {"networks": {n: d for n in ("pub1", "pub2", "hot")}}
    plan = load_topology(TOPOLOGY, overrides)
    lab = Lab(build(plan, f"bmk{secrets.token_hex(3)}"), plan)
    events = Events()
    nodes: list[VpnNode] = []
    samples: dict[str, list[float]] = {"mn_update": [], "gw_update": [], "first_reply": []}
    failures = 0
    try:
        gw = VpnNode(lab, "gw", events.append, run_dir=tmp / "gw", interfaces_use=["eth0"])
        mn = VpnNode(lab, "mn", events.append, run_dir=tmp / "mn")
        for node in (gw, mn):
            nodes.append(node.start())
        ready = {n.node: (n.charon.ready_s or 0) * 1e3 for n in nodes}
        vici_client.load_pool(gw.vici, "tia", profiles.TIA_POOL)
        vici_client.load_shared_psk(gw.vici, PSK, [profiles.GATEWAY_ID])
        vici_client.load_conn(gw.vici, profiles.gateway_conn())
        vici_client.load_shared_psk(mn.vici, PSK, [profiles.CLIENT_ID, profiles.GATEWAY_ID])
        vici_client.load_conn(mn.vici, profiles.client_conn(GATEWAY))
        t0 = time.monotonic()
        vici_client.initiate(mn.vici, "net", "home", timeout=10)
        setup_ms = (time.monotonic() - t0) * 1e3
        (sa0,) = vici_client.list_sas(mn.vici, "home")

        pinger = Pinger(lab, "mn", TARGET, args.interval_ms)
        try:
            if pinger.first_after(time.monotonic_ns(), 3) is None:
                raise RuntimeError("no reply through the tunnel before the first move")
            other = "hot" if args.nat else "pub2"
            place = "pub1"
            t_first = time.monotonic_ns()
            for i in range(args.moves):
                target = other if place == "pub1" else "pub1"
                t_move = lab.move("mn", target).link_down_ns
                readdress(lab, "mn", PLACES[place][0], PLACES[target][0], PLACES[target][1])
                place = target
                mn_up = events.first(t_move, 5, node="mn", event="ike_update", ike="home")
                gw_up = events.first(t_move, 5, node="gw", event="ike_update", ike="rw")
                reply = pinger.first_after(t_move, 5)
                if mn_up is None or gw_up is None or reply is None:
                    failures += 1
                    print(f"move {i}: no update/reply within 5 s", file=sys.stderr)
                else:
                    samples["mn_update"].append((mn_up["t_ns"] - t_move) / 1e6)
                    samples["gw_update"].append((gw_up["t_ns"] - t_move) / 1e6)
                    samples["first_reply"].append((reply - t_move) / 1e6)
                # wait for the CHILD_SA rekey that follows every update on kernel-libipsec
                events.first(t_move, 2, node="mn", event="child_rekey")
                time.sleep(args.settle_ms / 1e3)
        finally:
            pinger.stop()
        (sa1,) = vici_client.list_sas(mn.vici, "home")
        same_sa = all(sa0[k] == sa1[k] for k in ("uniqueid", "initiator-spi", "responder-spi"))
        new_inits = events.count(t_first, event="ike_message", msg="IKE_SA_INIT")
    finally:
        for node in nodes:
            node.stop()
        lab.down()

    path = "kernel-libipsec (userspace ESP)" if nodes[0].charon.config.libipsec else "kernel XFRM"
    print(
        f"\nMOBIKE handoffs: {args.moves} moves pub1 <-> {'hot (NAT)' if args.nat else 'pub2'}, "
        f"delay {args.delay_ms:g} ms per access hop, probe every {args.interval_ms:g} ms, "
        f"ESP: {path}"
    )
    print(
        f"charon start-to-ready: gw {ready['gw']:.1f} ms, mn {ready['mn']:.1f} ms; "
        f"IKE_SA_INIT+IKE_AUTH (initiate): {setup_ms:.1f} ms"
    )
    print("ms from the move (link down):")
    print(f"  MN ike_update   {summary(samples['mn_update'])}")
    print(f"  GW ike_update   {summary(samples['gw_update'])}")
    print(f"  first reply     {summary(samples['first_reply'])}")
    print(
        f"IKE SA kept across all moves: {'yes' if same_sa and not new_inits else 'NO'} "
        f"(new IKE_SA_INIT: {new_inits}); failed moves: {failures}"
    )
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, **samples}))
    print(f"charon logs: {tmp}")
    print(f"rerun: sudo {sys.executable} benchmarks/bench_mobike.py " + " ".join(sys.argv[1:]))
    return 0 if failures == 0 and same_sa and not new_inits else 1


if __name__ == "__main__":
    sys.exit(main())
