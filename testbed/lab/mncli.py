"""``testbed cli``: Mininet's interactive CLI onto the nodes of a running lab.

The lab is built by the testbed (named namespaces); Mininet provides the node shells and
the CLI. Each node becomes a Mininet Host whose shell is started inside the node's named
namespace (``mnexec`` without ``-n``), so Mininet's commands (``net``, ``dump``,
``pingall``, ``NODE cmd``, ``xterm``) work as users know them. Mininet's global set-up
(``fixLimits``) and cleanup are never used.
"""

from __future__ import annotations

from mininet.cli import CLI
from mininet.link import Intf
from mininet.net import Mininet
from mininet.node import Host

from testbed.lab.lab import Lab


class NamespaceHost(Host):
    """A Mininet host living in an existing named network namespace."""

    def __init__(self, name: str, netns_name: str, **params: object) -> None:
        self.netns_name = netns_name
        super().__init__(name, inNamespace=False, **params)

    def startShell(self, mnopts: str | None = None) -> None:
        original = self._popen

        def popen_in_namespace(cmd: list[str], **kwargs: object):
            return original(["ip", "netns", "exec", self.netns_name, *cmd], **kwargs)

        self._popen = popen_in_namespace  # type: ignore[method-assign]
        try:
            super().startShell(mnopts)
        finally:
            self._popen = original  # type: ignore[method-assign]

    def mountPrivateDirs(self) -> None:
        pass

    def unmountPrivateDirs(self) -> None:
        pass


class LabCLI(CLI):
    """Mininet's CLI, except that ``NODE cmd args`` runs ``cmd args`` as typed.

    Mininet replaces every argument that names a node by that node's address; the nodes
    here are named with ordinary words (``proxy``, ``core``, ``ha``), so ``ha ip neigh show
    proxy`` became ``ip neigh show 192.0.2.11`` and printed nothing. Type addresses where
    an address is meant (``net`` lists them).
    """

    prompt = "testbed> "

    def __init__(self, net: Mininet, lab: Lab, **kwargs: object) -> None:
        self.lab = lab
        self.prompt = f"testbed:{lab.name}> "
        super().__init__(net, **kwargs)

    def default(self, line: str) -> None:
        first, args, _ = self.parseline(line)
        if first not in self.mn or not args:
            super().default(line)  # Mininet's own messages for these cases
            return
        node = self.mn[first]
        node.sendCmd(args)
        self.waitForNode(node)

    def do_net(self, _line: str) -> None:
        """net: the lab's networks, nodes, addresses and current attachments."""
        from testbed.lab.show import describe

        print(describe(self.lab.plan, self.lab.state.attachments))

    def do_move(self, line: str) -> None:
        """move NODE NETWORK [GAP_MS]: detach NODE and attach it to NETWORK."""
        args = line.split()
        if len(args) not in (2, 3):
            print("usage: move NODE NETWORK [GAP_MS]")
            return
        try:
            times = self.lab.move(args[0], args[1], float(args[2]) if len(args) == 3 else 0.0)
        except (LookupError, ValueError) as exc:
            print(f"*** {exc}")
            return
        took_ms = (times.link_up_ns - times.link_down_ns) / 1e6
        print(f"{args[0]} moved to {args[1]} in {took_ms:.1f} ms")


def mininet_view(lab: Lab) -> Mininet:
    Mininet.inited = True  # never run Mininet.init(): its fixLimits() rewrites global sysctls
    net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False)
    for node in lab.plan.nodes.values():
        host = net.addHost(node.name, cls=NamespaceHost, netns_name=lab.ns(node.name))
        for iface in node.interfaces:
            intf = Intf(iface.name, node=host)
            if iface.address is not None:
                intf.ip = str(iface.address.ip)
                intf.prefixLen = iface.address.network.prefixlen
    return net


def run_cli(lab: Lab) -> None:
    net = mininet_view(lab)
    try:
        LabCLI(net, lab)
    finally:
        for host in net.hosts:
            host.terminate()
