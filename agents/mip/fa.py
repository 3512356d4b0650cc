"""Foreign agent: advertisements, relaying, visitor list (RFC 5944 s. 3.7, RFC 3024, RFC 3012).

Sans-I/O like the others: ``handle_datagram`` for UDP 434 (requests from visiting mobile nodes
on an advertising interface, replies from home agents), ``handle_icmp`` for solicitations,
``handle_timer`` for timers; all return :mod:`~agents.mip.actions`.

A request from a mobile node is checked (first failure decides, RFC 5944 section 3.7.2.1):

====  =======================================================================
67    MN-FA authentication required (SA with this home address or
      ``require_mn_auth``) and missing/bad
105   challenges advertised and none in the request (RFC 3012)
104   unknown challenge;  106 stale challenge (issued, out of window)
70    poorly formed (unknown non-skippable extension)
69    lifetime above what we advertise (reply lifetime = our maximum)
72    minimal or GRE encapsulation requested
77    care-of address not ours (unless D: co-located via FA, RFC 5944 3.7.2.1)
74    T bit, reverse tunnelling not offered;  75 mandatory and T clear
79    Encapsulating Delivery Style without T, or not supported (RFC 3024)
66    ``max_visitors`` reached; too many pending requests (below)
194   Home Agent field not a remote host's unicast address (below)
====  =======================================================================

No relaying to a home agent address that is not one remote host's (issue 20: the FA relayed
unauthenticated requests to 255.255.255.255, so anyone on the visited link could have it
broadcast or multicast, or send to its own or a loopback address): broadcast (limited, or a
served link's directed broadcast), multicast, loopback, unspecified (0.0.0.0: dynamic home
agent assignment, RFC 4433, which this FA does not do), reserved (240/4) and our own addresses
are denied with 194, "Invalid Home Agent Address", the FA's code for it (RFC 5944 3.4 lists it
among the foreign agent's; 136, "unknown home agent address", is the home agent's own, from
the range 128-192 that a mobile node may only take authenticated, and 64 "reason unspecified"
would tell the mobile node nothing it could act on). A co-located care-of address (D) must
be a remote host's unicast address too (77 otherwise).

Replies we send toward mobile nodes that are not acceptances (our own denials, the 78 of a
timeout, a home agent's denial relayed) go to the source address a request claimed, so they
are rate limited per destination and in all like the home agent's (:mod:`agents.mip.ratelimit`,
``reply_rate``, ``reply_burst``, ``reply_total_rate``, ``reply_total_burst``): beyond them the
reply is not sent and its event says ``limited``. Relayed acceptances are never limited.

Valid requests are relayed to the home agent unchanged up to and including the MN-HA
authentication extension (RFC 5944 3.7.2.2: the FA must not modify that part); what followed
it (MN-FA challenge/authentication, delivery style) is for us and is cut, and an FA-HA
authentication extension is appended when we share an SA with that home agent. Replies are
matched on home address and the low 32 bits of the Identification (RFC 5944 3.7.3.1: the high
bits change in 133 replies), FA-HA-checked (68), cut after the MN-HA extension, given an MN-FA
extension when we share an SA with the mobile node, and relayed to the mobile node's link. No
reply within ``pending_timeout``: 78 to the mobile node.

A pending request that times out while a newer one from the same mobile node (a
retransmission) is still pending is dropped silently instead.

Pending requests cost nothing to create (no authentication is needed to make one: any request
with our care-of address and a home address of the sender's choosing), so they are bounded
and cheap to expire (issue 20). They are kept in one dict keyed by (home address, low 32 bits
of the Identification), in arrival order; the timeout is the same for all, so that is also
expiry order, and one timer (``fa.pending``) armed at the oldest one's deadline expires them
from the front: O(1) per request, one driver timer however many are pending (before, a timer
each, found by scanning every pending request by name and scanned again for a newer one from
the same mobile node: quadratic, 20k requests took 10 s to expire). A count per home address
answers "is a newer one pending" without a scan. Two limits:

- ``max_pending_per_home``: a request for a home address that already has that many pending
  is refused with 66 (insufficient resources, RFC 5944 3.4) and a ``pending_limit`` event. A
  mobile node's own retransmissions within ``pending_timeout`` are at most 5 with the default
  back-off (0.25 s doubling), so only a sender that makes up requests reaches 8.
- ``max_pending`` in all: when it is reached, a new request takes the place of the oldest
  pending one (``request_evicted``; the evicted one gets no reply, like a lost packet, and its
  mobile node retransmits), as a SYN cache does. Refusing new requests instead would let a
  flood of made-up home addresses (one sender, any rate above ``max_pending`` per
  ``pending_timeout``) keep every new mobile node out for as long as it lasts, and answer
  every flood packet with a 66 to whatever source it claimed; evicting the oldest keeps a
  genuine request pending for as long as ``max_pending`` newer ones take to arrive (4096 at
  the 2.2k/s of issue 20: ~1.9 s, far more than a home agent's round trip), and the flood's
  entries, the oldest, go first.

Link-layer sources (RFC 5944 4.6): a visitor's home address is not on the visited link, the
FA must not ARP for it, so it takes the mobile node's MAC from its Registration Request. The
driver reads requests from a packet socket too and asks ``handle_link_request`` whether one
may enter its source as a neighbour (a ``Neighbour`` action); before issue 20 any datagram to
port 434 did, a spoofed one-byte frame included, so anyone on the link could point the FA's
entry for any address at their own MAC. Now only a request that parses, sent to one of our
addresses on an advertising interface, registering our care-of address (D clear), whose IP
source is its home address (the address learned) and passes MN-FA authentication where that
is required; never an address that is not one remote host's (loopback, multicast, broadcast,
unspecified, reserved), one of ours, or one on a served link (those answer ARP; learning them
would let a sender redirect what the FA sends to its router), nor a multicast MAC. A current
visitor's entry changes only when the home agent accepts a registration that came from the
new MAC (the accepted request's frame; two MACs for one request: neither).

Events: ``request_relayed``, ``request_superseded``, ``reply_relayed``,
``registration_denied``, ``visitor_added``, ``visitor_updated``, ``visitor_removed``,
``visitor_expired``, ``message_dropped``, ``pending_limit``, ``request_evicted``.
"""

