"""The topology file format as a typed model (pydantic v2).

This is what users write. Everything here is checked for shape; cross references (networks
named by nodes, nodes named by routes, addresses inside subnets) are checked in ``load``.
``testbed schema topology`` exports the JSON Schema of ``TopologySpec`` for editors.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from testbed import units

Milliseconds = Annotated[float, BeforeValidator(units.duration_ms)]
BitsPerSecond = Annotated[int, BeforeValidator(units.rate_bps)]
LossFraction = Annotated[float, BeforeValidator(units.loss_fraction)]
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,11}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Role(StrEnum):
    HOST = "host"
    ROUTER = "router"
    NAT = "nat"
    FIREWALL = "firewall"
    DHCP_SERVER = "dhcp-server"
    VPN_GATEWAY = "vpn-gateway"
    AGENT_HOST = "agent-host"

    @property
    def forwards(self) -> bool:
        return self in {Role.ROUTER, Role.NAT, Role.FIREWALL, Role.VPN_GATEWAY}


class ImpairmentSpec(Strict):
    """Link emulation for one direction: delay, jitter, loss, rate."""

    delay: Milliseconds | None = Field(None, description="one-way delay, e.g. 10ms")
    jitter: Milliseconds | None = Field(None, description="delay variation (std dev), e.g. 1ms")
    loss: LossFraction | None = Field(None, description="random loss, e.g. 1% or 0.01")
    rate: BitsPerSecond | None = Field(None, description="rate limit, e.g. 100mbit")


class LinkImpairmentSpec(ImpairmentSpec):
    """Impairment for both directions, with optional per-direction overrides.

    ``egress`` is from the node into the network, ``ingress`` from the network to the node.
    """

    egress: ImpairmentSpec | None = None
    ingress: ImpairmentSpec | None = None


class DhcpSpec(Strict):
    """A real DHCP server (dnsmasq) on one node, serving a pool of the network."""

    server: Name = Field(description="node that runs the DHCP server")
    range: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] = Field(
        description="first and last address of the pool"
    )
    router: Name | ipaddress.IPv4Address | None = Field(
        None, description="default gateway handed out (node name or address); default: server"
    )
    lease: Milliseconds = Field(3_600_000.0, description="lease time, e.g. 1h is 3600s")
    rapid_commit: bool = Field(
        True,
        description=(
            "answer a DHCPDISCOVER that asks for Rapid Commit (RFC 4039, option 80) with a "
            "DHCPACK at once: one round trip instead of two; false: always offer first"
        ),
    )

    @model_validator(mode="after")
    def _ordered(self) -> DhcpSpec:
        if self.range[0] > self.range[1]:
            raise ValueError("range: the first address must not be above the last")
        return self


class NetworkSpec(Strict):
    """An L2 network (one bridge) with an IPv4 subnet."""

    subnet: ipaddress.IPv4Network
    description: str = ""
    impair: LinkImpairmentSpec | None = Field(
        None, description="default impairment of every attachment to this network"
    )
    dhcp: DhcpSpec | None = None
    trust: Literal["trusted", "dmz", "untrusted"] = Field(
        "untrusted", description="security zone, for documentation, diagrams and reports"
    )


class LinkSpec(Strict):
    """One interface of a node, attached to a network."""

    network: Name
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,7}$")] | None = Field(
        None, description="interface name inside the node (default eth0, eth1, ...)"
    )
    address: ipaddress.IPv4Address | Literal["auto", "dhcp", "none"] = Field(
        "auto", description="address on the network: given, auto (allocated), dhcp, none"
    )
    impair: LinkImpairmentSpec | None = None


class RouteSpec(Strict):
    to: Literal["default"] | ipaddress.IPv4Network
    via: Name | ipaddress.IPv4Address = Field(description="next hop: address or node name")


Port = Annotated[int, Field(ge=1, le=65535)]


class FirewallRuleSpec(Strict):
    """One forwarding rule; ``from``/``to`` are network names of the firewall's links."""

    from_: list[Name] | Literal["any"] = Field("any", alias="from")
    to: list[Name] | Literal["any"] = "any"
    src: list[ipaddress.IPv4Network | Name] | None = Field(None, description="CIDRs or nodes")
    dst: list[ipaddress.IPv4Network | Name] | None = Field(None, description="CIDRs or nodes")
    proto: Literal["any", "tcp", "udp", "icmp", "esp", "ipip"] = "any"
    dport: list[Port] | None = None
    action: Literal["accept", "drop", "reject"] = "accept"
    comment: str = ""

    @model_validator(mode="before")
    @classmethod
    def _listify(cls, data: object) -> object:
        if isinstance(data, dict):
            for key in ("from", "to", "src", "dst", "dport"):
                if key in data and not isinstance(data[key], list) and data[key] != "any":
                    data = {**data, key: [data[key]]}
        return data

    @model_validator(mode="after")
    def _ports_need_proto(self) -> FirewallRuleSpec:
        if self.dport and self.proto not in ("tcp", "udp"):
            raise ValueError("dport needs proto tcp or udp")
        return self


class FirewallSpec(Strict):
    forward_policy: Literal["accept", "drop"] = "drop"
    rules: list[FirewallRuleSpec] = []


class NatSpec(Strict):
    """Masquerade traffic from ``sources`` leaving through the link on network ``out``."""

    out: Name
    sources: list[ipaddress.IPv4Network] | None = Field(None, description="default: any")


class NodeSpec(Strict):
    role: Role | list[Role] = Role.HOST
    description: str = ""
    count: int | None = Field(
        None,
        ge=1,
        le=999,
        description=(
            "a template for COUNT nodes NAME01, NAME02, ... (a group that scenarios name as "
            "NAME): node k's static addresses are the template's plus k-1, auto ones are "
            "allocated per node; at most 12 characters with the number"
        ),
    )
    links: list[LinkSpec] = Field(min_length=1)
    routes: list[RouteSpec] = []
    nat: list[NatSpec] = []
    firewall: FirewallSpec | None = None

    @property
    def roles(self) -> list[Role]:
        return self.role if isinstance(self.role, list) else [self.role]


class TopologySpec(Strict):
    """A topology file: networks, nodes attached to them, their routes and policies."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,23}$")]
    description: str = ""
    neighbours: Literal["warm", "cold"] = Field(
        "warm",
        description=(
            "warm: every statically addressed interface starts with a stale ARP entry for "
            "each static neighbour on its network, as in a network that has been running "
            "(entries are still verified by the kernel on use); cold: empty ARP caches, so "
            "the first packet between two routers waits for ARP"
        ),
    )
    networks: dict[Name, NetworkSpec] = Field(min_length=1)
    nodes: dict[Name, NodeSpec] = Field(min_length=1)
