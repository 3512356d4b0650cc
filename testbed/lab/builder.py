"""Build a TopologyPlan into network namespaces: the lab.

One namespace per node (``tb-LAB.NODE``) and one switch namespace (``tb-LAB._sw``) holding a
Linux bridge per network; every node interface is a veth whose other end is a port of the
bridge. Nothing is created in the root namespace. Netlink work goes through pyroute2 sockets
opened inside each namespace; only processes (relay, dnsmasq, nft) are spawned.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from pyroute2 import IPRoute

from mipbase.clock import scaled
from testbed import features as feat
from testbed import netns
from testbed.lab import impair, nftables
from testbed.lab.state import (
    LabState,
    ProcessRecord,
    node_netns,
    switch_netns,
    validate_lab_name,
)
from testbed.lab.teardown import destroy
from testbed.launch import dnsmasq_argv, relay_argv
from testbed.topology.plan import TopologyPlan

NUD_STALE = 0x04  # linux/neighbour.h

SW = "_sw"
NODE_SYSCTLS = {
    # Quiet, IPv4-only nodes: no router solicitations or MLD noise in captures.
    "net.ipv6.conf.all.disable_ipv6": 1,
    "net.ipv6.conf.default.disable_ipv6": 1,
    # Mobile IP's triangular routes and tunnels trip reverse-path filtering.
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.conf.default.rp_filter": 0,
    # Redirects would let routers "fix" the paths a scenario sets up on purpose.
    "net.ipv4.conf.all.send_redirects": 0,
    "net.ipv4.conf.default.send_redirects": 0,
    "net.ipv4.conf.all.accept_redirects": 0,
    "net.ipv4.conf.default.accept_redirects": 0,
}


class BuildError(RuntimeError):
    pass


class Netlink:
    """One pyroute2 socket per namespace, opened from inside it."""

    def __init__(self) -> None:
        self.sockets: dict[str, IPRoute] = {}

    def __getitem__(self, ns: str) -> IPRoute:
        sock = self.sockets.get(ns)
        if sock is None:
            with netns.entered(ns):
                sock = IPRoute()
                sock.link("get", index=1)  # make sure the socket is bound in this namespace
            self.sockets[ns] = sock
        return sock

    def close(self) -> None:
        for sock in self.sockets.values():
            with contextlib.suppress(Exception):
                sock.close()
        self.sockets.clear()


@contextlib.contextmanager
def netlink() -> Iterator[Netlink]:
    nl = Netlink()
    try:
        yield nl
    finally:
        nl.close()


def spawn(
    state: LabState, node: str, role: str, argv: list[str], log: Path | None = None
) -> subprocess.Popen:
    """Start a long-lived process in a node's namespace and record it before it can leak."""
    ns = switch_netns(state.name) if node == SW else node_netns(state.name, node)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        proc = netns.popen(
            ns,
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the CLI and its Ctrl-C; we stop it by PID
        )
    finally:
        if log:
            out.close()
    state.add_process(
        ProcessRecord(
            proc.pid,
            netns.process_start_time(proc.pid),
            node,
            role,
            list(argv),
            str(log) if log else None,
        )
    )
    return proc


def warm_pairs(namespaces: list[str], grouped: set[str]) -> list[tuple[int, int]]:
    """Which of one network's interfaces (their nodes' namespaces, in order) get a warm ARP
    entry for which: (i, j), i's for j, for every pair of nodes but two nodes of groups
    (templates with a count: mobile nodes by the dozen, who do not talk to each other,
    whichever group each is in). The kernel's ARP table is one for every namespace
    (gc_thresh3, 1024 by default), and an entry younger than 5 s is never collected: 50
    mobile nodes of one group on a network, each with an entry for each other, were 2,450
    and failed the build with ENOBUFS; so did 50 in three groups (25, 12, 13) with entries
    between the groups (1,562). 100 of them beside ha, cn and core: 600 entries."""
    return [
        (i, j)
        for i, ns in enumerate(namespaces)
        for j, other in enumerate(namespaces)
        if other != ns and not (ns in grouped and other in grouped)
    ]


