"""MIP proxy: Mobile IPv4 across VPN gateways (draft-adrangi-mobileip-natvpn-traversal).

The proxy sits in the enterprise DMZ. Toward a mobile node outside the enterprise it is the
home agent; toward the real home agent inside it is the mobile node (with a co-located care-of
address, its ``internal_address``). It shares each mobile node's MN-HA security association
(same SPI and key) with both sides. Sans-I/O like the other machines: feed it UDP-434
datagrams (``handle_datagram``) and expired timers (``handle_timer``); it returns
:mod:`~agents.mip.actions`.

Front (MN-facing): a composed :class:`~agents.mip.ha.HomeAgent` with ``external_address`` does
all request validation (131, 133, 136, NAT detection and RFC 3519 UDP tunnels...). The proxy
is not on the home link, so its ``ProxyArp``/``GratuitousArp`` actions are dropped; its
``TunnelUp``/``TunnelDown`` get role ``"proxy"``. Timer ``ha.expire`` is the front's.

Back (HA-facing, per mobile node): a registration at the mobile node's home agent
(``home_agent``, or of ``other_home_agents`` the one whose home network holds its home
address: the proxy serves several HAs) with the mobile node's home
address, care-of address ``internal_address`` and the D flag, sent by the mobile node's
registration client (:mod:`agents.mip.regclient`: Identification per the SA's replay style, 133
resynchronises at most ``max_resync`` times, exponential backoff). Its tunnel is
``TunnelUp(..., role="proxy-back")``, once per registration (not on every renewal).

Coupling, after the front accepts a registration for a mobile node:

* upstream valid and expiring no earlier than the front binding's renewal point (expiry minus
  ``(1 - renew_fraction) * lifetime``): the front reply goes out at once -- the fast path of a
  handoff outside, only MN<->proxy signalling;
* upstream valid but expiring too early: an upstream renewal, the front reply at once;
* upstream not valid: the front reply is HELD until the home agent accepts (then released),
  and replaced by the newest if the mobile node retransmits meanwhile. If the home agent
  denies or does not answer, the front binding is removed and the mobile node gets a denial
  (the home agent's code; 128 on timeout or when upstream replay protection cannot be
  resynchronised, as a 133 would make the mobile node resynchronise its own clock).

When the last front binding goes (deregistration, expiry) the proxy deregisters upstream
(lifetime 0, care-of ``internal_address``, at most two transmissions) and the back tunnel goes
down. It renews upstream on its own timer only while a front binding needs it (the home agent
granted less than the front did), so once the mobile node stops renewing, the upstream
registration ends with it and cannot replace one the mobile node later makes from inside.

Events: ``proxy_started``, ``proxy_upstream_sent``, ``proxy_upstream_accepted``,
``proxy_upstream_denied``, ``proxy_upstream_resync``, ``proxy_upstream_timeout``,
``proxy_upstream_expired``, ``proxy_upstream_deregistered``, ``proxy_reply_held``,
``proxy_reply_released``, ``proxy_reply_denied``, ``proxy_reply_discarded``,
``message_dropped``, and the front home agent's (``binding_added``, ``registration_denied``...).
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
    ProxyArp,
    Send,
    SetTimer,
    TunnelDown,
    TunnelUp,
)
from agents.mip.auth import SecurityAssociation, append_auth
from agents.mip.constants import (
    INFINITE_LIFETIME,
    MIP_PORT,
    ExtType,
    ReplyCode,
    RequestFlag,
    reply_code_name,
)
from agents.mip.errors import MalformedMessage
from agents.mip.ha import Binding, HaConfig, HomeAgent, MobileNodeConfig
from agents.mip.ipv4 import aton, ntoa
from agents.mip.messages import (
    REPLY,
    RegistrationRequest,
    decode_reply,
    encode,
)
from agents.mip.regclient import Answer, Dropped, GiveUp, Outcome, Pending, RegistrationClient
from agents.mip.replay import MobileReplayState, default_rand32

__all__ = ["MipProxy", "ProxyConfig"]

T_PREFIX = "proxy."
T_RETX = "proxy.retx."  # + home address
T_EXPIRE = "proxy.expire."
T_RENEW = "proxy.renew."
_ACCEPT_EVENTS = frozenset({"binding_added", "binding_updated", "binding_renewed"})
_DEREG_ATTEMPTS = 2


@dataclass(slots=True)
class ProxyConfig:
    """MIP proxy configuration.

    ``external_address``: the address mobile nodes register with (their requests' Home Agent
    field). ``internal_address``: the care-of address the proxy registers at ``home_agent``.
    ``max_lifetime``: the most the front grants and the proxy asks upstream. ``udp_tunnelling``
    and ``keepalive_interval``: RFC 3519 toward mobile nodes behind NATs. Retransmission and
    ``renew_fraction`` govern the upstream registrations; ``max_resync``: 133 replies
    followed upstream before giving up.
    """

    external_address: str
    internal_address: str
    home_agent: str
    home_network: str
    mobile_nodes: list[MobileNodeConfig] = field(default_factory=list)
    # more (home agent, its home network): a mobile node whose home address is on one of
    # these networks registers there (seed 003: the proxy serves several HAs)
    other_home_agents: list[tuple[str, str]] = field(default_factory=list)
    max_lifetime: int = 600
    replay_window: float = 7.0
    udp_tunnelling: bool = True
    keepalive_interval: int = 110
    retransmit_initial: float = 0.5
    retransmit_max: float = 4.0
    max_retransmissions: int = 4
    renew_fraction: float = 0.8
    max_resync: int = 3

    def home_agent_of(self, home_address: str) -> str:
        """The home agent of a mobile node: the one whose home network holds its address."""
        address = ipaddress.IPv4Address(home_address)
        for agent, network in self.other_home_agents:
            if address in ipaddress.IPv4Network(network, strict=False):
                return agent
        return self.home_agent

    @property
    def home_agents(self) -> list[str]:
        return [self.home_agent, *(agent for agent, _ in self.other_home_agents)]

    def __post_init__(self) -> None:
        if not 0 < self.renew_fraction < 1:
            raise ValueError("renew_fraction must be between 0 and 1")
        if not 0 < self.max_lifetime <= INFINITE_LIFETIME:
            raise ValueError("max_lifetime must fit 16 bits and be positive")


@dataclass(slots=True)
class _Held:
    """A front reply (accepted) kept back until the home agent accepts upstream."""

    send: Send
    care_of: str
    identification: int
    held_at: float

    def held_ms(self, now: float) -> float:
        return round((now - self.held_at) * 1000, 3)


@dataclass(slots=True)
class _Upstream:
    """The proxy's registration at the real home agent for one mobile node."""

    home_address: str
    reg: RegistrationClient[None]  # its registrations in flight (timer T_RETX + home address)
    home_agent: str = ""  # where they go: the mobile node's own home agent
    registered: bool = False
    expires: float = 0.0
    lifetime: int = 0
    accepted_at: float | None = None
    tunnel: bool = False
    held: _Held | None = None

    @property
    def pending(self) -> Pending[None] | None:
        return self.reg.pending

    @property
    def registering(self) -> bool:
        return self.pending is not None and not self.pending.dereg


