"""Run one :class:`TunnelEngine` in this namespace, driven by JSON lines on stdin.

    ip netns exec NS python -m agents.dataplane.demo --tun mip0 --key dst [--udp-mode engine]

For tests and benchmarks: it stands in for an agent (HA, FA or mobile node) that has
registered bindings. It prints ``{"ready": ...}`` once the TUN is up, then answers one JSON
line per command line:

    {"op": "add", "home": A, "peer": B, "encap": "ipip"|"udp", "local": L,
     "peer_port": 434, "local_port": 434, "route": true}   route: HOME/32 via the TUN
    {"op": "update", "home": A, ...fields to change...}
    {"op": "remove", "home": A}
    {"op": "counters"}                  -> {"counters": {...non-zero...}, "tunnels": [...]}
    {"op": "proxy_arp", "home": A, "ifname": IF, "add": true}
    {"op": "garp", "address": A, "ifname": IF, "count": 1}
    {"op": "address", "address": A, "prefixlen": 32}        on the TUN
    {"op": "route", "dst": A, "table": T} / {"op": "default_route", "table": T, "src": S}
    {"op": "source_rule", "address": A, "table": T}
    {"op": "send_udp", "peer": [IP, PORT], "hex": "..."}
    {"op": "quit"}

UDP modes (``--udp-mode``), the two ways an agent can share UDP 434 with the engine:
``engine`` -- the demo binds 434 and hands the socket to the engine, which reads it and
passes non-tunnel messages back (``on_udp_message``); ``agent`` -- the demo reads the socket
itself and calls ``handle_udp_tunnel_data`` for type 4; ``none`` -- the engine opens its own
UDP sockets when a UDP tunnel needs one.

The engine is served by an asyncio loop (``attach``); netlink goes through
:class:`~agents.dataplane.arp.Plumbing` (its own thread), created before the loop starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time
from typing import Any

from agents.dataplane.arp import (
    Plumbing,
    send_gratuitous_arp,
    set_forwarding,
    set_proxy_delay,
)
from agents.dataplane.packets import IPIP_MTU, MIP_PORT, TUNNEL_DATA_TYPE
from agents.dataplane.tunnels import TunnelEngine


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.agent_messages: list[tuple[str, int, int]] = []  # (ip, port, first byte)
        self.udp: socket.socket | None = None
        if args.udp_mode in ("engine", "agent"):
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind(("0.0.0.0", args.udp_port))
            self.udp.setblocking(False)
        self.engine = TunnelEngine(
            args.tun,
            args.key,
            mtu=args.mtu,
            udp_socket=self.udp,
            on_udp_message=self._agent_message if args.udp_mode == "engine" else None,
            learn_peer=args.learn_peer,
            strict_inner=not args.loose,
        )
        self.net = Plumbing()
        self._stdin = b""

    def _agent_message(self, payload: bytes, src: tuple[str, int]) -> None:
        self.agent_messages.append((src[0], src[1], payload[0] if payload else -1))

    def _agent_udp_readable(self) -> None:
        assert self.udp is not None
        while True:
            try:
                data, src = self.udp.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError:
                continue
            if data and data[0] == TUNNEL_DATA_TYPE:
                self.engine.handle_udp_tunnel_data(data, src, time.monotonic())
            else:
                self._agent_message(data, src)

    # --- commands -------------------------------------------------------------------------

    def command(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        eng = self.engine
        tun = eng.tun.name
        if op == "add":
            t = eng.add(
                req["home"],
                req["peer"],
                req.get("encap", "ipip"),
                req.get("local"),
                req.get("peer_port", MIP_PORT),
                req.get("local_port", MIP_PORT),
            )
            if req.get("route"):
                self.net.add_host_route(req["home"], tun)
            return {"tunnel": t.to_dict()}
        if op == "update":
            fields = {k: req[k] for k in ("peer", "peer_port", "local_port", "local") if k in req}
            if "encap" in req:
                fields["encapsulation"] = req["encap"]
            return {"tunnel": eng.update(req["home"], **fields).to_dict()}
        if op == "remove":
            removed = eng.remove(req["home"])
            if req.get("route"):
                self.net.del_host_route(req["home"])
            return {"removed": removed}
        if op == "counters":
            return {
                "counters": eng.stats(),
                "tunnels": [t.to_dict() for t in eng.tunnels()],
                "agent_messages": self.agent_messages,
                "last_error": eng.last_error,
                "events": list(eng.events),
            }
        if op == "proxy_arp":
            if req.get("add", True):
                set_forwarding(req["ifname"])
                set_proxy_delay(req["ifname"], 0)
                self.net.add_proxy_arp(req["home"], req["ifname"])
            else:
                self.net.del_proxy_arp(req["home"], req["ifname"])
            return {}
        if op == "garp":
            sent = send_gratuitous_arp(
                req["ifname"], req["address"], op=req.get("arp_op", "request"),
                count=req.get("count", 1), interval=req.get("interval", 0.0),
            )  # fmt: skip
            return {"sent": sent}
        if op == "address":
            self.net.add_address(tun, req["address"], req.get("prefixlen", 32))
            return {}
        if op == "route":
            self.net.add_host_route(req["dst"], tun, table=req.get("table", 254))
            return {}
        if op == "default_route":
            self.net.add_default_route(tun, table=req.get("table", 254), src=req.get("src"))
            return {}
        if op == "source_rule":
            self.net.add_source_rule(req["address"], req["table"], req.get("priority", 1000))
            return {}
        if op == "send_udp":
            peer = req["peer"]
            ok = eng.send_udp((peer[0], int(peer[1])), bytes.fromhex(req["hex"]))
            return {"sent": ok}
        if op == "quit":
            return {"bye": True}
        raise ValueError(f"unknown op {op!r}")

    # --- loop -----------------------------------------------------------------------------

    def _stdin_readable(self, stop: asyncio.Future[None]) -> None:
        chunk = os.read(sys.stdin.fileno(), 65536)
        if not chunk:
            if not stop.done():
                stop.set_result(None)
            return
        self._stdin += chunk
        while b"\n" in self._stdin:
            line, self._stdin = self._stdin.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                req = json.loads(line)
                reply = {"ok": True, **self.command(req)}
            except Exception as exc:  # a bad command is answered, not fatal
                req = {}
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(reply), flush=True)
            if req.get("op") == "quit" and not stop.done():
                stop.set_result(None)

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[None] = loop.create_future()
        self.engine.attach(loop)
        if self.args.udp_mode == "agent":
            assert self.udp is not None
            loop.add_reader(self.udp.fileno(), self._agent_udp_readable)
        loop.add_reader(sys.stdin.fileno(), self._stdin_readable, stop)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        print(
            json.dumps({"ready": True, "tun": self.engine.tun.name, "pid": os.getpid()}),
            flush=True,
        )
        await stop
        self.engine.detach()

    def close(self) -> None:
        self.engine.close()
        self.net.close()
        if self.udp is not None:
            self.udp.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agents.dataplane.demo", description=__doc__)
    ap.add_argument("--tun", default="mip0")
    ap.add_argument("--key", choices=("dst", "src"), default="dst")
    ap.add_argument("--mtu", type=int, default=IPIP_MTU)
    ap.add_argument("--udp-mode", choices=("engine", "agent", "none"), default="engine")
    ap.add_argument("--udp-port", type=int, default=MIP_PORT)
    ap.add_argument("--learn-peer", action="store_true")
    ap.add_argument("--loose", action="store_true", help="strict_inner=False")
    args = ap.parse_args(argv)
    demo = Demo(args)  # TUN, sockets and netlink before the loop (see arp.Plumbing)
    try:
        asyncio.run(demo.main())
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
