"""Mobile node: agent discovery, move detection, registration (RFC 5944 s. 2.4, 3.6; RFC 3519).

Sans-I/O. Inputs: ``handle_icmp`` (agent advertisements), ``handle_datagram`` (registration
replies on our UDP port), ``handle_timer``, link events ``link_up``/``link_down``, a co-located
address from DHCP ``address_acquired``/``address_lost``, ``shutdown``. Output: a list of
:mod:`~agents.mip.actions`. Wall-clock time for timestamp Identifications comes from the
injected ``wallclock``; random bits from ``rand32``.

Where we are (``mode``, a :class:`mipbase.modes.Mode`):

* ``"home"`` -- an advertisement from our home agent (H bit, from the home agent or on the
  home prefix), or a co-located address on the home network: deregister (lifetime 0, CoA =
  home address, RFC 5944 3.6.1.2) if we may have a binding, and announce the home address with
  a gratuitous ARP (RFC 5944 4.6);
* ``"f"`` -- registering through a foreign agent with its care-of address;
* ``"c"`` -- registering a co-located care-of address directly with the home agent (or through
  the FA when its advertisement has the R bit, RFC 5944 2.1.1);
* ``None`` -- nowhere to register from.

``prefer`` picks ``f`` or ``c`` when both are possible. Further modes (e.g. RFC 5266 ``"mc"``,
a VPN inner address as co-located CoA) are plugged in with :meth:`MobileNode.use_attachment`,
which overrides the automatic choice with any :class:`Attachment`.

Move detection (RFC 5944 2.4.2): the current agent's advertisement lifetime runs out; a new
agent advertises a different prefix (Prefix-Lengths extension) than the current one on the
same link; link down/up (L2 triggers, which also restart rate-limited solicitation); a
co-located address appears or goes. A sequence number dropping below 256 from the current FA
means it rebooted and lost its visitor list: register again (RFC 5944 2.3.1). An
advertisement whose frame arrived (``received``: the driver's kernel timestamp) before its
link last went down was heard on the old link, however late it is read: it is dropped, not
taken as news of the link we are on now.

Forged input (issue 20, item 4; docs/hostile-input.md says what each input may change): an
advertisement not sent to 224.0.0.1 or 255.255.255.255 (``dst``, where the driver knows it)
is dropped; a new agent enters the table (at most ``MAX_AGENTS``) only if it is our home agent
or a foreign agent that takes registrations (a care-of address, not busy, a Registration
Lifetime above 0), and a known one is used only while it does; a reboot (sequence number)
makes at most one registration per ``REBOOT_HOLDOFF`` s; a foreign agent's unauthenticated
denial counts only from the FA the request went through, and the lifetime cap of its 69 only
while that FA is known.

Solicitations (RFC 5944 2.4.1): up to ``solicit_burst`` at ``solicit_interval``, then binary
exponential backoff up to ``solicit_max_interval``; never closer than ``solicit_interval``.

Registration (sent, matched and retransmitted by :mod:`agents.mip.regclient`): retransmitted
with exponential backoff from ``retransmit_initial`` to ``retransmit_max``; with timestamps
every retransmission gets a new Identification, with nonces it is resent unchanged (RFC 5944
3.6.3). Lifetimes count from when the accepted request was sent (RFC 5944 3.6.1.3); renewal at
``renew_fraction`` of the granted lifetime. Replies must match the Identification and carry a
valid MN-HA authenticator, except denials from an FA (64-127) which cannot (RFC 5944 3.6.2.1).
133 resynchronises the clock / takes the new nonce and retries at once (up to ``max_resync``
times); 69 retries with the FA's maximum lifetime; 136 retries with the home agent address the
reply names.

UDP tunnelling (RFC 3519): with a co-located CoA and ``udp_tunnel="auto"`` the request carries
a UDP Tunnel Request (the HA decides by NAT detection), ``"force"`` sets its F flag, ``"off"``
never asks. Accepted with a UDP Tunnel Reply: the tunnel is UDP and keepalives (ICMP echo in a
Tunnel Data message) go out every keepalive interval.

Events: ``agent_discovered``, ``agent_lost``, ``agent_rebooted``, ``agent_solicitation_sent``,
``movement_detected``, ``returned_home``, ``registration_sent``,
``registration_retransmitted``, ``registration_accepted``, ``registration_denied``,
``registration_resync``, ``registration_failed``, ``registration_expired``, ``deregistered``,
``home_agent_changed``, ``link_up``, ``link_down``, ``address_acquired``, ``address_lost``,
``message_dropped``.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from agents.mip.actions import (
    Action,
    CancelTimer,
    Event,
    GratuitousArp,
    Route,
    Send,
    SetTimer,
    TunnelDown,
    TunnelUp,
)
from agents.mip.auth import SecurityAssociation, append_auth
from agents.mip.constants import (
    ALL_ROUTERS,
    ALL_SYSTEMS,
    INFINITE_LIFETIME,
    LIMITED_BROADCAST,
    MIP_PORT,
    AdvFlag,
    ExtType,
    ReplyCode,
    RequestFlag,
    denied_by_fa,
    reply_code_name,
)
from agents.mip.errors import MalformedMessage
from agents.mip.extensions import (
    ChallengeExtension,
    EncapDeliveryStyle,
    Extension,
    NaiExtension,
    UdpTunnelReply,
    UdpTunnelRequest,
)
from agents.mip.icmp import AgentAdvertisement, AgentSolicitation, decode_icmp, encode_icmp
from agents.mip.ipv4 import build_ipv4, icmp_echo_request
from agents.mip.messages import (
    RegistrationReply,
    RegistrationRequest,
    TunnelData,
    decode_reply,
    encode,
)
from agents.mip.regclient import Answer, Dropped, GiveUp, Outcome, Pending, RegistrationClient
from agents.mip.replay import MobileReplayState, default_rand32
from mipbase.modes import Mode

__all__ = ["AgentInfo", "Attachment", "MnConfig", "MobileNode"]

T_SOLICIT = "mn.solicit"
T_RETRANSMIT = "mn.retransmit"
T_RENEW = "mn.renew"
T_EXPIRE = "mn.expire"
T_KEEPALIVE = "mn.keepalive"
T_RETRY = "mn.retry"
T_AGENT = "mn.agent."  # + agent address

# Hostile input (issue 20, item 4; docs/hostile-input.md): advertisements name no key, so what
# a forged one may do is bounded instead. The agent table holds at most MAX_AGENTS entries; an
# agent that offers us nothing (neither a foreign agent, busy or not, nor our home agent) is
# not entered; and a sequence number that says "rebooted" makes at most one registration per
# REBOOT_HOLDOFF seconds per agent (a forged advertisement per RTT made one each).
MAX_AGENTS = 32
REBOOT_HOLDOFF = 1.0
LINK_DESTINATIONS = frozenset({ALL_SYSTEMS, LIMITED_BROADCAST})


@dataclass(slots=True)
class MnConfig:
    """Mobile node configuration (see the module docstring for the behaviour each selects)."""

    home_address: str
    home_agent: str
    home_network: str
    spi: int
    key: bytes | str
    algorithm: str = "hmac-md5"
    replay: str = "timestamp"
    lifetime: int = 1800
    reverse_tunnel: bool = False
    encapsulating_delivery: bool = False
    udp_tunnel: str = "auto"  # "auto" | "force" | "off"
    prefer: str = "f"  # "f" | "c"
    nai: str | None = None
    simultaneous: bool = False
    mn_fa_sas: dict[str, SecurityAssociation] = field(default_factory=dict)  # by FA address
    solicit_interval: float = 1.0
    solicit_burst: int = 3
    solicit_max_interval: float = 60.0
    retransmit_initial: float = 1.0
    retransmit_max: float = 16.0
    max_retransmissions: int | None = None
    renew_fraction: float = 0.8
    denied_retry: float | None = 30.0
    deregister_at_boot: bool = True
    local_port: int = MIP_PORT
    max_resync: int = 3

    def __post_init__(self) -> None:
        if self.prefer not in (Mode.F, Mode.C):
            raise ValueError(f"prefer must be 'f' or 'c', not {self.prefer!r}")
        if self.udp_tunnel not in ("auto", "force", "off"):
            raise ValueError(f"udp_tunnel must be auto/force/off, not {self.udp_tunnel!r}")
        if not 0 < self.renew_fraction < 1:
            raise ValueError("renew_fraction must be between 0 and 1")
        if not 0 <= self.lifetime <= INFINITE_LIFETIME:
            raise ValueError("lifetime must fit 16 bits")
        net = ipaddress.IPv4Network(self.home_network, strict=False)
        if ipaddress.IPv4Address(self.home_address) not in net:
            raise ValueError(f"home address {self.home_address} not in {net}")


@dataclass(frozen=True, slots=True)
class Attachment:
    """Where and how to register.

    ``care_of``: the CoA to register (the home address when at home). ``src``: IP source of
    our requests. ``agent``: the FA to send requests through (``None``: straight to the home
    agent). ``colocated``: we decapsulate ourselves (D bit). ``router``: default router to use
    once registered (the FA). ``max_lifetime``: the FA's advertised registration lifetime.
    ``home_agent``: register with this address instead of the configured home agent (e.g. a
    MIP proxy in the enterprise DMZ when outside); it is the request's destination and Home
    Agent field, and a 136 reply does not move it. Two attachments are "the same place" when
    mode, care-of address, source, agent, interface and ``home_agent`` are equal
    (``router``/``max_lifetime`` may change without a move).
    """

    mode: Mode
    care_of: str
    src: str
    iface: str | None = None
    agent: str | None = None
    colocated: bool = False
    udp_allowed: bool = True
    router: str | None = field(default=None, compare=False)
    max_lifetime: int | None = field(default=None, compare=False)
    home_agent: str | None = None
    # the care-of address is an IPsec VPN's inner address (RFC 5266 mode mc): the tunnel's
    # outer packets take the VPN's policy, whatever interface holds the address
    via_vpn: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode(self.mode))  # "mc" given: Mode.MC


@dataclass(slots=True)
class AgentInfo:
    """What we know about a mobility agent from its advertisements."""

    address: str
    iface: str | None
    expires: float
    lifetime: int
    sequence: int
    flags: int
    registration_lifetime: int
    care_of_addresses: list[str]
    router: str
    prefix: ipaddress.IPv4Network | None
    challenge: bytes | None
    home: bool
    heard_at: float

    @property
    def usable_fa(self) -> bool:
        # A Registration Lifetime of 0 accepts no registration (RFC 5944 2.1.1): a request
        # capped to it would be a deregistration, accepted and repeated on expiry (issue 20).
        return (
            bool(self.flags & AdvFlag.F)
            and bool(self.care_of_addresses)
            and not (self.flags & AdvFlag.B)
            and self.registration_lifetime > 0
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "iface": self.iface,
            "lifetime": self.lifetime,
            "sequence": self.sequence,
            "flags": self.flags,
            "registration_lifetime": self.registration_lifetime,
            "care_of_addresses": list(self.care_of_addresses),
            "prefix": str(self.prefix) if self.prefix else None,
            "home": self.home,
        }


@dataclass(slots=True)
class _Colocated:
    address: str
    prefix_len: int
    gateway: str | None
    iface: str | None


@dataclass(slots=True)
class _Binding:
    attachment: Attachment
    lifetime: int
    started: float
    expires: float
    udp: bool
    keepalive: int | None
    home_agent: str


class MobileNode:
    """The mobile node state machine. See the module docstring for the rules."""

    def __init__(
        self,
        config: MnConfig,
        *,
        wallclock: Callable[[], float],
        rand32: Callable[[], int] = default_rand32,
    ) -> None:
        self.config = config
        self.sa = SecurityAssociation(config.spi, config.key, config.algorithm, config.replay)  # type: ignore[arg-type]
        self.replay = MobileReplayState(config.replay)
        self.home_agent = config.home_agent
        self._home_net = ipaddress.IPv4Network(config.home_network, strict=False)
        self.agents: dict[str, AgentInfo] = {}
        self._fa: str | None = None
        self._colocated: _Colocated | None = None
        self._links: set[str] = set()
        self._links_reported = False  # once a driver reports links, no link means no solicit
        self._went_down: dict[str, float] = {}  # interface -> when it last lost its link
        self._attachment: Attachment | None = None
        self._override: Attachment | None = None
        # registrations in flight: Identification, retransmission, reply matching
        self._reg: RegistrationClient[Attachment] = RegistrationClient(
            self.sa,
            self.replay,
            timer=T_RETRANSMIT,
            build=self._build,
            announce=self._announce,
            wallclock=wallclock,
            rand32=rand32,
            retransmit_initial=config.retransmit_initial,
            retransmit_max=config.retransmit_max,
            max_resync=config.max_resync,
            fa_denials_unauthenticated=True,  # an FA cannot authenticate for the HA
        )
        self._binding: _Binding | None = None
        self._tunnel: TunnelUp | None = None
        self._route: Route | None = None
        self._lifetime_cap: dict[str, int] = {}  # by FA: a 69 denial's lifetime
        self._reboot_registered: dict[str, float] = {}  # by FA: the last such registration
        self._sol_count = 0
        self._sol_last = -math.inf
        self._ever_registered = False
        self._ever_home = False
        self._started = False
        self._shutdown = False
        self._keepalive_seq = 0
        self._reply_bytes = 0
        self.counters: dict[str, int] = {
            "requests_sent": 0,
            "replies": 0,
            "advertisements": 0,
            "solicitations": 0,
            "dropped": 0,
        }

    # -- state -----------------------------------------------------------------------------

    @property
    def mode(self) -> Mode | None:
        """``"home"``, ``"f"``, ``"c"`` (or a mode given via :meth:`use_attachment`), None."""
        return self._attachment.mode if self._attachment else None

    @property
    def attachment(self) -> Attachment | None:
        return self._attachment

    @property
    def registered(self) -> bool:
        """A binding for the current point of attachment was accepted and has not expired."""
        b = self._binding
        return b is not None and b.attachment == self._attachment

    @property
    def care_of(self) -> str | None:
        a = self._attachment
        return None if a is None or a.mode == Mode.HOME else a.care_of

    @property
    def state(self) -> str:
        if not self._started:
            return "idle"
        if self._reg.pending is not None:
            return "deregistering" if self._reg.pending.dereg else "registering"
        if self._attachment is None:
            return "detached"
        if self._attachment.mode == Mode.HOME:
            return "home"
        return "registered" if self.registered else "unregistered"

    def binding_info(self) -> dict[str, Any] | None:
        b = self._binding
        if b is None:
            return None
        return {
            "mode": b.attachment.mode,
            "care_of": b.attachment.care_of,
            "lifetime": b.lifetime,
            "expires": b.expires,
            "udp": b.udp,
            "keepalive": b.keepalive,
            "home_agent": b.home_agent,
        }

    # -- inputs: life cycle, links, addresses ----------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Begin: solicit agents (the driver reports links and addresses as they come)."""
        self._started = True
        started = Event("mn_started", {"home_address": self.config.home_address})
        return [started, *self._solicit(now, reset=True)]

    def link_up(self, iface: str, now: float) -> list[Action]:
        """L2 trigger: a (new) link is up -- solicit at once instead of waiting."""
        self._links.add(iface)
        self._links_reported = True
        # A new link: solicitations sent before it went nowhere, so the rate limit (which
        # protects the link from floods) starts afresh and the first one goes out at once.
        self._sol_last = -math.inf
        out: list[Action] = [Event("link_up", {"iface": iface})]
        return out + self._solicit(now, reset=True)

    def link_down(self, iface: str, now: float) -> list[Action]:
        """L2 trigger: forget agents and a co-located address learnt on ``iface``."""
        self._links.discard(iface)
        self._links_reported = True
        self._went_down[iface] = now
        out: list[Action] = [Event("link_down", {"iface": iface})]
        for addr in [a for a, info in self.agents.items() if info.iface == iface]:
            del self.agents[addr]
            self._forget_agent(addr)
            out.append(CancelTimer(T_AGENT + addr))
        if self._colocated is not None and self._colocated.iface == iface:
            self._colocated = None
        return out + self._reselect(now, "link_down")

    def address_acquired(
        self,
        address: str,
        prefix_len: int,
        gateway: str | None,
        now: float,
        iface: str | None = None,
    ) -> list[Action]:
        """A co-located care-of address (from DHCP, supplied by the driver)."""
        self._colocated = _Colocated(address, prefix_len, gateway, iface)
        out: list[Action] = [
            Event("address_acquired", {"address": address, "prefix_len": prefix_len})
        ]
        return out + self._reselect(now, "address_acquired")

    def address_lost(self, address: str, now: float) -> list[Action]:
        if self._colocated is None or self._colocated.address != address:
            return []
        self._colocated = None
        return [Event("address_lost", {"address": address}), *self._reselect(now, "address_lost")]

    def use_attachment(self, attachment: Attachment | None, now: float) -> list[Action]:
        """Override the automatic choice (e.g. a VPN mode); ``None`` returns to automatic."""
        self._override = attachment
        return self._reselect(now, "override")

    def set_home(
        self,
        now: float,
        *,
        home_address: str | None = None,
        home_agent: str | None = None,
        home_network: str | None = None,
    ) -> list[Action]:
        """Change home parameters; registers again if anything changed while registered."""
        changes: dict[str, Any] = {}
        if home_address is not None:
            changes["home_address"] = home_address
        if home_agent is not None:
            changes["home_agent"] = home_agent
            self.home_agent = home_agent
        if home_network is not None:
            changes["home_network"] = home_network
            self._home_net = ipaddress.IPv4Network(home_network, strict=False)
        if not changes:
            return []
        self.config = replace(self.config, **changes)
        self._binding = None  # made with the old parameters
        out = self._reselect(now, "home_changed")
        att = self._attachment
        if out or att is None or att.mode == Mode.HOME or self._shutdown or not self._started:
            return out
        return self._register(now, att, "home_changed")

    def deregister_from(self, attachment: Attachment, now: float) -> list[Action]:
        """One deregistration of ``attachment``'s binding (its care-of address, with the agent
        it was registered with), beside whatever registration is in progress: e.g. with a MIP
        proxy once the home agent answered directly. Sent once from whatever source routing
        picks; its reply is not awaited (a stale binding there would only expire)."""
        home_agent = attachment.home_agent or self.home_agent
        to = Send(b"", home_agent, MIP_PORT, None, self.config.local_port)
        p = self._reg.once(now, attachment, home_agent=home_agent, lifetime=0, reason="left", to=to)
        self.counters["requests_sent"] += 1
        return [
            replace(p.to, payload=p.payload),
            Event(
                "deregistration_sent",
                {
                    "binding_mode": attachment.mode,  # not "mode": that says where we are
                    "care_of": attachment.care_of,
                    "home_agent": p.home_agent,
                    "bytes": len(p.payload),
                },
            ),
        ]

    def shutdown(self, now: float) -> list[Action]:
        """Deregister the current binding (if any) and stop reacting to moves."""
        self._shutdown = True
        out: list[Action] = [
            CancelTimer(T_SOLICIT),
            CancelTimer(T_RENEW),
            CancelTimer(T_RETRY),
            CancelTimer(T_KEEPALIVE),
            Event("shutdown", {}),
        ]
        att = self._attachment
        if self._binding is not None and att is not None and att.mode != Mode.HOME:
            out += self._register(now, att, "shutdown", dereg=True)
        return out

    # -- inputs: messages ------------------------------------------------------------------

    def handle_icmp(
        self,
        payload: bytes,
        src: str,
        now: float,
        iface: str | None = None,
        *,
        received: float | None = None,
        dst: str | None = None,
    ) -> list[Action]:
        """An ICMP router discovery message; ``received``: when its frame arrived, if the
        driver knows (it may have waited in a socket while the link changed), else ``now``;
        ``dst``: its IP destination, if the driver knows it."""
        try:
            msg = decode_icmp(payload)
        except MalformedMessage as exc:
            # Includes unknown non-skippable extensions: discard the advertisement (RFC 5944
            # section 1.9).
            return self._drop(exc.reason, src)
        if isinstance(msg, AgentSolicitation):
            return []
        return self.handle_advertisement(msg, src, now, iface, received=received, dst=dst)

    def handle_advertisement(
        self,
        adv: AgentAdvertisement,
        src: str,
        now: float,
        iface: str | None = None,
        *,
        received: float | None = None,
        dst: str | None = None,
    ) -> list[Action]:
        if self._heard_before_link_went(iface, now if received is None else received):
            return self._drop("advertisement from before the link went down", src)
        if dst is not None and dst not in LINK_DESTINATIONS:
            # RFC 5944 2.1: sent to 224.0.0.1 or 255.255.255.255, which no router forwards;
            # one to a unicast address may come from anywhere (issue 20)
            return self._drop(f"advertisement to {dst}, not to the link", src)
        a = adv.agent
        if a is None:
            self.counters["plain_router_advertisements"] = (
                self.counters.get("plain_router_advertisements", 0) + 1
            )
            return []
        self.counters["advertisements"] += 1
        home = bool(a.flags & AdvFlag.H) and (
            src == self.home_agent or ipaddress.IPv4Address(src) in self._home_net
        )
        router = src
        prefix = None
        if adv.routers:
            idx = next((i for i, (r, _) in enumerate(adv.routers) if r == src), 0)
            router = adv.routers[idx][0]
            if adv.prefix_lengths is not None:
                prefix = ipaddress.IPv4Network(f"{router}/{adv.prefix_lengths[idx]}", strict=False)
        info = self.agents.get(src)
        out: list[Action] = []
        rebooted = False
        if info is None:
            fa = a.flags & AdvFlag.F and not a.flags & AdvFlag.B
            if not (home or (fa and a.care_of_addresses and a.registration_lifetime > 0)):
                # nothing for us now: neither our home agent nor a foreign agent that takes
                # registrations (RFC 5944 2.1.1: F with a care-of address, not busy, a
                # Registration Lifetime). Not entered: forged ones would fill the table and
                # keep a real agent out (issue 20); one that was busy enters once it is not.
                return self._drop("advertisement offers no service to us", src)
            if len(self.agents) >= MAX_AGENTS:
                return self._drop("agent table full", src)
            info = AgentInfo(
                src,
                iface,
                now + adv.lifetime,
                adv.lifetime,
                a.sequence,
                a.flags,
                a.registration_lifetime,
                list(a.care_of_addresses),
                router,
                prefix,
                adv.challenge,
                home,
                now,
            )
            self.agents[src] = info
            out.append(Event("agent_discovered", info.to_dict()))
        else:
            # RFC 5944 2.3.1: sequence numbers wrap to 256, so a value below 256 after one at
            # or above it means the agent restarted (and forgot its visitors).
            rebooted = a.sequence < 256 and (info.sequence >= 256 or a.sequence < info.sequence)
            info.iface = iface
            info.expires = now + adv.lifetime
            info.lifetime = adv.lifetime
            info.sequence = a.sequence
            info.flags = a.flags
            info.registration_lifetime = a.registration_lifetime
            info.care_of_addresses = list(a.care_of_addresses)
            info.router = router
            info.prefix = prefix
            info.challenge = adv.challenge
            info.home = home
            info.heard_at = now
        out.append(SetTimer(T_AGENT + src, info.expires))
        if info.usable_fa or info.home:
            out.append(CancelTimer(T_SOLICIT))

        reason = "agent_discovered"
        # Prefix-based move detection (RFC 5944 2.4.2.2): another agent on the same link
        # advertising a different prefix than the one we are registered through.
        cur = self.agents.get(self._fa) if self._fa else None
        if (
            cur is not None
            and cur.address != src
            and cur.iface == iface
            and cur.prefix is not None
            and prefix is not None
            and cur.prefix != prefix
            and (info.usable_fa or home)
        ):
            out += self._lose_agent(cur.address, "prefix_changed")
            reason = "prefix_changed"
        if rebooted:
            out.append(Event("agent_rebooted", {"address": src, "sequence": a.sequence}))
            att = self._attachment
            last = self._reboot_registered.get(src, -math.inf)
            if (
                att is not None
                and att.agent == src
                and not self._shutdown
                and now - last >= REBOOT_HOLDOFF
            ):
                self._reboot_registered[src] = now
                out += self._register(now, att, "agent_rebooted")
                return out
        return out + self._reselect(now, reason)

    def handle_datagram(
        self,
        payload: bytes,
        src: str,
        src_port: int,
        now: float,
        iface: str | None = None,
    ) -> list[Action]:
        """A datagram on our Mobile IP port (registration replies; tunnel data is counted)."""
        if not payload:
            return self._drop("empty datagram", src)
        if payload[0] == 4:
            self.counters["tunnel_data"] = self.counters.get("tunnel_data", 0) + 1
            return []
        if payload[0] != 3:
            return self._drop(f"message type {payload[0]} is not a registration reply", src)
        try:
            rep = decode_reply(payload)
        except MalformedMessage as exc:
            # An unknown non-skippable extension in a reply also lands here: silently
            # discarded (RFC 5944 section 1.9).
            return self._drop(exc.reason, src)
        self.counters["replies"] += 1
        self._reply_bytes = len(payload)  # for the events: signalling volume per handoff
        return self._on_reply(rep, payload, src, now)

    def handle_timer(self, name: str, now: float) -> list[Action]:
        if name == T_RETRANSMIT:
            return self._on_retransmit(now)
        if name == T_SOLICIT:
            if self._has_agent() or self._shutdown:
                return []
            return self._solicit(now)
        if name == T_RENEW:
            b = self._binding
            if (
                b is not None
                and b.attachment == self._attachment
                and self._reg.pending is None
                and not self._shutdown
            ):
                return self._register(now, b.attachment, "renewal")
            return []
        if name == T_EXPIRE:
            return self._on_binding_expired(now)
        if name == T_KEEPALIVE:
            return self._keepalive(now)
        if name == T_RETRY:
            att = self._attachment
            if (
                att is not None
                and att.mode != Mode.HOME
                and self._reg.pending is None
                and not self.registered
                and not self._shutdown
            ):
                return self._register(now, att, "retry")
            return []
        if name.startswith(T_AGENT):
            addr = name[len(T_AGENT) :]
            info = self.agents.get(addr)
            if info is None or info.expires > now:
                return []
            out = self._lose_agent(addr, "lifetime_expired")
            out += self._reselect(now, "agent_lost")
            if not self._has_agent():
                out += self._solicit(now, reset=True)
            return out
        return []

    # -- discovery -------------------------------------------------------------------------

    def _heard_before_link_went(self, iface: str | None, received: float) -> bool:
        """The frame arrived while ``iface`` was still on the link it has since lost: news of
        that link, not of the one it is on now. (No frame arrives while the carrier is off,
        so anything after the loss came from the new link.) Without an interface, any of our
        links' losses counts."""
        if iface is None:
            went = max(self._went_down.values(), default=-math.inf)
        else:
            went = self._went_down.get(iface, -math.inf)
        return received < went

    def _has_agent(self) -> bool:
        return any(i.usable_fa or i.home for i in self.agents.values())

    def _lose_agent(self, addr: str, reason: str) -> list[Action]:
        self.agents.pop(addr, None)
        self._forget_agent(addr)
        return [
            CancelTimer(T_AGENT + addr),
            Event("agent_lost", {"address": addr, "reason": reason}),
        ]

    def _forget_agent(self, addr: str) -> None:
        """What we learnt about an agent goes with it: a lifetime cap from its 69 denial (not
        authenticated, so it must not outlive the visit) and when it last rebooted."""
        if self._fa == addr:
            self._fa = None
        self._lifetime_cap.pop(addr, None)
        self._reboot_registered.pop(addr, None)

    def _solicit(self, now: float, reset: bool = False) -> list[Action]:
        """Send a solicitation if the rate limit allows, and arm the next one."""
        cfg = self.config
        if reset:
            self._sol_count = 0
        if self._links_reported and not self._links:
            return [CancelTimer(T_SOLICIT)]  # no link up: wait for link_up, which solicits
        earliest = self._sol_last + cfg.solicit_interval
        if now < earliest:
            return [SetTimer(T_SOLICIT, earliest)]
        payload = encode_icmp(AgentSolicitation())
        out: list[Action] = [
            Send(payload, ALL_ROUTERS, 0, iface=i, kind="icmp", ttl=1)
            for i in (sorted(self._links) or [None])
        ]
        self._sol_count += 1
        self._sol_last = now
        self.counters["solicitations"] += 1
        if self._sol_count < cfg.solicit_burst:
            gap = cfg.solicit_interval
        else:
            gap = min(
                cfg.solicit_interval * 2 ** (self._sol_count - cfg.solicit_burst + 1),
                cfg.solicit_max_interval,
            )
        out.append(SetTimer(T_SOLICIT, now + gap))
        out.append(Event("agent_solicitation_sent", {"count": self._sol_count}))
        return out

    def _select_fa(self) -> AgentInfo | None:
        cur = self.agents.get(self._fa) if self._fa else None
        if cur is not None and cur.usable_fa:
            return cur
        best = None
        for info in self.agents.values():
            if info.usable_fa and not info.home and (best is None or info.heard_at > best.heard_at):
                best = info
        self._fa = best.address if best else None
        return best

    def _desired(self) -> Attachment | None:
        if self._override is not None:
            return self._override
        cfg = self.config
        home = cfg.home_address
        for info in self.agents.values():
            if info.home:
                return Attachment(Mode.HOME, home, home, info.iface)
        col = self._colocated
        if col is not None and (
            col.address == home or ipaddress.IPv4Address(col.address) in self._home_net
        ):
            return Attachment(Mode.HOME, home, home, col.iface)
        fa = self._select_fa()
        if fa is not None:
            cap = self._lifetime_cap.get(fa.address)
            max_life = (
                fa.registration_lifetime if cap is None else min(cap, fa.registration_lifetime)
            )
            if col is not None and cfg.prefer == Mode.C:
                if fa.flags & AdvFlag.R:
                    # Registration required through the FA even with a co-located address.
                    return Attachment(
                        Mode.C,
                        care_of=col.address,
                        src=col.address,
                        iface=col.iface,
                        agent=fa.address,
                        colocated=True,
                        router=col.gateway,
                        max_lifetime=max_life,
                    )
                return Attachment(Mode.C, col.address, col.address, col.iface, None, True)
            return Attachment(
                Mode.F,
                care_of=fa.care_of_addresses[0],
                src=home,
                iface=fa.iface,
                agent=fa.address,
                router=fa.router,
                max_lifetime=max_life,
            )
        if col is not None:
            return Attachment(Mode.C, col.address, col.address, col.iface, None, True)
        return None

    def _reselect(self, now: float, reason: str) -> list[Action]:
        if self._shutdown or not self._started:
            return []
        desired = self._desired()
        old = self._attachment
        if desired == old:
            if desired is not None and old is not None and desired.max_lifetime != old.max_lifetime:
                self._attachment = desired
            return []
        self._attachment = desired
        out: list[Action] = [
            Event(
                "movement_detected",
                {
                    "from": old.mode if old else None,
                    "to": desired.mode if desired else None,
                    "care_of": desired.care_of if desired else None,
                    "agent": desired.agent if desired else None,
                    "reason": reason,
                },
            )
        ]
        out += self._reg.abandon()
        self._reg.resyncs = 0
        teardown = self._data_plane_for(desired)
        if desired is None:
            return out + teardown + self._solicit(now)
        if desired.mode == Mode.HOME:
            return out + teardown + self._arrive_home(now, desired)
        if desired.mode == Mode.F and not any(isinstance(a, Route) for a in teardown):
            # Through an FA the request leaves by the link, to the agent: an old tunnel's
            # routes and rules (on the TUN) cannot carry it, so it goes out before they are
            # taken down (a move from mode mc spends ~0.5 ms on that). An old default route
            # via another FA could: that teardown comes first.
            return out + self._register(now, desired, reason) + teardown
        return out + teardown + self._register(now, desired, reason)

    def _data_plane_for(self, att: Attachment | None) -> list[Action]:
        """Tear down what does not fit the new attachment (tunnel, default route via FA)."""
        out: list[Action] = []
        t = self._tunnel
        if t is not None and (att is None or not att.colocated or att.care_of != t.care_of):
            out.append(TunnelDown(t.home_address, t.care_of, t.peer, "mn"))
            self._tunnel = None
            out.append(CancelTimer(T_KEEPALIVE))
        r = self._route
        if r is not None and (att is None or att.router != r.via or att.mode != Mode.F):
            out.append(Route(r.prefix, r.via, r.iface, False))
            self._route = None
        return out

    def _arrive_home(self, now: float, att: Attachment) -> list[Action]:
        out: list[Action] = [
            GratuitousArp(self.config.home_address, att.iface),
            Event("returned_home", {"iface": att.iface}),
            CancelTimer(T_RENEW),
            CancelTimer(T_EXPIRE),
            CancelTimer(T_RETRY),
        ]
        first = not self._ever_home and not self._ever_registered
        self._ever_home = True
        if self._binding is not None or (first and self.config.deregister_at_boot):
            out += self._register(now, att, "returned_home", dereg=True)
        return out

    # -- registration ----------------------------------------------------------------------

    def _register(
        self, now: float, att: Attachment, reason: str, dereg: bool = False
    ) -> list[Action]:
        cfg = self.config
        lifetime = 0
        if not dereg:
            lifetime = cfg.lifetime
            if att.max_lifetime is not None:
                lifetime = min(lifetime, att.max_lifetime)
        home_agent = att.home_agent or self.home_agent
        to = Send(b"", att.agent or home_agent, MIP_PORT, att.src, cfg.local_port, att.iface)
        sent = self._reg.start(
            now,
            att,
            home_agent=home_agent,
            lifetime=lifetime,
            reason=reason,
            to=to,
            dereg=dereg,
            max_retransmissions=cfg.max_retransmissions,
        )
        return [CancelTimer(T_RETRY), *sent]

    def _build(self, p: Pending[Attachment]) -> bytes:
        cfg = self.config
        att = p.context
        flags = 0
        if p.dereg:
            care_of = cfg.home_address if att.mode == Mode.HOME else att.care_of
        else:
            care_of = att.care_of
            if cfg.simultaneous:
                flags |= RequestFlag.S
            if att.colocated:
                flags |= RequestFlag.D
            if cfg.reverse_tunnel:
                flags |= RequestFlag.T
        exts: list[Extension] = []
        if cfg.nai:
            exts.append(NaiExtension(cfg.nai))
        if not p.dereg and att.colocated and att.udp_allowed and cfg.udp_tunnel != "off":
            exts.append(
                UdpTunnelRequest(force=cfg.udp_tunnel == "force", via_fa=att.agent is not None)
            )
        req = RegistrationRequest(
            cfg.home_address, p.home_agent, care_of, p.identification, p.lifetime, int(flags), exts
        )
        data = append_auth(encode(req), ExtType.MN_HA_AUTH, self.sa)
        if att.agent is not None:
            # Extensions for the FA follow the MN-HA authenticator (RFC 5944 3.6.1.3).
            tail = b""
            if flags & RequestFlag.T and cfg.encapsulating_delivery and att.mode == Mode.F:
                tail += EncapDeliveryStyle().encode()
            info = self.agents.get(att.agent)
            if info is not None and info.challenge is not None:
                tail += ChallengeExtension(info.challenge).encode()
            data += tail
            mnfa = cfg.mn_fa_sas.get(att.agent)
            if mnfa is not None:
                data = append_auth(data, ExtType.MN_FA_AUTH, mnfa)
        return data

    def _announce(self, p: Pending[Attachment]) -> Event:
        """The event of each transmission (the client's ``announce``)."""
        att = p.context
        self.counters["requests_sent"] += 1
        data = {
            "mode": att.mode,
            "care_of": att.care_of,
            "agent": att.agent,
            "lifetime": p.lifetime,
            "identification": p.identification,
            "reason": p.reason,
            "attempt": p.attempt,
            "dereg": p.dereg,
            "bytes": len(p.payload),
            "to": att.agent or p.home_agent,
        }
        return Event("registration_sent" if p.attempt == 1 else "registration_retransmitted", data)

    def _on_retransmit(self, now: float) -> list[Action]:
        sent = self._reg.retransmit(now)
        if not isinstance(sent, GiveUp):
            return sent
        p = sent.pending
        out: list[Action] = [
            Event(
                "registration_failed",
                {"mode": p.context.mode, "attempts": p.attempt, "dereg": p.dereg},
            )
        ]
        if self.config.denied_retry is not None and not p.dereg:
            out.append(SetTimer(T_RETRY, now + self.config.denied_retry))
        return out

    def _on_reply(
        self, rep: RegistrationReply, payload: bytes, src: str, now: float
    ) -> list[Action]:
        p = self._reg.pending
        if p is None:
            return self._drop("no registration pending", src)
        if rep.home_address != self.config.home_address:
            return self._drop(f"reply for home address {rep.home_address}", src)
        agent = p.context.agent
        if denied_by_fa(rep.code) and rep.find(ExtType.MN_HA_AUTH) is None and src != agent:
            # A foreign agent's denial cannot carry an MN-HA authenticator (RFC 5944 3.6.2.1),
            # so it is believed only from the foreign agent the request went to: not on a
            # registration with no FA at all, not from anyone else (issue 20).
            why = "via no foreign agent" if agent is None else f"not from the foreign agent {agent}"
            return self._drop(f"unauthenticated foreign agent denial {why}", src)
        mn_fa = self.config.mn_fa_sas.get(agent) if agent else None
        answer = self._reg.handle_reply(rep, payload, mn_fa=mn_fa)
        if isinstance(answer, Dropped):
            return self._drop(answer.reason, src)
        if answer.outcome is Outcome.ACCEPTED:
            return self._accepted(answer, now)
        out: list[Action] = [CancelTimer(T_RETRANSMIT)]
        att, code = p.context, rep.code
        if answer.outcome is Outcome.RESYNC:
            out.append(Event("registration_resync", {"style": self.replay.style}))
            return out + self._register(now, att, "resync", p.dereg)
        if code == ReplyCode.FA_LIFETIME_TOO_LONG and agent and 0 < rep.lifetime < p.lifetime:
            self._lifetime_cap[agent] = rep.lifetime
            att = replace(att, max_lifetime=rep.lifetime)
            self._attachment = att
            return out + self._register(now, att, "lifetime_too_long", p.dereg)
        if (
            code == ReplyCode.HA_UNKNOWN_HA_ADDRESS
            and answer.verified
            and att.home_agent is None
            and rep.home_agent not in (p.home_agent, "0.0.0.0", "255.255.255.255")
        ):
            self.home_agent = rep.home_agent
            out.append(Event("home_agent_changed", {"home_agent": rep.home_agent}))
            return out + self._register(now, att, "home_agent_changed", p.dereg)
        out.append(
            Event(
                "registration_denied",
                {
                    "code": code,
                    "code_name": reply_code_name(code),
                    "by": "fa" if denied_by_fa(code) else "ha",
                    "mode": att.mode,
                    "care_of": att.care_of,
                    "dereg": p.dereg,
                    "bytes": self._reply_bytes,
                    "from": att.agent or p.home_agent,
                },
            )
        )
        if self.config.denied_retry is not None and not p.dereg and not self._shutdown:
            out.append(SetTimer(T_RETRY, now + self.config.denied_retry))
        return out

    def _accepted(self, answer: Answer[Attachment], now: float) -> list[Action]:
        p, rep, sent_at = answer.pending, answer.reply, answer.sent_at
        out: list[Action] = [CancelTimer(T_RETRANSMIT)]
        att = p.context
        latency = now - p.first_sent
        if p.dereg:
            self._binding = None
            out += [CancelTimer(T_RENEW), CancelTimer(T_EXPIRE), CancelTimer(T_KEEPALIVE)]
            out.append(Event("deregistered", {"latency": latency, "attempts": p.attempt}))
            return out
        granted = min(rep.lifetime, p.lifetime)
        utrp = None
        for ext in rep.authenticated_extensions():
            if isinstance(ext, UdpTunnelReply):
                utrp = ext
        udp = utrp is not None and utrp.code == 0
        keepalive = utrp.keepalive if udp and utrp is not None and utrp.keepalive else None
        infinite = granted == INFINITE_LIFETIME
        expires = math.inf if infinite else sent_at + granted
        self._binding = _Binding(att, granted, sent_at, expires, udp, keepalive, p.home_agent)
        self._ever_registered = True
        out.append(
            Event(
                "registration_accepted",
                {
                    "mode": att.mode,
                    "care_of": att.care_of,
                    "agent": att.agent,
                    "lifetime": granted,
                    "code": rep.code,
                    "identification": rep.identification,
                    "udp": udp,
                    "latency": latency,
                    "attempts": p.attempt,
                    "bytes": self._reply_bytes,
                    "from": att.agent or p.home_agent,
                    "reason": p.reason,
                },
            )
        )
        if infinite:
            out += [CancelTimer(T_RENEW), CancelTimer(T_EXPIRE)]
        elif granted == 0:
            out.append(SetTimer(T_EXPIRE, now))
        else:
            renew_at = sent_at + granted * self.config.renew_fraction
            if renew_at <= now:
                renew_at = now + (expires - now) / 2
            out += [SetTimer(T_RENEW, renew_at), SetTimer(T_EXPIRE, expires)]
        # Data plane: the mobile node is the tunnel end with a co-located address.
        if att.colocated:
            tunnel = TunnelUp(
                self.config.home_address,
                att.care_of,
                p.home_agent,
                att.care_of,
                "udp" if udp else "ipip",
                MIP_PORT if udp else None,
                self.config.reverse_tunnel,
                keepalive,
                "mn",
                att.iface,
                att.via_vpn,
            )
            if tunnel != self._tunnel:
                if self._tunnel is not None:
                    t = self._tunnel
                    out.append(TunnelDown(t.home_address, t.care_of, t.peer, "mn"))
                out.append(tunnel)
                self._tunnel = tunnel
        if att.mode == Mode.F and att.router is not None:
            route = Route("0.0.0.0/0", att.router, att.iface, True)
            if route != self._route:
                if self._route is not None:
                    r = self._route
                    out.append(Route(r.prefix, r.via, r.iface, False))
                out.append(route)
                self._route = route
        if keepalive:
            out.append(SetTimer(T_KEEPALIVE, now + keepalive))
        else:
            out.append(CancelTimer(T_KEEPALIVE))
        return out

    def _on_binding_expired(self, now: float) -> list[Action]:
        b = self._binding
        if b is None or b.expires > now:
            return []
        self._binding = None
        out: list[Action] = [Event("registration_expired", {"care_of": b.attachment.care_of})]
        t = self._tunnel
        if t is not None:
            out.append(TunnelDown(t.home_address, t.care_of, t.peer, "mn"))
            self._tunnel = None
        out.append(CancelTimer(T_KEEPALIVE))
        att = self._attachment
        if (
            att is not None
            and att.mode != Mode.HOME
            and self._reg.pending is None
            and not self._shutdown
        ):
            out += self._register(now, att, "expired")
        return out

    def _keepalive(self, now: float) -> list[Action]:
        """RFC 3519 keepalive: an ICMP echo request to the home agent inside the UDP tunnel."""
        b = self._binding
        if b is None or not b.udp or not b.keepalive:
            return []
        self._keepalive_seq += 1
        inner = build_ipv4(
            self.config.home_address,
            b.home_agent,
            1,
            icmp_echo_request(0x4D49, self._keepalive_seq),
            ttl=64,
            ident=self._keepalive_seq,
        )
        payload = encode(TunnelData(4, inner))
        return [
            Send(
                payload,
                b.home_agent,
                MIP_PORT,
                b.attachment.care_of,
                self.config.local_port,
                b.attachment.iface,
            ),
            SetTimer(T_KEEPALIVE, now + b.keepalive),
            # rare (every keepalive interval, 110 s by default): worth an event each
            Event(
                "keepalive_sent",
                {"to": b.home_agent, "seq": self._keepalive_seq, "care_of": b.attachment.care_of},
            ),
        ]

    def _drop(self, reason: str, src: str) -> list[Action]:
        self.counters["dropped"] += 1
        return [Event("message_dropped", {"reason": reason, "src": src})]
