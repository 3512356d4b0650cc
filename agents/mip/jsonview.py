"""Messages as JSON-ready dicts and back: for the ``testbed mip`` CLI, logs and teaching.

``to_dict(msg)`` gives every field with readable names (flags as lists of letters, byte strings
as hex, the Identification also as a UTC time when it looks like an NTP timestamp); when the raw
bytes and security associations are passed, each authentication extension also says whether
its authenticator ``verified``. ``from_dict(d)`` accepts what ``to_dict`` produces (derived
keys such as ``code_name`` are ignored) and some shortcuts: flags as an int or a list, the
Identification as an int or a hex string, an authenticator left out or ``null`` to have it
computed at encoding time from the SA with that SPI. It raises ``ValueError`` with the path of
the offending field.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

from agents.mip.auth import SecurityAssociation
from agents.mip.constants import (
    ADV_FLAG_NAMES,
    REQUEST_FLAG_NAMES,
    ExtType,
    reply_code_name,
)
from agents.mip.extensions import (
    AuthExtension,
    ChallengeExtension,
    EncapDeliveryStyle,
    Extension,
    NaiExtension,
    RawExtension,
    UdpTunnelReply,
    UdpTunnelRequest,
)
from agents.mip.icmp import (
    AgentAdvertisement,
    AgentSolicitation,
    MobilityAgentExtension,
)
from agents.mip.ipv4 import aton
from agents.mip.messages import RegistrationReply, RegistrationRequest, TunnelData
from agents.mip.replay import unix_from_ntp

__all__ = ["from_dict", "to_dict"]

AnyMessage = (
    RegistrationRequest | RegistrationReply | TunnelData | AgentAdvertisement | AgentSolicitation
)

EXT_NAMES = {
    ExtType.MN_HA_AUTH: "mn_ha_auth",
    ExtType.MN_FA_AUTH: "mn_fa_auth",
    ExtType.FA_HA_AUTH: "fa_ha_auth",
    ExtType.UDP_TUNNEL_REPLY: "udp_tunnel_reply",
    ExtType.ENCAP_DELIVERY_STYLE: "encapsulating_delivery_style",
    ExtType.NAI: "nai",
    ExtType.MN_FA_CHALLENGE: "mn_fa_challenge",
    ExtType.UDP_TUNNEL_REQUEST: "udp_tunnel_request",
}
_EXT_BY_NAME = {v: int(k) for k, v in EXT_NAMES.items()}
_ADV_RESERVED = (1 << (16 - len(ADV_FLAG_NAMES))) - 1  # the low bits no RFC names


def _flags_out(value: int, names: tuple[str, ...], width: int) -> list[str]:
    return [n for i, n in enumerate(names) if value & (1 << (width - 1 - i))]


def _flags_in(value: Any, names: tuple[str, ...], width: int, path: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{path}: flags must be a list of letters or an integer")
    if isinstance(value, int):
        if not 0 <= value < (1 << width):
            raise ValueError(f"{path}: {value} does not fit {width} bits")
        return value
    if isinstance(value, dict):
        value = [k for k, v in value.items() if v]
    if not isinstance(value, list):
        raise ValueError(f"{path}: flags must be a list of letters or an integer")
    out = 0
    for name in value:
        if name not in names:
            raise ValueError(f"{path}: unknown flag {name!r} (known: {' '.join(names)})")
        out |= 1 << (width - 1 - names.index(name))
    return out


def _ntp_time(ident: int) -> str | None:
    secs = unix_from_ntp(ident)
    if not 0 <= secs < 2**31:
        return None
    t = _dt.datetime.fromtimestamp(secs, _dt.UTC)
    return t.isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- to_dict ------------------------------------------------------------------------------


def _ext_to_dict(
    ext: Extension, data: bytes | None, sas: Mapping[int, SecurityAssociation] | None
) -> dict[str, Any]:
    name = "unknown" if isinstance(ext, RawExtension) else EXT_NAMES.get(ext.type, "unknown")
    d: dict[str, Any] = {"type": ext.type, "name": name}
    if isinstance(ext, AuthExtension):
        d["spi"] = ext.spi
        d["authenticator"] = None if ext.authenticator is None else ext.authenticator.hex()
        sa = sas.get(ext.spi) if sas else None
        if data is not None and sa is not None and ext.offset >= 0 and ext.authenticator:
            d["verified"] = sa.verify_extension(data, ext)
    elif isinstance(ext, NaiExtension):
        d["nai"] = ext.nai
    elif isinstance(ext, ChallengeExtension):
        d["challenge"] = ext.challenge.hex()
    elif isinstance(ext, UdpTunnelRequest):
        d.update(
            force=ext.force, via_fa=ext.via_fa, encapsulation=ext.encapsulation, subtype=ext.subtype
        )
    elif isinstance(ext, UdpTunnelReply):
        d.update(code=ext.code, keepalive=ext.keepalive, forced=ext.forced, subtype=ext.subtype)
    elif isinstance(ext, RawExtension):
        d["data"] = ext.data.hex()
    return d


def to_dict(
    msg: AnyMessage,
    *,
    data: bytes | None = None,
    sas: Mapping[int, SecurityAssociation] | None = None,
) -> dict[str, Any]:
    """JSON-ready view of ``msg``. Give ``data`` (the bytes it was decoded from) and ``sas``
    (by SPI) to get ``verified`` on authentication extensions."""
    if isinstance(msg, RegistrationRequest):
        return {
            "message": "registration_request",
            "type": 1,
            "flags": _flags_out(msg.flags, REQUEST_FLAG_NAMES, 8),
            "lifetime": msg.lifetime,
            "home_address": msg.home_address,
            "home_agent": msg.home_agent,
            "care_of_address": msg.care_of_address,
            "identification": msg.identification,
            "identification_hex": f"0x{msg.identification:016x}",
            "identification_time": _ntp_time(msg.identification),
            "extensions": [_ext_to_dict(e, data, sas) for e in msg.extensions],
        }
    if isinstance(msg, RegistrationReply):
        return {
            "message": "registration_reply",
            "type": 3,
            "code": msg.code,
            "code_name": reply_code_name(msg.code),
            "lifetime": msg.lifetime,
            "home_address": msg.home_address,
            "home_agent": msg.home_agent,
            "identification": msg.identification,
            "identification_hex": f"0x{msg.identification:016x}",
            "identification_time": _ntp_time(msg.identification),
            "extensions": [_ext_to_dict(e, data, sas) for e in msg.extensions],
        }
    if isinstance(msg, TunnelData):
        return {
            "message": "tunnel_data",
            "type": 4,
            "next_header": msg.next_header,
            "payload": msg.payload.hex(),
        }
    if isinstance(msg, AgentAdvertisement):
        a = msg.agent
        return {
            "message": "agent_advertisement",
            "icmp_type": 9,
            "code": msg.code,
            "lifetime": msg.lifetime,
            "routers": [{"address": r, "preference": p} for r, p in msg.routers],
            "mobility_agent": None
            if a is None
            else {
                "sequence": a.sequence,
                "registration_lifetime": a.registration_lifetime,
                "flags": _flags_out(a.flags, ADV_FLAG_NAMES, 16),
                "reserved_bits": a.flags & _ADV_RESERVED,
                "care_of_addresses": list(a.care_of_addresses),
            },
            "prefix_lengths": msg.prefix_lengths,
            "challenge": None if msg.challenge is None else msg.challenge.hex(),
            "extensions": [_ext_to_dict(e, None, None) for e in msg.extensions],
            "padding": msg.padding,
        }
    if isinstance(msg, AgentSolicitation):
        return {"message": "agent_solicitation", "icmp_type": 10}
    raise TypeError(f"not a Mobile IP message: {type(msg).__name__}")


# --- from_dict ----------------------------------------------------------------------------


def _get(
    d: Mapping[str, Any], key: str, path: str, kind: type | tuple[type, ...], default: Any = ...
) -> Any:
    if key not in d:
        if default is ...:
            raise ValueError(f"{path}.{key}: missing")
        return default
    v = d[key]
    if kind is int and isinstance(v, bool):
        raise ValueError(f"{path}.{key}: expected an integer, got {v!r}")
    if not isinstance(v, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ValueError(f"{path}.{key}: expected {names}, got {type(v).__name__}")
    return v


def _uint(d: Mapping[str, Any], key: str, path: str, bits: int, default: Any = ...) -> int:
    v = _get(d, key, path, int, default)
    if not 0 <= v < (1 << bits):
        raise ValueError(f"{path}.{key}: {v} does not fit {bits} bits")
    return v


def _addr(d: Mapping[str, Any], key: str, path: str) -> str:
    v = _get(d, key, path, str)
    try:
        aton(v)
    except ValueError:
        raise ValueError(f"{path}.{key}: not an IPv4 address: {v!r}") from None
    return v


def _hex(d: Mapping[str, Any], key: str, path: str, default: Any = ...) -> bytes | None:
    v = _get(d, key, path, (str, type(None)), default)
    if v is None:
        return None
    try:
        return bytes.fromhex(v.replace(":", "").replace(" ", ""))
    except ValueError:
        raise ValueError(f"{path}.{key}: not hex: {v!r}") from None


def _ident(d: Mapping[str, Any], path: str) -> int:
    v = d.get("identification", d.get("identification_hex"))
    if isinstance(v, str):
        try:
            v = int(v, 0)
        except ValueError:
            raise ValueError(f"{path}.identification: not a number: {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{path}.identification: missing or not an integer")
    if not 0 <= v < 2**64:
        raise ValueError(f"{path}.identification: does not fit 64 bits")
    return v


def _ext_from_dict(e: Any, path: str) -> Extension:
    if not isinstance(e, Mapping):
        raise ValueError(f"{path}: an extension must be an object")
    t = e.get("type")
    if t is None and "name" in e:
        t = _EXT_BY_NAME.get(e["name"])
        if t is None:
            raise ValueError(f"{path}.name: unknown extension name {e['name']!r}")
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= 255:
        raise ValueError(f"{path}.type: missing or not 0-255")
    if t in (32, 33, 34):
        return AuthExtension(t, _uint(e, "spi", path, 32), _hex(e, "authenticator", path, None))
    if t == ExtType.NAI:
        return NaiExtension(_get(e, "nai", path, str))
    if t == ExtType.MN_FA_CHALLENGE:
        ch = _hex(e, "challenge", path)
        return ChallengeExtension(ch or b"")
    if t == ExtType.ENCAP_DELIVERY_STYLE:
        return EncapDeliveryStyle()
    if t == ExtType.UDP_TUNNEL_REQUEST:
        return UdpTunnelRequest(
            _uint(e, "encapsulation", path, 8, 4),
            _get(e, "force", path, bool, False),
            _get(e, "via_fa", path, bool, False),
            _uint(e, "subtype", path, 8, 0),
        )
    if t == ExtType.UDP_TUNNEL_REPLY:
        return UdpTunnelReply(
            _uint(e, "code", path, 8, 0),
            _uint(e, "keepalive", path, 16, 0),
            _get(e, "forced", path, bool, False),
            _uint(e, "subtype", path, 8, 0),
        )
    if t < 128:
        raise ValueError(f"{path}.type: {t} is not an extension this encoder knows")
    return RawExtension(t, _hex(e, "data", path, "") or b"")


def _exts(d: Mapping[str, Any], path: str) -> list[Extension]:
    lst = _get(d, "extensions", path, list, [])
    return [_ext_from_dict(e, f"{path}.extensions[{i}]") for i, e in enumerate(lst)]


def from_dict(d: Any) -> AnyMessage:
    """Build a message from a dict as produced by :func:`to_dict`. Raises ``ValueError``."""
    if not isinstance(d, Mapping):
        raise ValueError("$: expected a JSON object")
    path = "$"
    kind = d.get("message")
    if kind is None:
        kind = {1: "registration_request", 3: "registration_reply", 4: "tunnel_data"}.get(
            d.get("type")  # type: ignore[arg-type]
        ) or {9: "agent_advertisement", 10: "agent_solicitation"}.get(d.get("icmp_type"))  # type: ignore[arg-type]
    if kind == "registration_request":
        return RegistrationRequest(
            _addr(d, "home_address", path),
            _addr(d, "home_agent", path),
            _addr(d, "care_of_address", path),
            _ident(d, path),
            _uint(d, "lifetime", path, 16),
            _flags_in(d.get("flags", 0), REQUEST_FLAG_NAMES, 8, f"{path}.flags"),
            _exts(d, path),
        )
    if kind == "registration_reply":
        return RegistrationReply(
            _uint(d, "code", path, 8),
            _uint(d, "lifetime", path, 16),
            _addr(d, "home_address", path),
            _addr(d, "home_agent", path),
            _ident(d, path),
            _exts(d, path),
        )
    if kind == "tunnel_data":
        return TunnelData(_uint(d, "next_header", path, 8, 4), _hex(d, "payload", path) or b"")
    if kind == "agent_solicitation":
        return AgentSolicitation()
    if kind == "agent_advertisement":
        routers = []
        for i, r in enumerate(_get(d, "routers", path, list, [])):
            p = f"{path}.routers[{i}]"
            if not isinstance(r, Mapping):
                raise ValueError(f"{p}: expected an object")
            pref = _get(r, "preference", p, int, 0)
            if not -(2**31) <= pref < 2**31:
                raise ValueError(f"{p}.preference: does not fit 32 bits (signed)")
            routers.append((_addr(r, "address", p), pref))
        agent = None
        ma = d.get("mobility_agent")
        if ma is not None:
            p = f"{path}.mobility_agent"
            if not isinstance(ma, Mapping):
                raise ValueError(f"{p}: expected an object")
            coas = _get(ma, "care_of_addresses", p, list, [])
            for i, c in enumerate(coas):
                if not isinstance(c, str):
                    raise ValueError(f"{p}.care_of_addresses[{i}]: expected a string")
                _addr({"a": c}, "a", f"{p}.care_of_addresses[{i}]")
            agent = MobilityAgentExtension(
                _uint(ma, "sequence", p, 16),
                _uint(ma, "registration_lifetime", p, 16),
                _flags_in(ma.get("flags", 0), ADV_FLAG_NAMES, 16, f"{p}.flags")
                | _uint(ma, "reserved_bits", p, 5, 0),
                list(coas),
            )
        pls = d.get("prefix_lengths")
        if pls is not None and (
            not isinstance(pls, list)
            or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 32 for x in pls)
        ):
            raise ValueError(f"{path}.prefix_lengths: expected a list of 0-32")
        raw = []
        for i, e in enumerate(_get(d, "extensions", path, list, [])):
            # ICMP extensions are a separate number space (RFC 5944 1.9): kept raw.
            p = f"{path}.extensions[{i}]"
            if not isinstance(e, Mapping):
                raise ValueError(f"{p}: an extension must be an object")
            t = _uint(e, "type", p, 8)
            if t < 128:
                raise ValueError(f"{p}.type: {t} is not a skippable ICMP extension")
            raw.append(RawExtension(t, _hex(e, "data", p, "") or b""))
        return AgentAdvertisement(
            _uint(d, "lifetime", path, 16),
            routers,
            agent,
            pls,
            _hex(d, "challenge", path, None),
            raw,
            _uint(d, "code", path, 8, 0),
            _uint(d, "padding", path, 8, 0),
        )
    raise ValueError(f"{path}.message: unknown message kind {kind!r}")
