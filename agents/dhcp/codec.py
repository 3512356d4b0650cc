"""DHCPv4 wire format: the BOOTP header (RFC 951/2131 section 2) and options (RFC 2132).

Pure functions over bytes. ``decode`` raises :class:`DhcpMalformed` -- and nothing else -- for
any input it cannot accept, so a receive loop needs exactly one ``except``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address

__all__ = [
    "BOOTREPLY",
    "BOOTREQUEST",
    "FLAG_BROADCAST",
    "MAGIC_COOKIE",
    "ZERO",
    "DhcpMalformed",
    "DhcpMessage",
    "MessageType",
    "Opt",
    "decode",
    "encode",
    "ip_bytes",
    "u32_bytes",
]


class DhcpMalformed(ValueError):
    """The only exception :func:`decode` raises; ``reason`` says what was wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MessageType(IntEnum):
    """Option 53 values (RFC 2132 section 9.6)."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


class Opt(IntEnum):
    """Option codes this package interprets (RFC 2132, and 80 from RFC 4039)."""

    PAD = 0
    SUBNET_MASK = 1
    ROUTER = 3
    DNS = 6
    REQUESTED_IP = 50
    LEASE_TIME = 51
    OVERLOAD = 52
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    PARAM_REQUEST = 55
    MESSAGE = 56
    MAX_SIZE = 57
    T1 = 58
    T2 = 59
    CLIENT_ID = 61
    RAPID_COMMIT = 80  # RFC 4039: two-message exchange, DISCOVER -> ACK
    END = 255


BOOTREQUEST = 1
BOOTREPLY = 2
FLAG_BROADCAST = 0x8000  # RFC 2131 section 2, figure 2
MAGIC_COOKIE = b"\x63\x82\x53\x63"  # RFC 2131 section 3
ZERO = IPv4Address(0)

_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")  # 236 bytes, RFC 2131 figure 1
_OPTIONS_AT = _HEADER.size + len(MAGIC_COOKIE)
# RFC 1542 section 3.1.1: some relays/servers drop BOOTP messages shorter than 300 bytes.
_MIN_SIZE = 300

# (exact length, or None) / (minimum length) / (length must be a multiple of) per option.
_LENGTHS: dict[int, tuple[int | None, int, int]] = {
    Opt.SUBNET_MASK: (4, 4, 1),
    Opt.ROUTER: (None, 4, 4),
    Opt.DNS: (None, 4, 4),
    Opt.REQUESTED_IP: (4, 4, 1),
    Opt.LEASE_TIME: (4, 4, 1),
    Opt.MESSAGE_TYPE: (1, 1, 1),
    Opt.SERVER_ID: (4, 4, 1),
    Opt.PARAM_REQUEST: (None, 1, 1),
    Opt.MAX_SIZE: (2, 2, 1),
    Opt.T1: (4, 4, 1),
    Opt.T2: (4, 4, 1),
    Opt.CLIENT_ID: (None, 2, 1),  # RFC 2132 section 9.14: type byte + at least one byte
    Opt.RAPID_COMMIT: (0, 0, 1),  # RFC 4039 section 4: a flag, always length 0
}


def ip_bytes(addr: IPv4Address | str) -> bytes:
    return IPv4Address(addr).packed


def u32_bytes(value: int) -> bytes:
    return struct.pack("!I", value)


def _check_option(code: int, value: bytes) -> None:
    if not 0 < code < 255:
        raise DhcpMalformed(f"option code {code} cannot carry a value")
    rule = _LENGTHS.get(code)
    if rule is None:
        return
    exact, minimum, multiple = rule
    n = len(value)
    if (exact is not None and n != exact) or n < minimum or n % multiple:
        raise DhcpMalformed(f"option {code} has bad length {n}")


@dataclass(frozen=True)
class DhcpMessage:
    """One DHCP message. ``options`` keeps wire order; each code appears at most once.

    ``sname``/``file`` are C strings (no NUL; the codec pads them). Option 52 (overload) is
    resolved by :func:`decode` and never appears in ``options``.
    """

    op: int
    xid: int
    chaddr: bytes
    htype: int = 1
    hops: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: IPv4Address = ZERO
    yiaddr: IPv4Address = ZERO
    siaddr: IPv4Address = ZERO
    giaddr: IPv4Address = ZERO
    sname: bytes = b""
    file: bytes = b""
    options: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        for name, limit in (("op", 0xFF), ("htype", 0xFF), ("hops", 0xFF)):
            if not 0 <= getattr(self, name) <= limit:
                raise DhcpMalformed(f"{name} out of range")
        if not 0 <= self.xid <= 0xFFFFFFFF:
            raise DhcpMalformed("xid out of range")
        if not (0 <= self.secs <= 0xFFFF and 0 <= self.flags <= 0xFFFF):
            raise DhcpMalformed("secs/flags out of range")
        if len(self.chaddr) > 16:
            raise DhcpMalformed("chaddr longer than 16 bytes")
        if len(self.sname) > 64 or len(self.file) > 128:
            raise DhcpMalformed("sname/file too long")
        if b"\0" in self.sname or b"\0" in self.file:
            raise DhcpMalformed("sname/file are C strings: no NUL inside")
        seen: set[int] = set()
        for code, value in self.options:
            if code in seen:
                raise DhcpMalformed(f"option {code} given twice")
            seen.add(code)
            if code == Opt.OVERLOAD:
                raise DhcpMalformed("option 52 (overload) is wire framing, not a message option")
            _check_option(code, value)

    # --- option accessors (lengths were validated, so these cannot fail) ---------------

    def option(self, code: int) -> bytes | None:
        for c, value in self.options:
            if c == code:
                return value
        return None

    def _ip(self, code: int) -> IPv4Address | None:
        value = self.option(code)
        return None if value is None else IPv4Address(value)

    def _u32(self, code: int) -> int | None:
        value = self.option(code)
        return None if value is None else int.from_bytes(value, "big")

    def _ips(self, code: int) -> tuple[IPv4Address, ...]:
        value = self.option(code) or b""
        return tuple(IPv4Address(value[i : i + 4]) for i in range(0, len(value), 4))

    @property
    def message_type(self) -> int | None:
        value = self.option(Opt.MESSAGE_TYPE)
        return None if value is None else value[0]

    @property
    def server_id(self) -> IPv4Address | None:
        return self._ip(Opt.SERVER_ID)

    @property
    def requested_ip(self) -> IPv4Address | None:
        return self._ip(Opt.REQUESTED_IP)

    @property
    def subnet_mask(self) -> IPv4Address | None:
        return self._ip(Opt.SUBNET_MASK)

    @property
    def lease_time(self) -> int | None:
        return self._u32(Opt.LEASE_TIME)

    @property
    def t1(self) -> int | None:
        return self._u32(Opt.T1)

    @property
    def t2(self) -> int | None:
        return self._u32(Opt.T2)

    @property
    def routers(self) -> tuple[IPv4Address, ...]:
        return self._ips(Opt.ROUTER)

    @property
    def dns_servers(self) -> tuple[IPv4Address, ...]:
        return self._ips(Opt.DNS)

    @property
    def client_id(self) -> bytes | None:
        return self.option(Opt.CLIENT_ID)

    @property
    def param_request(self) -> tuple[int, ...]:
        return tuple(self.option(Opt.PARAM_REQUEST) or b"")

    @property
    def rapid_commit(self) -> bool:
        # Present-or-not: its value is always empty (b""), so test for None, not truth.
        return self.option(Opt.RAPID_COMMIT) is not None

    @property
    def text(self) -> str | None:
        value = self.option(Opt.MESSAGE)
        return None if value is None else value.decode("utf-8", "replace")


def encode(msg: DhcpMessage) -> bytes:
    """Serialise ``msg``; long options are split per RFC 3396, output padded to 300 bytes."""
    header = _HEADER.pack(
        msg.op,
        msg.htype,
        len(msg.chaddr),
        msg.hops,
        msg.xid,
        msg.secs,
        msg.flags,
        msg.ciaddr.packed,
        msg.yiaddr.packed,
        msg.siaddr.packed,
        msg.giaddr.packed,
        msg.chaddr,
        msg.sname,
        msg.file,
    )
    out = bytearray(header + MAGIC_COOKIE)
    for code, value in msg.options:
        # RFC 3396 section 5: an option longer than 255 bytes is sent as several instances.
        for start in range(0, max(len(value), 1), 255):
            chunk = value[start : start + 255]
            out += bytes((code, len(chunk))) + chunk
    out.append(Opt.END)
    if len(out) < _MIN_SIZE:
        out += bytes(_MIN_SIZE - len(out))
    return bytes(out)


def _parse_options(buf: bytes, where: str, into: dict[int, bytearray]) -> None:
    i, n = 0, len(buf)
    while i < n:
        code = buf[i]
        if code == Opt.END:
            return
        if code == Opt.PAD:
            i += 1
            continue
        if i + 1 >= n:
            raise DhcpMalformed(f"option {code} in {where} has no length byte")
        length = buf[i + 1]
        if i + 2 + length > n:
            raise DhcpMalformed(f"option {code} in {where} runs past the end")
        # RFC 3396 section 7: repeated instances of one option are concatenated in order.
        into.setdefault(code, bytearray()).extend(buf[i + 2 : i + 2 + length])
        i += 2 + length
    # A missing END is tolerated (robustness); truncation inside an option is not.


def decode(data: bytes) -> DhcpMessage:
    """Parse a DHCP message (UDP payload). Raises :class:`DhcpMalformed` on any bad input."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DhcpMalformed("input is not bytes")
    data = bytes(data)
    if len(data) < _OPTIONS_AT:
        raise DhcpMalformed(f"too short ({len(data)} bytes)")
    if data[_HEADER.size : _OPTIONS_AT] != MAGIC_COOKIE:
        raise DhcpMalformed("bad magic cookie")
    (op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi, chaddr, sname, file) = (
        _HEADER.unpack_from(data)
    )
    if hlen > 16:
        raise DhcpMalformed(f"hlen {hlen} > 16")
    raw: dict[int, bytearray] = {}
    _parse_options(data[_OPTIONS_AT:], "options", raw)
    overload = raw.get(Opt.OVERLOAD)
    if overload is not None:
        if len(overload) != 1 or overload[0] not in (1, 2, 3):
            raise DhcpMalformed("bad option overload (52)")
        # RFC 2131 section 4.1: options field first, then 'file', then 'sname'.
        if overload[0] & 1:
            _parse_options(file, "file", raw)
            file = b""
        if overload[0] & 2:
            _parse_options(sname, "sname", raw)
            sname = b""
        del raw[Opt.OVERLOAD]
    return DhcpMessage(
        op=op,
        htype=htype,
        hops=hops,
        xid=xid,
        secs=secs,
        flags=flags,
        ciaddr=IPv4Address(ci),
        yiaddr=IPv4Address(yi),
        siaddr=IPv4Address(si),
        giaddr=IPv4Address(gi),
        chaddr=chaddr[:hlen],
        sname=sname.split(b"\0", 1)[0],
        file=file.split(b"\0", 1)[0],
        options=tuple((code, bytes(value)) for code, value in raw.items()),
    )