class MipProxy:
    """The MIP proxy state machine. See the module docstring for the rules."""

    def __init__(
        self,
        config: ProxyConfig,
        *,
        wallclock: Callable[[], float],
        rand32: Callable[[], int] = default_rand32,
    ) -> None:
        self.config = config
        self.front = HomeAgent(
            HaConfig(
                address=config.external_address,
                home_network=config.home_network,
                other_home_networks=tuple(n for _, n in config.other_home_agents),
                mobile_nodes=list(config.mobile_nodes),
                max_lifetime=config.max_lifetime,
                replay_window=config.replay_window,
                reverse_tunneling=True,
                reverse_tunnel_required=False,
                udp_tunnelling=config.udp_tunnelling,
                keepalive_interval=config.keepalive_interval,
                home_iface=None,
            ),
            wallclock=wallclock,
            rand32=rand32,
        )
        self._up: dict[str, _Upstream] = {}
        for mn in config.mobile_nodes:
            sa, home = mn.sa(), mn.home_address
            reg: RegistrationClient[None] = RegistrationClient(
                sa,
                MobileReplayState(sa.replay),
                timer=T_RETX + home,
                build=lambda p, home=home, sa=sa: self._build(home, sa, p),
                announce=lambda p, home=home: self._announce(self._up[home], p),
                wallclock=wallclock,
                rand32=rand32,
                retransmit_initial=config.retransmit_initial,
                retransmit_max=config.retransmit_max,
                max_resync=config.max_resync,
            )
            self._up[home] = _Upstream(home, reg, config.home_agent_of(home))
        self.counters: dict[str, int] = {
            "requests": 0,
            "upstream_sent": 0,
            "upstream_accepted": 0,
            "upstream_denied": 0,
            "upstream_timeouts": 0,
            "upstream_expired": 0,
            "replies_held": 0,
            "replies_released": 0,
            "replies_denied": 0,
            "dropped": 0,
        }

    # -- inspection ------------------------------------------------------------------------

    def bindings(self, home_address: str | None = None) -> list[Binding]:
        """The front (MN-facing) bindings, of one mobile node or all."""
        return self.front.bindings(home_address)

    def upstream(self, home_address: str) -> dict[str, Any] | None:
        """The proxy's registration at the real home agent for ``home_address``."""
        up = self._up.get(home_address)
        if up is None:
            return None
        p = up.pending
        if p is not None:
            state = "deregistering" if p.dereg else ("renewing" if up.registered else "registering")
        else:
            state = "registered" if up.registered else "idle"
        return {
            "home_address": home_address,
            "state": state,
            "registered": up.registered,
            "expires": up.expires if up.registered else None,
            "lifetime": up.lifetime if up.registered else 0,
            "accepted_at": up.accepted_at,
            "care_of": self.config.internal_address,
            "home_agent": up.home_agent,
            "tunnel": up.tunnel,
            "held": up.held is not None,
            "pending": None
            if p is None
            else {
                "reason": p.reason,
                "lifetime": p.lifetime,
                "attempt": p.attempt,
                "identification": p.identification,
            },
        }

    # -- inputs ----------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        cfg = self.config
        out = self._front_actions(self.front.start(now), now)
        out.append(
            Event(
                "proxy_started",
                {
                    "external_address": cfg.external_address,
                    "internal_address": cfg.internal_address,
                    "home_agent": cfg.home_agent,
                    **({"home_agents": cfg.home_agents} if cfg.other_home_agents else {}),
                },
            )
        )
        return out

    def handle_icmp(
        self, payload: bytes, src: str, now: float, iface: str | None = None
    ) -> list[Action]:
        """The proxy does not advertise: nothing to do."""
        return []

    def handle_datagram(
        self,
        payload: bytes,
        src: str,
        src_port: int,
        now: float,
        iface: str | None = None,
    ) -> list[Action]:
        """A UDP-434 datagram: requests (and RFC 3519 tunnel data, which is the data plane's)
        go to the front; replies from the home agent to the back."""
        if not payload:
            return self._drop("empty datagram", src)
        kind = payload[0]
        if kind == 4:
            return self.front.handle_datagram(payload, src, src_port, now, iface)
        if kind == 1:
            self.counters["requests"] += 1
            # The home address (header bytes 4-8) even if the front finds the request bad.
            home = ntoa(payload[4:8]) if len(payload) >= 24 else None
            actions = self.front.handle_datagram(payload, src, src_port, now, iface)
            return self._front_actions(actions, now, home)
        if kind == 3:
            return self._on_reply(payload, src, now)
        return self._drop(f"message type {kind} is neither a request nor a reply", src)

    def handle_timer(self, name: str, now: float) -> list[Action]:
        if not name.startswith(T_PREFIX):
            return self._front_actions(self.front.handle_timer(name, now), now)
        for prefix, fn in (
            (T_RETX, self._on_retransmit),
            (T_EXPIRE, self._on_expire),
            (T_RENEW, self._on_renew),
        ):
            if name.startswith(prefix):
                up = self._up.get(name[len(prefix) :])
                return fn(up, now) if up is not None else []
        return []

    def clear(self, now: float) -> list[Action]:
        """Shutdown: every front tunnel down, every upstream registration deregistered."""
        out = self._front_actions(self.front.clear(now), now)
        for up in self._up.values():
            out += self._discard_held(up, now, "shutdown")
            out += self._deregister_upstream(up, now)
        return out

    # -- front -----------------------------------------------------------------------------

    def _front_actions(
        self, actions: list[Action], now: float, home: str | None = None
    ) -> list[Action]:
        """Adapt the front home agent's actions and couple its bindings to the upstream."""
        out: list[Action] = []
        accepted: dict[str, str] = {}  # home address -> care-of address of the accepted binding
        touched: list[str] = [home] if home in self._up else []
        for a in actions:
            if isinstance(a, (ProxyArp, GratuitousArp)):
                continue  # not on the home link
            if isinstance(a, (TunnelUp, TunnelDown)):
                a = replace(a, role="proxy")
            elif isinstance(a, Event):
                h = a.data.get("home_address")
                if isinstance(h, str) and h in self._up:
                    if h not in touched:
                        touched.append(h)
                    if a.name in _ACCEPT_EVENTS:
                        accepted[h] = a.data["care_of"]
            out.append(a)
        for h in touched:
            up = self._up[h]
            coa = accepted.get(h)
            if coa is not None:
                out = self._front_accepted(up, coa, out, now)
            elif not self.front.bindings(h):
                out += self._discard_held(up, now, "no front binding")
                out += self._deregister_upstream(up, now)
        return out

    def _front_accepted(
        self, up: _Upstream, care_of: str, out: list[Action], now: float
    ) -> list[Action]:
        b = next((b for b in self.front.bindings(up.home_address) if b.care_of == care_of), None)
        if b is None:
            return out
        lifetime = min(b.lifetime, self.config.max_lifetime)
        if up.registered and up.expires > now:
            if not up.registering and self._needs_renewal(up):
                out += self._start(up, lifetime, "renew", now)
            return out
        # Not valid upstream: hold the front's reply until the home agent accepts.
        idx = next((i for i in range(len(out) - 1, -1, -1) if isinstance(out[i], Send)), None)
        if idx is not None:
            send = out.pop(idx)
            assert isinstance(send, Send)
            replaced = up.held is not None
            up.held = _Held(send, care_of, REPLY.unpack_from(send.payload)[5], now)
            self.counters["replies_held"] += 1
            out.append(
                Event(
                    "proxy_reply_held",
                    {"home_address": up.home_address, "care_of": care_of, "replaced": replaced},
                )
            )
        if not up.registering:
            out += self._start(up, lifetime, "first", now)
        return out

    def _needs_renewal(self, up: _Upstream) -> bool:
        """Does a front binding outlive the upstream registration's renewal point?"""
        rf = self.config.renew_fraction
        need = max(
            (b.expires - (1 - rf) * b.lifetime for b in self.front.bindings(up.home_address)),
            default=-math.inf,
        )
        return up.expires < need

    def _release_held(self, up: _Upstream, now: float) -> list[Action]:
        held = up.held
        if held is None:
            return []
        up.held = None
        if not any(b.care_of == held.care_of for b in self.front.bindings(up.home_address)):
            return [self._discarded(up, held, now, "front binding gone")]
        self.counters["replies_released"] += 1
        return [
            held.send,
            Event(
                "proxy_reply_released",
                {
                    "home_address": up.home_address,
                    "care_of": held.care_of,
                    "held_ms": held.held_ms(now),
                },
            ),
        ]

    def _deny_held(self, up: _Upstream, code: int, reason: str, now: float) -> list[Action]:
        """The held reply must not go: remove the front binding, tell the mobile node ``code``
        (built and authenticated as the home agent core's denials are)."""
        held = up.held
        if held is None:
            return []
        up.held = None
        cfg = self.config
        out = self._front_actions(
            self.front.remove_binding(up.home_address, held.care_of, f"upstream {reason}"), now
        )
        body = REPLY.pack(
            3, code, 0, aton(up.home_address), aton(cfg.external_address), held.identification
        )
        payload = append_auth(body, ExtType.MN_HA_AUTH, up.reg.sa)
        self.counters["replies_denied"] += 1
        out.append(
            Event(
                "proxy_reply_denied",
                {
                    "home_address": up.home_address,
                    "care_of": held.care_of,
                    "code": code,
                    "reason": reason,
                    "held_ms": held.held_ms(now),
                },
            )
        )
        out.append(
            Send(
                payload,
                held.send.dst,
                held.send.dst_port,
                cfg.external_address,
                MIP_PORT,
                held.send.iface,
            )
        )
        return out

    def _discard_held(self, up: _Upstream, now: float, reason: str) -> list[Action]:
        held = up.held
        if held is None:
            return []
        up.held = None
        return [self._discarded(up, held, now, reason)]

    @staticmethod
    def _discarded(up: _Upstream, held: _Held, now: float, reason: str) -> Event:
        return Event(
            "proxy_reply_discarded",
            {
                "home_address": up.home_address,
                "care_of": held.care_of,
                "reason": reason,
                "held_ms": held.held_ms(now),
            },
        )

    # -- back: upstream registration -------------------------------------------------------

    def _start(
        self,
        up: _Upstream,
        lifetime: int,
        reason: str,
        now: float,
        first_sent: float | None = None,
    ) -> list[Action]:
        """Send a registration upstream (``first_sent``: a resynchronised one's first)."""
        cfg = self.config
        if first_sent is None:
            up.reg.resyncs = 0
        dereg = lifetime == 0
        return up.reg.start(
            now,
            None,
            home_agent=up.home_agent,
            lifetime=lifetime,
            reason=reason,
            to=Send(b"", up.home_agent, MIP_PORT, cfg.internal_address, MIP_PORT),
            max_retransmissions=_DEREG_ATTEMPTS - 1 if dereg else cfg.max_retransmissions,
            first_sent=first_sent,
        )

    def _build(self, home: str, sa: SecurityAssociation, p: Pending[None]) -> bytes:
        cfg = self.config
        # D: we decapsulate ourselves; T: what the gateway decrypts goes back to the HA in
        # our tunnel, so the firewall sees both directions of the MN's traffic as one flow
        flags = 0 if p.dereg else int(RequestFlag.D | RequestFlag.T)
        req = RegistrationRequest(
            home, cfg.home_agent_of(home), cfg.internal_address, p.identification, p.lifetime, flags
        )
        return append_auth(encode(req), ExtType.MN_HA_AUTH, sa)

    def _announce(self, up: _Upstream, p: Pending[None]) -> Event:
        """The event of each upstream transmission (the client's ``announce``)."""
        self.counters["upstream_sent"] += 1
        return Event(
            "proxy_upstream_sent",
            {
                "home_address": up.home_address,
                "lifetime": p.lifetime,
                "attempt": p.attempt,
                "reason": p.reason,
                "identification": p.identification,
                "resync": up.reg.resyncs,
                "bytes": len(p.payload),
                "to": up.home_agent,
            },
        )

    def _on_retransmit(self, up: _Upstream, now: float) -> list[Action]:
        sent = up.reg.retransmit(now)
        if not isinstance(sent, GiveUp):
            return sent
        p = sent.pending
        self.counters["upstream_timeouts"] += 1
        out: list[Action] = [
            Event(
                "proxy_upstream_timeout",
                {
                    "home_address": up.home_address,
                    "attempts": p.attempt,
                    "reason": p.reason,
                    "dereg": p.dereg,
                },
            )
        ]
        return out + self._deny_held(up, int(ReplyCode.HA_UNSPECIFIED), "timeout", now)

    def _deregister_upstream(self, up: _Upstream, now: float) -> list[Action]:
        """No front binding left: lifetime 0 upstream (no hold), back tunnel down."""
        if not up.registered and not up.registering:
            return []
        out: list[Action] = [CancelTimer(T_EXPIRE + up.home_address)]
        out.append(CancelTimer(T_RENEW + up.home_address))
        up.registered = False
        out += self._tunnel_down(up)
        return out + self._start(up, 0, "dereg", now)

    def _tunnel_down(self, up: _Upstream) -> list[Action]:
        if not up.tunnel:
            return []
        up.tunnel = False
        cfg = self.config
        return [TunnelDown(up.home_address, cfg.internal_address, up.home_agent, "proxy-back")]

    def _on_reply(self, payload: bytes, src: str, now: float) -> list[Action]:
        if src not in self.config.home_agents:
            return self._drop("reply not from the home agent", src)
        try:
            rep = decode_reply(payload)
        except MalformedMessage as exc:
            return self._drop(exc.reason, src)
        up = self._up.get(rep.home_address)
        if up is None:
            return self._drop(f"reply for unknown home address {rep.home_address}", src)
        if src != up.home_agent:
            return self._drop(f"reply for {rep.home_address} not from its home agent", src)
        if up.pending is None:
            return self._drop("no upstream registration pending", src)
        answer = up.reg.handle_reply(rep, payload)
        if isinstance(answer, Dropped):
            return self._drop(answer.reason, src)
        out: list[Action] = [CancelTimer(T_RETX + up.home_address)]
        p, code = answer.pending, rep.code
        if answer.outcome is Outcome.ACCEPTED:
            return out + self._accepted(up, answer, now, len(payload))
        if answer.outcome is Outcome.RESYNC:
            out.append(
                Event(
                    "proxy_upstream_resync",
                    {"home_address": up.home_address, "style": up.reg.replay.style},
                )
            )
            return out + self._start(up, p.lifetime, p.reason, now, first_sent=p.first_sent)
        self.counters["upstream_denied"] += 1
        out.append(
            Event(
                "proxy_upstream_denied",
                {
                    "home_address": up.home_address,
                    "code": code,
                    "code_name": reply_code_name(code),
                    "reason": p.reason,
                    "dereg": p.dereg,
                    "bytes": len(payload),
                },
            )
        )
        # A 133 we could not resolve concerns our Identification, not the mobile node's.
        unresolved = code == ReplyCode.HA_IDENTIFICATION_MISMATCH
        mn_code = int(ReplyCode.HA_UNSPECIFIED) if unresolved else code
        return out + self._deny_held(up, mn_code, "denied", now)

    def _accepted(
        self, up: _Upstream, answer: Answer[None], now: float, reply_bytes: int
    ) -> list[Action]:
        cfg = self.config
        p, rep, sent_at = answer.pending, answer.reply, answer.sent_at
        home = up.home_address
        rtt_ms = round((now - p.first_sent) * 1000, 3)
        self.counters["upstream_accepted"] += 1
        if p.dereg:
            return [
                Event(
                    "proxy_upstream_deregistered",
                    {"home_address": home, "rtt_ms": rtt_ms, "attempts": p.attempt},
                )
            ]
        granted = min(rep.lifetime, p.lifetime)
        infinite = granted == INFINITE_LIFETIME
        up.registered = True
        up.lifetime = granted
        up.expires = math.inf if infinite else sent_at + granted
        up.accepted_at = now
        out: list[Action] = [
            Event(
                "proxy_upstream_accepted",
                {
                    "home_address": home,
                    "lifetime": granted,
                    "code": rep.code,
                    "rtt_ms": rtt_ms,
                    "attempts": p.attempt,
                    "reason": p.reason,
                    "bytes": reply_bytes,
                    "from": up.home_agent,
                },
            )
        ]
        if infinite:
            out += [CancelTimer(T_EXPIRE + home), CancelTimer(T_RENEW + home)]
        else:
            out.append(SetTimer(T_EXPIRE + home, up.expires))
            if self._needs_renewal(up):
                # The home agent granted less than the front did: renew on our own, but only
                # as far as the front bindings need (see _on_renew).
                renew_at = sent_at + granted * cfg.renew_fraction
                if renew_at <= now:
                    renew_at = now + (up.expires - now) / 2
                out.append(SetTimer(T_RENEW + home, renew_at))
            else:
                out.append(CancelTimer(T_RENEW + home))
        if not up.tunnel:
            up.tunnel = True
            out.append(
                TunnelUp(
                    home,
                    cfg.internal_address,
                    up.home_agent,
                    cfg.internal_address,
                    "ipip",
                    None,
                    False,
                    None,
                    "proxy-back",
                )
            )
        return out + self._release_held(up, now)

    def _on_renew(self, up: _Upstream, now: float) -> list[Action]:
        if not up.registered or up.registering or not self._needs_renewal(up):
            return []
        front_end = max(b.expires for b in self.front.bindings(up.home_address))
        lifetime = min(self.config.max_lifetime, max(1, math.ceil(front_end - now)))
        return self._start(up, lifetime, "renew", now)

    def _on_expire(self, up: _Upstream, now: float) -> list[Action]:
        if not up.registered or up.expires > now:
            return []
        up.registered = False
        self.counters["upstream_expired"] += 1
        out: list[Action] = [
            CancelTimer(T_RENEW + up.home_address),
            Event("proxy_upstream_expired", {"home_address": up.home_address}),
        ]
        return out + self._tunnel_down(up)

    def _drop(self, reason: str, src: str) -> list[Action]:
        self.counters["dropped"] += 1
        return [Event("message_dropped", {"reason": reason, "src": src})]
