"""The ICMP prober's packet code (testbed.programs.pinger)."""

from __future__ import annotations

import struct

from testbed.programs.pinger import checksum, echo_request, parse_reply


def ip_header(payload: bytes) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, 1, 0,
                       bytes(4), bytes(4))  # fmt: skip


def test_echo_request_checksum_verifies() -> None:
    packet = echo_request(0x1234, 7, 123456789)
    assert packet[0] == 8 and checksum(packet) == 0  # a correct checksum sums to zero


def test_reply_round_trip() -> None:
    request = echo_request(0x1234, 7, 123456789)
    reply = bytes([0]) + request[1:]  # type 0: echo reply (checksum not checked here)
    assert parse_reply(ip_header(reply) + reply, 0x1234) == (7, 123456789)
    assert parse_reply(ip_header(reply) + reply, 0x9999) is None  # someone else's
    assert parse_reply(ip_header(request) + request, 0x1234) is None  # a request, not a reply
    assert parse_reply(b"\x45" + bytes(10), 0x1234) is None  # truncated


def test_checksum_known_value() -> None:
    # RFC 1071 example: 0x0001 0xf203 0xf4f5 0xf6f7 -> sum 0xddf2, checksum 0x220d
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
