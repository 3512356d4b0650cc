"""Agent Advertisement and Agent Solicitation: ICMP Router Discovery (RFC 1256) + RFC 5944 s.2.

An Agent Advertisement is an ICMP Router Advertisement (type 9) followed by the Mobility Agent
Advertisement extension (16) and optionally the Prefix-Lengths extension (19), an RFC 3012
Challenge (24), other extensions and one-byte Padding (0). An Agent Solicitation is an ICMP
Router Solicitation (type 10) -- identical on the wire (RFC 5944 section 2.2).

The byte strings here are ICMP messages (from the ICMP type byte on), checksum included.
A type 9 message without extension 16 is an ordinary router advertisement: it decodes with
``agent=None`` and a mobile node ignores it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar, Union

from agents.mip.constants import AdvExtType, AdvFlag, IcmpType
from agents.mip.errors import MalformedMessage, UnknownExtension
from agents.mip.extensions import RawExtension
from agents.mip.ipv4 import aton, internet_checksum, ntoa

__all__ = [
    "AgentAdvertisement",
    "AgentSolicitation",
    "IcmpMessage",
    "MobilityAgentExtension",
    "decode_icmp",
    "encode_icmp",
]

_RA = struct.Struct("!BBHBBH")
_ROUTER = struct.Struct("!4si")
_MAE = struct.Struct("!BBHHH")
_SOL = struct.Struct("!BBHI")

CODE_ROUTES = 0  # the agent also routes ordinary traffic
CODE_MOBILITY_ONLY = 16  # RFC 5944 section 2.1: "does not route common traffic"


@dataclass(slots=True)
class MobilityAgentExtension:
    """Mobility Agent Advertisement extension (type 16, RFC 5944 section 2.1.1).

    ``registration_lifetime``: the longest lifetime (s) this agent accepts in a Registration
    Request (0xffff = infinite); ``flags``: :class:`~agents.mip.constants.AdvFlag` bits;
    ``care_of_addresses``: offered FA care-of addresses (at least one when F is set).
    """

    sequence: int
    registration_lifetime: int
    flags: int
    care_of_addresses: list[str] = field(default_factory=list)

    def has_flag(self, flag: AdvFlag) -> bool:
        return bool(self.flags & flag)


@dataclass(slots=True)
class AgentAdvertisement:
    """ICMP Router Advertisement with mobility extensions.

    ``lifetime`` is the ICMP RA lifetime: how long (s) the advertisement stays valid without a
    new one -- what a mobile node uses for lifetime-based move detection (RFC 5944 2.4.2.1).
    ``routers`` are (address, preference) pairs. ``prefix_lengths`` has one entry per router
    address (RFC 5944 section 2.1.2). ``padding`` counts trailing one-byte Padding extensions.
    """

    lifetime: int
    routers: list[tuple[str, int]] = field(default_factory=list)
    agent: MobilityAgentExtension | None = None
    prefix_lengths: list[int] | None = None
    challenge: bytes | None = None
    extensions: list[RawExtension] = field(default_factory=list)
    code: int = CODE_ROUTES
    padding: int = 0

    TYPE: ClassVar[int] = IcmpType.ROUTER_ADVERTISEMENT

    def encode(self) -> bytes:
        return encode_icmp(self)


@dataclass(slots=True)
class AgentSolicitation:
    """ICMP Router Solicitation (type 10, code 0) used as Agent Solicitation."""

    TYPE: ClassVar[int] = IcmpType.ROUTER_SOLICITATION

    def encode(self) -> bytes:
        return encode_icmp(self)


IcmpMessage = Union[AgentAdvertisement, AgentSolicitation]  # noqa: UP007


def _finish(buf: bytearray) -> bytes:
    buf[2:4] = b"\0\0"
    csum = internet_checksum(buf)
    buf[2] = csum >> 8
    buf[3] = csum & 0xFF
    return bytes(buf)


def encode_icmp(msg: IcmpMessage) -> bytes:
    """Wire bytes (checksum computed). Raises ``ValueError`` for out-of-range values."""
    try:
        if isinstance(msg, AgentSolicitation):
            return _finish(bytearray(_SOL.pack(10, 0, 0, 0)))
        if not isinstance(msg, AgentAdvertisement):
            raise ValueError(f"not an ICMP router discovery message: {type(msg).__name__}")
        buf = bytearray(_RA.pack(9, msg.code, 0, len(msg.routers), 2, msg.lifetime))
        for address, preference in msg.routers:
            buf += _ROUTER.pack(aton(address), preference)
        if msg.agent is not None:
            a = msg.agent
            buf += _MAE.pack(
                AdvExtType.MOBILITY_AGENT,
                6 + 4 * len(a.care_of_addresses),
                a.sequence,
                a.registration_lifetime,
                a.flags,
            )
            for coa in a.care_of_addresses:
                buf += aton(coa)
        if msg.prefix_lengths is not None:
            if len(msg.prefix_lengths) != len(msg.routers):
                raise ValueError("need one prefix length per router address (RFC 5944 2.1.2)")
            buf += bytes((AdvExtType.PREFIX_LENGTHS, len(msg.prefix_lengths)))
            buf += bytes(msg.prefix_lengths)
        if msg.challenge is not None:
            if not 4 <= len(msg.challenge) <= 255:
                raise ValueError("challenge must be 4-255 bytes (RFC 3012 section 2)")
            buf += bytes((AdvExtType.CHALLENGE, len(msg.challenge))) + msg.challenge
        for ext in msg.extensions:
            buf += ext.encode()
        buf += b"\0" * msg.padding
    except struct.error as exc:
        raise ValueError(f"{type(msg).__name__}: {exc}") from exc
    return _finish(buf)


def _decode_advertisement(data: bytes) -> AgentAdvertisement:
    n = len(data)
    _, code, _, num, entry_size, lifetime = _RA.unpack_from(data)
    if code not in (CODE_ROUTES, CODE_MOBILITY_ONLY):
        raise MalformedMessage(f"router advertisement code {code} (expected 0 or 16)", 1)
    if entry_size != 2:
        raise MalformedMessage(f"address entry size {entry_size} (RFC 1256 requires 2)", 5)
    off = 8
    if off + 8 * num > n:
        raise MalformedMessage(f"{num} router addresses need {8 * num} bytes, have {n - off}", 4)
    routers = []
    for _ in range(num):
        addr, pref = _ROUTER.unpack_from(data, off)
        routers.append((ntoa(addr), pref))
        off += 8
    adv = AgentAdvertisement(lifetime, routers, code=code)
    while off < n:
        t = data[off]
        if t == AdvExtType.PADDING:
            adv.padding += 1
            off += 1
            continue
        if adv.padding:
            raise MalformedMessage("extension after padding", off)
        if off + 2 > n:
            raise MalformedMessage(f"extension type {t} truncated before its length byte", off)
        ln = data[off + 1]
        end = off + 2 + ln
        if end > n:
            raise MalformedMessage(
                f"extension type {t} length {ln} runs past the end ({n - off - 2} bytes left)",
                off,
            )
        if t == AdvExtType.MOBILITY_AGENT:
            if adv.agent is not None:
                raise MalformedMessage("second mobility agent advertisement extension", off)
            if ln < 6 or (ln - 6) % 4:
                raise MalformedMessage(f"mobility agent extension length {ln} is not 6+4N", off)
            _, _, seq, reg_life, flags = _MAE.unpack_from(data, off)
            coas = [ntoa(data[p : p + 4]) for p in range(off + 8, end, 4)]
            adv.agent = MobilityAgentExtension(seq, reg_life, flags, coas)
        elif t == AdvExtType.PREFIX_LENGTHS:
            if adv.prefix_lengths is not None:
                raise MalformedMessage("second prefix-lengths extension", off)
            if ln != num:
                raise MalformedMessage(
                    f"prefix-lengths extension has {ln} entries for {num} router addresses", off
                )
            lengths = list(data[off + 2 : end])
            if any(p > 32 for p in lengths):
                raise MalformedMessage("prefix length above 32", off + 2)
            adv.prefix_lengths = lengths
        elif t == AdvExtType.CHALLENGE:
            if adv.challenge is not None:
                raise MalformedMessage("second challenge extension", off)
            if ln < 4:
                raise MalformedMessage(f"challenge length {ln} < 4 (RFC 3012)", off)
            adv.challenge = bytes(data[off + 2 : end])
        elif t < 128:
            raise UnknownExtension(t, off, adv)
        else:
            adv.extensions.append(RawExtension(t, bytes(data[off + 2 : end])))
        off = end
    return adv


def decode_icmp(data: bytes, *, verify_checksum: bool = True) -> IcmpMessage:
    """Decode an ICMP Router Advertisement/Solicitation. Raises :class:`MalformedMessage`."""
    if not isinstance(data, bytes):
        try:
            data = bytes(data)
        except TypeError:
            raise MalformedMessage(f"expected bytes, got {type(data).__name__}") from None
    if len(data) < 8:
        raise MalformedMessage(f"ICMP message truncated: {len(data)} of 8 bytes", 0)
    if verify_checksum and internet_checksum(data) != 0:
        raise MalformedMessage("bad ICMP checksum", 2)
    t = data[0]
    if t == IcmpType.ROUTER_SOLICITATION:
        if data[1] != 0:
            raise MalformedMessage(f"router solicitation code {data[1]} (RFC 1256: 0)", 1)
        if len(data) != 8:
            raise MalformedMessage(f"{len(data) - 8} trailing bytes after solicitation", 8)
        return AgentSolicitation()
    if t == IcmpType.ROUTER_ADVERTISEMENT:
        return _decode_advertisement(data)
    raise MalformedMessage(f"ICMP type {t} is not router discovery (9/10)", 0)
