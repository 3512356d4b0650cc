"""Home agent: binding cache and registration processing (RFC 5944 s. 3.8, RFC 3024, RFC 3519).

Sans-I/O: feed it datagrams received on UDP 434 (``handle_datagram``), ICMP router discovery
messages if it advertises (``handle_icmp``) and expired timers (``handle_timer``); it returns
:mod:`~agents.mip.actions` to carry out. Wall-clock time (for timestamp replay protection)
comes from the injected ``wallclock`` callable, randomness (nonces) from ``rand32``.

Checks on a Registration Request, in this order (the first failure decides the reply code):

====  =============================================================================
131   unknown mobile node, missing MN-HA authentication, unknown SPI, bad authenticator
132   FA-HA authentication required for the relaying FA and missing/bad
133   identification outside the replay window / not newer / wrong nonce; the reply
      carries the HA's time (or a fresh nonce) in the high 32 bits (RFC 5944 5.7)
129   the mobile node is configured ``allowed=False``
136   Home Agent field is not our address (the reply tells our unicast address)
134   poorly formed: unknown non-skippable extension, non-zero lifetime with care-of
      address = home address (or 0.0.0.0 / 255.255.255.255)
137   T bit set, reverse tunnelling not offered (RFC 3024)
138   reverse tunnelling mandatory and T bit clear (RFC 3024)
139   minimal (M) or GRE (G) encapsulation requested: only IP-in-IP here
142   UDP tunnelling needed (NAT detected or F flag) but not allowed/encapsulation
      other than IP-in-IP requested (RFC 3519)
135   simultaneous bindings requested beyond ``max_bindings``
130   binding cache full (``max_cache``)
====  =============================================================================

Accepted: code 0, or 1 when the S bit asked for simultaneous bindings that are disabled. The
granted lifetime is ``min(requested, max_lifetime)``. Only extensions *before* the MN-HA
authentication extension are acted on (nothing after it is covered by the authenticator).

NAT detection (RFC 3519 section 4.2): the request's IP source differs from its care-of
address. With a UDP Tunnel Request extension and a NAT (or the F flag), the binding tunnels in
UDP to the source address and port the request came from, and the reply carries a UDP Tunnel
Reply extension with the keepalive interval. Without that extension a NAT is only reported
(event ``nat_detected``): an FA may legitimately relay from an address other than its CoA.

What a denial carries (issue 20, signed denials). RFC 5944 3.6.2.1 has the mobile node
discard a home agent's reply without a valid MN-HA authenticator, so a denial means something
to it only when authenticated; but the authenticator is an HMAC with the mobile node's key over
the reply, whose Identification (low 32 bits) and Home Address the request chose. Before,
the HA computed one for every denial of a mobile node it knew, requests that failed MN-HA
authentication (131: missing, unknown SPI, bad authenticator) and unparsable ones (134)
included: anyone could have it sign a reply for an Identification of their choosing, e.g. a
future timestamp, and later hand that "authenticated" 131 to the mobile node to cut its
registration short (a signing oracle). Now a denial is authenticated only when the request it
answers passed MN-HA authentication (RFC 5944 3.8.2.1: the check comes first), i.e. when the
mobile node sent what is echoed: 131 never is (code 131 means exactly that the request did
not prove it came from the mobile node), 134 for an unknown extension only when the MN-HA
extension before it verifies; 129, 132-139, 142, 130 and 135 come after the check and are
(RFC 5944 3.8.3.1: the reply's MN-HA authenticator uses the mobility security association
with the mobile node). An unauthenticated denial still goes out (rate limited): a foreign
agent relaying the request clears its pending entry on it, and it tells a mobile node whose
key is misconfigured nothing it could trust, which is as it must be.

Denials are rate limited (issue 20, reflection): each one goes to the IP source the request
claimed, so without a limit the HA reflects whatever is sent to it at anyone. Beyond a token
bucket per destination (``reply_rate``/s, bursts of ``reply_burst``) and one for all
(``reply_total_rate``, ``reply_total_burst``; see :mod:`agents.mip.ratelimit` for the
defaults) a denial is decided and counted but not sent (its ``registration_denied`` event
says ``limited``). Accepted registrations are never limited.

Expiry: one heap of (deadline, home address, care-of address) and one timer at its top.
Before issue 20 every accepted request pushed an entry, renewals included, and the stale ones
stayed until their old deadline: a mobile node renewing every second with lifetime 600 kept
600 entries, and 98.5k re-signed renewals grew the HA by 21 MB. Now each (home address,
care-of address) has at most one live entry, its earliest deadline: a renewal that moves the
deadline later pushes nothing (the entry, when it comes up, finds the binding renewed and goes
back in at the new deadline), one that moves it earlier pushes the earlier one. The entries of
bindings removed before their deadline stay until it, and the heap is rebuilt from the live
bindings whenever it holds more than twice as many entries as bindings (+64) after a message,
a timer or a removal: its size is O(bindings) whatever the traffic.

Events: ``binding_added``, ``binding_updated``, ``binding_renewed``, ``binding_removed``
(``reason`` deregistered/replaced), ``binding_expired``, ``registration_denied``,
``nat_detected``, ``message_dropped``.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from agents.mip.actions import (
    Action,
    CancelTimer,
    Event,
    GratuitousArp,
    ProxyArp,
    Send,
    SetTimer,
    TunnelDown,
    TunnelUp,
)
from agents.mip.advert import Advertiser, AdvertisingInterface
from agents.mip.auth import SecurityAssociation, append_auth
from agents.mip.constants import (
    INFINITE_LIFETIME,
    MIP_PORT,
    UNSPECIFIED,
    AdvFlag,
    Encapsulation,
    ExtType,
    ReplyCode,
    RequestFlag,
)
from agents.mip.errors import MalformedMessage, UnknownExtension
from agents.mip.extensions import AuthExtension, NaiExtension, UdpTunnelReply, UdpTunnelRequest
from agents.mip.icmp import AgentSolicitation, decode_icmp
from agents.mip.ipv4 import aton
from agents.mip.messages import REPLY, RegistrationRequest, decode_request
from agents.mip.ratelimit import ReplyLimiter
from agents.mip.replay import HomeReplayState, check_request, default_rand32

__all__ = ["Binding", "HaConfig", "HomeAgent", "MobileNodeConfig"]

T_EXPIRE = "ha.expire"
_NOT_UNICAST = frozenset({"0.0.0.0", "255.255.255.255"})
_M32 = 0xFFFFFFFF
_S, _D, _M, _G, _T = (
    RequestFlag.S.value,
    RequestFlag.D.value,
    RequestFlag.M.value,
    RequestFlag.G.value,
    RequestFlag.T.value,
)


@dataclass(slots=True)
class MobileNodeConfig:
    """A mobile node this home agent serves: home address and the MN-HA security association.

    ``nai`` lets a request with home address 0.0.0.0 and an NAI extension (RFC 2794) be
    answered with this home address. ``max_lifetime`` overrides the agent-wide limit.
    """

    home_address: str
    spi: int
    key: bytes | str
    algorithm: str = "hmac-md5"
    replay: str = "timestamp"
    nai: str | None = None
    max_lifetime: int | None = None
    allowed: bool = True  # False: authenticated requests get 129 (administratively prohibited)

    def sa(self) -> SecurityAssociation:
        return SecurityAssociation(self.spi, self.key, self.algorithm, self.replay)  # type: ignore[arg-type]


@dataclass(slots=True)
class HaConfig:
    """Home agent configuration.

    ``replay_window``: how far (s) a timestamp Identification may be from our clock.
    ``simultaneous_bindings``: honour the S bit (up to ``max_bindings`` care-of addresses).
    ``udp_tunnelling`` / ``allow_forced_udp``: RFC 3519 support, and whether the F flag may
    force UDP without a NAT. ``keepalive_interval``: what the UDP Tunnel Reply tells the mobile
    node (RFC 3519 default 110 s). ``fa_sas``: FA-HA associations by FA address; a request
    relayed from such an address must carry a valid FA-HA extension (``require_fa_auth``
    demands it from every FA). ``max_cache``: bindings before code 130. ``advertise_on``: home
    links to send Agent Advertisements (H bit) on, so mobile nodes can detect they are home.
    ``reply_rate``/``reply_burst``: denials per second (and in a burst) to one address;
    ``reply_total_rate``/``reply_total_burst``: to all (``None`` rate: no limit).
    """

    address: str
    home_network: str
    mobile_nodes: list[MobileNodeConfig] = field(default_factory=list)
    # more home networks whose mobile nodes it serves (the MIP proxy's front, in front of
    # several home agents); the home link is home_network's
    other_home_networks: tuple[str, ...] = ()
    max_lifetime: int = 1800
    replay_window: float = 7.0
    simultaneous_bindings: bool = False
    max_bindings: int = 4
    reverse_tunneling: bool = True
    reverse_tunnel_required: bool = False
    udp_tunnelling: bool = True
    allow_forced_udp: bool = True
    keepalive_interval: int = 110
    fa_sas: dict[str, SecurityAssociation] = field(default_factory=dict)
    require_fa_auth: bool = False
    max_cache: int | None = None
    home_iface: str | None = None
    advertise_on: list[AdvertisingInterface] = field(default_factory=list)
    adv_interval: float = 1.0
    adv_flags: int = AdvFlag.H
    min_solicited_interval: float = 1.0
    reply_rate: float | None = 10.0
    reply_burst: float = 20.0
    reply_total_rate: float | None = 500.0
    reply_total_burst: float = 1000.0


@dataclass(slots=True)
class Binding:
    """One mobility binding: home address -> care-of address until ``expires`` (our clock).

    ``peer``/``peer_port``: where tunnelled packets go (differs from ``care_of`` for a UDP
    tunnel through a NAT). ``src``/``src_port``: where the last accepted request came from.
    """

    home_address: str
    care_of: str
    expires: float
    lifetime: int
    identification: int
    src: str
    src_port: int
    peer: str
    peer_port: int | None
    encapsulation: str  # "ipip" | "udp"
    reverse: bool
    flags: int
    registered_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "home_address": self.home_address,
            "care_of": self.care_of,
            "expires": self.expires,
            "lifetime": self.lifetime,
            "peer": self.peer,
            "peer_port": self.peer_port,
            "encapsulation": self.encapsulation,
            "reverse": self.reverse,
            "src": self.src,
            "src_port": self.src_port,
        }


@dataclass(slots=True)
class _MobileNode:
    home_address: str
    home_bytes: bytes
    sas: dict[int, SecurityAssociation]
    primary: SecurityAssociation
    style: str
    max_lifetime: int
    replay: HomeReplayState
    bindings: list[Binding]
    allowed: bool = True


class HomeAgent:
    """The home agent state machine. See the module docstring for the rules."""

    def __init__(
        self,
        config: HaConfig,
        *,
        wallclock: Callable[[], float],
        rand32: Callable[[], int] = default_rand32,
    ) -> None:
        self.config = config
        self._wall = wallclock
        self._rand32 = rand32
        self._addr_bytes = aton(config.address)
        self._home_net = ipaddress.IPv4Network(config.home_network, strict=False)
        self._served_nets = [self._home_net] + [
            ipaddress.IPv4Network(n, strict=False) for n in config.other_home_networks
        ]
        self._mns: dict[str, _MobileNode] = {}
        self._by_nai: dict[str, _MobileNode] = {}
        for mn in config.mobile_nodes:
            self.add_mobile_node(mn)
        self._heap: list[tuple[float, int, str, str]] = []
        self._heap_seq = 0
        # (home address, care-of address) -> the deadline of its live heap entry
        self._scheduled: dict[tuple[str, str], float] = {}
        self._armed: float | None = None
        self._n_bindings = 0
        self.counters: dict[str, int] = {
            "requests": 0,
            "accepted": 0,
            "denied": 0,
            "dropped": 0,
            "expired": 0,
            "rate_limited": 0,
        }
        self._limiter = ReplyLimiter(
            config.reply_rate,
            config.reply_burst,
            config.reply_total_rate,
            config.reply_total_burst,
        )
        self._now = 0.0  # of the datagram being handled (for the limiter)
        self.advertiser: Advertiser | None = None
        if config.advertise_on:
            self.advertiser = Advertiser(
                config.advertise_on,
                flags=config.adv_flags,
                registration_lifetime=min(config.max_lifetime, INFINITE_LIFETIME),
                interval=config.adv_interval,
                min_solicited_interval=config.min_solicited_interval,
                timer_prefix="ha",
            )

    # -- configuration ---------------------------------------------------------------------

    def add_mobile_node(self, mn: MobileNodeConfig) -> None:
        """Serve one more mobile node (its home address must be on a home network)."""
        if not any(ipaddress.IPv4Address(mn.home_address) in n for n in self._served_nets):
            served = ", ".join(map(str, self._served_nets))
            raise ValueError(f"home address {mn.home_address} not in {served}")
        sa = mn.sa()
        entry = _MobileNode(
            mn.home_address,
            aton(mn.home_address),
            {sa.spi: sa},
            sa,
            sa.replay,
            mn.max_lifetime if mn.max_lifetime is not None else self.config.max_lifetime,
            HomeReplayState(),
            [],
            mn.allowed,
        )
        self._mns[mn.home_address] = entry
        if mn.nai:
            self._by_nai[mn.nai] = entry

    # -- inspection ------------------------------------------------------------------------

    def bindings(self, home_address: str | None = None) -> list[Binding]:
        """Current bindings (of one mobile node, or all)."""
        if home_address is not None:
            mn = self._mns.get(home_address)
            return list(mn.bindings) if mn else []
        return [b for mn in self._mns.values() for b in mn.bindings]

    @property
    def binding_count(self) -> int:
        return self._n_bindings

    # -- inputs ----------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        return self.advertiser.start(now) if self.advertiser else []

    def handle_icmp(
        self, payload: bytes, src: str, now: float, iface: str | None = None
    ) -> list[Action]:
        """Agent Solicitations on an advertised home link get an advertisement."""
        if self.advertiser is None:
            return []
        try:
            msg = decode_icmp(payload)
        except MalformedMessage as exc:
            return self._drop(exc.reason, src)
        if isinstance(msg, AgentSolicitation):
            return self.advertiser.handle_solicitation(iface, now)
        return []

    def handle_timer(self, name: str, now: float) -> list[Action]:
        if name == T_EXPIRE:
            return self._expire(now)
        if self.advertiser is not None:
            out = self.advertiser.handle_timer(name, now)
            if out is not None:
                return out
        return []

    def handle_datagram(
        self,
        payload: bytes,
        src: str,
        src_port: int,
        now: float,
        iface: str | None = None,
    ) -> list[Action]:
        """A UDP-434 datagram from ``src``:``src_port`` (addresses as seen on the wire)."""
        self._now = now
        if not payload or payload[0] != 1:
            if payload and payload[0] == 4:
                # RFC 3519 tunnel data (incl. keepalives) belongs to the data plane.
                self.counters["tunnel_data"] = self.counters.get("tunnel_data", 0) + 1
                return []
            return self._drop("not a registration request", src)
        self.counters["requests"] += 1
        try:
            req = decode_request(payload)
        except UnknownExtension as exc:
            out = self._poorly_formed(exc, payload, src, src_port, now)
        except MalformedMessage as exc:
            return self._drop(exc.reason, src)
        else:
            # recorded on arrival, before any of its work (ladders draw it where it landed)
            received = Event(
                "registration_received",
                {
                    "src": src,
                    "home_address": req.home_address,
                    "care_of": req.care_of_address,
                    "identification": req.identification,
                    "lifetime": req.lifetime,
                    "bytes": len(payload),
                },
            )
            out = [received, *self._process(req, payload, src, src_port, now)]
        self._maybe_compact()  # (deregistrations leave entries behind)
        return self._answer_on_home_link(out, src, iface)

    def _answer_on_home_link(
        self, actions: list[Action], src: str, iface: str | None
    ) -> list[Action]:
        """A request that came over the home link from the home network (a mobile node back
        home, deregistering) is answered on that link. Routing would still send the reply
        into the binding's tunnel, whose host route goes only with the data-plane work that
        follows the reply: the tunnel engine, torn down by then, dropped it (tx_no_tunnel)
        and the MN deregistered on its retransmission, ~250 ms later (issue 15 b)."""
        home_link = self.config.home_iface
        if home_link is None or iface != home_link:
            return actions  # (one that came through a tunnel, from the home address, too)
        if ipaddress.IPv4Address(src) not in self._home_net:
            return actions
        return [
            replace(a, iface=iface) if isinstance(a, Send) and a.dst == src else a for a in actions
        ]

    # -- request processing ----------------------------------------------------------------

    def _process(
        self, req: RegistrationRequest, payload: bytes, src: str, src_port: int, now: float
    ) -> list[Action]:
        cfg = self.config
        home = req.home_address
        mn = self._mns.get(home)
        exts = req.extensions
        if mn is None and home == UNSPECIFIED:
            nai = req.find(ExtType.NAI)
            if isinstance(nai, NaiExtension):
                mn = self._by_nai.get(nai.nai)
        if mn is None:
            return self._deny(ReplyCode.HA_MN_AUTH_FAILED, req, None, src, src_port, "unknown mn")

        # 131: MN-HA authentication (RFC 5944 3.8.2.1). Find it and the FA-HA after it.
        mnha: AuthExtension | None = None
        idx = 0
        for idx, ext in enumerate(exts):  # noqa: B007 - idx used after the loop
            if ext.type == ExtType.MN_HA_AUTH:
                mnha = ext  # type: ignore[assignment]
                break
        if mnha is None:
            return self._deny(
                ReplyCode.HA_MN_AUTH_FAILED, req, mn, src, src_port, "missing MN-HA authentication"
            )
        sa = mn.sas.get(mnha.spi)
        if sa is None:
            return self._deny(
                ReplyCode.HA_MN_AUTH_FAILED, req, mn, src, src_port, f"unknown SPI {mnha.spi}"
            )
        if not sa.verify_extension(payload, mnha):
            return self._deny(
                ReplyCode.HA_MN_AUTH_FAILED, req, mn, src, src_port, "bad MN-HA authenticator", sa
            )

        # 132: FA-HA authentication when we share an SA with the relaying agent.
        fa_sa = cfg.fa_sas.get(src) if cfg.fa_sas else None
        if fa_sa is not None or cfg.require_fa_auth:
            faha = None
            for ext in exts[idx + 1 :]:
                if ext.type == ExtType.FA_HA_AUTH:
                    faha = ext
                    break
            if faha is None or fa_sa is None or faha.spi != fa_sa.spi:  # type: ignore[union-attr]
                return self._deny(
                    ReplyCode.HA_FA_AUTH_FAILED, req, mn, src, src_port, "FA-HA authentication", sa
                )
            if not fa_sa.verify_extension(payload, faha):  # type: ignore[arg-type]
                return self._deny(
                    ReplyCode.HA_FA_AUTH_FAILED,
                    req,
                    mn,
                    src,
                    src_port,
                    "bad FA-HA authenticator",
                    sa,
                )

        # 133: replay protection.
        ok, ident = check_request(
            mn.style,
            req.identification,
            mn.replay,
            wall=self._wall(),
            window=cfg.replay_window,
            rand32=self._rand32,
        )
        if mn.style == "nonce":
            # Every reply from here on carries this fresh nonce: it is the one to expect next.
            mn.replay.nonce = ident >> 32
        if not ok:
            return self._deny(
                ReplyCode.HA_IDENTIFICATION_MISMATCH,
                req,
                mn,
                src,
                src_port,
                "identification mismatch",
                sa,
                ident,
            )

        if not mn.allowed:
            return self._deny(
                ReplyCode.HA_ADMIN_PROHIBITED,
                req,
                mn,
                src,
                src_port,
                "administratively prohibited",
                sa,
                ident,
            )

        # 136: the request is not addressed to us by unicast address.
        if req.home_agent != cfg.address:
            return self._deny(
                ReplyCode.HA_UNKNOWN_HA_ADDRESS,
                req,
                mn,
                src,
                src_port,
                "unknown home agent address",
                sa,
                ident,
            )

        lifetime = req.lifetime
        flags = req.flags
        coa = req.care_of_address
        dereg = lifetime == 0
        if not dereg and (coa == mn.home_address or coa in _NOT_UNICAST):
            return self._deny(
                ReplyCode.HA_POORLY_FORMED_REQUEST,
                req,
                mn,
                src,
                src_port,
                f"care-of address {coa}",
                sa,
                ident,
            )

        utrq: UdpTunnelRequest | None = None
        if not dereg:
            if flags & _T and not cfg.reverse_tunneling:
                return self._deny(
                    ReplyCode.HA_REVERSE_TUNNEL_UNAVAILABLE,
                    req,
                    mn,
                    src,
                    src_port,
                    "reverse tunnel",
                    sa,
                    ident,
                )
            if not flags & _T and cfg.reverse_tunnel_required:
                return self._deny(
                    ReplyCode.HA_REVERSE_TUNNEL_MANDATORY,
                    req,
                    mn,
                    src,
                    src_port,
                    "reverse tunnel",
                    sa,
                    ident,
                )
            if flags & (_M | _G):
                return self._deny(
                    ReplyCode.HA_ENCAPSULATION_UNAVAILABLE,
                    req,
                    mn,
                    src,
                    src_port,
                    "encapsulation",
                    sa,
                    ident,
                )
            for ext in exts[:idx]:
                if ext.type == ExtType.UDP_TUNNEL_REQUEST:
                    utrq = ext  # type: ignore[assignment]
                    break

        # NAT detection (RFC 3519 section 4.2) and the UDP tunnelling decision.
        nat = src != coa
        udp = False
        actions: list[Action] = []
        if nat and not dereg:
            actions.append(
                Event(
                    "nat_detected",
                    {
                        "home_address": mn.home_address,
                        "care_of": coa,
                        "src": src,
                        "src_port": src_port,
                        "udp_requested": utrq is not None,
                    },
                )
            )
        if utrq is not None and (nat or utrq.force):
            if (
                not cfg.udp_tunnelling
                or (utrq.force and not nat and not cfg.allow_forced_udp)
                or utrq.encapsulation != Encapsulation.IPIP
            ):
                return self._deny(
                    ReplyCode.HA_UDP_ENCAPSULATION_UNAVAILABLE,
                    req,
                    mn,
                    src,
                    src_port,
                    "udp encapsulation",
                    sa,
                    ident,
                )
            udp = True

        if dereg:
            code = 0
            granted = 0
            actions += self._deregister(mn, coa, now)
        else:
            granted = lifetime if lifetime < mn.max_lifetime else mn.max_lifetime
            code = 0
            simultaneous = bool(flags & _S)
            if simultaneous and not cfg.simultaneous_bindings:
                code = 1  # accepted, simultaneous bindings unsupported (RFC 5944 3.4)
                simultaneous = False
            res = self._register(
                mn, req, granted, simultaneous, udp, src, src_port, ident, now, actions
            )
            if res:
                return self._deny(res, req, mn, src, src_port, "binding limits", sa, ident)

        mn.replay.last_accepted = req.identification
        self.counters["accepted"] += 1

        # Reply (RFC 5944 3.8.3): to the request's source address and port, from port 434.
        body = REPLY.pack(3, code, granted, mn.home_bytes, self._addr_bytes, ident)
        if udp:
            body += UdpTunnelReply(
                0, cfg.keepalive_interval, bool(utrq and utrq.force and not nat)
            ).encode()
        out = append_auth(body, ExtType.MN_HA_AUTH, sa)
        if fa_sa is not None:
            out = append_auth(out, ExtType.FA_HA_AUTH, fa_sa)
        actions += self._reply(out, code, mn.home_address, src, src_port, ident)
        return actions

    def _reply(
        self, out: bytes, code: int, home: str, src: str, src_port: int, ident: int
    ) -> list[Action]:
        """Send a reply (RFC 5944 3.8.3: to the request's source address and port, from
        port 434) and record that it went, with what pairs it with the MN's reception."""
        sent = {"to": src, "code": code, "home_address": home, "identification": ident}
        return [
            Event("registration_reply_sent", {**sent, "bytes": len(out)}),
            Send(out, src, src_port, self.config.address, MIP_PORT),
        ]

    def _register(
        self,
        mn: _MobileNode,
        req: RegistrationRequest,
        granted: int,
        simultaneous: bool,
        udp: bool,
        src: str,
        src_port: int,
        ident: int,
        now: float,
        actions: list[Action],
    ) -> int:
        """Create/refresh the binding; returns a denial code (135/130) or 0."""
        cfg = self.config
        coa = req.care_of_address
        flags = req.flags
        expires = now + granted if granted != INFINITE_LIFETIME else float("inf")
        bindings = mn.bindings
        current = None
        for b in bindings:
            if b.care_of == coa:
                current = b
                break
        if current is None:
            if simultaneous and len(bindings) >= cfg.max_bindings:
                return ReplyCode.HA_TOO_MANY_BINDINGS
            if (
                cfg.max_cache is not None
                and self._n_bindings - (0 if simultaneous else len(bindings)) >= cfg.max_cache
            ):
                return ReplyCode.HA_INSUFFICIENT_RESOURCES
        had_any = bool(bindings)
        if not simultaneous:
            for b in [b for b in bindings if b is not current]:
                self._remove(mn, b, "replaced", actions, keep_proxy=True)
        encap = "udp" if udp else "ipip"
        peer = src if udp else coa
        peer_port = src_port if udp else None
        reverse = bool(flags & _T)
        if current is not None:
            changed = (
                current.peer != peer
                or current.peer_port != peer_port
                or current.encapsulation != encap
                or current.reverse != reverse
            )
            current.expires = expires
            current.lifetime = granted
            current.identification = ident
            current.src = src
            current.src_port = src_port
            current.flags = flags
            if changed:
                current.peer, current.peer_port = peer, peer_port
                current.encapsulation, current.reverse = encap, reverse
                actions.append(self._tunnel_up(current))
                actions.append(Event("binding_updated", current.to_dict()))
            else:
                actions.append(
                    Event(
                        "binding_renewed",
                        {"home_address": mn.home_address, "care_of": coa, "src": src},
                    )
                )
        else:
            current = Binding(
                mn.home_address,
                coa,
                expires,
                granted,
                ident,
                src,
                src_port,
                peer,
                peer_port,
                encap,
                reverse,
                flags,
                now,
            )
            bindings.append(current)
            self._n_bindings += 1
            actions.append(self._tunnel_up(current))
            if not had_any:
                # First binding: intercept for the home address (RFC 5944 section 4.6).
                actions.append(ProxyArp(mn.home_address, True, cfg.home_iface))
                actions.append(GratuitousArp(mn.home_address, cfg.home_iface))
            actions.append(Event("binding_added", current.to_dict()))
        if expires != float("inf"):
            self._schedule(mn.home_address, coa, expires, actions)
        return 0

    def _schedule(self, home: str, coa: str, expires: float, actions: list[Action]) -> None:
        """Make sure the heap comes up for (home, coa) by ``expires`` (module docstring)."""
        key = (home, coa)
        at = self._scheduled.get(key)
        if at is not None and at <= expires:
            return  # that entry comes up first and puts the binding back at its deadline
        self._scheduled[key] = expires
        self._heap_seq += 1
        heapq.heappush(self._heap, (expires, self._heap_seq, home, coa))
        self._maybe_compact()
        if self._armed is None or expires < self._armed:
            self._armed = expires
            actions.append(SetTimer(T_EXPIRE, expires))

    def _maybe_compact(self) -> None:
        if len(self._heap) > 2 * self._n_bindings + 64:
            self._compact()

    def _compact(self) -> None:
        """The heap again from the live bindings' deadlines (the timer stays: it is never
        later than the earliest of them)."""
        self._scheduled = {
            (b.home_address, b.care_of): b.expires
            for mn in self._mns.values()
            for b in mn.bindings
            if b.expires != float("inf")
        }
        self._heap = [
            (at, seq, home, coa)
            for seq, ((home, coa), at) in enumerate(self._scheduled.items(), self._heap_seq + 1)
        ]
        self._heap_seq += len(self._heap)
        heapq.heapify(self._heap)

    def _tunnel_up(self, b: Binding) -> TunnelUp:
        return TunnelUp(
            b.home_address,
            b.care_of,
            b.peer,
            self.config.address,
            b.encapsulation,
            b.peer_port,
            b.reverse,
            self.config.keepalive_interval if b.encapsulation == "udp" else None,
            "ha",
        )

    def _remove(
        self,
        mn: _MobileNode,
        b: Binding,
        reason: str,
        actions: list[Action],
        keep_proxy: bool = False,
    ) -> None:
        mn.bindings.remove(b)
        self._n_bindings -= 1
        actions.append(TunnelDown(b.home_address, b.care_of, b.peer, "ha"))
        actions.append(
            Event(
                "binding_expired" if reason == "expired" else "binding_removed",
                {"home_address": b.home_address, "care_of": b.care_of, "reason": reason},
            )
        )
        if not mn.bindings and not keep_proxy:
            actions.append(ProxyArp(mn.home_address, False, self.config.home_iface))

    def _deregister(self, mn: _MobileNode, coa: str, now: float) -> list[Action]:
        """Lifetime 0: CoA = home address drops every binding, otherwise that one binding
        (RFC 5944 section 3.6.1.2)."""
        actions: list[Action] = []
        victims = [b for b in mn.bindings if coa == mn.home_address or b.care_of == coa]
        for b in victims:
            self._remove(mn, b, "deregistered", actions)
        return actions

    # -- denial ----------------------------------------------------------------------------

    def _deny(
        self,
        code: int,
        req: RegistrationRequest,
        mn: _MobileNode | None,
        src: str,
        src_port: int,
        reason: str,
        sa: SecurityAssociation | None = None,
        ident: int | None = None,
    ) -> list[Action]:
        """A denial reply, authenticated with ``sa``: the SA the request's MN-HA extension
        verified with, ``None`` when it did not (module docstring: never sign what the mobile
        node has not been shown to have sent)."""
        self.counters["denied"] += 1
        key = f"denied_{code}"
        self.counters[key] = self.counters.get(key, 0) + 1
        if code == ReplyCode.HA_MN_AUTH_FAILED:
            sa = None  # the request failed MN-HA authentication: nothing in it is the MN's
        home = mn.home_address if mn is not None else req.home_address
        # 136 tells the mobile node our unicast address (dynamic HA discovery); otherwise the
        # Home Agent field echoes the request.
        ha_field = (
            self.config.address if code == ReplyCode.HA_UNKNOWN_HA_ADDRESS else req.home_agent
        )
        body = REPLY.pack(
            3,
            code,
            0,
            aton(home),
            aton(ha_field),
            req.identification if ident is None else ident,
        )
        out = append_auth(body, ExtType.MN_HA_AUTH, sa) if sa is not None else body
        fa_sa = self.config.fa_sas.get(src) if self.config.fa_sas else None
        if fa_sa is not None:
            out = append_auth(out, ExtType.FA_HA_AUTH, fa_sa)
        data = {
            "home_address": home,
            "care_of": req.care_of_address,
            "code": code,
            "reason": reason,
            "src": src,
        }
        if not self._limiter.allow(src, self._now):
            self.counters["rate_limited"] += 1
            return [Event("registration_denied", {**data, "limited": True})]
        return [
            Event("registration_denied", data),
            *self._reply(
                out, code, home, src, src_port, req.identification if ident is None else ident
            ),
        ]

    def _poorly_formed(
        self, exc: UnknownExtension, payload: bytes, src: str, src_port: int, now: float
    ) -> list[Action]:
        req = exc.message
        if not isinstance(req, RegistrationRequest):
            return self._drop(exc.reason, src)
        mn = self._mns.get(req.home_address)
        # Authenticated only if an MN-HA extension before the unknown one verifies (what
        # follows an authenticator is not covered by it, RFC 5944 3.5.1); one after it cannot
        # be found without knowing the unknown extension's format.
        sa = None
        mnha = req.find(ExtType.MN_HA_AUTH) if mn is not None else None
        if isinstance(mnha, AuthExtension) and mn is not None:
            candidate = mn.sas.get(mnha.spi)
            if candidate is not None and candidate.verify_extension(payload, mnha):
                sa = candidate
        return self._deny(UnknownExtension.ha_code, req, mn, src, src_port, exc.reason, sa)

    def _drop(self, reason: str, src: str) -> list[Action]:
        self.counters["dropped"] += 1
        return [Event("message_dropped", {"reason": reason, "src": src})]

    # -- expiry ----------------------------------------------------------------------------

    def _expire(self, now: float) -> list[Action]:
        actions: list[Action] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, home, coa = heapq.heappop(heap)
            if self._scheduled.get((home, coa)) != at:
                continue  # superseded by an earlier entry for the same binding
            del self._scheduled[(home, coa)]
            mn = self._mns.get(home)
            if mn is None:
                continue
            for b in mn.bindings:
                if b.care_of != coa:
                    continue
                if b.expires <= now:
                    self.counters["expired"] += 1
                    self._remove(mn, b, "expired", actions)
                elif b.expires != float("inf"):  # renewed since: back in at its deadline
                    self._scheduled[(home, coa)] = b.expires
                    self._heap_seq += 1
                    heapq.heappush(heap, (b.expires, self._heap_seq, home, coa))
                break
        self._maybe_compact()
        heap = self._heap
        if heap:
            self._armed = heap[0][0]
            actions.append(SetTimer(T_EXPIRE, self._armed))
        else:
            self._armed = None
            actions.append(CancelTimer(T_EXPIRE))
        return actions

    def remove_binding(
        self, home_address: str, care_of: str | None = None, reason: str = "removed"
    ) -> list[Action]:
        """Drop the binding of ``home_address`` to ``care_of`` (every binding of that mobile
        node when ``None``) outside request processing, e.g. when a MIP proxy learns that the
        registration it relays was refused upstream. Emits ``TunnelDown`` and
        ``binding_removed`` (with ``reason``), and proxy ARP off after the last binding."""
        mn = self._mns.get(home_address)
        if mn is None:
            return []
        actions: list[Action] = []
        for b in [b for b in mn.bindings if care_of is None or b.care_of == care_of]:
            self._remove(mn, b, reason, actions)
        self._maybe_compact()
        return actions

    def clear(self, now: float) -> list[Action]:
        """Drop every binding (agent shutdown): tunnels down, proxy ARP off."""
        actions: list[Action] = []
        for mn in self._mns.values():
            for b in list(mn.bindings):
                self._remove(mn, b, "shutdown", actions)
        self._heap.clear()
        self._scheduled.clear()
        self._armed = None
        actions.append(CancelTimer(T_EXPIRE))
        return actions

    def mobile_nodes(self) -> Iterable[str]:
        return self._mns.keys()