def build(
    plan: TopologyPlan,
    name: str,
    *,
    kind: str = "lab",
    overrides: dict | None = None,
    impairment_path: str | None = None,
    student: str | None = None,
) -> LabState:
    """Create the lab; on any failure remove everything created and re-raise. ``student``:
    whose lab it is (``testbed.student``; ``testbed clean --all`` of another student skips it)."""
    feat.ensure_root()
    validate_lab_name(name)
    state_file = LabState(name, plan.source).file
    if state_file.exists():
        raise BuildError(f"a lab named {name!r} exists already (testbed down {name})")
    clashes = [n for n in _namespaces(plan, name) if netns.exists(n)]
    if clashes:
        raise BuildError(f"namespaces exist already: {', '.join(clashes)} (testbed clean)")
    feat.require_binaries("nft", "tc")
    if impairment_path is None:
        impairment_path = feat.force_path() or feat.detect().impairment_path
    state = LabState(
        name,
        plan.source,
        kind=kind,
        overrides=overrides or {},
        impairment_path=impairment_path,
        student=student,
    )
    # Whoever builds a lab owns it while it runs: a run's lab is stale once its owner is
    # gone, and no lab is removed by 'testbed clean --all' while its owner is alive ('testbed
    # up' returns at once, so its labs are not held; a test's or a script's are)
    state.owner_pid = os.getpid()
    state.owner_start = netns.process_start_time(os.getpid())
    state.namespaces = _namespaces(plan, name)
    state.attachments = {
        n.name: {i.name: i.network for i in n.interfaces} for n in plan.nodes.values()
    }
    state.save()  # intent first: teardown can always find what may exist
    try:
        with netlink() as nl:
            _Builder(plan, state, nl).run()
        state.ready = True
        state.save()
        return state
    except BaseException:
        destroy(state)
        raise


def _namespaces(plan: TopologyPlan, name: str) -> list[str]:
    return [switch_netns(name)] + [node_netns(name, n) for n in plan.nodes]


