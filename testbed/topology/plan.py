"""The resolved topology: every address allocated, every reference checked.

The builder works only from these plain dataclasses, never from the raw YAML or the spec
model, so building needs no validation logic and tests can construct plans directly.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Literal

from testbed.topology.model import Role


@dataclass(frozen=True, slots=True)
class Impairment:
    """One direction of link emulation. All zero means a plain veth."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    rate_bps: int | None = None

    @property
    def needs_delay(self) -> bool:
        return self.delay_ms > 0 or self.jitter_ms > 0

    @property
    def is_null(self) -> bool:
        return not self.needs_delay and self.loss == 0 and self.rate_bps is None

    def overlaid(self, **changes: float | int | None) -> Impairment:
        """A copy with the given non-None fields replaced."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "delay_ms": self.delay_ms,
            "jitter_ms": self.jitter_ms,
            "loss": self.loss,
            "rate_bps": self.rate_bps,
        }


@dataclass(slots=True)
class InterfacePlan:
    node: str
    name: str  # inside the node, e.g. eth0
    network: str
    address: ipaddress.IPv4Interface | None  # None for dhcp/none
    addressing: Literal["static", "dhcp", "none"]
    egress: Impairment  # node -> network
    ingress: Impairment  # network -> node
    port: str  # base name of the interface's switch-side end
    # the link's own impairment fields (egress, ingress), kept to recompute after a move
    own_egress: dict[str, float | int] = field(default_factory=dict)
    own_ingress: dict[str, float | int] = field(default_factory=dict)

    @property
    def ip(self) -> ipaddress.IPv4Address | None:
        return self.address.ip if self.address else None


@dataclass(frozen=True, slots=True)
class RoutePlan:
    dst: ipaddress.IPv4Network  # 0.0.0.0/0 for default
    via: ipaddress.IPv4Address


@dataclass(frozen=True, slots=True)
class NatPlan:
    out_iface: str
    sources: tuple[ipaddress.IPv4Network, ...]  # empty: any source


@dataclass(frozen=True, slots=True)
class FirewallRulePlan:
    in_ifaces: tuple[str, ...]  # empty: any
    out_ifaces: tuple[str, ...]
    src: tuple[ipaddress.IPv4Network, ...]
    dst: tuple[ipaddress.IPv4Network, ...]
    proto: str
    dports: tuple[int, ...]
    action: str
    comment: str


@dataclass(frozen=True, slots=True)
class FirewallPlan:
    forward_policy: str
    rules: tuple[FirewallRulePlan, ...]


@dataclass(frozen=True, slots=True)
class DhcpPlan:
    network: str
    server: str
    iface: str
    subnet: ipaddress.IPv4Network
    first: ipaddress.IPv4Address
    last: ipaddress.IPv4Address
    router: ipaddress.IPv4Address
    lease_s: int
    rapid_commit: bool = True  # RFC 4039 two-message exchange (dnsmasq --dhcp-rapid-commit)


@dataclass(slots=True)
class NodePlan:
    name: str
    roles: tuple[Role, ...]
    description: str
    interfaces: list[InterfacePlan]
    routes: list[RoutePlan] = field(default_factory=list)
    nat: list[NatPlan] = field(default_factory=list)
    firewall: FirewallPlan | None = None

    @property
    def forwarding(self) -> bool:
        return any(role.forwards for role in self.roles)

    def interface_on(self, network: str) -> InterfacePlan | None:
        return next((i for i in self.interfaces if i.network == network), None)


@dataclass(slots=True)
class NetworkPlan:
    name: str
    subnet: ipaddress.IPv4Network
    description: str
    trust: str
    egress: Impairment = Impairment()  # default of every attachment, node -> network
    ingress: Impairment = Impairment()
    dhcp: DhcpPlan | None = None


@dataclass(slots=True)
class TopologyPlan:
    name: str
    description: str
    source: str
    networks: dict[str, NetworkPlan]
    nodes: dict[str, NodePlan]
    neighbours: Literal["warm", "cold"] = "warm"
    # a template with a count (``nodes: mn: {count: 12}``) -> its nodes (mn01 ... mn12)
    groups: dict[str, list[str]] = field(default_factory=dict)

    def members(self, name: str) -> list[str]:
        """The nodes a name stands for: a group's, or the node itself."""
        return list(self.groups.get(name, [name]))

    def impairment_on(self, iface: InterfacePlan, network: str) -> tuple[Impairment, Impairment]:
        """(egress, ingress) of ``iface`` when attached to ``network`` (after a move)."""
        net = self.networks[network]
        return (
            net.egress.overlaid(**iface.own_egress),
            net.ingress.overlaid(**iface.own_ingress),
        )

    def interfaces(self) -> list[InterfacePlan]:
        return [i for node in self.nodes.values() for i in node.interfaces]

    def address(self, node: str, network: str | None = None) -> ipaddress.IPv4Address:
        """The node's static address (on ``network``, or its first one)."""
        for iface in self.nodes[node].interfaces:
            if iface.ip and (network is None or iface.network == network):
                return iface.ip
        raise KeyError(f"{node} has no static address" + (f" on {network}" if network else ""))
