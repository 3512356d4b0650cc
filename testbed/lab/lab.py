"""A running lab: its state and plan, and everything that changes it while it runs."""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mipbase import rtnl
from testbed import netns
from testbed.lab import impair, nftables
from testbed.lab.builder import SW
from testbed.lab.state import LabState, node_netns, switch_netns
from testbed.lab.teardown import destroy
from testbed.launch import capture_argv
from testbed.topology import load_topology
from testbed.topology.plan import Impairment, InterfacePlan, TopologyPlan


def _changed(link: rtnl.Rtnl, *requests: rtnl.Request) -> None:
    for code in link.run(requests):
        if code:
            raise OSError(code, f"moving a link: {os.strerror(code)}")


@dataclass(frozen=True)
class MoveTimes:
    """Monotonic nanosecond times of a move, for the run's event log."""

    link_down_ns: int
    detached_ns: int
    attached_ns: int
    link_up_ns: int


class Lab:
    def __init__(self, state: LabState, plan: TopologyPlan) -> None:
        self.state = state
        # A copy: moves and impair steps record each interface's impairment as it is now in
        # the lab's plan. In the caller's, they leaked into the next lab built from it (the
        # next repetition of a scenario began with its last network's delays).
        self.plan = copy.deepcopy(plan)

    @classmethod
    def open(cls, name: str) -> Lab:
        state = LabState.load(name)
        plan = load_topology(state.topology, state.overrides or None)
        # interfaces that were moved carry the impairment of the network they are on now
        for node, interfaces in state.attachments.items():
            for plan_if in plan.nodes[node].interfaces:
                network = interfaces.get(plan_if.name)
                if network and network != plan_if.network:
                    plan_if.egress, plan_if.ingress = plan.impairment_on(plan_if, network)
        return cls(state, plan)

    @property
    def name(self) -> str:
        return self.state.name

    def ns(self, node: str) -> str:
        if node == SW:
            return switch_netns(self.name)
        if node not in self.plan.nodes:
            known = ", ".join(self.plan.nodes)
            raise LookupError(f"lab {self.name} has no node {node!r} (nodes: {known})")
        return node_netns(self.name, node)

    # -- processes ------------------------------------------------------------------------

    def popen(self, node: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen:
        return netns.popen(self.ns(node), argv, **kwargs)

    def run(self, node: str, argv: Sequence[str], check: bool = True, **kwargs: object):
        return netns.run(self.ns(node), argv, check=check, **kwargs)

    def exec(self, node: str, argv: Sequence[str]) -> None:
        """Replace this process with ``argv`` inside the node (for ``testbed exec``)."""
        with netns.entered(self.ns(node)):
            os.execvp(argv[0], list(argv))

    # -- topology changes -----------------------------------------------------------------

    def interface(self, node: str, iface: str | None = None) -> InterfacePlan:
        self.ns(node)
        interfaces = self.plan.nodes[node].interfaces
        if iface is None:
            if len(interfaces) > 1:
                names = ", ".join(i.name for i in interfaces)
                raise LookupError(f"{node} has several interfaces ({names}): name one")
            return interfaces[0]
        for candidate in interfaces:
            if candidate.name == iface:
                return candidate
        raise LookupError(f"{node} has no interface {iface!r}")

    def network_of(self, node: str, iface: str) -> str | None:
        return self.state.attachments.get(node, {}).get(iface)

    def move(
        self, node: str, network: str | None, gap_ms: float = 0.0, iface: str | None = None
    ) -> MoveTimes:
        """Detach a node's interface from its network and attach it to ``network``.

        The node sees carrier off at once and carrier on once attached (after ``gap_ms``
        attached nowhere). ``network=None`` leaves it detached (carrier stays off).
        """
        plan_if = self.interface(node, iface)
        if network is not None and network not in self.plan.networks:
            known = ", ".join(self.plan.networks)
            raise LookupError(f"lab {self.name} has no network {network!r} ({known})")
        port = impair.bridge_port(plan_if.port, self.state.relayed)
        if network is not None:
            # The new network's delays/loss before the carrier goes: reconfiguring the relay
            # and qdiscs takes 2-20 ms, which would otherwise leave the node detached that
            # long on a move meant to be instant. Its last packets on the old network may
            # take the new impairment; nothing is queued at that port after carrier off.
            self._apply_impairment(plan_if, *self.plan.impairment_on(plan_if, network))
        # raw rtnetlink: through pyroute2 these four changes took ~2.5 ms, and a move meant
        # to be instant left the node detached that long
        names = [plan_if.port, port] + ([network] if network is not None else [])
        link, (peer, bridge_port, *attach) = self._switch_links(*names)
        bridge = attach[0] if attach else None
        with link:
            # taken before the call: the node may see carrier off before netlink returns
            t_down = time.monotonic_ns()
            _changed(link, rtnl.link(peer, up=False), rtnl.link(bridge_port, master=0))
            t_detached = time.monotonic_ns()
            # Attached nowhere, nothing enters the relay for this port: what it holds is the
            # old network's, and would reach the node on the new one (or the reverse).
            self._flush_relay(plan_if)
            if gap_ms > 0:
                elapsed_s = (time.monotonic_ns() - t_detached) / 1e9
                time.sleep(max(0.0, gap_ms / 1000.0 - elapsed_s))
            t_attached = t_up = time.monotonic_ns()
            if bridge is not None:
                _changed(link, rtnl.link(bridge_port, master=bridge, up=True))
                t_attached = time.monotonic_ns()
                _changed(link, rtnl.link(peer, up=True))  # carrier on
                t_up = time.monotonic_ns()
        self.state.attachments.setdefault(node, {})[plan_if.name] = network
        self.state.save()
        return MoveTimes(t_down, t_detached, t_attached, t_up)

    def set_link(self, node: str, up: bool, iface: str | None = None) -> int:
        """Carrier down/up on a node's interface (the switch side goes down); returns t_ns."""
        plan_if = self.interface(node, iface)
        link, (peer,) = self._switch_links(plan_if.port)
        with link:
            _changed(link, rtnl.link(peer, up=up))
            t_ns = time.monotonic_ns()
        if not up:  # what was on the cable is lost with it (as in netem's reset queue)
            self._flush_relay(plan_if)
        return t_ns

    def _flush_relay(self, plan_if: InterfacePlan) -> None:
        """Drop the frames the delay relay holds for this interface, both ways. netem's
        queues go with the device's carrier; the relay's outlive it (a frame delayed 400 ms
        on the old network would reach the node 400 ms into the new one)."""
        if not (self.state.relayed and self.state.relay_control):
            return
        from testbed.programs.relay.control import relay_command

        reply = relay_command(self.state.relay_control, {"cmd": "flush", "pair": plan_if.port})
        if not reply.get("ok"):
            raise OSError(f"relay flush of {plan_if.port}: {reply.get('error')}")

    def _switch_links(self, *names: str) -> tuple[rtnl.Rtnl, list[int]]:
        """An rtnetlink socket in the switch namespace, and the indexes of ``names`` there."""
        with netns.entered(switch_netns(self.name)):
            link = rtnl.Rtnl()
            try:
                return link, [socket.if_nametoindex(n) for n in names]
            except OSError as exc:
                link.close()
                raise LookupError(f"lab {self.name}: {exc} ({', '.join(names)})") from None

    def set_impairment(
        self,
        node: str,
        egress: Impairment | None,
        ingress: Impairment | None,
        iface: str | None = None,
    ) -> None:
        plan_if = self.interface(node, iface)
        self._apply_impairment(plan_if, egress or plan_if.egress, ingress or plan_if.ingress)

    def _apply_impairment(
        self, plan_if: InterfacePlan, egress: Impairment, ingress: Impairment
    ) -> None:
        path = self.state.impairment_path
        changed = (egress, ingress) != (plan_if.egress, plan_if.ingress)
        if not changed:
            return
        before = (plan_if.egress, plan_if.ingress)
        for cmd in impair.tc_changes(plan_if, before, egress, ingress, path):
            ns = self.ns(plan_if.node) if cmd.where == "node" else self.ns(SW)
            netns.run(ns, cmd.argv, check=False)
        if path == "relay":
            if self.state.relayed and self.state.relay_control:
                from testbed.programs.relay.control import relay_command

                relay_command(
                    self.state.relay_control,
                    {
                        "cmd": "set",
                        "pair": plan_if.port,
                        "a_to_b": impair.relay_direction(egress),
                        "b_to_a": impair.relay_direction(ingress),
                    },
                )
            if (egress.loss, ingress.loss) != (plan_if.egress.loss, plan_if.ingress.loss):
                plan_if.egress, plan_if.ingress = egress, ingress
                self._reload_loss()
        plan_if.egress, plan_if.ingress = egress, ingress

    def rebind_nat(self, node: str, ports: tuple[int, int]) -> None:
        """New external ports for ``node``'s NAT: TCP and UDP mappings made from now on take
        theirs from ``ports`` (first, last); see :meth:`flush_conntrack` for the old ones."""
        script = nftables.render_nat_rebind(self.plan.nodes[node].nat, ports)
        self.run(node, ["nft", "-f", "-"], input=script)

    def flush_conntrack(self, node: str) -> None:
        """Forget every connection ``node`` tracks, and with them its NAT mappings."""
        self.run(node, ["conntrack", "-F"], check=False)

    def _reload_loss(self) -> None:
        loss = {
            impair.bridge_port(i.port, self.state.relayed): (i.egress.loss, i.ingress.loss)
            for i in self.plan.interfaces()
        }
        script = "table bridge testbed_impair {}\ndelete table bridge testbed_impair\n" + (
            nftables.render_loss(loss) or ""
        )
        netns.run(self.ns(SW), ["nft", "-f", "-"], input=script)

    # -- observation ----------------------------------------------------------------------

    def capture(
        self, network: str, out: Path | str, snaplen: int = 262144, bpf: str | None = None
    ) -> subprocess.Popen:
        """tcpdump on the network's bridge (promiscuous: sees every frame of the segment).

        ``out`` "-" writes the pcap to our stdout (e.g. into Wireshark); ``bpf`` is a
        capture filter such as ``udp port 434``. Immediate mode: no frames wait in a buffer
        when the capture is stopped soon after the traffic."""
        if network not in self.plan.networks:
            raise LookupError(f"lab {self.name} has no network {network!r}")
        argv = capture_argv(network, out, snaplen, bpf)
        stdout = None if str(out) == "-" else subprocess.DEVNULL
        return self.popen(SW, argv, stdout=stdout, stderr=subprocess.PIPE)

    def down(self) -> None:
        destroy(self.state)