class _Builder:
    def __init__(self, plan: TopologyPlan, state: LabState, nl: Netlink) -> None:
        self.plan = plan
        self.state = state
        self.nl = nl
        self.sw = switch_netns(state.name)
        # Relay every interface as soon as any link is delayed: a node may move onto a
        # delayed network later, and the relay forwards undelayed directions at once.
        self.relayed = state.impairment_path == "relay" and any(
            i.egress.needs_delay or i.ingress.needs_delay for i in plan.interfaces()
        )
        state.relayed = self.relayed

    def ns(self, node: str) -> str:
        return node_netns(self.state.name, node)

    def run(self) -> None:
        self._namespaces()
        self._bridges()
        self._links()
        if self.plan.neighbours == "warm":
            self._warm_neighbours()
        self._routes()
        waits = self._impairments()
        waits += self._policies()
        self._dhcp_servers()
        for proc, what in waits:
            if proc.wait(timeout=10) != 0:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise BuildError(f"{what} failed: {err.strip()}")
        if self.relayed:
            self._wait_relay()

    def _namespaces(self) -> None:
        forwarding = {self.ns(n.name) for n in self.plan.nodes.values() if n.forwarding}
        for ns in self.state.namespaces:
            netns.create(ns)
            extra = {"net.ipv4.ip_forward": 1} if ns in forwarding else {}
            netns.write_sysctls(ns, {**NODE_SYSCTLS, **extra})
        for ns in self.state.namespaces:
            self.nl[ns].link("set", index=1, state="up")

    def _bridges(self) -> None:
        sw = self.nl[self.sw]
        for network in self.plan.networks:
            # no STP, no forwarding delay, no multicast snooping (agent advertisements and
            # 224.0.0.11 registrations must flood like on a plain hub-like LAN segment)
            sw.link(
                "add",
                ifname=network,
                kind="bridge",
                br_stp_state=0,
                br_forward_delay=0,
                br_mcast_snooping=0,
            )
            sw.link("set", ifname=network, state="up")

    def _links(self) -> None:
        sw = self.nl[self.sw]
        bridges = {n: sw.link_lookup(ifname=n)[0] for n in self.plan.networks}
        for iface in self.plan.interfaces():
            ns_path = str(netns.netns_path(self.ns(iface.node)))
            sw.link(
                "add",
                ifname=iface.port,
                kind="veth",
                peer={"ifname": iface.name, "net_ns_fd": ns_path},
            )
            port = iface.port
            if self.relayed:
                sw.link(
                    "add",
                    ifname=impair.relay_port(iface.port),
                    kind="veth",
                    peer={"ifname": impair.bridge_port(iface.port, True)},
                )
                for dev in (impair.relay_port(iface.port), iface.port):
                    sw.link("set", ifname=dev, state="up")
                port = impair.bridge_port(iface.port, True)
            sw.link("set", ifname=port, master=bridges[iface.network], state="up")
            node = self.nl[self.ns(iface.node)]
            index = node.link_lookup(ifname=iface.name)[0]
            if iface.address is not None:
                node.addr(
                    "add",
                    index=index,
                    address=str(iface.address.ip),
                    prefixlen=iface.address.network.prefixlen,
                    broadcast=str(iface.address.network.broadcast_address),
                )
            node.link("set", index=index, state="up")

    def _warm_neighbours(self) -> None:
        """Give every static interface a stale ARP entry for each static neighbour.

        A production network has been running: its routers know each other. Empty caches
        would put an ARP round trip on the first packet of every quiet hop after a move
        (MN -> FA -> core -> HA), which measures the lab's youth rather than the protocol.
        Stale entries are used at once and verified by the kernel's own probe on use, so a
        neighbour that really moved is still re-resolved.
        """
        by_network: dict[str, list[tuple[str, int, str, str]]] = {}
        for iface in self.plan.interfaces():
            if iface.address is None:
                continue
            node = self.nl[self.ns(iface.node)]
            index = node.link_lookup(ifname=iface.name)[0]
            mac = node.get_links(index)[0].get_attr("IFLA_ADDRESS")
            by_network.setdefault(iface.network, []).append(
                (self.ns(iface.node), index, str(iface.address.ip), mac)
            )
        grouped = {self.ns(m) for members in self.plan.groups.values() for m in members}
        for members in by_network.values():
            for i, j in warm_pairs([ns for ns, *_ in members], grouped):
                ns, index, _ip, _mac = members[i]
                _ns, _index, ip, mac = members[j]
                self.nl[ns].neigh("replace", dst=ip, lladdr=mac, ifindex=index, state=NUD_STALE)

    def _routes(self) -> None:
        for node in self.plan.nodes.values():
            ipr = self.nl[self.ns(node.name)]
            for route in node.routes:
                ipr.route("add", dst=str(route.dst), gateway=str(route.via))

    def _impairments(self) -> list[tuple[subprocess.Popen, str]]:
        path = self.state.impairment_path
        waits: list[tuple[subprocess.Popen, str]] = []
        for iface in self.plan.interfaces():
            for cmd in impair.tc_commands(iface, iface.egress, iface.ingress, path):
                if cmd.argv[2] == "del":
                    continue  # nothing installed yet
                ns = self.ns(iface.node) if cmd.where == "node" else self.sw
                proc = netns.popen(ns, cmd.argv, stderr=subprocess.PIPE)
                waits.append((proc, f"{' '.join(cmd.argv)} in {iface.node}"))
        if path == "relay":
            loss = {
                impair.bridge_port(i.port, self.relayed): (i.egress.loss, i.ingress.loss)
                for i in self.plan.interfaces()
            }
            script = nftables.render_loss(loss)
            waits.append((self._nft(self.sw, script), "loss rules in the switch namespace"))
        if self.relayed:
            self._start_relay()
        return waits

    def _nft(self, ns: str, script: str) -> subprocess.Popen:
        proc = netns.popen(ns, ["nft", "-f", "-"], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None
        proc.stdin.write(script.encode())
        proc.stdin.close()
        return proc

    def _policies(self) -> list[tuple[subprocess.Popen, str]]:
        waits = []
        for node in self.plan.nodes.values():
            script = nftables.render_node(node)
            if script:
                waits.append((self._nft(self.ns(node.name), script), f"nftables on {node.name}"))
        return waits

    def _start_relay(self) -> None:
        import json

        config = {
            "pairs": [
                {
                    "name": i.port,
                    "a": i.port,
                    "b": impair.relay_port(i.port),
                    "a_to_b": impair.relay_direction(i.egress),
                    "b_to_a": impair.relay_direction(i.ingress),
                }
                for i in self.plan.interfaces()
            ]
        }
        path = self.state.dir / "relay.json"
        path.write_text(json.dumps(config, indent=1))
        control = self.state.dir / "relay.sock"
        self.state.relay_control = str(control)
        spawn(
            self.state,
            SW,
            "relay",
            relay_argv(path, control),
            self.state.dir / "relay.log",
        )

    def _wait_relay(self) -> None:
        from testbed.programs.relay.control import relay_command

        deadline = time.monotonic() + scaled(10)
        control = self.state.relay_control
        assert control is not None
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                if relay_command(control, {"cmd": "ping"}).get("ok"):
                    return
            time.sleep(0.005)
        raise BuildError(f"the delay relay did not start: see {self.state.dir / 'relay.log'}")

    def _dhcp_servers(self) -> None:
        for network in self.plan.networks.values():
            if network.dhcp is not None:
                dhcp = network.dhcp
                spawn(
                    self.state,
                    dhcp.server,
                    f"dhcp:{network.name}",
                    dnsmasq_argv(dhcp, self.state.dir),
                    self.state.dir / f"dhcp-{network.name}.log",
                )
