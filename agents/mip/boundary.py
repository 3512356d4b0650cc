"""Crossing the enterprise's security boundary at the mobile node (RFC 5266, RFC 5265, seed 003).

Sans-I/O like the other cores: :meth:`BoundaryCore.handle` takes one typed input with ``now``
(the caller's monotonic clock) and returns what to do, in order: the actions below and
:class:`~agents.mip.actions.Event`, :class:`~agents.mip.actions.SetTimer`,
:class:`~agents.mip.actions.CancelTimer` (a :class:`TimerFired` comes back for each timer
that fires). Blocking work (charon through vici, ICMP echoes) is the driver's; its results
come back as inputs. What the MN's own core says (its mode, whether it is registered, its
attachment) is read from the :class:`MnView` it is given; its events come in as inputs.

The rule (RFC 5266 section 5): on a new attachment the MN registers with its home agent
directly (the MN core does that) and at the same time reaches for the VPN gateway. The home
agent answers: inside, plain ``f``/``c``, and the VPN is closed. Only the gateway works (no
accepted direct registration within ``decision_timeout``, or an ICMP unreachable for it at
once): outside. Outside, a move is followed under the tunnel; an agent heard or a direct
echo of the home agent answered means inside again.

One decider serves three architectures; what sets them apart is an :class:`Architecture`:

* ``mobike`` (RFC 5266, mode ``mc``): the IKE initiation races the direct registration;
  outside, the tunnel inner address (TIA) is registered as co-located care-of address through
  the tunnel; MOBIKE moves the tunnel on later moves (without MOBIKE: a new IKE SA each time);
* ``dual`` (RFC 5265, mode ``dual``): outside, the MN first registers its co-located address
  with the external home agent (x-MIP, :class:`UseOuterAttachment`); once it accepts, the tunnel
  (bound to the external home address) is brought up and its TIA registered with the internal
  home agent; a move outside is one x-MIP registration;
* ``proxy`` (seed 003, mode ``proxy``): outside, the MN registers its co-located address with
  the MIP proxy in the DMZ (the home agent toward it); once the proxy accepts, the tunnel
  bound to the home address is brought up inside the Mobile IP tunnel; a move outside is one
  registration with the proxy.

Where the tunnel inner address is registered (``mobike``, ``dual``), a settled MN checks its
tunnel every second: a new TIA is a new registration; no tunnel is a reconnection (initiated
until it is up, ``vpn_tunnel_lost``); ``path_failures`` unanswered echoes through it in a row
is a new IKE SA (``vpn_path_dead``). Failed initiations are retried with a bounded
:class:`Backoff` (``vpn_retry``) while the tunnel is still wanted: a move, inside or a newer
initiation ends them.

Timers: ``boundary.decide`` (the decision), ``boundary.poll.decision`` and
``boundary.poll.watch`` (asking charon again for the TIA), ``boundary.retry`` (the next
initiation), ``boundary.watch`` (the tunnel check).

Events: ``boundary_probe``, ``boundary_decision``, ``home_agent_unreachable``,
``home_agent_probe``, ``external_registration``, ``tia_changed``, ``vpn_gateway_changed``,
``vpn_tunnel_lost``,
``vpn_path_dead``, ``vpn_initiate_failed``, ``vpn_retry``.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, Union

from agents.mip.actions import Action as MipAction
from agents.mip.actions import CancelTimer, Event, SetTimer
from agents.mip.mn import Attachment
from mipbase.modes import INSIDE_MODES, Mode

__all__ = [
    "ARCHITECTURES",
    "CONNECTING",
    "DOWN",
    "DUAL",
    "MOBIKE",
    "PROXY",
    "UP",
    "AddressAcquired",
    "AgentHeard",
    "Architecture",
    "Backoff",
    "BindVpnToHome",
    "BoundaryConfig",
    "BoundaryCore",
    "DeregisterFrom",
    "GatewayChoice",
    "HomeAgentAnswered",
    "IcmpUnreachable",
    "InitiateDone",
    "InitiateVpn",
    "MnView",
    "Moved",
    "OuterRegistered",
    "ProbeHomeAgent",
    "QueryTunnel",
    "Registered",
    "ReturnedHome",
    "TerminateVpn",
    "TimerFired",
    "TunnelSeen",
    "UseAttachment",
    "UseOuterAttachment",
    "from_core_event",
    "from_outer_event",
]

# the tunnel's state as charon reports it (an initiation's outcome, see InitiateDone)
UP, CONNECTING, DOWN = "up", "connecting", "down"

# how long a decision waits for the tunnel inner address once it asks (charon's initiation
# or MOBIKE under way); after a move, failed initiations are retried while a decision can
# still use the tunnel: the decision's timeout plus this
DECISION_WAIT_S = 5.0
POLL_S = 0.02  # asking charon again for the TIA while waiting (woken early by our own UP)
WATCH_INTERVAL_S = 1.0  # outside: the tunnel check's period (not scaled, as before)
WATCH_WAIT_S = 0.5  # the tunnel check's wait for a TIA
# The tunnel echo's timeout: at least min(0.5 s, path_check), and 4x the smoothed round trip
# of the echoes answered so far, doubled after each unanswered one, at most ECHO_TIMEOUT_MAX_S.
# A fixed 0.5 s took a live path for dead on a loaded machine: with 100 mobile nodes on 2
# cores, echoes through the userspace ESP of two charons and the delay relay took 110-510 ms,
# and 21 of 25 MOBIKE MNs tore down a working IKE SA (vpn_path_dead) and brought up another.
ECHO_RTT_FACTOR = 4.0
ECHO_TIMEOUT_MAX_S = 4.0
INITIATE_TIMEOUT_S = 3.0  # one initiation (vici) when retried
SINGLE_INITIATE_TIMEOUT_S = 5.0  # the proxy's one initiation
# back inside, the gateway usually answers our DELETE within a few ms through the intranet;
# waiting longer (charon forces the SA down after the timeout) only keeps its routes about
INSIDE_TERMINATE_S = 0.25

T_DECIDE = "boundary.decide"
T_POLL = "boundary.poll."  # + "decision" | "watch"
T_RETRY = "boundary.retry"
T_WATCH = "boundary.watch"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Wait ``first_s`` after the first failed initiation, ``factor`` times longer after each
    further one, never more than ``max_s``: a gateway back within a second is reached within
    about a second, one that stays away costs an IKE_SA_INIT every ``max_s``, no more."""

    first_s: float = 0.5
    factor: float = 2.0
    max_s: float = 8.0

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` (1, 2, ...) failed attempts in a row."""
        exponent = min(max(failures - 1, 0), 64)  # a long outage must not overflow the float
        return min(self.first_s * self.factor**exponent, self.max_s)


@dataclass(frozen=True, slots=True)
class Architecture:
    """What sets an architecture apart at the MN (see the module docstring).

    ``mode``: the MN core's attachment mode outside. ``race_gateway``: initiate IKE together
    with the direct registration (else only once outside). ``outer``: what is registered
    first outside, under the tunnel: ``"x-mip"`` (the external home agent), ``"proxy"`` (the
    MIP proxy), or None (nothing: the tunnel's inner address is the registration).
    ``registers_tia``: the internal registration outside is the tunnel inner address's (the
    decision waits for it, the tunnel is watched). ``retries``: failed initiations are retried.
    """

    name: str
    mode: Mode
    race_gateway: bool
    outer: str | None
    registers_tia: bool
    retries: bool


MOBIKE = Architecture(
    "mobike", Mode.MC, race_gateway=True, outer=None, registers_tia=True, retries=True
)
DUAL = Architecture(
    "dual", Mode.DUAL, race_gateway=False, outer="x-mip", registers_tia=True, retries=True
)
PROXY = Architecture(
    "proxy", Mode.PROXY, race_gateway=False, outer="proxy", registers_tia=False, retries=False
)
ARCHITECTURES = {a.name: a for a in (MOBIKE, DUAL, PROXY)}


def _unscaled(seconds: float) -> float:
    return seconds


@dataclass(frozen=True, slots=True)
class GatewayChoice:
    """A VPN gateway for the visited networks inside ``networks`` (CIDRs): where the MN's
    address is in one of them it uses this gateway, through charon's connection ``ike``."""

    gateway: str
    ike: str
    networks: tuple[str, ...]

    def serves(self, address: str) -> bool:
        ip = ipaddress.IPv4Address(address)
        return any(ip in ipaddress.IPv4Network(n, strict=False) for n in self.networks)


@dataclass(frozen=True, slots=True)
class BoundaryConfig:
    """``link``: the MN's interface to the visited network (the direct probe, the x-MIP and
    proxy registrations). ``tia_iface``: the interface of the tunnel inner address (None: the
    driver finds the one that holds it). ``scale`` stretches the waits (a slow machine).
    ``gateways``: other VPN gateways by visited network (``gateway``, through the default
    connection, everywhere else); a move to a network of another gateway is a new IKE SA
    there and, its TIA being new, a new registration (RFC 5266: "If the MN connects to a new
    VPN GW, the MN must send a registration request")."""

    architecture: Architecture
    gateway: str
    link: str
    proxy: str | None = None
    tia_iface: str | None = None
    decision_timeout: float = 0.3
    mobike: bool = True
    path_check: float = 1.0
    path_failures: int = 2
    backoff: Backoff = Backoff()
    scale: Callable[[float], float] = _unscaled
    gateways: tuple[GatewayChoice, ...] = ()

    def __post_init__(self) -> None:
        if self.architecture.outer == "proxy" and self.proxy is None:
            raise ValueError("architecture proxy needs the MIP proxy's address")

    def gateway_for(self, address: str | None) -> tuple[str, str | None]:
        """The gateway for our address on the visited link, and its connection (None: the
        default one)."""
        for choice in self.gateways:
            if address is not None and choice.serves(address):
                return choice.gateway, choice.ike
        return self.gateway, None


class MnView(Protocol):
    """What the decider reads of the MN's core (:class:`agents.mip.mn.MobileNode`)."""

    home_agent: str

    @property
    def mode(self) -> str | None: ...

    @property
    def registered(self) -> bool: ...

    @property
    def attachment(self) -> Attachment | None: ...


# -- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Moved:
    """A new point of attachment (carrier came up): a pending decision was about the old one."""


@dataclass(frozen=True, slots=True)
class AddressAcquired:
    """An address of our own on the link (DHCP): we may be outside."""

    address: str | None


@dataclass(frozen=True, slots=True)
class AgentHeard:
    """The MN core heard an agent advertise (an FA, or the home agent): inside."""


@dataclass(frozen=True, slots=True)
class Registered:
    """The MN core's registration was accepted in ``mode``: in ``f``/``c``/``home`` that is the
    home agent's direct reply (inside); in the architecture's own mode, the registration
    outside."""

    mode: str | None


@dataclass(frozen=True, slots=True)
class ReturnedHome:
    """The MN core is at home: inside."""


@dataclass(frozen=True, slots=True)
class IcmpUnreachable:
    """An ICMP error about something we sent to ``dst`` (for the direct registration: the
    home agent cannot be reached from here)."""

    dst: str
    icmp_type: int
    code: int


@dataclass(frozen=True, slots=True)
class HomeAgentAnswered:
    """The outcome of a :class:`ProbeHomeAgent` (``path`` as in the probe); ``rtt_s``: how
    long the answer took, when there was one and the driver measured it."""

    path: str
    answered: bool
    rtt_s: float | None = None


@dataclass(frozen=True, slots=True)
class TunnelSeen:
    """What charon said for :class:`QueryTunnel` ``query``: the tunnel is up with inner address
    ``tia``, or (None) there is none (yet)."""

    query: int
    tia: str | None


@dataclass(frozen=True, slots=True)
class InitiateDone:
    """The outcome of :class:`InitiateVpn` ``attempt``: the tunnel's state after it (UP,
    CONNECTING: charon's own initiation under way, DOWN) and, if it failed, why."""

    attempt: int
    state: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class OuterRegistered:
    """Dual MIP: the external home agent accepted the x-MIP registration."""

    care_of: str | None = None
    udp: bool | None = None
    latency: float | None = None


@dataclass(frozen=True, slots=True)
class TimerFired:
    name: str


Input = Union[  # noqa: UP007
    Moved,
    AddressAcquired,
    AgentHeard,
    Registered,
    ReturnedHome,
    IcmpUnreachable,
    HomeAgentAnswered,
    TunnelSeen,
    InitiateDone,
    OuterRegistered,
    TimerFired,
]


def from_outer_event(name: str, data: dict[str, Any]) -> Input | None:
    """The input an event of the dual MIP x-MIP client (a second MN core) is, if any."""
    if name == "registration_accepted":
        return OuterRegistered(data.get("care_of"), data.get("udp"), data.get("latency"))
    return None


def from_core_event(name: str, data: dict[str, Any]) -> Input | None:
    """The input an event of the MN core (:mod:`agents.mip.mn`) is to the decider, if any."""
    if name == "agent_discovered":
        return AgentHeard()
    if name == "registration_accepted":
        return Registered(data.get("mode"))
    if name == "returned_home":
        return ReturnedHome()
    return None


# -- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InitiateVpn:
    """One look at charon and, if there is no tunnel, one initiation (up to ``timeout_s``);
    the outcome comes back as :class:`InitiateDone` ``attempt``. ``fresh``: first terminate
    the IKE SA there is without waiting for its DELETE to be answered (its peer address is
    gone). ``after_batch``: only once the MN core's actions in progress are carried out (the
    tunnel and routes that come with an acceptance). Initiations run one at a time, in order."""

    attempt: int
    timeout_s: float
    fresh: bool = False
    after_batch: bool = False
    ike: str | None = None  # charon's connection to the gateway wanted (None: the default)


@dataclass(frozen=True, slots=True)
class TerminateVpn:
    """Close the VPN (inside): charon's SA forced down after ``timeout_s``."""

    timeout_s: float


@dataclass(frozen=True, slots=True)
class QueryTunnel:
    """Ask charon for the tunnel inner address; answered by :class:`TunnelSeen` ``query``.
    ``watch``: for the tunnel check (which must not wait behind a decision's, nor hold one up)."""

    query: int
    watch: bool = False


@dataclass(frozen=True, slots=True)
class ProbeHomeAgent:
    """One ICMP echo to the home agent, answered by :class:`HomeAgentAnswered`. ``path``
    ``"direct"``: out of ``iface``, not through any tunnel (is it reachable from here?);
    ``"tunnel"``: from ``source`` (the TIA), through the tunnel (is the path alive?)."""

    path: str
    home_agent: str
    timeout_s: float
    iface: str | None = None
    source: str | None = None
    seq: int = 1


@dataclass(frozen=True, slots=True)
class UseAttachment:
    """Feed the MN core ``use_attachment(attachment)`` (None: its own choice again). An
    attachment ``via_vpn`` without ``iface``: the interface that holds the address."""

    attachment: Attachment | None


@dataclass(frozen=True, slots=True)
class UseOuterAttachment:
    """Dual MIP: feed the x-MIP client ``use_attachment(attachment)`` (None: detach it)."""

    attachment: Attachment | None


@dataclass(frozen=True, slots=True)
class DeregisterFrom:
    """Feed the MN core ``deregister_from(attachment)``, once the actions in progress are
    carried out (they bring the routes to reach the agent)."""

    attachment: Attachment


@dataclass(frozen=True, slots=True)
class BindVpnToHome:
    """MIP proxy: the IPsec tunnel is bound to the home address (data-plane rules) or not."""

    bound: bool
    gateway: str


Action = Union[  # noqa: UP007
    MipAction,
    InitiateVpn,
    TerminateVpn,
    QueryTunnel,
    ProbeHomeAgent,
    UseAttachment,
    UseOuterAttachment,
    DeregisterFrom,
    BindVpnToHome,
]


def _emit(name: str, **data: Any) -> Event:
    return Event(name, data)


@dataclass(slots=True)
class _Keep:
    """Initiations until the tunnel is up: ``attempt`` names them (a newer keep or a cancel
    makes an outcome stale); ``until`` (None: no limit); ``purpose`` ``"reconnect"`` while it
    brings a lost tunnel back; ``then_wait``: once up, a decision waits for the TIA."""

    attempt: int
    until: float | None
    retries: bool
    purpose: str = ""
    then_wait: bool = False
    failures: int = 0


@dataclass(slots=True)
class _Wait:
    """Asking charon for the TIA until ``deadline`` (a decision's or the tunnel check's)."""

    query: int
    deadline: float
    in_flight: bool = True
    woken: bool = False


@dataclass(slots=True)
class _State:
    moved_at: float
    inside: bool = True
    # outside: the tunnel inner address (mobike, dual) or the care-of address (proxy)
    outside: str | None = None
    address: str | None = None  # our latest address on the link
    outer_coa: str | None = None  # dual: where x-MIP is registered
    bringing_up: bool = False  # dual: the tunnel follows x-MIP's acceptance
    proxy_binding: Attachment | None = None  # proxy: our binding there
    deciding: bool = False  # the decision timer is armed
    keep: _Keep | None = None
    waits: dict[str, _Wait] = field(default_factory=dict)  # "decision" | "watch"
    reconnecting: bool = False
    watching: bool = False
    path_misses: int = 0
    echo_seq: int = 1
    echo_rtt: float | None = None  # smoothed round trip of the answered tunnel echoes (s)
    echo_out: bool = False  # a tunnel echo waits for its answer: no second one meanwhile
    gateway: str | None = None  # the VPN gateway of our latest address (None: not chosen yet)
    ike: str | None = None  # its connection (None: the default)


class BoundaryCore:
    """The decider. See the module docstring for the rules."""

    def __init__(self, config: BoundaryConfig, mn: MnView, now: float) -> None:
        self.config = config
        self.arch = config.architecture
        self.mn = mn
        self.state = _State(moved_at=now)
        self._numbers = itertools.count(1)  # initiation attempts and tunnel queries

    # -- state -----------------------------------------------------------------------------

    @property
    def inside(self) -> bool:
        return self.state.inside

    @property
    def outside(self) -> str | None:
        """Outside: the TIA (mobike, dual) or care-of address (proxy) registered; else None."""
        return self.state.outside

    @property
    def reconnecting(self) -> bool:
        return self.state.reconnecting

    @property
    def deciding(self) -> bool:
        """A decision is pending: its timer, or its wait for the tunnel inner address."""
        return self.state.deciding or "decision" in self.state.waits

    def initiation_wanted(self, attempt: int) -> bool:
        """Whether :class:`InitiateVpn` ``attempt`` is still wanted (for a driver that runs
        initiations one at a time: one queued behind another may be stale by its turn)."""
        keep = self.state.keep
        return keep is not None and keep.attempt == attempt

    def snapshot(self) -> dict[str, Any]:
        s = self.state
        return {
            "architecture": self.arch.name,
            "inside": s.inside,
            "outside": s.outside,
            "deciding": self.deciding,
            "initiating": s.keep is not None,
            "reconnecting": s.reconnecting,
        }

    # -- input -----------------------------------------------------------------------------

    def handle(self, event: Input, now: float) -> list[Action]:
        if isinstance(event, Moved):
            return self._moved(now)
        if isinstance(event, AddressAcquired):
            return self._address_acquired(event.address, now)
        if isinstance(event, AgentHeard):
            return self._leave_outside(now) if self.state.outside else []
        if isinstance(event, Registered):
            return self._registered(event.mode, now)
        if isinstance(event, ReturnedHome):
            return self._cancel_decision() + self._set_inside(now)
        if isinstance(event, IcmpUnreachable):
            return self._unreachable(event, now)
        if isinstance(event, HomeAgentAnswered):
            if event.path == "tunnel":
                return self._path_checked(event.answered, now, event.rtt_s)
            return self._probed(event.answered, now)
        if isinstance(event, TunnelSeen):
            return self._tunnel_seen(event, now)
        if isinstance(event, InitiateDone):
            return self._initiated(event, now)
        if isinstance(event, OuterRegistered):
            return self._outer_registered(event, now)
        if isinstance(event, TimerFired):
            return self._timer(event.name, now)
        raise TypeError(f"not a boundary input: {event!r}")

    # -- moves and addresses ---------------------------------------------------------------

    def _moved(self, now: float) -> list[Action]:
        self.state.moved_at = now
        # what was pending was about the old attachment: the decision, its wait for a TIA,
        # and initiations (the next address brings its own attempt)
        return self._cancel_decision() + self._drop_wait("decision") + self._cancel_keep()

    def _address_acquired(self, address: str | None, now: float) -> list[Action]:
        s, cfg, arch = self.state, self.config, self.arch
        s.address = address
        outside = s.outside is not None
        if arch.outer == "proxy":
            out: list[Action] = [_emit("boundary_probe", proxy=cfg.proxy, outside=outside)]
        else:
            out = [_emit("boundary_probe", gateway=cfg.gateway, outside=outside)]
        if arch.outer is not None and outside and address is not None:
            # outside already: follow underneath the tunnel at once, and ask the HA directly
            return out + self._register_outer(address, now, moved_only=True) + self._probe()
        if arch.race_gateway:
            until = now + cfg.scale(cfg.decision_timeout) + cfg.scale(DECISION_WAIT_S)
            gateway, ike = cfg.gateway_for(address)
            if address is None and s.gateway is not None:  # no address: nothing to choose by
                gateway, ike = s.gateway, s.ike
            changed = s.gateway is not None and gateway != s.gateway
            s.gateway, s.ike = gateway, ike
            if not outside:  # inside or unknown: the core's direct registration is the probe
                out += self._keep_up(now, until=until, fresh=changed)
            elif changed:
                # another gateway here: MOBIKE cannot move the tunnel there; a new IKE SA
                # with it, and its new TIA a new registration (RFC 5266 section 5)
                out.append(_emit("vpn_gateway_changed", gateway=gateway, ike=ike))
                s.outside = None
                out += self._keep_up(now, until=until, fresh=True)
            elif not cfg.mobike:
                # without MOBIKE the tunnel cannot follow us: a new IKE SA, then (a new TIA
                # or not) a new registration through it
                s.outside = None
                out += self._keep_up(now, until=until, fresh=True)
            else:  # outside with MOBIKE: is the home agent reachable here without the VPN?
                out += self._probe()
        s.deciding = True
        return [*out, SetTimer(T_DECIDE, now + cfg.scale(cfg.decision_timeout))]

    # -- the decision ----------------------------------------------------------------------

    def _unreachable(self, e: IcmpUnreachable, now: float) -> list[Action]:
        """ICMP destination unreachable for the direct registration: outside, without waiting
        out the timer."""
        if e.icmp_type != 3 or e.dst != self.mn.home_agent or not self.state.deciding:
            return []
        out = self._cancel_decision()
        out.append(_emit("home_agent_unreachable", code=e.code, phase="home_agent_unreachable"))
        return out + self._decide(now)

    def _decide(self, now: float) -> list[Action]:
        s = self.state
        s.deciding = False
        if self.arch.outer is None:  # does the gateway give us a tunnel?
            return self._start_wait("decision", now, self.config.scale(DECISION_WAIT_S))
        if self.mn.registered and self.mn.mode in INSIDE_MODES:
            return []
        if s.address is None:
            return [_emit("boundary_decision", inside=None, reason="no address")]
        if self.arch.outer == "x-mip":  # the x-HA first; the tunnel once it accepts
            s.bringing_up = True
        else:
            s.inside = False
        return self._register_outer(s.address, now, moved_only=False)

    def _decided(self, tia: str | None, now: float) -> list[Action]:
        """The gateway's answer to a decision (or a new TIA seen by the tunnel check)."""
        s, mode = self.state, self.arch.mode
        if tia is None:
            return [_emit("boundary_decision", inside=None, reason="neither answered")]
        if self.mn.mode in INSIDE_MODES and self.mn.registered:
            return []  # the home agent answered meanwhile: inside after all
        if s.outside == tia and self.mn.mode == mode:
            # same TIA: MOBIKE moved the tunnel, the registration stays
            return [
                _emit(
                    "boundary_decision",
                    inside=False,
                    tia=tia,
                    moved_only=True,
                    mode=mode,
                    phase="boundary_decision",
                    after_ms=self._after_ms(now),
                )
            ]
        s.inside = False
        out: list[Action] = [
            _emit(
                "boundary_decision",
                inside=False,
                tia=tia,
                mode=mode,
                phase="boundary_decision",
                after_ms=self._after_ms(now),
            )
        ]
        if tia != s.outside:
            s.outside = tia
            out += self._start_watch(now)
            attachment = Attachment(
                mode,
                care_of=tia,
                src=tia,
                iface=self.config.tia_iface,
                colocated=True,
                via_vpn=True,
            )
            out.append(UseAttachment(attachment))
        return out

    def _register_outer(self, address: str, now: float, *, moved_only: bool) -> list[Action]:
        """Outside: register our address underneath the tunnel (x-HA, or the MIP proxy)."""
        s, cfg = self.state, self.config
        if self.arch.outer == "x-mip":
            s.outer_coa = address
            attachment = Attachment(
                "c", care_of=address, src=address, iface=cfg.link, colocated=True
            )
            return [UseOuterAttachment(attachment)]
        out: list[Action] = [
            _emit(
                "boundary_decision",
                inside=False,
                mode=self.arch.mode,
                proxy=cfg.proxy,
                care_of=address,
                moved_only=moved_only,
                phase="boundary_decision",
                after_ms=self._after_ms(now),
            )
        ]
        if s.outside is None:
            out.append(BindVpnToHome(True, cfg.gateway))
        s.outside = address
        attachment = Attachment(
            self.arch.mode,
            care_of=address,
            src=address,
            iface=cfg.link,
            colocated=True,
            home_agent=cfg.proxy,
        )
        return [*out, UseAttachment(attachment)]

    def _outer_registered(self, e: OuterRegistered, now: float) -> list[Action]:
        # the mobile node's own stream of events says where x-MIP stands (a phase)
        out: list[Action] = [
            _emit(
                "external_registration",
                mode=self.arch.mode,
                care_of=e.care_of,
                udp=e.udp,
                latency=e.latency,
                phase="external_registration",
            )
        ]
        if self.state.bringing_up:
            self.state.bringing_up = False
            # after this batch of actions: the x-MIP tunnel and the x-HoA come with it
            out += self._keep_up(now, until=None, after_batch=True, then_wait=True)
        return out

    def _registered(self, mode: str | None, now: float) -> list[Action]:
        if mode == self.arch.mode:
            if self.arch.outer != "proxy":
                return []
            # the proxy accepted: the tunnel, bound to the home address, rides inside ours;
            # after this batch, which brings that tunnel and its routes
            self.state.proxy_binding = self.mn.attachment
            return self._keep_up(now, until=None, after_batch=True)
        out = self._cancel_decision()
        if mode in INSIDE_MODES:  # the home agent answered directly
            out += self._set_inside(now)
        return out

    # -- inside again ----------------------------------------------------------------------

    def _set_inside(self, now: float) -> list[Action]:
        """The home agent answered directly: inside. The VPN is closed."""
        s = self.state
        was_outside = not s.inside
        s.inside = True
        out = self._forget_outside()
        out.append(
            _emit(
                "boundary_decision",
                inside=True,
                phase="boundary_decision",
                after_ms=self._after_ms(now),
                changed=was_outside,
            )
        )
        out.append(TerminateVpn(INSIDE_TERMINATE_S))
        return out + self._leave_outer()

    def _forget_outside(self) -> list[Action]:
        """What is kept while outside, dropped on the way inside."""
        s = self.state
        out = self._cancel_keep()  # inside: the VPN is closed, not brought back
        if self.arch.outer == "proxy":
            if s.outside is not None:
                out.append(BindVpnToHome(False, self.config.gateway))
            if s.proxy_binding is not None:
                # the proxy would otherwise answer our next trip outside from a binding the
                # HA has since replaced (its own registration there is not renewed by ours)
                out.append(DeregisterFrom(s.proxy_binding))
                s.proxy_binding = None
        s.outside = None
        return out

    def _leave_outside(self, now: float) -> list[Action]:
        """An agent heard, or the home agent answered a direct echo, while outside: the MN
        core registers directly (its acceptance decides "inside")."""
        s = self.state
        out = self._cancel_keep()  # the home agent answers here: no tunnel to bring back
        if self.arch.outer == "proxy" and s.outside is not None:
            out.append(BindVpnToHome(False, self.config.gateway))
        s.outside = None
        out.append(UseAttachment(None))
        return out + self._leave_outer()

    def _leave_outer(self) -> list[Action]:
        s = self.state
        s.bringing_up = False
        if s.outer_coa is None:
            return []
        s.outer_coa = None
        return [UseOuterAttachment(None)]

    # -- probing the home agent directly ---------------------------------------------------

    def _probe(self) -> list[Action]:
        cfg = self.config
        timeout = cfg.scale(cfg.decision_timeout)
        return [ProbeHomeAgent("direct", self.mn.home_agent, timeout, iface=cfg.link)]

    def _probed(self, answered: bool, now: float) -> list[Action]:
        out: list[Action] = [_emit("home_agent_probe", answered=answered)]
        if answered and self.state.outside is not None:
            out += self._leave_outside(now)
        return out

    # -- initiations, retried ----------------------------------------------------------------

    def _keep_up(
        self,
        now: float,
        *,
        until: float | None,
        fresh: bool = False,
        after_batch: bool = False,
        purpose: str = "",
        then_wait: bool = False,
    ) -> list[Action]:
        """Initiate until the tunnel is up, or until cancelled, superseded or past ``until``."""
        out = self._cancel_keep()
        keep = _Keep(next(self._numbers), until, self.arch.retries, purpose, then_wait)
        self.state.keep = keep
        if purpose == "reconnect":
            self.state.reconnecting = True
        timeout = self._initiate_timeout()
        out.append(InitiateVpn(keep.attempt, timeout, fresh, after_batch, self.state.ike))
        return out

    def _initiate_timeout(self) -> float:
        seconds = INITIATE_TIMEOUT_S if self.arch.retries else SINGLE_INITIATE_TIMEOUT_S
        return self.config.scale(seconds)

    def _cancel_keep(self) -> list[Action]:
        keep, self.state.keep = self.state.keep, None
        if keep is None:
            return []
        if keep.purpose == "reconnect":
            self.state.reconnecting = False
        return [CancelTimer(T_RETRY)]

    def _initiated(self, e: InitiateDone, now: float) -> list[Action]:
        out: list[Action] = []
        if e.error is not None:
            out.append(_emit("vpn_initiate_failed", error=e.error))
        keep = self.state.keep
        if keep is None or keep.attempt != e.attempt:  # cancelled or superseded meanwhile
            return out + (self._wake_waits(now) if e.state == UP else [])
        if e.state == UP:
            return out + self._kept(keep, now, up=True)
        if _past(keep.until, now) or not keep.retries:
            return out + self._kept(keep, now, up=False)
        backoff, scale = self.config.backoff, self.config.scale
        if e.state == CONNECTING:
            delay = scale(backoff.first_s)  # charon's own attempt: look again soon
        else:
            keep.failures += 1
            delay = scale(backoff.delay(keep.failures))
            out.append(
                _emit(
                    "vpn_retry",
                    attempt=keep.failures + 1,
                    delay_ms=round(delay * 1000),
                    error=e.error,
                )
            )
        out.append(SetTimer(T_RETRY, now + delay))
        return out

    def _retry(self, now: float) -> list[Action]:
        keep = self.state.keep
        if keep is None:
            return []
        if _past(keep.until, now):
            return self._kept(keep, now, up=False)
        return [InitiateVpn(keep.attempt, self._initiate_timeout(), ike=self.state.ike)]

    def _kept(self, keep: _Keep, now: float, *, up: bool) -> list[Action]:
        """The initiations in ``keep`` are over: the tunnel is up, or it is past the deadline."""
        s = self.state
        s.keep = None
        if keep.purpose == "reconnect":
            s.reconnecting = False
        if not up:
            return []
        out = self._wake_waits(now)  # a waiting decision need not poll on
        if keep.then_wait:
            out += self._start_wait("decision", now, self.config.scale(DECISION_WAIT_S))
        return out

    # -- waiting for the tunnel inner address ----------------------------------------------

    def _start_wait(self, purpose: str, now: float, timeout: float) -> list[Action]:
        query = next(self._numbers)
        self.state.waits[purpose] = _Wait(query, now + timeout)
        return [CancelTimer(T_POLL + purpose), QueryTunnel(query, watch=purpose == "watch")]

    def _drop_wait(self, purpose: str) -> list[Action]:
        if self.state.waits.pop(purpose, None) is None:
            return []
        return [CancelTimer(T_POLL + purpose)]

    def _tunnel_seen(self, e: TunnelSeen, now: float) -> list[Action]:
        purpose = next((p for p, w in self.state.waits.items() if w.query == e.query), None)
        if purpose is None:
            return []  # a wait dropped or superseded meanwhile
        wait = self.state.waits[purpose]
        wait.in_flight = False
        if e.tia is not None:
            return self._waited(purpose, e.tia, now)
        if wait.woken:  # our own initiation completed while charon was asked: again at once
            wait.woken = False
            return self._poll(purpose, now)
        return [SetTimer(T_POLL + purpose, now + POLL_S)]

    def _poll(self, purpose: str, now: float) -> list[Action]:
        wait = self.state.waits.get(purpose)
        if wait is None:
            return []
        if now >= wait.deadline:
            return self._waited(purpose, None, now)
        wait.in_flight = True
        return [QueryTunnel(wait.query, watch=purpose == "watch")]

    def _wake_waits(self, now: float) -> list[Action]:
        out: list[Action] = []
        for purpose, wait in list(self.state.waits.items()):
            if wait.in_flight:
                wait.woken = True
            else:
                out += [CancelTimer(T_POLL + purpose), *self._poll(purpose, now)]
        return out

    def _waited(self, purpose: str, tia: str | None, now: float) -> list[Action]:
        del self.state.waits[purpose]
        if purpose == "watch":
            return self._tunnel_checked(tia, now)
        return self._decided(tia, now)

    # -- outside: watching the tunnel ------------------------------------------------------

    def _start_watch(self, now: float) -> list[Action]:
        """Outside, the tunnel may be re-established without a move (DPD after a gateway
        restart, a rekey): a different TIA then needs a new registration."""
        if self.state.watching:
            return []
        self.state.watching = True
        return [SetTimer(T_WATCH, now + WATCH_INTERVAL_S)]

    def _watch(self, now: float) -> list[Action]:
        if self.state.outside is None:
            self.state.watching = False
            return []
        return self._start_wait("watch", now, self.config.scale(WATCH_WAIT_S))

    def _tunnel_checked(self, tia: str | None, now: float) -> list[Action]:
        s = self.state
        if s.outside is None:
            s.watching = False
            return []
        out: list[Action] = []
        if tia is not None and tia != s.outside:
            out.append(_emit("tia_changed", old=s.outside, new=tia))
            out += self._decided(tia, now)
        elif tia is not None and self._settled(now):
            out += self._check_path(tia)
        elif tia is None:
            out += self._reconnect(now)
        out.append(SetTimer(T_WATCH, now + WATCH_INTERVAL_S))
        return out

    def _settled(self, now: float) -> bool:
        """Long enough since the last move that MOBIKE and the registration are done."""
        cfg = self.config
        return (
            cfg.path_check > 0
            and self.mn.mode == self.arch.mode
            and self.mn.registered
            and now - self.state.moved_at > cfg.scale(3 * max(cfg.path_check, 1.0))
        )

    def _reconnect(self, now: float) -> list[Action]:
        """Outside, and the tunnel is gone without a move: charon gave up on it (a restarted
        gateway that answered NO_PROPOSAL_CHOSEN before loading its connections). Initiate
        until it is up; the tunnel check then sees the TIA again (a new one: a new
        registration)."""
        if self.state.reconnecting:
            return []
        out: list[Action] = [_emit("vpn_tunnel_lost", tia=self.state.outside)]
        return out + self._keep_up(now, until=None, purpose="reconnect")

    def _check_path(self, tia: str) -> list[Action]:
        s, cfg = self.state, self.config
        if s.echo_out:  # its timeout may be longer than the watch's period
            return []
        s.echo_out = True
        s.echo_seq = s.echo_seq + 2 if s.echo_seq < 0xFFF0 else 3  # odd from 3: never the probe's 1
        timeout = cfg.scale(self._echo_timeout())
        return [ProbeHomeAgent("tunnel", self.mn.home_agent, timeout, source=tia, seq=s.echo_seq)]

    def _echo_timeout(self) -> float:
        """How long the next tunnel echo waits (unscaled; see ``ECHO_RTT_FACTOR``)."""
        s = self.state
        timeout = min(0.5, self.config.path_check)
        if s.echo_rtt is not None:
            timeout = max(timeout, ECHO_RTT_FACTOR * s.echo_rtt)
        return min(ECHO_TIMEOUT_MAX_S, timeout * 2**s.path_misses)

    def _path_checked(self, answered: bool, now: float, rtt: float | None = None) -> list[Action]:
        s = self.state
        s.echo_out = False
        if answered and rtt is not None:  # as TCP's smoothed round trip (RFC 6298), 1/8 gain
            s.echo_rtt = rtt if s.echo_rtt is None else 0.875 * s.echo_rtt + 0.125 * rtt
        if answered or s.outside is None:
            s.path_misses = 0
            return []
        s.path_misses += 1
        if s.path_misses < self.config.path_failures:
            return []
        s.path_misses = 0
        out: list[Action] = [_emit("vpn_path_dead", tia=s.outside)]
        return out + self._keep_up(now, until=None, fresh=True)

    # -- timers and helpers ----------------------------------------------------------------

    def _timer(self, name: str, now: float) -> list[Action]:
        if name == T_DECIDE:
            if not self.state.deciding:
                return []
            return self._decide(now)
        if name == T_RETRY:
            return self._retry(now)
        if name == T_WATCH:
            return self._watch(now)
        if name.startswith(T_POLL):
            return self._poll(name[len(T_POLL) :], now)
        return []

    def _cancel_decision(self) -> list[Action]:
        if not self.state.deciding:
            return []
        self.state.deciding = False
        return [CancelTimer(T_DECIDE)]

    def _after_ms(self, now: float) -> float:
        """Time since the last move, for the decision's events."""
        return round((now - self.state.moved_at) * 1000, 3)


def _past(until: float | None, now: float) -> bool:
    return until is not None and now >= until
