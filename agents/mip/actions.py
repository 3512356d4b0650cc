"""What the state machines ask their driver to do.

Every ``handle_*`` method of :mod:`agents.mip.mn`, :mod:`agents.mip.ha` and :mod:`agents.mip.fa`
returns a list of these, to be carried out in order. They are plain frozen slots dataclasses:
compare them in tests, log them with :func:`action_to_dict`.

Times are absolute seconds on the caller's monotonic clock (the ``now`` passed in). Timer names
are opaque strings owned by the machine: setting a name that is already armed re-arms it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Union

from agents.mip.constants import MIP_PORT

__all__ = [
    "Action",
    "CancelTimer",
    "Event",
    "GratuitousArp",
    "Neighbour",
    "ProxyArp",
    "Route",
    "Send",
    "SetTimer",
    "TunnelDown",
    "TunnelUp",
    "action_to_dict",
]


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``payload``.

    ``kind="udp"``: a UDP datagram to ``dst``:``dst_port`` from ``src``:``src_port`` (``None``:
    let the stack choose). ``kind="icmp"``: ``payload`` is a complete ICMP message (checksum
    included) for ``dst``; ports are ignored. ``iface`` pins the outgoing interface (needed for
    broadcasts/multicasts and for answering a visiting mobile node whose home address is not
    on the link); ``ttl`` overrides the IP TTL (router discovery messages use 1).
    """

    payload: bytes
    dst: str
    dst_port: int = MIP_PORT
    src: str | None = None
    src_port: int | None = None
    iface: str | None = None
    kind: str = "udp"
    ttl: int | None = None


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Arm (or re-arm) the timer ``name`` to fire at absolute time ``at``."""

    name: str
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Disarm the timer ``name`` (no-op if not armed)."""

    name: str


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened, for logs and measurements; ``data`` holds JSON-ready values.

    Names are snake_case; the ones each machine emits are listed in its module docstring.
    """

    name: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TunnelUp:
    """Start (or update) the tunnel carrying ``home_address``'s traffic.

    ``care_of`` is the registered care-of address; ``peer`` the other tunnel end as seen on the
    wire (for a UDP tunnel through a NAT: the NAT's public address, not the care-of address);
    ``encapsulation`` ``"ipip"`` (RFC 2003) or ``"udp"`` (RFC 3519, to ``peer``:``peer_port``);
    ``reverse`` whether traffic from the mobile node goes back through the tunnel (RFC 3024);
    ``keepalive`` the RFC 3519 keepalive interval (s) for UDP tunnels; ``role`` which end the
    driver is (``"ha"``, ``"fa"`` or ``"mn"``); ``local`` our own tunnel end address.
    """

    home_address: str
    care_of: str
    peer: str
    local: str | None = None
    encapsulation: str = "ipip"
    peer_port: int | None = None
    reverse: bool = False
    keepalive: int | None = None
    role: str = "ha"
    iface: str | None = None
    via_vpn: bool = False  # the care-of address is an IPsec VPN's inner address (mode mc)


@dataclass(frozen=True, slots=True)
class TunnelDown:
    """Stop the tunnel for ``home_address`` to ``care_of`` (``peer`` as in :class:`TunnelUp`)."""

    home_address: str
    care_of: str
    peer: str
    role: str = "ha"


@dataclass(frozen=True, slots=True)
class ProxyArp:
    """Answer ARP for ``address`` on the home link (``add``) or stop (RFC 5944 section 4.6)."""

    address: str
    add: bool = True
    iface: str | None = None


@dataclass(frozen=True, slots=True)
class GratuitousArp:
    """Broadcast a gratuitous ARP for ``address`` (with our own link-layer address)."""

    address: str
    iface: str | None = None


@dataclass(frozen=True, slots=True)
class Neighbour:
    """Enter ``address`` at link-layer address ``mac`` on ``iface`` as a neighbour (replacing
    what is there): a foreign agent's visitor, whose MAC came with its Registration Request
    (RFC 5944 section 4.6). Carried out before any ``Send`` of the same batch."""

    address: str
    mac: str
    iface: str


@dataclass(frozen=True, slots=True)
class Route:
    """Add/remove a route: ``prefix`` (e.g. ``"10.1.0.7/32"`` or ``"0.0.0.0/0"``) via ``via``
    (``None``: on-link) out of ``iface``. A foreign agent uses it for its visitors' host routes,
    a mobile node for its default router."""

    prefix: str
    via: str | None = None
    iface: str | None = None
    add: bool = True


Action = Union[  # noqa: UP007
    Send,
    SetTimer,
    CancelTimer,
    Event,
    TunnelUp,
    TunnelDown,
    ProxyArp,
    GratuitousArp,
    Neighbour,
    Route,
]


def action_to_dict(action: Action) -> dict[str, Any]:
    """A JSON-ready dict of an action, with its class name under ``"action"``."""
    d: dict[str, Any] = {"action": type(action).__name__}
    d.update(asdict(action))
    if isinstance(action, Send):
        d["payload"] = action.payload.hex()
    return d
