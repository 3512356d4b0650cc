"""Where a mobile node registers from: its attachment mode, as the agents emit it in events
(``movement_detected``, ``registration_sent``/``_accepted``, ``binding``...) and the testbed reads
it back (handoff summaries, pictures, checks).

A :class:`~enum.StrEnum`: a member *is* its string, so event payloads and the JSON written from
them stay exactly as before (``"mc"``, not ``"Mode.MC"``), and a mode read back from an event
file (a plain ``str``) compares equal to the member.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["INSIDE_MODES", "Mode"]


class Mode(StrEnum):
    """An attachment mode (RFC 5944 ``f``/``c``; RFC 5266 ``mc``; RFC 5265 ``dual``; the MIP
    proxy of draft-adrangi-mobileip-natvpn-traversal)."""

    HOME = "home"  # on the home network: deregistered, no tunnel
    F = "f"  # through a foreign agent, with its care-of address
    C = "c"  # a co-located care-of address (DHCP), straight to the home agent
    MC = "mc"  # RFC 5266 outside: the VPN's inner address (TIA) as co-located care-of address
    DUAL = "dual"  # RFC 5265 outside: the TIA with the internal HA, under an external MIP
    PROXY = "proxy"  # outside: registered with the MIP proxy in the DMZ
    NONE = "none"  # no Mobile IP at all (a scenario with ``mobility: none``)


# the modes in which the home agent answers the mobile node directly: inside the enterprise
INSIDE_MODES = frozenset({Mode.F, Mode.C, Mode.HOME})