from __future__ import annotations

import ipaddress
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.mip.actions import (
    Action,
    CancelTimer,
    Event,
    Neighbour,
    Route,
    Send,
    SetTimer,
    TunnelDown,
    TunnelUp,
)
from agents.mip.advert import Advertiser, AdvertisingInterface
from agents.mip.auth import SecurityAssociation, append_auth
from agents.mip.constants import (
    ALL_SYSTEMS,
    INFINITE_LIFETIME,
    MIP_PORT,
    AdvFlag,
    ExtType,
    ReplyCode,
    RequestFlag,
)
from agents.mip.errors import MalformedMessage, UnknownExtension
from agents.mip.extensions import AuthExtension, ChallengeExtension
from agents.mip.icmp import AgentSolicitation, decode_icmp
from agents.mip.ipv4 import aton, not_unicast
from agents.mip.messages import (
    REPLY,
    RegistrationReply,
    RegistrationRequest,
    decode_reply,
    decode_request,
)
from agents.mip.ratelimit import ReplyLimiter

__all__ = ["FaConfig", "FaInterface", "ForeignAgent", "Visitor"]

_M32 = 0xFFFFFFFF
T_PENDING = "fa.pending"  # the one timer of every pending request (the oldest one's deadline)


def _multicast_mac(mac: str) -> bool:
    """A group (multicast or broadcast) link-layer address: the I/G bit of its first octet;
    an unreadable one counts as such."""
    try:
        return bool(int(mac[:2], 16) & 1) or mac == "00:00:00:00:00:00"
    except ValueError:
        return True


def _default_challenge() -> bytes:
    return os.urandom(8)


@dataclass(slots=True)
class FaInterface:
    """A link where the foreign agent serves visitors: interface name, our address on it and
    the prefix length (advertised in the Prefix-Lengths extension for move detection)."""

    name: str
    address: str
    prefix_len: int = 24


