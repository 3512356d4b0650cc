"""YAML topology file -> validated spec -> resolved TopologyPlan.

Every error is a SpecError naming the file, line and field.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mipbase.specfile import PathKey, SpecError, SpecSource, load_spec
from testbed.topology.model import LinkImpairmentSpec, NodeSpec, TopologySpec
from testbed.topology.plan import (
    DhcpPlan,
    FirewallPlan,
    FirewallRulePlan,
    Impairment,
    InterfacePlan,
    NatPlan,
    NetworkPlan,
    NodePlan,
    RoutePlan,
    TopologyPlan,
)

DEFAULT_ROUTE = ipaddress.IPv4Network("0.0.0.0/0")
MAX_PORT_NAME = 13  # IFNAMSIZ-1 is 15; the relay adds a one-letter suffix


def load_topology(path: str | Path, overrides: Mapping[str, Any] | None = None) -> TopologyPlan:
    """Load, validate and resolve a topology file (optionally deep-merged with overrides)."""
    return load_topology_source(load_spec(path), overrides)


def load_topology_source(
    source: SpecSource, overrides: Mapping[str, Any] | None = None
) -> TopologyPlan:
    data = source.data
    if overrides:
        data = deep_merge(data, overrides)
    if not isinstance(data, dict):
        raise source.error((), "a topology file must be a mapping with networks and nodes")
    try:
        spec = TopologySpec.model_validate(data)
    except ValidationError as exc:
        raise source.validation_error(exc) from None
    return _Resolver(source, spec).resolve()


def deep_merge(base: Any, overrides: Mapping[str, Any]) -> Any:
    """Recursively merge mappings; lists and scalars in ``overrides`` replace."""
    if not isinstance(base, dict):
        return copy.deepcopy(dict(overrides))
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _impair_fields(spec: LinkImpairmentSpec | None, direction: str) -> dict[str, Any]:
    if spec is None:
        return {}
    both = {
        "delay_ms": spec.delay,
        "jitter_ms": spec.jitter,
        "loss": spec.loss,
        "rate_bps": spec.rate,
    }
    one = getattr(spec, direction)
    if one is not None:
        for key, value in (
            ("delay_ms", one.delay),
            ("jitter_ms", one.jitter),
            ("loss", one.loss),
            ("rate_bps", one.rate),
        ):
            if value is not None:
                both[key] = value
    return both


def member_names(template: str, count: int) -> list[str]:
    """The nodes of a template with a count: NAME01 ... (three digits from 100 on)."""
    width = max(2, len(str(count)))
    return [f"{template}{k:0{width}d}" for k in range(1, count + 1)]


class _Resolver:
    def __init__(self, source: SpecSource, spec: TopologySpec) -> None:
        self.src = source
        self.used: dict[ipaddress.IPv4Address, PathKey] = {}
        self.ports: set[str] = set()
        self.groups: dict[str, list[str]] = {}
        self.origin: dict[str, str] = {}  # a generated node -> its template
        self.spec = spec.model_copy(update={"nodes": self._expand(spec)})

    def _expand(self, spec: TopologySpec) -> dict[str, NodeSpec]:
        """Every template with a count as its nodes, in its place: node k (from 0) gets the
        template's static addresses plus k."""
        nodes: dict[str, NodeSpec] = {}
        for name, node in spec.nodes.items():
            if node.count is None:
                nodes[name] = node
                continue
            members = member_names(name, node.count)
            if len(members[-1]) > 12:
                raise self.err(
                    ("nodes", name, "count"),
                    f"{members[-1]} is longer than 12 characters: a shorter name for the group",
                )
            for k, member in enumerate(members):
                if member in spec.nodes:
                    raise self.err(
                        ("nodes", member), f"{member} is also a node of the group {name}"
                    )
                links = []
                for index, link in enumerate(node.links):
                    if isinstance(link.address, ipaddress.IPv4Address):
                        try:
                            address = link.address + k
                        except ipaddress.AddressValueError:
                            raise self.err(
                                ("nodes", name, "links", index, "address"),
                                f"no address {k} past {link.address} for {member}",
                            ) from None
                        link = link.model_copy(update={"address": address})
                    links.append(link)
                nodes[member] = node.model_copy(update={"links": links, "count": None})
                self.origin[member] = name
            self.groups[name] = members
        return nodes

    def err(self, path: PathKey, message: str) -> SpecError:
        if len(path) > 1 and path[0] == "nodes" and path[1] in self.origin:
            path = ("nodes", self.origin[str(path[1])], *path[2:])  # the template's line
        return self.src.error(path, message)

    def resolve(self) -> TopologyPlan:
        spec = self.spec
        networks = {
            name: NetworkPlan(
                name,
                net.subnet,
                net.description,
                net.trust,
                Impairment().overlaid(**_impair_fields(net.impair, "egress")),
                Impairment().overlaid(**_impair_fields(net.impair, "ingress")),
            )
            for name, net in spec.networks.items()
        }
        nodes = {name: self._node_interfaces(name, node) for name, node in spec.nodes.items()}
        self._allocate(nodes)
        for name, node in spec.nodes.items():
            plan = nodes[name]
            plan.routes = [self._route(name, i, r, nodes) for i, r in enumerate(node.routes)]
            plan.nat = [self._nat(name, i, n, plan) for i, n in enumerate(node.nat)]
            if node.firewall is not None:
                plan.firewall = self._firewall(name, node, plan, nodes)
        for name, net in spec.networks.items():
            if net.dhcp is not None:
                networks[name].dhcp = self._dhcp(name, nodes)
        return TopologyPlan(
            spec.name,
            spec.description,
            self.src.file,
            networks,
            nodes,
            spec.neighbours,
            groups=self.groups,
        )

    # -- interfaces and addresses -------------------------------------------------------

    def _node_interfaces(self, name: str, node: NodeSpec) -> NodePlan:
        interfaces: list[InterfacePlan] = []
        seen_networks: set[str] = set()
        for index, link in enumerate(node.links):
            path: PathKey = ("nodes", name, "links", index)
            net = self.spec.networks.get(link.network)
            if net is None:
                known = ", ".join(sorted(self.spec.networks))
                raise self.err((*path, "network"), f"unknown network {link.network!r} ({known})")
            if link.network in seen_networks:
                raise self.err((*path, "network"), f"{name} is already on {link.network!r}")
            seen_networks.add(link.network)
            ifname = link.name or f"eth{index}"
            if any(i.name == ifname for i in interfaces):
                raise self.err((*path, "name"), f"interface name {ifname!r} used twice")
            address: ipaddress.IPv4Interface | None = None
            addressing = "static"
            if isinstance(link.address, ipaddress.IPv4Address):
                address = self._claim(link.address, link.network, (*path, "address"))
            elif link.address in ("dhcp", "none"):
                addressing = link.address
            own_egress = _impair_fields(link.impair, "egress")
            own_ingress = _impair_fields(link.impair, "ingress")
            egress = Impairment().overlaid(**_impair_fields(net.impair, "egress"))
            ingress = Impairment().overlaid(**_impair_fields(net.impair, "ingress"))
            interfaces.append(
                InterfacePlan(
                    name,
                    ifname,
                    link.network,
                    address,
                    addressing,  # type: ignore[arg-type]
                    egress.overlaid(**own_egress),
                    ingress.overlaid(**own_ingress),
                    self._port_name(name, ifname),
                    {k: v for k, v in own_egress.items() if v is not None},
                    {k: v for k, v in own_ingress.items() if v is not None},
                )
            )
        return NodePlan(name, tuple(node.roles), node.description, interfaces)

    def _port_name(self, node: str, ifname: str) -> str:
        base = f"{node}-{ifname}"
        if len(base) > MAX_PORT_NAME or base in self.ports:
            base = f"p{len(self.ports)}"
        self.ports.add(base)
        return base

    def _claim(
        self, ip: ipaddress.IPv4Address, network: str, path: PathKey
    ) -> ipaddress.IPv4Interface:
        subnet = self.spec.networks[network].subnet
        if ip not in subnet:
            raise self.err(path, f"{ip} is not inside {network}'s subnet {subnet}")
        if subnet.prefixlen < 31 and ip in (subnet.network_address, subnet.broadcast_address):
            raise self.err(path, f"{ip} is the network or broadcast address of {subnet}")
        if ip in self.used:
            other = self.src.line_of(self.used[ip])
            raise self.err(path, f"{ip} is already used (line {other})")
        self.used[ip] = path
        return ipaddress.IPv4Interface(f"{ip}/{subnet.prefixlen}")

    def _allocate(self, nodes: dict[str, NodePlan]) -> None:
        """Give every ``auto`` link the lowest free host address outside any DHCP pool."""
        for name, node in self.spec.nodes.items():
            for index, link in enumerate(node.links):
                if link.address != "auto":
                    continue
                net = self.spec.networks[link.network]
                pool = net.dhcp.range if net.dhcp else None
                path: PathKey = ("nodes", name, "links", index, "address")
                for candidate in net.subnet.hosts():
                    if candidate in self.used or (pool and pool[0] <= candidate <= pool[1]):
                        continue
                    nodes[name].interfaces[index].address = self._claim(
                        candidate, link.network, path
                    )
                    break
                else:
                    raise self.err(path, f"no free address left in {net.subnet}")

    # -- routes, NAT, firewall, DHCP ------------------------------------------------------

    def _next_hop(
        self, node: str, via: str | ipaddress.IPv4Address, path: PathKey, nodes: dict
    ) -> ipaddress.IPv4Address:
        mine = nodes[node].interfaces
        if isinstance(via, ipaddress.IPv4Address):
            if not any(i.address and via in i.address.network for i in mine):
                raise self.err(path, f"next hop {via} is not on any network of {node}")
            return via
        if via not in nodes:
            raise self.err(path, f"unknown node {via!r}")
        for theirs in nodes[via].interfaces:
            if theirs.ip and any(i.network == theirs.network for i in mine):
                return theirs.ip
        raise self.err(path, f"{via} shares no network (with a static address) with {node}")

    def _route(self, node: str, index: int, route: Any, nodes: dict) -> RoutePlan:
        path: PathKey = ("nodes", node, "routes", index)
        dst = DEFAULT_ROUTE if route.to == "default" else route.to
        return RoutePlan(dst, self._next_hop(node, route.via, (*path, "via"), nodes))

    def _iface_on(self, plan: NodePlan, network: str, path: PathKey) -> str:
        iface = plan.interface_on(network)
        if iface is None:
            raise self.err(path, f"{plan.name} has no link on network {network!r}")
        return iface.name

    def _nat(self, node: str, index: int, nat: Any, plan: NodePlan) -> NatPlan:
        out = self._iface_on(plan, nat.out, ("nodes", node, "nat", index, "out"))
        return NatPlan(out, tuple(nat.sources or ()))

    def _addresses(self, items: list | None, path: PathKey, nodes: dict) -> tuple:
        out: list[ipaddress.IPv4Network] = []
        for i, item in enumerate(items or ()):
            if isinstance(item, ipaddress.IPv4Network):
                out.append(item)
            elif item in self.groups:  # every node of a group
                for member in self.groups[item]:
                    ips = [x.ip for x in nodes[member].interfaces if x.ip]
                    out.extend(ipaddress.IPv4Network(f"{ip}/32") for ip in ips)
            elif item in nodes:
                ips = [x.ip for x in nodes[item].interfaces if x.ip]
                out.extend(ipaddress.IPv4Network(f"{ip}/32") for ip in ips)
            else:
                raise self.err((*path, i), f"neither a CIDR nor a known node: {item!r}")
        return tuple(out)

    def _firewall(self, node: str, spec: NodeSpec, plan: NodePlan, nodes: dict) -> FirewallPlan:
        assert spec.firewall is not None
        rules = []
        for index, rule in enumerate(spec.firewall.rules):
            path: PathKey = ("nodes", node, "firewall", "rules", index)
            ins = (
                ()
                if rule.from_ == "any"
                else tuple(self._iface_on(plan, n, (*path, "from")) for n in rule.from_)
            )
            outs = (
                ()
                if rule.to == "any"
                else tuple(self._iface_on(plan, n, (*path, "to")) for n in rule.to)
            )
            rules.append(
                FirewallRulePlan(
                    ins,
                    outs,
                    self._addresses(rule.src, (*path, "src"), nodes),
                    self._addresses(rule.dst, (*path, "dst"), nodes),
                    rule.proto,
                    tuple(rule.dport or ()),
                    rule.action,
                    rule.comment,
                )
            )
        return FirewallPlan(spec.firewall.forward_policy, tuple(rules))

    def _dhcp(self, network: str, nodes: dict[str, NodePlan]) -> DhcpPlan:
        net = self.spec.networks[network]
        dhcp = net.dhcp
        assert dhcp is not None
        path: PathKey = ("networks", network, "dhcp")
        if dhcp.server not in nodes:
            raise self.err((*path, "server"), f"unknown node {dhcp.server!r}")
        server_if = nodes[dhcp.server].interface_on(network)
        if server_if is None or server_if.ip is None:
            raise self.err((*path, "server"), f"{dhcp.server} needs a static address on {network}")
        for i, ip in enumerate(dhcp.range):
            if ip not in net.subnet:
                raise self.err((*path, "range", i), f"{ip} is outside {net.subnet}")
        for ip, where in self.used.items():
            if dhcp.range[0] <= ip <= dhcp.range[1]:
                raise self.err(
                    (*path, "range"),
                    f"the pool contains {ip}, given at line {self.src.line_of(where)}",
                )
        if dhcp.router is None:
            router = server_if.ip
        elif isinstance(dhcp.router, ipaddress.IPv4Address):
            router = dhcp.router
        else:
            router = self._next_hop(dhcp.server, dhcp.router, (*path, "router"), nodes)
        return DhcpPlan(
            network,
            dhcp.server,
            server_if.name,
            net.subnet,
            dhcp.range[0],
            dhcp.range[1],
            router,
            max(1, round(dhcp.lease / 1000)),
            rapid_commit=dhcp.rapid_commit,
        )
