"""Agent configuration files (YAML) -> the protocol core's config objects.

Errors name the file, line and field, like every other spec file of the testbed.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agents.mip.fa import FaConfig, FaInterface
from agents.mip.ha import HaConfig, MobileNodeConfig
from agents.mip.mn import MnConfig
from mipbase.specfile import load_spec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _ReplyLimits(_Strict):
    """Rate limits on the replies an agent sends that are not acceptances (issue 20:
    reflection; agents.mip.ratelimit): per destination address and in all, per second and
    in a burst. A rate of none: no limit."""

    reply_rate: float | None = Field(10.0, gt=0, description="per destination (/s)")
    reply_burst: float = Field(20.0, ge=1)
    reply_total_rate: float | None = Field(500.0, gt=0, description="to all (/s)")
    reply_total_burst: float = Field(1000.0, ge=1)

    def reply_limits(self) -> dict[str, float | None]:
        return {
            "reply_rate": self.reply_rate,
            "reply_burst": self.reply_burst,
            "reply_total_rate": self.reply_total_rate,
            "reply_total_burst": self.reply_total_burst,
        }


class MobileNodeEntry(_Strict):
    home_address: ipaddress.IPv4Address
    spi: int = Field(ge=256, le=0xFFFFFFFF)  # SPIs 0-255 are reserved (RFC 5944 3.5)
    key: str = Field(pattern=r"^([0-9a-fA-F]{2})+$", description="hex")
    algorithm: Literal["hmac-md5", "keyed-md5"] = "hmac-md5"
    replay: Literal["timestamp", "nonce"] = "timestamp"


class HaFile(_ReplyLimits):
    address: ipaddress.IPv4Address
    interface: str = "eth0"
    home_network: ipaddress.IPv4Network
    max_lifetime: int = Field(600, ge=0, le=65535)
    replay_window: float = Field(7.0, gt=0)
    mobile_nodes: list[MobileNodeEntry] = Field(min_length=1)
    simultaneous_bindings: bool = False
    udp_tunnelling: bool = True
    keepalive_interval: int = Field(110, ge=1)
    advertise: bool = Field(True, description="advertise on the home link (H bit)")
    adv_interval: float = Field(1.0, gt=0)
    min_solicited_interval: float = Field(
        0.05, ge=0, description="answer solicitations at most this often (s)"
    )


class OtherHomeAgent(_Strict):
    """One more home agent the MIP proxy serves mobile nodes of (seed 003: "can serve
    multiple MNs and HAs"): those whose home address is on its home network."""

    address: ipaddress.IPv4Address
    home_network: ipaddress.IPv4Network


class ProxyFile(_Strict):
    """The MIP proxy of seed 003: home agent toward mobile nodes outside, mobile node toward
    the real home agent, in the DMZ beside the VPN gateway (or on it: one box)."""

    external_address: ipaddress.IPv4Address = Field(
        description="the address mobile nodes outside register with"
    )
    internal_address: ipaddress.IPv4Address | None = Field(
        None, description="care-of address registered at the real HA (default: external)"
    )
    interface: str = "eth0"
    home_agent: ipaddress.IPv4Address
    home_network: ipaddress.IPv4Network
    home_agents: list[OtherHomeAgent] = Field(
        default_factory=list,
        description="more home agents, each with its home network: a mobile node registers "
        "(through the proxy) with the one whose network holds its home address",
    )
    gateway: ipaddress.IPv4Address | None = Field(
        None,
        description="the VPN gateway that encrypts what the HA tunnels to us (two boxes); "
        "none: the gateway runs on this node (one box)",
    )
    esp_in_userspace: bool | None = Field(
        None,
        description="one box: the gateway's charon here does ESP in userspace (kernel-libipsec "
        "hands out what it decrypts from ipsec0, the kernel's XFRM from our tunnel); the "
        "runner fills it in from the node's vpn service; none: whether ipsec0 exists here",
    )
    max_lifetime: int = Field(600, ge=0, le=65535)
    replay_window: float = Field(7.0, gt=0)
    udp_tunnelling: bool = True
    keepalive_interval: int = Field(110, ge=1)
    retransmit_initial: float = Field(0.5, gt=0)
    retransmit_max: float = Field(4.0, gt=0)
    mobile_nodes: list[MobileNodeEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _every_node_has_a_home_agent(self) -> ProxyFile:
        networks = [self.home_network, *(h.home_network for h in self.home_agents)]
        for mn in self.mobile_nodes:
            if not any(mn.home_address in n for n in networks):
                served = ", ".join(map(str, networks))
                raise ValueError(f"{mn.home_address} is on no home network served ({served})")
        return self

    @property
    def home_networks(self) -> list[str]:
        return [str(self.home_network), *(str(h.home_network) for h in self.home_agents)]


class FaFile(_ReplyLimits):
    address: ipaddress.IPv4Address = Field(description="care-of address offered")
    interface: str = Field("eth0", description="the visited link")
    prefix_len: int = Field(24, ge=0, le=32)
    adv_interval: float = Field(1.0, gt=0)
    registration_lifetime: int = Field(600, ge=1, le=65535)
    reverse_tunneling: bool = True
    max_visitors: int | None = None
    min_solicited_interval: float = Field(
        0.05, ge=0, description="answer solicitations at most this often (s)"
    )
    max_pending: int | None = Field(
        4096,
        ge=1,
        description="pending requests in all; a new one then evicts the oldest (none: no limit)",
    )
    max_pending_per_home: int | None = Field(
        8, ge=1, description="pending requests for one home address before 66 (none: no limit)"
    )


class ExternalMipFile(_Strict):
    """Dual MIP (RFC 5265): the MN's registration with an external home agent (x-HA) outside
    the intranet; the IPsec tunnel is bound to this external home address (x-HoA)."""

    home_address: ipaddress.IPv4Address
    home_agent: ipaddress.IPv4Address
    home_network: ipaddress.IPv4Network
    spi: int = Field(ge=256, le=0xFFFFFFFF)
    key: str = Field(pattern=r"^([0-9a-fA-F]{2})+$")
    lifetime: int = Field(600, ge=1, le=65535)
    port: int = Field(
        4341, ge=1, le=65535, description="our UDP port for it (434 is the internal client's)"
    )


class VpnGatewayFile(_Strict):
    """Another VPN gateway, for the visited networks listed (RFC 5266: a new gateway is a
    new registration)."""

    gateway: ipaddress.IPv4Address
    networks: list[ipaddress.IPv4Network] = Field(min_length=1)
    ike: str = Field(description="the MN's charon connection to it")


class VpnFile(_Strict):
    """The MN's IPsec VPN, its own charon reached through vici: RFC 5266 (architecture
    ``mobike``, mode mc) or the MIP proxy of seed 003 (``proxy``)."""

    gateway: ipaddress.IPv4Address
    architecture: Literal["mobike", "proxy", "dual"] = Field(
        "mobike",
        description="mobike: register the tunnel inner address (mode mc); proxy: register "
        "with the MIP proxy, the tunnel bound to the home address rides inside; dual: "
        "x-MIP underneath, the tunnel bound to the external home address (RFC 5265)",
    )
    external: ExternalMipFile | None = Field(None, description="the x-HA (architecture dual)")
    proxy: ipaddress.IPv4Address | None = Field(
        None, description="the MIP proxy's external address (architecture proxy)"
    )
    vici: str = Field(description="path of the MN's charon vici socket")
    ike: str = "vpn"
    child: str = "vpn"
    iface: str | None = Field(
        None,
        description="the interface of the tunnel inner address; default: the one that holds "
        "it (ipsec0 with userspace ESP, the outer interface with the kernel's XFRM)",
    )
    decision_timeout: float = Field(
        0.3, gt=0, description="no direct reply from the HA within this: outside (s)"
    )
    mobike: bool = Field(
        True, description="false: every outside move needs a new IKE SA and registration"
    )
    path_check: float = Field(
        1.0,
        ge=0,
        description="outside, echo the HA through the tunnel this often when settled; 0: off (s)",
    )
    path_failures: int = Field(
        2, ge=1, description="unanswered tunnel echoes in a row before a new IKE SA"
    )
    gateways: list[VpnGatewayFile] = Field(
        default_factory=list,
        description="architecture mobike: other gateways by visited network (gateway, "
        "through ike, everywhere else)",
    )

    @model_validator(mode="after")
    def _proxy_needs_address(self) -> VpnFile:
        if self.architecture == "proxy" and self.proxy is None:
            raise ValueError("architecture proxy needs proxy: the MIP proxy's address")
        if self.architecture == "dual" and self.external is None:
            raise ValueError("architecture dual needs external: the x-HA registration")
        return self


class MnFile(_Strict):
    home_address: ipaddress.IPv4Address
    home_agent: ipaddress.IPv4Address
    home_network: ipaddress.IPv4Network
    home_router: ipaddress.IPv4Address = Field(description="default router on the home link")
    interface: str = "eth0"
    spi: int = Field(ge=256, le=0xFFFFFFFF)
    key: str = Field(pattern=r"^([0-9a-fA-F]{2})+$")
    algorithm: Literal["hmac-md5", "keyed-md5"] = "hmac-md5"
    replay: Literal["timestamp", "nonce"] = "timestamp"
    lifetime: int = Field(600, ge=1, le=65535)
    prefer: Literal["f", "c"] = "f"
    reverse_tunnel: bool = True
    udp_tunnel: Literal["auto", "force", "off"] = "auto"
    dhcp: bool = Field(True, description="co-located care-of addresses from DHCP")
    parallel_dhcp: bool = Field(
        True, description="send DHCP with the agent solicitation (seed 000's optimisation)"
    )
    sequential_dhcp_wait: float = Field(
        1.0, ge=0, description="without parallel_dhcp: wait this long for an FA first (s)"
    )
    solicit_interval: float = Field(
        0.05,
        gt=0,
        description="solicitations at most this often (s); L2 triggers make a "
        "fast first one worth it",
    )
    retransmit_initial: float = Field(0.25, gt=0)
    retransmit_max: float = Field(4.0, gt=0)
    vpn: VpnFile | None = None


def _load(path: str | Path, model: type[_Strict]) -> Any:
    source = load_spec(path)
    try:
        return model.model_validate(source.data)
    except ValidationError as exc:
        raise source.validation_error(exc) from None


def _mobile_nodes(entries: list[MobileNodeEntry]) -> list[MobileNodeConfig]:
    return [
        MobileNodeConfig(str(m.home_address), m.spi, m.key, m.algorithm, m.replay) for m in entries
    ]


def load_ha(path: str | Path) -> tuple[HaFile, HaConfig]:
    f: HaFile = _load(path, HaFile)
    from agents.mip.advert import AdvertisingInterface

    advertise = [AdvertisingInterface(f.interface, str(f.address), f.home_network.prefixlen)]
    return f, HaConfig(
        address=str(f.address),
        home_network=str(f.home_network),
        mobile_nodes=_mobile_nodes(f.mobile_nodes),
        max_lifetime=f.max_lifetime,
        replay_window=f.replay_window,
        simultaneous_bindings=f.simultaneous_bindings,
        udp_tunnelling=f.udp_tunnelling,
        keepalive_interval=f.keepalive_interval,
        home_iface=f.interface,
        advertise_on=advertise if f.advertise else [],
        adv_interval=f.adv_interval,
        min_solicited_interval=f.min_solicited_interval,
        **f.reply_limits(),
    )


def load_ha_apart(path: str | Path) -> tuple[HaFile, HaConfig]:
    """:func:`load_ha` parsed in a forked child (see :mod:`agents.runtime.apart`): the
    HA's configuration lists every MN it serves, and the parse's garbage would stay in the
    agent's heap (100k MNs: ~500 MB). The file model comes back without its MN list (the
    core's configuration has them)."""
    from agents.runtime import apart

    return apart.call(_load_ha_lean, path)


def _load_ha_lean(path: str | Path) -> tuple[HaFile, HaConfig]:
    f, cfg = load_ha(path)
    return f.model_copy(update={"mobile_nodes": []}), cfg


def load_fa(path: str | Path) -> tuple[FaFile, FaConfig]:
    f: FaFile = _load(path, FaFile)
    return f, FaConfig(
        care_of_address=str(f.address),
        interfaces=[FaInterface(f.interface, str(f.address), f.prefix_len)],
        adv_interval=f.adv_interval,
        registration_lifetime=f.registration_lifetime,
        reverse_tunneling=f.reverse_tunneling,
        max_visitors=f.max_visitors,
        min_solicited_interval=f.min_solicited_interval,
        max_pending=f.max_pending,
        max_pending_per_home=f.max_pending_per_home,
        **f.reply_limits(),
    )


def load_mn(path: str | Path) -> tuple[MnFile, MnConfig]:
    f: MnFile = _load(path, MnFile)
    return f, MnConfig(
        home_address=str(f.home_address),
        home_agent=str(f.home_agent),
        home_network=str(f.home_network),
        spi=f.spi,
        key=f.key,
        algorithm=f.algorithm,
        replay=f.replay,
        lifetime=f.lifetime,
        reverse_tunnel=f.reverse_tunnel,
        udp_tunnel=f.udp_tunnel,
        prefer=f.prefer,
        solicit_interval=f.solicit_interval,
        retransmit_initial=f.retransmit_initial,
        retransmit_max=f.retransmit_max,
    )


def load_proxy(path: str | Path) -> tuple[ProxyFile, Any]:
    from agents.mip.proxy import ProxyConfig

    f: ProxyFile = _load(path, ProxyFile)
    return f, ProxyConfig(
        external_address=str(f.external_address),
        internal_address=str(f.internal_address or f.external_address),
        home_agent=str(f.home_agent),
        home_network=str(f.home_network),
        mobile_nodes=_mobile_nodes(f.mobile_nodes),
        other_home_agents=[(str(h.address), str(h.home_network)) for h in f.home_agents],
        max_lifetime=f.max_lifetime,
        replay_window=f.replay_window,
        udp_tunnelling=f.udp_tunnelling,
        keepalive_interval=f.keepalive_interval,
        retransmit_initial=f.retransmit_initial,
        retransmit_max=f.retransmit_max,
    )