@dataclass(slots=True)
class FaConfig:
    """Foreign agent configuration.

    ``care_of_address``: the CoA we offer and the address we relay from (the home agent's
    tunnel peer). ``adv_lifetime``: ICMP lifetime of our advertisements (default 3 x
    ``adv_interval``). ``registration_lifetime``: longest registration we accept (advertised).
    Flags advertised: R ``registration_required``, B ``busy``, T ``reverse_tunneling``, U
    ``udp_tunnelling`` (advertised only; UDP tunnelling is between mobile node and home agent
    here). ``mn_sas``: MN-FA SAs by home address; ``ha_sas``: FA-HA SAs by home agent address.
    ``challenge``: include RFC 3012 challenges and require them back. ``max_pending``:
    pending requests in all before the oldest makes room for a new one;
    ``max_pending_per_home``: pending requests for one home address before 66 (``None``: no
    limit; see the module docstring). ``reply_rate``/``reply_burst``: replies other than
    acceptances per second (and in a burst) to one address; ``reply_total_*``: to all.
    """

    care_of_address: str
    interfaces: list[FaInterface]
    adv_interval: float = 1.0
    adv_lifetime: int | None = None
    registration_lifetime: int = 1800
    registration_required: bool = False
    busy: bool = False
    reverse_tunneling: bool = True
    reverse_tunnel_required: bool = False
    encapsulating_delivery: bool = True
    udp_tunnelling: bool = False
    max_visitors: int | None = None
    mn_sas: dict[str, SecurityAssociation] = field(default_factory=dict)
    require_mn_auth: bool = False
    ha_sas: dict[str, SecurityAssociation] = field(default_factory=dict)
    challenge: bool = False
    challenge_window: int = 2
    pending_timeout: float = 7.0
    max_pending: int | None = 4096
    max_pending_per_home: int | None = 8
    reply_rate: float | None = 10.0
    reply_burst: float = 20.0
    reply_total_rate: float | None = 500.0
    reply_total_burst: float = 1000.0
    adv_dst: str = ALL_SYSTEMS
    min_solicited_interval: float = 1.0
    advertise: bool = True

    def flags(self) -> int:
        f = AdvFlag.F
        if self.registration_required:
            f |= AdvFlag.R
        if self.busy:
            f |= AdvFlag.B
        if self.reverse_tunneling:
            f |= AdvFlag.T
        if self.udp_tunnelling:
            f |= AdvFlag.U
        return int(f)


@dataclass(slots=True)
class _RelayedRequest:
    """A Registration Request relayed to the home agent and waiting for its reply (a
    "pending request" above): what relaying the reply, or 78 at ``expires``, needs."""

    home_address: str
    home_agent: str
    low_ident: int
    identification: int
    mn_src: str
    mn_port: int
    iface: str | None
    lifetime: int
    care_of: str
    flags: int
    expires: float

    @property
    def key(self) -> tuple[str, int]:
        return (self.home_address, self.low_ident)


@dataclass(slots=True)
class Visitor:
    """A visiting mobile node with an accepted registration through us."""

    home_address: str
    home_agent: str
    iface: str | None
    mn_port: int
    care_of: str
    expires: float
    lifetime: int
    reverse: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "home_address": self.home_address,
            "home_agent": self.home_agent,
            "iface": self.iface,
            "care_of": self.care_of,
            "expires": self.expires,
            "lifetime": self.lifetime,
            "reverse": self.reverse,
        }


