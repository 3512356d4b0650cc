"""Mobility security associations and authenticators (RFC 5944 section 3.5).

An authentication extension (MN-HA 32, MN-FA 33, FA-HA 34) is ``Type, Length, SPI (4 bytes),
Authenticator``. RFC 5944 section 3.5.1 fixes what the authenticator covers: the UDP payload
(the fixed part of the registration message), all prior extensions in their entirety, and the
Type, Length and SPI of this extension -- i.e. ``payload[:ext_offset + 6]``. It does not cover
the IP or UDP header, so NAT rewriting does not break it.

Algorithms:

* ``hmac-md5`` -- the default and mandatory one (RFC 5944 section 3.5.1, RFC 2104), key of any
  length, 128-bit authenticator;
* ``keyed-md5`` -- "prefix+suffix" keyed MD5, ``MD5(key || data || key)``, kept by RFC 5944
  only for backward compatibility with RFC 2002 implementations.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from agents.mip.constants import MD5_LEN, MIN_SPI
from agents.mip.extensions import AuthExtension

__all__ = [
    "ALGORITHMS",
    "SecurityAssociation",
    "append_auth",
    "hmac_md5",
    "keyed_md5",
]

_md5 = hashlib.md5
_hmac_digest = hmac.digest
_AUTH_HDR = struct.Struct("!BBI")


def hmac_md5(key: bytes, data: bytes) -> bytes:
    """HMAC-MD5 (RFC 2104); ``hmac.digest`` takes OpenSSL's one-shot path."""
    return _hmac_digest(key, data, "md5")


def keyed_md5(key: bytes, data: bytes) -> bytes:
    """Prefix+suffix keyed MD5 of RFC 2002: MD5(key || data || key)."""
    h = _md5(key)
    h.update(data)
    h.update(key)
    return h.digest()


ALGORITHMS: dict[str, Callable[[bytes, bytes], bytes]] = {
    "hmac-md5": hmac_md5,
    "keyed-md5": keyed_md5,
}


def _key_bytes(key: bytes | str) -> bytes:
    if isinstance(key, str):
        try:
            return bytes.fromhex(key.replace(":", "").replace(" ", ""))
        except ValueError as exc:
            raise ValueError(f"key is not hex: {key!r}") from exc
    return bytes(key)


@dataclass(frozen=True, slots=True)
class SecurityAssociation:
    """A mobility security association: SPI, shared key, algorithm.

    ``key`` may be given as bytes or as a hex string. ``replay`` is the replay-protection style
    the pair agreed on (RFC 5944 section 5.7): ``"timestamp"`` (mandatory to implement) or
    ``"nonce"``. SPIs 0-255 are reserved (RFC 5944 section 3.5.1) and refused here.
    """

    spi: int
    key: bytes
    algorithm: str = "hmac-md5"
    replay: str = "timestamp"
    _fn: Callable[[bytes, bytes], bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", _key_bytes(self.key))
        if not MIN_SPI <= self.spi <= 0xFFFFFFFF:
            raise ValueError(f"SPI {self.spi} out of range (0-255 are reserved, max 2^32-1)")
        fn = ALGORITHMS.get(self.algorithm)
        if fn is None:
            raise ValueError(f"unknown algorithm {self.algorithm!r}; know {sorted(ALGORITHMS)}")
        if self.replay not in ("timestamp", "nonce"):
            raise ValueError(f"unknown replay protection {self.replay!r}")
        object.__setattr__(self, "_fn", fn)

    @property
    def authenticator_length(self) -> int:
        return MD5_LEN

    def compute(self, data: bytes | bytearray) -> bytes:
        """Authenticator over ``data`` (already cut to end at the extension's SPI field)."""
        return self._fn(self.key, data)

    def verify(self, data: bytes, authenticator: bytes) -> bool:
        """Constant-time check of ``authenticator`` against ``compute(data)``."""
        return hmac.compare_digest(self._fn(self.key, data), authenticator)

    def verify_extension(self, message: bytes, ext: AuthExtension) -> bool:
        """Was ``ext``, an authentication extension found in ``message``, made with this SA?
        Its SPI must be ours and its authenticator must cover everything before it, its own
        Type, Length and SPI included (RFC 5944 section 3.5.1)."""
        if ext.spi != self.spi or ext.offset < 0 or not ext.authenticator:
            return False
        return self.verify(message[: ext.offset + 6], ext.authenticator)


def append_auth(payload: bytes, ext_type: int, sa: SecurityAssociation) -> bytes:
    """``payload`` followed by an authentication extension of ``ext_type`` computed with ``sa``.

    This is how every sender in this package signs: the message is encoded up to (and without)
    the authentication extension, then Type, Length, SPI and the authenticator over everything
    before it are appended (RFC 5944 section 3.5.1).
    """
    head = payload + _AUTH_HDR.pack(ext_type, 4 + MD5_LEN, sa.spi)
    return head + sa._fn(sa.key, head)
