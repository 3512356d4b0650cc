"""UDP-434 messages: Registration Request/Reply (RFC 5944 3.3, 3.4), Tunnel Data (RFC 3519 3.3).

``decode_udp(payload)`` returns one of :class:`RegistrationRequest`, :class:`RegistrationReply`,
:class:`TunnelData`, or raises :class:`~agents.mip.errors.MalformedMessage`. ``encode(msg,
sas)`` is the inverse; authentication extensions whose ``authenticator`` is ``None`` are
computed on the way, in order, from the security association with their SPI -- so one call
produces an MN-HA-authenticated request, or one with MN-HA and MN-FA authentication.

Addresses are dotted-quad strings; ``identification`` is the 64-bit integer; ``flags`` the raw
flags byte (see :class:`~agents.mip.constants.RequestFlag`).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Union

from agents.mip.auth import SecurityAssociation
from agents.mip.constants import ExtType, MessageType, RequestFlag
from agents.mip.errors import MalformedMessage, UnknownExtension
from agents.mip.extensions import PARSERS, AuthExtension, Extension, RawExtension
from agents.mip.ipv4 import aton, ntoa

__all__ = [
    "Message",
    "RegistrationReply",
    "RegistrationRequest",
    "TunnelData",
    "decode_udp",
    "encode",
    "find_extension",
]

REQUEST = struct.Struct("!BBH4s4s4sQ")  # 24 bytes
REPLY = struct.Struct("!BBH4s4sQ")  # 20 bytes
TUNNEL = struct.Struct("!BBH")  # 4 bytes
_U32 = struct.Struct("!I")
_AUTH_HDR = struct.Struct("!BBI")


def _find(extensions: list[Extension], ext_type: int) -> Extension | None:
    for ext in extensions:
        if ext.type == ext_type:
            return ext
    return None


def find_extension(extensions: list[Extension], ext_type: int) -> Extension | None:
    """First extension of ``ext_type`` in ``extensions``, or ``None``."""
    return _find(extensions, ext_type)


def _before(extensions: list[Extension], ext_type: int) -> list[Extension]:
    out = []
    for ext in extensions:
        if ext.type == ext_type:
            return out
        out.append(ext)
    return out


@dataclass(slots=True)
class RegistrationRequest:
    """Registration Request (type 1)."""

    home_address: str
    home_agent: str
    care_of_address: str
    identification: int
    lifetime: int
    flags: int = 0
    extensions: list[Extension] = field(default_factory=list)

    TYPE: ClassVar[int] = MessageType.REGISTRATION_REQUEST

    def has_flag(self, flag: RequestFlag) -> bool:
        return bool(self.flags & flag)

    def find(self, ext_type: int) -> Extension | None:
        return _find(self.extensions, ext_type)

    def authenticated_extensions(self) -> list[Extension]:
        """Extensions before the MN-HA authentication extension: the ones the home agent may
        trust (anything after it is not covered by the MN-HA authenticator)."""
        return _before(self.extensions, ExtType.MN_HA_AUTH)

    def encode(self, sas: Mapping[int, SecurityAssociation] | None = None) -> bytes:
        return encode(self, sas)


@dataclass(slots=True)
class RegistrationReply:
    """Registration Reply (type 3)."""

    code: int
    lifetime: int
    home_address: str
    home_agent: str
    identification: int
    extensions: list[Extension] = field(default_factory=list)

    TYPE: ClassVar[int] = MessageType.REGISTRATION_REPLY

    def find(self, ext_type: int) -> Extension | None:
        return _find(self.extensions, ext_type)

    def authenticated_extensions(self) -> list[Extension]:
        return _before(self.extensions, ExtType.MN_HA_AUTH)

    def encode(self, sas: Mapping[int, SecurityAssociation] | None = None) -> bytes:
        return encode(self, sas)


@dataclass(slots=True)
class TunnelData:
    """MIP Tunnel Data message (RFC 3519 section 3.3): a packet carried in UDP 434.

    ``next_header`` says what ``payload`` starts with: 4 an IPv4 header, 47 GRE, 55 a minimal
    encapsulation header.
    """

    next_header: int = 4
    payload: bytes = b""

    TYPE: ClassVar[int] = MessageType.TUNNEL_DATA

    def encode(self, sas: Mapping[int, SecurityAssociation] | None = None) -> bytes:
        return encode(self, sas)


Message = Union[RegistrationRequest, RegistrationReply, TunnelData]  # noqa: UP007


# --- decoding -----------------------------------------------------------------------------


def _decode_exts(data: bytes, off: int, msg: RegistrationRequest | RegistrationReply) -> None:
    """Decode the extensions from ``off`` into ``msg.extensions`` (inlined loop: hot path)."""
    exts = msg.extensions
    n = len(data)
    parsers = PARSERS
    while off < n:
        t = data[off]
        if off + 2 > n:
            raise MalformedMessage(f"extension type {t} truncated before its length byte", off)
        end = off + 2 + data[off + 1]
        if end > n:
            raise MalformedMessage(
                f"extension type {t} length {data[off + 1]} runs past the end "
                f"({n - off - 2} bytes left)",
                off,
            )
        parser = parsers.get(t)
        if parser is not None:
            exts.append(parser(data, off, end - off - 2))
        elif t < 128:
            raise UnknownExtension(t, off, msg)
        else:
            exts.append(RawExtension(t, data[off + 2 : end]))
        off = end


def decode_request(data: bytes) -> RegistrationRequest:
    if len(data) < 24:
        raise MalformedMessage(f"registration request truncated: {len(data)} of 24 bytes", 0)
    _, flags, life, home, ha, coa, ident = REQUEST.unpack_from(data)
    msg = RegistrationRequest(ntoa(home), ntoa(ha), ntoa(coa), ident, life, flags, [])
    if len(data) > 24:
        _decode_exts(data, 24, msg)
    return msg


def decode_reply(data: bytes) -> RegistrationReply:
    if len(data) < 20:
        raise MalformedMessage(f"registration reply truncated: {len(data)} of 20 bytes", 0)
    _, code, life, home, ha, ident = REPLY.unpack_from(data)
    msg = RegistrationReply(code, life, ntoa(home), ntoa(ha), ident, [])
    if len(data) > 20:
        _decode_exts(data, 20, msg)
    return msg


def decode_tunnel_data(data: bytes) -> TunnelData:
    if len(data) < 4:
        raise MalformedMessage(f"tunnel data truncated: {len(data)} of 4 bytes", 0)
    if len(data) == 4:
        raise MalformedMessage("tunnel data without a payload", 4)
    # Reserved (bytes 2-3): sent as zero, ignored on reception (RFC 3519 section 3.3).
    return TunnelData(data[1], bytes(data[4:]))


_DECODERS = {
    MessageType.REGISTRATION_REQUEST: decode_request,
    MessageType.REGISTRATION_REPLY: decode_reply,
    MessageType.TUNNEL_DATA: decode_tunnel_data,
}


def decode_udp(data: bytes) -> Message:
    """Decode a UDP-434 payload. Raises :class:`MalformedMessage` and nothing else."""
    if not isinstance(data, bytes):
        try:
            data = bytes(data)
        except TypeError:
            raise MalformedMessage(f"expected bytes, got {type(data).__name__}") from None
    if not data:
        raise MalformedMessage("empty message", 0)
    decoder = _DECODERS.get(data[0])
    if decoder is None:
        raise MalformedMessage(f"unknown Mobile IP message type {data[0]}", 0)
    return decoder(data)


# --- encoding -----------------------------------------------------------------------------


def _encode_exts(
    buf: bytearray, extensions: list[Extension], sas: Mapping[int, SecurityAssociation] | None
) -> None:
    for ext in extensions:
        if type(ext) is AuthExtension and ext.authenticator is None:
            sa = None if sas is None else sas.get(ext.spi)
            if sa is None:
                raise ValueError(f"no security association for SPI {ext.spi} to sign with")
            ext.offset = len(buf)
            buf += _AUTH_HDR.pack(ext.ext_type, 4 + sa.authenticator_length, ext.spi)
            buf += sa.compute(buf)
        else:
            if type(ext) is AuthExtension:
                ext.offset = len(buf)
            buf += ext.encode()


def encode(msg: Message, sas: Mapping[int, SecurityAssociation] | None = None) -> bytes:
    """Wire bytes of ``msg``. Raises ``ValueError`` for values that do not fit the format."""
    try:
        if isinstance(msg, RegistrationRequest):
            buf = bytearray(
                REQUEST.pack(
                    1,
                    msg.flags,
                    msg.lifetime,
                    aton(msg.home_address),
                    aton(msg.home_agent),
                    aton(msg.care_of_address),
                    msg.identification,
                )
            )
        elif isinstance(msg, RegistrationReply):
            buf = bytearray(
                REPLY.pack(
                    3,
                    msg.code,
                    msg.lifetime,
                    aton(msg.home_address),
                    aton(msg.home_agent),
                    msg.identification,
                )
            )
        elif isinstance(msg, TunnelData):
            return TUNNEL.pack(4, msg.next_header, 0) + bytes(msg.payload)
        else:
            raise ValueError(f"not a UDP-434 message: {type(msg).__name__}")
    except struct.error as exc:
        raise ValueError(f"{type(msg).__name__}: {exc}") from exc
    _encode_exts(buf, msg.extensions, sas)
    return bytes(buf)