class ForeignAgent:
    """The foreign agent state machine. See the module docstring for the rules."""

    def __init__(
        self,
        config: FaConfig,
        *,
        challenge_source: Callable[[], bytes] | None = None,
    ) -> None:
        self.config = config
        self._ifaces = {i.name: i for i in config.interfaces}
        # (home address, low 32 bits of the Identification) -> request, oldest first
        self._pending: dict[tuple[str, int], _RelayedRequest] = {}
        self._pending_per_home: dict[str, int] = {}
        self._pending_timer: float | None = None  # when fa.pending is armed for
        self.visitors: dict[str, Visitor] = {}
        # link-layer learning (module docstring)
        self._own = {config.care_of_address, *(i.address for i in config.interfaces)}
        self._links = [
            ipaddress.IPv4Network(f"{i.address}/{i.prefix_len}", strict=False)
            for i in config.interfaces
        ]
        self._visitor_macs: dict[str, str] = {}  # home address -> MAC of its accepted request
        # (home address, low Identification) -> MAC its request came from ("" for two MACs)
        self._request_macs: OrderedDict[tuple[str, int], str] = OrderedDict()
        self.counters: dict[str, int] = {
            "requests": 0,
            "relayed": 0,
            "replies": 0,
            "denied": 0,
            "dropped": 0,
            "pending_refused": 0,
            "pending_evicted": 0,
            "link_learned": 0,
            "link_ignored": 0,
            "rate_limited": 0,
        }
        self._limiter = ReplyLimiter(
            config.reply_rate,
            config.reply_burst,
            config.reply_total_rate,
            config.reply_total_burst,
        )
        self._now = 0.0  # of the message or timer being handled (for the limiter)
        self.advertiser = Advertiser(
            [
                AdvertisingInterface(i.name, i.address, i.prefix_len, [config.care_of_address])
                for i in config.interfaces
            ],
            flags=config.flags(),
            registration_lifetime=config.registration_lifetime,
            interval=config.adv_interval,
            lifetime=config.adv_lifetime,
            dst=config.adv_dst,
            min_solicited_interval=config.min_solicited_interval,
            challenge_source=(challenge_source or _default_challenge) if config.challenge else None,
            challenge_window=config.challenge_window,
            timer_prefix="fa",
        )

    # -- inputs ----------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        return self.advertiser.start(now) if self.config.advertise else []

    def handle_icmp(
        self, payload: bytes, src: str, now: float, iface: str | None = None
    ) -> list[Action]:
        try:
            msg = decode_icmp(payload)
        except MalformedMessage as exc:
            return self._drop(exc.reason, src)
        if isinstance(msg, AgentSolicitation):
            return self.advertiser.handle_solicitation(iface, now)
        return []  # other agents' advertisements: nothing to do

    def handle_timer(self, name: str, now: float) -> list[Action]:
        self._now = now
        if name == T_PENDING:
            return self._expire_pending(now)
        if name.startswith("fa.visitor."):
            v = self.visitors.get(name[len("fa.visitor.") :])
            if v is not None and v.expires <= now:
                return self._remove_visitor(v, "visitor_expired")
            return []
        out = self.advertiser.handle_timer(name, now)
        return out or []

    def handle_datagram(
        self,
        payload: bytes,
        src: str,
        src_port: int,
        now: float,
        iface: str | None = None,
    ) -> list[Action]:
        self._now = now
        if not payload:
            return self._drop("empty datagram", src)
        t = payload[0]
        if t == 1:
            return self._on_request(payload, src, src_port, now, iface)
        if t == 3:
            return self._on_reply(payload, src, now)
        return self._drop(f"message type {t} not for a foreign agent", src)

    def handle_link_request(
        self, payload: bytes, src: str, dst: str, mac: str, iface: str, now: float
    ) -> list[Action]:
        """A UDP-434 datagram seen at the link layer: IP source ``src`` and destination
        ``dst``, from link-layer address ``mac`` on ``iface``. Returns ``[Neighbour]`` when
        its source may be entered at ``mac`` (module docstring), else nothing; the datagram
        itself is handled (and counted) when it comes through ``handle_datagram``."""
        if self._link_source(payload, src, dst, mac, iface):
            pinned = self._visitor_macs.get(src)
            if pinned is None or pinned == mac:
                self.counters["link_learned"] += 1
                return [Neighbour(src, mac, iface)]
        self.counters["link_ignored"] += 1
        return []

    def _link_source(self, payload: bytes, src: str, dst: str, mac: str, iface: str) -> bool:
        if iface not in self._ifaces or dst not in self._own or payload[:1] != b"\x01":
            return False
        if _multicast_mac(mac):
            return False
        try:
            req = decode_request(payload)
        except MalformedMessage:
            return False
        if (
            src != req.home_address
            or req.flags & RequestFlag.D
            or req.care_of_address != self.config.care_of_address
            or not_unicast(src) is not None
            or src in self._own
        ):
            return False
        address = ipaddress.IPv4Address(src)
        if any(address in link for link in self._links):
            return False
        if self._mn_fa_failure(req, payload) is not None:
            return False
        key = (src, req.identification & _M32)
        seen = self._request_macs.get(key)
        self._request_macs[key] = mac if seen in (None, mac) else ""
        self._request_macs.move_to_end(key)
        while len(self._request_macs) > max(1024, self.config.max_pending or 0):
            self._request_macs.popitem(last=False)
        return True

    def _mn_fa_failure(self, req: RegistrationRequest, payload: bytes) -> str | None:
        """Why ``req`` fails MN-FA authentication (RFC 5944 3.7.2.1: an SA with its home
        address, or ``require_mn_auth``), ``None`` when it passes or none is required."""
        cfg = self.config
        mn_sa = cfg.mn_sas.get(req.home_address)
        if mn_sa is None and not cfg.require_mn_auth:
            return None
        after = req.extensions
        for i, ext in enumerate(after):
            if ext.type == ExtType.MN_HA_AUTH:
                after = after[i + 1 :]
                break
        else:
            after = []
        mnfa = next((e for e in after if e.type == ExtType.MN_FA_AUTH), None)
        if not isinstance(mnfa, AuthExtension) or mn_sa is None or mnfa.spi != mn_sa.spi:
            return "MN-FA authentication"
        if not mn_sa.verify_extension(payload, mnfa):
            return "bad MN-FA authenticator"
        return None

    # -- requests from mobile nodes --------------------------------------------------------

    def _on_request(
        self, payload: bytes, src: str, src_port: int, now: float, iface: str | None
    ) -> list[Action]:
        self.counters["requests"] += 1
        if iface is not None and iface not in self._ifaces:
            return self._drop(f"request on non-advertising interface {iface}", src)
        try:
            req = decode_request(payload)
        except UnknownExtension as exc:
            if isinstance(exc.message, RegistrationRequest):
                return self._deny(exc.fa_code, exc.message, src, src_port, iface, exc.reason)
            return self._drop(exc.reason, src)
        except MalformedMessage as exc:
            return self._drop(exc.reason, src)
        cfg = self.config
        exts = req.extensions
        mnha_end = None
        for ext in exts:
            if ext.type == ExtType.MN_HA_AUTH:
                mnha_end = ext.offset + 2 + 4 + len(ext.authenticator or b"")  # type: ignore[union-attr]
                break

        # 67: MN-FA authentication (RFC 5944 3.7.2.1), over everything before its SPI.
        failure = self._mn_fa_failure(req, payload)
        if failure is not None:
            return self._deny(67, req, src, src_port, iface, failure)

        # 104-106: RFC 3012 challenges.
        if cfg.challenge:
            ch = next((e for e in exts if e.type == ExtType.MN_FA_CHALLENGE), None)
            if not isinstance(ch, ChallengeExtension):
                return self._deny(105, req, src, src_port, iface, "missing challenge")
            status = self.advertiser.challenge_status(iface, ch.challenge)
            if status == "stale":
                return self._deny(106, req, src, src_port, iface, "stale challenge")
            if status != "current":
                return self._deny(104, req, src, src_port, iface, "unknown challenge")

        flags = req.flags
        if req.lifetime > cfg.registration_lifetime:
            return self._deny(
                69, req, src, src_port, iface, "lifetime too long", cfg.registration_lifetime
            )
        if flags & (RequestFlag.M | RequestFlag.G):
            return self._deny(72, req, src, src_port, iface, "encapsulation unavailable")
        colocated = bool(flags & RequestFlag.D)
        if not colocated and req.care_of_address != cfg.care_of_address:
            return self._deny(77, req, src, src_port, iface, "invalid care-of address")
        if colocated and self._not_remote_host(req.care_of_address):
            return self._deny(77, req, src, src_port, iface, "invalid care-of address")
        why = self._not_remote_host(req.home_agent)
        if why is not None:
            return self._deny(
                ReplyCode.FA_INVALID_HOME_AGENT, req, src, src_port, iface, f"home agent {why}"
            )
        dereg = req.lifetime == 0
        reverse = bool(flags & RequestFlag.T)
        if not dereg:
            if reverse and not cfg.reverse_tunneling:
                return self._deny(74, req, src, src_port, iface, "reverse tunnel unavailable")
            if not reverse and cfg.reverse_tunnel_required and not colocated:
                return self._deny(75, req, src, src_port, iface, "reverse tunnel mandatory")
            if any(e.type == ExtType.ENCAP_DELIVERY_STYLE for e in exts) and (
                not reverse or not cfg.encapsulating_delivery
            ):
                return self._deny(79, req, src, src_port, iface, "delivery style")
            if (
                cfg.max_visitors is not None
                and req.home_address not in self.visitors
                and len(self.visitors) >= cfg.max_visitors
            ):
                return self._deny(66, req, src, src_port, iface, "too many visitors")

        # Room for one more pending request (module docstring).
        actions: list[Action] = []
        key = (req.home_address, req.identification & _M32)
        if key not in self._pending:
            home_count = self._pending_per_home.get(req.home_address, 0)
            limit = cfg.max_pending_per_home
            if limit is not None and home_count >= limit:
                return self._refuse("per_home", limit, home_count, req, src, src_port, iface)
            limit = cfg.max_pending
            if limit is not None and len(self._pending) >= limit:
                if not self._pending:  # max_pending 0
                    return self._refuse("total", limit, 0, req, src, src_port, iface)
                oldest = next(iter(self._pending.values()))
                self._forget(oldest)
                self.counters["pending_evicted"] += 1
                actions.append(
                    Event(
                        "request_evicted",
                        {"home_address": oldest.home_address, "for": req.home_address},
                    )
                )

        # Relay: unchanged through the MN-HA extension, then our FA-HA extension (if any).
        out = payload if mnha_end is None else payload[:mnha_end]
        ha_sa = cfg.ha_sas.get(req.home_agent)
        if ha_sa is not None:
            out = append_auth(out, ExtType.FA_HA_AUTH, ha_sa)
        p = _RelayedRequest(
            req.home_address,
            req.home_agent,
            req.identification & _M32,
            req.identification,
            src,
            src_port,
            iface,
            req.lifetime,
            req.care_of_address,
            flags,
            now + cfg.pending_timeout,
        )
        old = self._pending.get(p.key)
        if old is not None:  # the same request again: it waits from now on
            self._forget(old)
        self._pending[p.key] = p
        self._pending_per_home[p.home_address] = self._pending_per_home.get(p.home_address, 0) + 1
        self.counters["relayed"] += 1
        actions.append(Send(out, req.home_agent, MIP_PORT, cfg.care_of_address, MIP_PORT))
        if self._pending_timer is None:
            self._pending_timer = p.expires
            actions.append(SetTimer(T_PENDING, p.expires))
        actions += [
            Event(
                "request_relayed",
                {
                    "home_address": req.home_address,
                    "home_agent": req.home_agent,
                    "care_of": req.care_of_address,
                    "lifetime": req.lifetime,
                },
            ),
        ]
        return actions

    # -- replies from home agents ----------------------------------------------------------

    def _on_reply(self, payload: bytes, src: str, now: float) -> list[Action]:
        self.counters["replies"] += 1
        try:
            rep = decode_reply(payload)
            poorly = None
        except UnknownExtension as exc:
            if not isinstance(exc.message, RegistrationReply):
                return self._drop(exc.reason, src)
            rep, poorly = exc.message, exc.reason
        except MalformedMessage as exc:
            return self._drop(exc.reason, src)
        p = self._pending.get((rep.home_address, rep.identification & _M32))
        if p is None:
            return self._drop("reply matches no pending request", src)
        cfg = self.config
        if poorly is not None:
            return self._deny_pending(p, 71, poorly)

        ha_sa = cfg.ha_sas.get(p.home_agent)
        if ha_sa is not None:
            faha = rep.find(ExtType.FA_HA_AUTH)
            if not isinstance(faha, AuthExtension) or not ha_sa.verify_extension(payload, faha):
                # RFC 5944 3.7.3.1: HA failed authentication -> 68 to the mobile node.
                return self._deny_pending(p, 68, "FA-HA authentication")

        actions: list[Action] = self._forget(p)
        mnha = rep.find(ExtType.MN_HA_AUTH)
        out = payload
        if isinstance(mnha, AuthExtension):
            out = payload[: mnha.offset + 6 + len(mnha.authenticator or b"")]
        mn_sa = cfg.mn_sas.get(p.home_address)
        if mn_sa is not None:
            out = append_auth(out, ExtType.MN_FA_AUTH, mn_sa)

        if rep.code in (0, 1):
            if p.lifetime == 0 or rep.lifetime == 0:
                v = self.visitors.get(p.home_address)
                if v is not None:
                    actions += self._remove_visitor(v, "visitor_removed")
            elif not p.flags & RequestFlag.D:
                actions += self._add_visitor(p, rep, now)
        ifc = self._ifaces.get(p.iface) if p.iface else None
        data = {"home_address": p.home_address, "code": rep.code, "lifetime": rep.lifetime}
        if rep.code not in (0, 1) and not self._limiter.allow(p.mn_src, self._now):
            self.counters["rate_limited"] += 1
            actions.append(Event("reply_relayed", {**data, "limited": True}))
            return actions
        actions.append(
            Send(
                out,
                p.mn_src,
                p.mn_port,
                ifc.address if ifc else None,
                MIP_PORT,
                iface=p.iface,
            )
        )
        actions.append(Event("reply_relayed", data))
        return actions

    def _add_visitor(self, p: _RelayedRequest, rep: RegistrationReply, now: float) -> list[Action]:
        lifetime = min(rep.lifetime, p.lifetime)
        expires = now + lifetime if lifetime != INFINITE_LIFETIME else float("inf")
        old = self.visitors.get(p.home_address)
        v = Visitor(
            p.home_address,
            p.home_agent,
            p.iface,
            p.mn_port,
            p.care_of,
            expires,
            lifetime,
            bool(p.flags & RequestFlag.T),
        )
        self.visitors[p.home_address] = v
        timer = f"fa.visitor.{p.home_address}"
        actions: list[Action] = []
        if expires != float("inf"):
            actions.append(SetTimer(timer, expires))
        else:
            actions.append(CancelTimer(timer))
        same = old is not None and (old.home_agent, old.iface, old.reverse) == (
            v.home_agent,
            v.iface,
            v.reverse,
        )
        mac = self._request_macs.pop(p.key, None)
        if mac and p.iface is not None:
            # The home agent accepted the request that came from this MAC: it is the mobile
            # node's now, even if a (forged) request from another one was seen before.
            if self._visitor_macs.get(p.home_address) not in (None, mac):
                actions.append(Neighbour(p.home_address, mac, p.iface))
            self._visitor_macs[p.home_address] = mac
        if same:
            actions.append(Event("visitor_updated", v.to_dict()))
            return actions
        if old is not None:
            actions += self._data_plane_down(old)
        actions += [
            Route(f"{v.home_address}/32", None, v.iface, True),
            TunnelUp(
                v.home_address,
                v.care_of,
                v.home_agent,
                self.config.care_of_address,
                "ipip",
                None,
                v.reverse,
                None,
                "fa",
                v.iface,
            ),
            Event("visitor_added", v.to_dict()),
        ]
        return actions

    def _data_plane_down(self, v: Visitor) -> list[Action]:
        return [
            TunnelDown(v.home_address, v.care_of, v.home_agent, "fa"),
            Route(f"{v.home_address}/32", None, v.iface, False),
        ]

    def _remove_visitor(self, v: Visitor, event: str) -> list[Action]:
        del self.visitors[v.home_address]
        self._visitor_macs.pop(v.home_address, None)
        return [
            CancelTimer(f"fa.visitor.{v.home_address}"),
            *self._data_plane_down(v),
            Event(event, {"home_address": v.home_address, "home_agent": v.home_agent}),
        ]

    def _not_remote_host(self, address: str) -> str | None:
        """Why ``address`` is no remote host's unicast address (``None`` when it is one)."""
        why = not_unicast(address)
        if why is not None:
            return why
        if address in self._own:
            return "ours"
        if any(address == str(link.broadcast_address) for link in self._links):
            return "broadcast"
        return None

    # -- pending requests ------------------------------------------------------------------

    def _forget(self, p: _RelayedRequest) -> list[Action]:
        """Take ``p`` off the pending requests; the timer goes when the last one does."""
        if self._pending.pop(p.key, None) is None:
            return []
        left = self._pending_per_home[p.home_address] - 1
        if left:
            self._pending_per_home[p.home_address] = left
        else:
            del self._pending_per_home[p.home_address]
        if self._pending or self._pending_timer is None:
            return []
        self._pending_timer = None
        return [CancelTimer(T_PENDING)]

    def _expire_pending(self, now: float) -> list[Action]:
        """``fa.pending`` fired: time out what is due, from the oldest, and re-arm for the
        next one (same timeout for all: arrival order is expiry order)."""
        self._pending_timer = None
        actions: list[Action] = []
        pending = self._pending
        while pending:
            p = next(iter(pending.values()))
            if p.expires > now:
                self._pending_timer = p.expires
                actions.append(SetTimer(T_PENDING, p.expires))
                break
            actions += self._timeout(p, now)
        return actions

    def _timeout(self, p: _RelayedRequest, now: float) -> list[Action]:
        self._forget(p)
        if p.home_address in self._pending_per_home:
            # Superseded by a retransmission (timestamps give each one a new Identification):
            # the mobile node waits for the newer one, a 78 for this one would only mislead it.
            return [Event("request_superseded", {"home_address": p.home_address})]
        return self._deny_pending(p, ReplyCode.FA_REGISTRATION_TIMEOUT, "no reply from HA")

    def _refuse(
        self,
        limit: str,
        maximum: int,
        count: int,
        req: RegistrationRequest,
        src: str,
        src_port: int,
        iface: str | None,
    ) -> list[Action]:
        """A pending-request limit refuses ``req``: 66 (insufficient resources)."""
        self.counters["pending_refused"] += 1
        event = Event(
            "pending_limit",
            {"limit": limit, "max": maximum, "pending": count, "home_address": req.home_address},
        )
        reason = f"too many pending requests ({limit}, {maximum})"
        return [
            event,
            *self._deny(ReplyCode.FA_INSUFFICIENT_RESOURCES, req, src, src_port, iface, reason),
        ]

    # -- denial ----------------------------------------------------------------------------

    def _reply_to_mn(
        self,
        code: int,
        home: str,
        home_agent: str,
        ident: int,
        dst: str,
        dst_port: int,
        iface: str | None,
        reason: str,
        lifetime: int = 0,
    ) -> list[Action]:
        """A reply we originate (codes 64-127, 194): no MN-HA extension, MN-FA when we can;
        not sent beyond the rate limits (module docstring)."""
        self.counters["denied"] += 1
        data: dict[str, Any] = {"home_address": home, "code": code, "reason": reason, "src": dst}
        if not self._limiter.allow(dst, self._now):
            self.counters["rate_limited"] += 1
            return [Event("registration_denied", {**data, "limited": True})]
        body = REPLY.pack(3, code, lifetime, aton(home), aton(home_agent), ident)
        sa = self.config.mn_sas.get(home)
        if sa is not None:
            body = append_auth(body, ExtType.MN_FA_AUTH, sa)
        ifc = self._ifaces.get(iface) if iface else None
        return [
            Event("registration_denied", data),
            Send(body, dst, dst_port, ifc.address if ifc else None, MIP_PORT, iface=iface),
        ]

    def _deny(
        self,
        code: int,
        req: RegistrationRequest,
        src: str,
        src_port: int,
        iface: str | None,
        reason: str,
        lifetime: int = 0,
    ) -> list[Action]:
        return self._reply_to_mn(
            code,
            req.home_address,
            req.home_agent,
            req.identification,
            src,
            src_port,
            iface,
            reason,
            lifetime,
        )

    def _deny_pending(self, p: _RelayedRequest, code: int, reason: str) -> list[Action]:
        return self._forget(p) + self._reply_to_mn(
            code,
            p.home_address,
            p.home_agent,
            p.identification,
            p.mn_src,
            p.mn_port,
            p.iface,
            reason,
        )

    def _drop(self, reason: str, src: str) -> list[Action]:
        self.counters["dropped"] += 1
        return [Event("message_dropped", {"reason": reason, "src": src})]
