"""One entry point for every Mobile IPv4 message this package knows.

``decode(data)`` picks the decoder by the first byte: 1, 3, 4 are UDP-434 messages
(Registration Request/Reply, RFC 3519 Tunnel Data), 9 and 10 ICMP router discovery messages
(Agent Advertisement/Solicitation) -- the two sets do not overlap. ``icmp=True/False`` forces
the choice. It raises :class:`~agents.mip.errors.MalformedMessage` and nothing else.
``encode(msg, sas)`` works for both kinds.
"""

from __future__ import annotations

from collections.abc import Mapping

from agents.mip.auth import SecurityAssociation
from agents.mip.constants import IcmpType
from agents.mip.errors import MalformedMessage, UnknownExtension
from agents.mip.icmp import (
    AgentAdvertisement,
    AgentSolicitation,
    IcmpMessage,
    MobilityAgentExtension,
    decode_icmp,
    encode_icmp,
)
from agents.mip.messages import (
    Message,
    RegistrationReply,
    RegistrationRequest,
    TunnelData,
    decode_udp,
)
from agents.mip.messages import encode as encode_udp

__all__ = [
    "AgentAdvertisement",
    "AgentSolicitation",
    "AnyMessage",
    "MalformedMessage",
    "MobilityAgentExtension",
    "RegistrationReply",
    "RegistrationRequest",
    "TunnelData",
    "UnknownExtension",
    "decode",
    "decode_icmp",
    "decode_udp",
    "encode",
    "is_icmp",
]

AnyMessage = Message | IcmpMessage


def is_icmp(data: bytes) -> bool:
    """Does ``data`` look like an ICMP router discovery message rather than UDP-434?"""
    return bool(data) and data[0] in (IcmpType.ROUTER_ADVERTISEMENT, IcmpType.ROUTER_SOLICITATION)


def decode(data: bytes, *, icmp: bool | None = None) -> AnyMessage:
    """Decode a UDP-434 payload or an ICMP message (see the module docstring)."""
    if icmp is None:
        try:
            icmp = is_icmp(data)
        except TypeError:
            raise MalformedMessage(f"expected bytes, got {type(data).__name__}") from None
    return decode_icmp(data) if icmp else decode_udp(data)


def encode(msg: AnyMessage, sas: Mapping[int, SecurityAssociation] | None = None) -> bytes:
    """Wire bytes of any message (ICMP checksum included; auth extensions computed)."""
    if isinstance(msg, AgentAdvertisement | AgentSolicitation):
        return encode_icmp(msg)
    return encode_udp(msg, sas)
