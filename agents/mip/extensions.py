"""Extensions of registration messages: objects, decoding, encoding.

Wire format (RFC 5944 section 1.9): ``Type (1) | Length (1) | Data (Length bytes)``. Types
0-127 are non-skippable: a receiver that does not understand one rejects the message (see
:class:`~agents.mip.errors.UnknownExtension`); types 128-255 are skippable: an unknown one is
stepped over using its Length and kept here as a :class:`RawExtension` so that nothing is lost
when a message is shown or relayed.

Every class has a ``type`` property and ``encode() -> bytes``. Reserved fields are "sent as
zero and ignored on reception" throughout (RFC 3519 section 3.1.3), so they are not kept.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Union

from agents.mip.constants import AUTH_EXT_TYPES, Encapsulation, ExtType
from agents.mip.errors import MalformedMessage

__all__ = [
    "AuthExtension",
    "ChallengeExtension",
    "EncapDeliveryStyle",
    "Extension",
    "NaiExtension",
    "RawExtension",
    "UdpTunnelReply",
    "UdpTunnelRequest",
    "decode_extension",
]

_U32 = struct.Struct("!I")
_AUTH_HDR = struct.Struct("!BBI")
_UTRQ = struct.Struct("!BBBBBBH")  # type len subtype res1 flags(F R res2) encap res3
_UTRP = struct.Struct("!BBBBHH")  # type len subtype code flags(F r res) keepalive


@dataclass(slots=True)
class AuthExtension:
    """MN-HA (32), MN-FA (33) or FA-HA (34) authentication extension (RFC 5944 3.5.2-3.5.4).

    ``authenticator=None`` asks the encoder to compute it from the SA with this ``spi``
    (see :func:`agents.mip.messages.encode`). ``offset`` is where the extension started in the
    buffer it was decoded from (-1 when built by hand); the authenticator covers
    ``buffer[:offset + 6]``.
    """

    ext_type: int
    spi: int
    authenticator: bytes | None = None
    offset: int = field(default=-1, compare=False, repr=False)

    @property
    def type(self) -> int:
        return self.ext_type

    @property
    def covered_length(self) -> int:
        """How many leading bytes of the message the authenticator covers."""
        return self.offset + 6

    def encode(self) -> bytes:
        if self.authenticator is None:
            raise ValueError(f"extension {self.ext_type}: authenticator not computed (no SA)")
        if self.ext_type not in AUTH_EXT_TYPES:
            raise ValueError(f"extension type {self.ext_type} is not an authentication extension")
        if len(self.authenticator) > 251:
            raise ValueError("authenticator longer than 251 bytes")
        return (
            _AUTH_HDR.pack(self.ext_type, 4 + len(self.authenticator), self.spi)
            + self.authenticator
        )


@dataclass(slots=True)
class NaiExtension:
    """Mobile Node NAI extension (RFC 2794 section 2): the user@realm identity, UTF-8."""

    nai: str

    @property
    def type(self) -> int:
        return ExtType.NAI

    def encode(self) -> bytes:
        raw = self.nai.encode("utf-8")
        if not 1 <= len(raw) <= 255:
            raise ValueError(f"NAI must be 1-255 bytes of UTF-8, got {len(raw)}")
        return bytes((ExtType.NAI, len(raw))) + raw


@dataclass(slots=True)
class ChallengeExtension:
    """MN-FA Challenge extension (RFC 3012 section 3.1): echoes an advertised challenge."""

    challenge: bytes

    @property
    def type(self) -> int:
        return ExtType.MN_FA_CHALLENGE

    def encode(self) -> bytes:
        if not 4 <= len(self.challenge) <= 255:
            raise ValueError("challenge must be 4-255 bytes (RFC 3012 section 2)")
        return bytes((ExtType.MN_FA_CHALLENGE, len(self.challenge))) + self.challenge


@dataclass(slots=True)
class EncapDeliveryStyle:
    """Encapsulating Delivery Style extension (RFC 3024 section 3.3): Type 130, Length 0.

    The mobile node asks the foreign agent to accept its packets encapsulated (MN->FA) for
    the reverse tunnel; it follows the MN-HA authentication extension because only the FA
    consumes it.
    """

    @property
    def type(self) -> int:
        return ExtType.ENCAP_DELIVERY_STYLE

    def encode(self) -> bytes:
        return bytes((ExtType.ENCAP_DELIVERY_STYLE, 0))


@dataclass(slots=True)
class UdpTunnelRequest:
    """UDP Tunnel Request extension (RFC 3519 section 3.1), 8 bytes, Length 6.

    ``force`` is the F flag (tunnel in UDP even when no NAT is detected), ``via_fa`` the R flag
    (the FA advertisement had R set, so a co-located mobile node registers through the FA),
    ``encapsulation`` what is carried inside UDP (4 IP-in-IP, 47 GRE, 55 minimal).
    """

    encapsulation: int = Encapsulation.IPIP
    force: bool = False
    via_fa: bool = False
    subtype: int = 0

    @property
    def type(self) -> int:
        return ExtType.UDP_TUNNEL_REQUEST

    def encode(self) -> bytes:
        flags = (0x80 if self.force else 0) | (0x40 if self.via_fa else 0)
        try:
            return _UTRQ.pack(
                ExtType.UDP_TUNNEL_REQUEST, 6, self.subtype, 0, flags, self.encapsulation, 0
            )
        except struct.error as exc:
            raise ValueError(f"UDP tunnel request: {exc}") from exc


@dataclass(slots=True)
class UdpTunnelReply:
    """UDP Tunnel Reply extension (RFC 3519 section 3.2), 8 bytes, Length 6, non-skippable.

    ``code`` 0 = will tunnel in UDP, 64 = declined; ``forced`` (F) says the tunnel is used
    because the request forced it, not because a NAT was detected; ``keepalive`` is the
    interval in seconds the mobile node uses for keepalives.
    """

    code: int = 0
    keepalive: int = 0
    forced: bool = False
    subtype: int = 0

    @property
    def type(self) -> int:
        return ExtType.UDP_TUNNEL_REPLY

    def encode(self) -> bytes:
        try:
            return _UTRP.pack(
                ExtType.UDP_TUNNEL_REPLY,
                6,
                self.subtype,
                self.code,
                0x8000 if self.forced else 0,
                self.keepalive,
            )
        except struct.error as exc:
            raise ValueError(f"UDP tunnel reply: {exc}") from exc


@dataclass(slots=True)
class RawExtension:
    """A skippable extension (128-255) this package does not interpret, kept verbatim."""

    ext_type: int
    data: bytes = b""

    @property
    def type(self) -> int:
        return self.ext_type

    def encode(self) -> bytes:
        if not 0 <= self.ext_type <= 255 or len(self.data) > 255:
            raise ValueError(f"raw extension {self.ext_type}: type or length out of range")
        return bytes((self.ext_type, len(self.data))) + self.data


Extension = Union[  # noqa: UP007 - a runtime alias, also used in isinstance-free dispatch
    AuthExtension,
    NaiExtension,
    ChallengeExtension,
    EncapDeliveryStyle,
    UdpTunnelRequest,
    UdpTunnelReply,
    RawExtension,
]


# --- decoding -----------------------------------------------------------------------------
# Each parser gets the whole buffer, the extension's offset and its Length (already checked
# to fit in the buffer) and returns the object or raises MalformedMessage.


def _auth(data: bytes, off: int, ln: int) -> AuthExtension:
    if ln < 4:
        raise MalformedMessage(f"authentication extension {data[off]} length {ln} < 4", off)
    return AuthExtension(
        data[off], _U32.unpack_from(data, off + 2)[0], data[off + 6 : off + 2 + ln], off
    )


def _nai(data: bytes, off: int, ln: int) -> NaiExtension:
    if ln == 0:
        raise MalformedMessage("NAI extension with length 0", off)
    try:
        return NaiExtension(data[off + 2 : off + 2 + ln].decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MalformedMessage(f"NAI is not UTF-8 ({exc.reason})", off + 2 + exc.start) from None


def _challenge(data: bytes, off: int, ln: int) -> ChallengeExtension:
    if ln < 4:
        raise MalformedMessage(f"MN-FA challenge length {ln} < 4 (RFC 3012)", off)
    return ChallengeExtension(data[off + 2 : off + 2 + ln])


def _eds(data: bytes, off: int, ln: int) -> EncapDeliveryStyle:
    if ln != 0:
        raise MalformedMessage(f"encapsulating delivery style length {ln} != 0", off)
    return EncapDeliveryStyle()


def _utrq(data: bytes, off: int, ln: int) -> UdpTunnelRequest:
    if ln != 6:
        raise MalformedMessage(f"UDP tunnel request length {ln} != 6", off)
    _, _, sub, _, flags, encap, _ = _UTRQ.unpack_from(data, off)
    return UdpTunnelRequest(encap, bool(flags & 0x80), bool(flags & 0x40), sub)


def _utrp(data: bytes, off: int, ln: int) -> UdpTunnelReply:
    if ln != 6:
        raise MalformedMessage(f"UDP tunnel reply length {ln} != 6", off)
    _, _, sub, code, flags, keepalive = _UTRP.unpack_from(data, off)
    return UdpTunnelReply(code, keepalive, bool(flags & 0x8000), sub)


_PARSERS: dict[int, Callable[[bytes, int, int], Extension]] = {
    ExtType.MN_HA_AUTH: _auth,
    ExtType.MN_FA_AUTH: _auth,
    ExtType.FA_HA_AUTH: _auth,
    ExtType.NAI: _nai,
    ExtType.MN_FA_CHALLENGE: _challenge,
    ExtType.ENCAP_DELIVERY_STYLE: _eds,
    ExtType.UDP_TUNNEL_REQUEST: _utrq,
    ExtType.UDP_TUNNEL_REPLY: _utrp,
}
PARSERS = {int(k): v for k, v in _PARSERS.items()}


def decode_extension(data: bytes, off: int) -> tuple[Extension | None, int]:
    """Decode the extension at ``off``; return it (``None`` if unknown non-skippable) and the
    offset after it. Raises :class:`MalformedMessage` when it does not fit or is invalid."""
    n = len(data)
    t = data[off]
    if off + 2 > n:
        raise MalformedMessage(f"extension type {t} truncated before its length byte", off)
    ln = data[off + 1]
    end = off + 2 + ln
    if end > n:
        raise MalformedMessage(
            f"extension type {t} length {ln} runs past the end ({n - off - 2} bytes left)", off
        )
    parser = PARSERS.get(t)
    if parser is not None:
        return parser(data, off, ln), end
    if t < 128:
        return None, end
    return RawExtension(t, data[off + 2 : end]), end
