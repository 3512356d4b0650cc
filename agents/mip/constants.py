"""Numbers of Mobile IPv4 (RFC 5944) and the extensions this package implements.

Values are those registered at IANA ("Mobile IPv4 Numbers") and dissected by Wireshark's
``mip``/``icmp`` dissectors. Names are ours; each block says where the values are defined.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

MIP_PORT = 434  # RFC 5944 section 3.1: registration (and RFC 3519 tunnel data) on UDP 434

# Multicast/broadcast destinations (RFC 5944 sections 2.3, 2.4, 3.6.1.1; RFC 1256 section 3).
ALL_SYSTEMS = "224.0.0.1"  # unsolicited Agent Advertisements may go here
ALL_ROUTERS = "224.0.0.2"  # Agent Solicitations
MOBILE_AGENTS = "224.0.0.11"  # "all mobility agents" group; requests to an unknown FA address
LIMITED_BROADCAST = "255.255.255.255"
UNSPECIFIED = "0.0.0.0"

INFINITE_LIFETIME = 0xFFFF  # RFC 5944 section 3.3: lifetime all ones means infinity
NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
MIN_SPI = 256  # RFC 5944 section 3.5.1: SPIs 0-255 are reserved, never used in an SA
MD5_LEN = 16


class MessageType(IntEnum):
    """First byte of a UDP-434 payload (IANA "Mobile IP Message Types")."""

    REGISTRATION_REQUEST = 1  # RFC 5944 section 3.3
    REGISTRATION_REPLY = 3  # RFC 5944 section 3.4
    TUNNEL_DATA = 4  # RFC 3519 section 3.3


class IcmpType(IntEnum):
    ROUTER_ADVERTISEMENT = 9  # carries the Agent Advertisement (RFC 5944 section 2.1)
    ROUTER_SOLICITATION = 10  # Agent Solicitation (RFC 5944 section 2.2)


class ExtType(IntEnum):
    """Extensions of registration messages (IANA set "Extensions to Mobile IP Registration").

    RFC 5944 section 1.9: types 0-127 are non-skippable, 128-255 skippable.
    """

    MN_HA_AUTH = 32  # RFC 5944 section 3.5.2
    MN_FA_AUTH = 33  # RFC 5944 section 3.5.3
    FA_HA_AUTH = 34  # RFC 5944 section 3.5.4
    UDP_TUNNEL_REPLY = 44  # RFC 3519 section 3.2
    ENCAP_DELIVERY_STYLE = 130  # RFC 3024 section 3.3
    NAI = 131  # RFC 2794 section 2
    MN_FA_CHALLENGE = 132  # RFC 3012 section 3.1
    UDP_TUNNEL_REQUEST = 144  # RFC 3519 section 3.1


AUTH_EXT_TYPES = frozenset({ExtType.MN_HA_AUTH, ExtType.MN_FA_AUTH, ExtType.FA_HA_AUTH})


class AdvExtType(IntEnum):
    """Extensions of ICMP Router Discovery messages (the second IANA set)."""

    PADDING = 0  # RFC 5944 section 2.1.3: one byte, no length
    MOBILITY_AGENT = 16  # RFC 5944 section 2.1.1
    PREFIX_LENGTHS = 19  # RFC 5944 section 2.1.2
    CHALLENGE = 24  # RFC 3012 section 2


class RequestFlag(IntFlag):
    """Flags byte of a Registration Request (RFC 5944 section 3.3)."""

    S = 0x80  # simultaneous bindings
    B = 0x40  # broadcast datagrams
    D = 0x20  # decapsulation by mobile node (co-located care-of address)
    M = 0x10  # minimal encapsulation
    G = 0x08  # GRE encapsulation
    r = 0x04  # reserved, sent as zero
    T = 0x02  # reverse tunnelling requested (RFC 3024)
    x = 0x01  # reserved, sent as zero


class AdvFlag(IntFlag):
    """16-bit flags field of the Mobility Agent Advertisement extension (RFC 5944 2.1.1)."""

    R = 0x8000  # registration required (even with a co-located care-of address)
    B = 0x4000  # busy
    H = 0x2000  # home agent
    F = 0x1000  # foreign agent
    M = 0x0800  # minimal encapsulation
    G = 0x0400  # GRE
    r = 0x0200  # reserved (was VJ compression)
    T = 0x0100  # reverse tunnelling supported (RFC 3024)
    U = 0x0080  # UDP tunnelling supported (RFC 3519)
    X = 0x0040  # registration revocation (RFC 3543)
    I = 0x0020  # regional registration (RFC 4857)  # noqa: E741


REQUEST_FLAG_NAMES = ("S", "B", "D", "M", "G", "r", "T", "x")
ADV_FLAG_NAMES = ("R", "B", "H", "F", "M", "G", "r", "T", "U", "X", "I")


class Encapsulation(IntEnum):
    """Encapsulation inside an RFC 3519 UDP tunnel (also the Tunnel Data next header)."""

    IPIP = 4  # RFC 2003
    GRE = 47  # RFC 2784
    MINIMAL = 55  # RFC 2004


class UdpTunnelCode(IntEnum):
    """Reply Code of the UDP Tunnel Reply extension (RFC 3519 section 3.2)."""

    ACCEPTED = 0  # will do tunnelling
    DECLINED = 64  # tunnelling declined, reason unspecified


class ReplyCode(IntEnum):
    """Registration Reply codes (RFC 5944 section 3.4 and the RFCs named per line)."""

    ACCEPTED = 0
    ACCEPTED_NO_SIMULTANEOUS = 1
    # denied by the foreign agent
    FA_UNSPECIFIED = 64
    FA_ADMIN_PROHIBITED = 65
    FA_INSUFFICIENT_RESOURCES = 66
    FA_MN_AUTH_FAILED = 67
    FA_HA_AUTH_FAILED = 68
    FA_LIFETIME_TOO_LONG = 69
    FA_POORLY_FORMED_REQUEST = 70
    FA_POORLY_FORMED_REPLY = 71
    FA_ENCAPSULATION_UNAVAILABLE = 72
    FA_RESERVED_UNAVAILABLE = 73
    FA_REVERSE_TUNNEL_UNAVAILABLE = 74  # RFC 3024
    FA_REVERSE_TUNNEL_MANDATORY = 75  # RFC 3024: reverse tunnel mandatory and T bit not set
    FA_MN_TOO_DISTANT = 76  # RFC 3024
    FA_INVALID_COA = 77
    FA_REGISTRATION_TIMEOUT = 78
    FA_DELIVERY_STYLE_UNSUPPORTED = 79  # RFC 3024
    FA_HOME_NETWORK_UNREACHABLE = 80
    FA_HA_HOST_UNREACHABLE = 81
    FA_HA_PORT_UNREACHABLE = 82
    FA_HA_UNREACHABLE = 88
    FA_NONZERO_HOME_ADDRESS_REQUIRED = 96  # RFC 2794
    FA_MISSING_NAI = 97  # RFC 2794
    FA_MISSING_HOME_AGENT = 98  # RFC 2794
    FA_MISSING_HOME_ADDRESS = 99  # RFC 2794
    FA_UNKNOWN_CHALLENGE = 104  # RFC 3012
    FA_MISSING_CHALLENGE = 105  # RFC 3012
    FA_STALE_CHALLENGE = 106  # RFC 3012
    FA_INVALID_HOME_AGENT = 194  # RFC 5944 section 3.4: from the FA, above the HA's range
    # denied by the home agent
    HA_UNSPECIFIED = 128
    HA_ADMIN_PROHIBITED = 129
    HA_INSUFFICIENT_RESOURCES = 130
    HA_MN_AUTH_FAILED = 131
    HA_FA_AUTH_FAILED = 132
    HA_IDENTIFICATION_MISMATCH = 133
    HA_POORLY_FORMED_REQUEST = 134
    HA_TOO_MANY_BINDINGS = 135
    HA_UNKNOWN_HA_ADDRESS = 136
    HA_REVERSE_TUNNEL_UNAVAILABLE = 137  # RFC 3024
    HA_REVERSE_TUNNEL_MANDATORY = 138  # RFC 3024
    HA_ENCAPSULATION_UNAVAILABLE = 139  # RFC 3024
    HA_UDP_ENCAPSULATION_UNAVAILABLE = 142  # RFC 3519


def reply_code_name(code: int) -> str:
    """Snake-case name of a reply code, ``"code_N"`` when unassigned here."""
    try:
        return ReplyCode(code).name.lower()
    except ValueError:
        return f"code_{code}"


def is_accepted(code: int) -> bool:
    return code in (0, 1)


def denied_by_fa(code: int) -> bool:
    """Codes 64-127 come from a foreign agent (RFC 5944 section 3.4), and so does 194,
    "Invalid Home Agent Address", listed there with them."""
    return 64 <= code <= 127 or code == ReplyCode.FA_INVALID_HOME_AGENT


def flag_names(value: int, names: tuple[str, ...], width: int) -> list[str]:
    """Names of the set bits of ``value``, most significant first (``names`` in that order)."""
    out = []
    for i, name in enumerate(names):
        if value & (1 << (width - 1 - i)):
            out.append(name)
    return out
