"""Authenticators (RFC 5944 3.5): RFC 2202 vectors, keyed MD5, the exact bytes covered."""

from __future__ import annotations

import hashlib
import struct

import pytest

from agents.mip.auth import SecurityAssociation, append_auth, hmac_md5, keyed_md5
from agents.mip.extensions import AuthExtension
from agents.mip.messages import RegistrationRequest, decode_udp, encode

# RFC 2202 section 2: test cases for HMAC-MD5 (key, data, digest).
RFC2202 = [
    (b"\x0b" * 16, b"Hi There", "9294727a3638bb1c13f48ef8158bfc9d"),
    (b"Jefe", b"what do ya want for nothing?", "750c783e6ab0b503eaa86e310a5db738"),
    (b"\xaa" * 16, b"\xdd" * 50, "56be34521d144c88dbb8c733f0e8b3f6"),
    (bytes(range(1, 26)), b"\xcd" * 50, "697eaf0aca3a3aea3a75164746ffaa79"),
    (b"\x0c" * 16, b"Test With Truncation", "56461ef2342edc00f9bab995690efd4c"),
    (
        b"\xaa" * 80,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd",
    ),
    (
        b"\xaa" * 80,
        b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data",
        "6f630fad67cda0ee1fb1f562db3aa53e",
    ),
]


@pytest.mark.parametrize(("key", "data", "digest"), RFC2202)
def test_hmac_md5_rfc2202(key: bytes, data: bytes, digest: str) -> None:
    assert hmac_md5(key, data).hex() == digest


def _hmac_by_hand(key: bytes, data: bytes) -> bytes:
    """RFC 2104 spelled out with hashlib.md5, independent of the hmac module."""
    if len(key) > 64:
        key = hashlib.md5(key).digest()
    key = key.ljust(64, b"\0")
    ipad = bytes(k ^ 0x36 for k in key)
    opad = bytes(k ^ 0x5C for k in key)
    return hashlib.md5(opad + hashlib.md5(ipad + data).digest()).digest()


def test_keyed_md5_is_prefix_and_suffix() -> None:
    key, data = b"secret", b"registration bytes"
    assert keyed_md5(key, data) == hashlib.md5(key + data + key).digest()
    # RFC 1321 test suite anchors the MD5 itself: MD5("abc").
    assert keyed_md5(b"", b"abc").hex() == "900150983cd24fb0d6963f7d28e17f72"
    assert keyed_md5(b"a", b"b") == hashlib.md5(b"aba").digest()


def test_security_association_validation() -> None:
    with pytest.raises(ValueError, match="reserved"):
        SecurityAssociation(255, b"k")
    with pytest.raises(ValueError, match="algorithm"):
        SecurityAssociation(256, b"k", "sha1")
    with pytest.raises(ValueError, match="replay"):
        SecurityAssociation(256, b"k", replay="counter")
    with pytest.raises(ValueError, match="hex"):
        SecurityAssociation(256, "zz")
    sa = SecurityAssociation(256, "00:11 22")
    assert sa.key == b"\x00\x11\x22"


# A registration request checked by hand: every byte written out, the authenticator computed
# over exactly fixed part + NAI + the MN-HA extension's Type, Length, SPI.
KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")
FIXED = bytes.fromhex(
    "01"  # type: Registration Request
    "02"  # flags: T
    "0384"  # lifetime 900
    "0a010007"  # home address 10.1.0.7
    "0a010001"  # home agent 10.1.0.1
    "c0000207"  # care-of address 192.0.2.7
    "e8a1b2c300100000"  # identification (NTP)
)
NAI = bytes.fromhex("8308") + b"mn@lab.x"
HDR = bytes.fromhex("2014000003e8")  # type 32, length 20, SPI 1000
COVERED = FIXED + NAI + HDR


@pytest.mark.parametrize("algorithm", ["hmac-md5", "keyed-md5"])
def test_hand_checked_request(algorithm: str) -> None:
    expected = (
        _hmac_by_hand(KEY, COVERED)
        if algorithm == "hmac-md5"
        else hashlib.md5(KEY + COVERED + KEY).digest()
    )
    sa = SecurityAssociation(1000, KEY, algorithm)
    req = RegistrationRequest(
        "10.1.0.7",
        "10.1.0.1",
        "192.0.2.7",
        0xE8A1B2C300100000,
        900,
        0x02,
        [decode_udp(FIXED + NAI).extensions[0], AuthExtension(32, 1000)],
    )
    wire = encode(req, {1000: sa})
    assert wire == COVERED + expected
    assert append_auth(FIXED + NAI, 32, sa) == wire
    # The decoder tells where the extension starts, so the verifier covers the same bytes.
    ext = decode_udp(wire).extensions[1]
    assert isinstance(ext, AuthExtension)
    assert ext.covered_length == len(COVERED)
    assert sa.verify(wire[: ext.covered_length], ext.authenticator or b"")


def test_hand_checked_vector_is_stable() -> None:
    # Frozen value, computed once by _hmac_by_hand: guards against any change of the
    # covered bytes (e.g. including the authenticator or the UDP header by mistake).
    sa = SecurityAssociation(1000, KEY)
    assert append_auth(FIXED + NAI, 32, sa)[-16:] == _hmac_by_hand(KEY, COVERED)
    assert len(append_auth(FIXED, 32, sa)) == 24 + 6 + 16


def test_any_changed_byte_fails_verification() -> None:
    sa = SecurityAssociation(1000, KEY)
    wire = append_auth(FIXED + NAI, 32, sa)
    for i in range(len(COVERED)):
        bad = bytearray(wire)
        bad[i] ^= 0x01
        assert not sa.verify(bytes(bad[: len(COVERED)]), bytes(bad[len(COVERED) :]))


def test_second_authenticator_covers_the_first() -> None:
    """MN-FA after MN-HA (RFC 5944 3.5.3) covers everything before it, MN-HA included."""
    ha_sa = SecurityAssociation(1000, KEY)
    fa_sa = SecurityAssociation(2000, b"fa-key")
    req = RegistrationRequest(
        "10.1.0.7",
        "10.1.0.1",
        "10.2.0.1",
        7,
        60,
        0,
        [AuthExtension(32, 1000), AuthExtension(33, 2000)],
    )
    wire = encode(req, {1000: ha_sa, 2000: fa_sa})
    mnha_end = 24 + 22
    assert wire[mnha_end : mnha_end + 6] == struct.pack("!BBI", 33, 20, 2000)
    assert wire[-16:] == hmac_md5(b"fa-key", wire[: mnha_end + 6])
    assert wire[mnha_end - 16 : mnha_end] == hmac_md5(KEY, wire[: 24 + 6])


def test_verify_extension_checks_spi_and_the_covered_bytes() -> None:
    sa = SecurityAssociation(1000, KEY)
    wire = append_auth(FIXED + NAI, 32, sa)
    ext = decode_udp(wire).extensions[1]
    assert isinstance(ext, AuthExtension)
    assert sa.verify_extension(wire, ext)
    assert not SecurityAssociation(1001, KEY).verify_extension(wire, ext)  # another SPI
    assert not SecurityAssociation(1000, b"other").verify_extension(wire, ext)
    tampered = bytearray(wire)
    tampered[4] ^= 1  # in the fixed part the authenticator covers
    assert not sa.verify_extension(bytes(tampered), ext)
    # an extension built by hand, not found in a message, proves nothing
    assert not sa.verify_extension(wire, AuthExtension(32, 1000))
