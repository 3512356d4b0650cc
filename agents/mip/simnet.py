"""A tiny discrete-event network to run the sans-I/O machines together, with a fake clock.

For tests, teaching and what-if runs: no sockets, no real time. Nodes sit on named networks
(one per interface); a :class:`~agents.mip.actions.Send` is delivered after ``latency`` to the
node owning the destination address, or -- for multicast/broadcast -- to every other node on
the sending interface's network. A node can sit behind a NAT (its source address/port are
rewritten to a public address and a mapped port, and answers to that mapping are translated
back). Data-plane actions are only recorded. Everything that happens is in ``log``.

    net = SimNetwork()
    net.add_node("ha", ha, {"eth0": ("home", "10.1.0.1")})
    net.add_node("mn", mn, {"wlan0": ("visited", None)}, extra_addresses=["10.1.0.7"])
    net.start()                       # calls start(now) where the machine has it
    net.run_until(5.0)
    assert mn.registered
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.mip.actions import Action, CancelTimer, Event, Send, SetTimer

__all__ = ["SimNetwork", "SimNode"]


@dataclass(slots=True)
class SimNode:
    name: str
    machine: Any
    ifaces: dict[str, tuple[str, str | None]]  # iface -> (network, address)
    extra_addresses: list[str] = field(default_factory=list)
    nat_public: str | None = None
    wall_offset: float = 0.0
    up: bool = True

    def addresses(self) -> list[str]:
        return [a for _, a in self.ifaces.values() if a] + list(self.extra_addresses)


class SimNetwork:
    def __init__(self, latency: float = 0.001, wall_epoch: float = 1_700_000_000.0) -> None:
        self.now = 0.0
        self.latency = latency
        self.wall_epoch = wall_epoch
        self.nodes: dict[str, SimNode] = {}
        self.log: list[tuple[float, str, Any]] = []
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._timers: dict[tuple[str, str], float] = {}
        self._nat_ports = itertools.count(40000)
        self._nat_map: dict[tuple[str, int], tuple[str, int]] = {}  # public -> private
        self._nat_rev: dict[tuple[str, str, int], int] = {}  # node, addr, port -> public port
        # Return True to drop a Send from node ``src`` (loss, partitions).
        self.drop: Callable[[str, Send], bool] = lambda src, send: False

    # -- building --------------------------------------------------------------------------

    def wallclock(self, node: str | None = None, offset: float = 0.0) -> Callable[[], float]:
        """A wall clock for a machine: epoch + simulated time (+ that node's skew)."""

        def wall() -> float:
            n = self.nodes.get(node) if node else None
            return self.wall_epoch + self.now + offset + (n.wall_offset if n else 0.0)

        return wall

    def add_node(
        self,
        name: str,
        machine: Any,
        ifaces: dict[str, tuple[str, str | None]],
        *,
        extra_addresses: list[str] | None = None,
        nat_public: str | None = None,
        wall_offset: float = 0.0,
    ) -> SimNode:
        node = SimNode(name, machine, dict(ifaces), list(extra_addresses or []))
        node.nat_public = nat_public
        node.wall_offset = wall_offset
        self.nodes[name] = node
        return node

    def start(self) -> None:
        for node in self.nodes.values():
            if hasattr(node.machine, "start"):
                self.apply(node.name, node.machine.start(self.now))

    # -- driving ---------------------------------------------------------------------------

    def call(self, node: str, method: str, *args: Any, **kwargs: Any) -> list[Action]:
        """Call ``machine.method(*args, now=..., **kwargs)`` and carry out its actions."""
        m = getattr(self.nodes[node].machine, method)
        actions = m(*args, now=self.now, **kwargs)
        self.apply(node, actions)
        return actions

    def at(self, when: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._seq), fn))

    def run_until(self, t: float) -> None:
        while self._queue and self._queue[0][0] <= t:
            when, _, fn = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            fn()
        self.now = max(self.now, t)

    def run_for(self, dt: float) -> None:
        self.run_until(self.now + dt)

    def events(self, node: str | None = None, name: str | None = None) -> list[Event]:
        return [
            a
            for _, n, a in self.log
            if isinstance(a, Event)
            and (node is None or n == node)
            and (name is None or a.name == name)
        ]

    def actions(self, node: str | None = None, kind: type | None = None) -> list[Any]:
        return [
            a
            for _, n, a in self.log
            if (node is None or n == node) and (kind is None or isinstance(a, kind))
        ]

    # -- topology changes ------------------------------------------------------------------

    def move(self, node: str, iface: str, network: str, address: str | None = None) -> None:
        """Re-attach ``iface`` to ``network``: link_down, then link_up (L2 triggers)."""
        n = self.nodes[node]
        m = n.machine
        if hasattr(m, "link_down"):
            self.apply(node, m.link_down(iface, self.now))
        n.ifaces[iface] = (network, address)
        if hasattr(m, "link_up"):
            self.apply(node, m.link_up(iface, self.now))

    # -- actions ---------------------------------------------------------------------------

    def apply(self, node: str, actions: list[Action]) -> None:
        for a in actions:
            self.log.append((self.now, node, a))
            if isinstance(a, SetTimer):
                self._arm(node, a.name, a.at)
            elif isinstance(a, CancelTimer):
                self._timers.pop((node, a.name), None)
            elif isinstance(a, Send):
                self._send(node, a)

    def _arm(self, node: str, name: str, at: float) -> None:
        key = (node, name)
        self._timers[key] = at

        def fire() -> None:
            if self._timers.get(key) != at:
                return  # cancelled or re-armed
            del self._timers[key]
            n = self.nodes[node]
            if n.up:
                self.apply(node, n.machine.handle_timer(name, self.now))

        self.at(at, fire)

    def _owner(self, address: str) -> tuple[SimNode, str | None] | None:
        for n in self.nodes.values():
            for iface, (_, addr) in n.ifaces.items():
                if addr == address:
                    return n, iface
            if address in n.extra_addresses:
                return n, None
        return None

    def _send(self, node: str, s: Send) -> None:
        sender = self.nodes[node]
        if not sender.up or self.drop(node, s):
            return
        src = s.src
        if src is None and s.iface in sender.ifaces:
            src = sender.ifaces[s.iface][1]
        src = src or "0.0.0.0"
        sport = s.src_port or 434
        if sender.nat_public is not None and s.kind == "udp":
            key = (node, src, sport)
            if key not in self._nat_rev:
                pub_port = next(self._nat_ports)
                self._nat_rev[key] = pub_port
                self._nat_map[(sender.nat_public, pub_port)] = (src, sport)
            sport = self._nat_rev[key]
            src = sender.nat_public
        send_net = sender.ifaces.get(s.iface, (None, None))[0] if s.iface else None
        targets: list[tuple[SimNode, str | None]] = []
        dst, dport = s.dst, s.dst_port
        if dst.startswith("224.") or dst == "255.255.255.255":
            nets = {send_net} if send_net else {net for net, _ in sender.ifaces.values()}
            for n in self.nodes.values():
                if n is sender:
                    continue
                for iface, (net, _) in n.ifaces.items():
                    if net in nets:
                        targets.append((n, iface))
        else:
            if (dst, dport) in self._nat_map:
                dst, dport = self._nat_map[(dst, dport)]
            found = self._owner(dst)
            if found is not None:
                n, iface = found
                if iface is None and send_net is not None:
                    # An address not configured on a link (a visiting home address): reach
                    # the node on the sender's network.
                    iface = next((i for i, (net, _) in n.ifaces.items() if net == send_net), None)
                targets.append((n, iface))
        for n, iface in targets:
            net = n.ifaces[iface][0] if iface is not None else None
            self.at(self.now + self.latency, self._deliver_fn(n, iface, net, s, src, sport))

    def _deliver_fn(
        self, n: SimNode, iface: str | None, net: str | None, s: Send, src: str, sport: int
    ) -> Callable[[], None]:
        def deliver() -> None:
            if not n.up:
                return
            if iface is not None and n.ifaces.get(iface, (None, None))[0] != net:
                return  # the interface moved while the packet was in flight: lost
            if s.kind == "icmp":
                if hasattr(n.machine, "handle_icmp"):
                    self.apply(n.name, n.machine.handle_icmp(s.payload, src, self.now, iface))
            else:
                self.apply(
                    n.name, n.machine.handle_datagram(s.payload, src, sport, self.now, iface)
                )

        return deliver
