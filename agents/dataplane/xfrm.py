"""A per-socket bypass of the kernel's IPsec policies (XFRM), as charon sets on its own IKE
sockets (kernel-netlink's ``bypass_socket``).

With the kernel's XFRM (a stock kernel) an IPsec policy applies to every packet its selector
matches, whatever the route: a tunnel bound to the MN's home address (the MIP proxy's
architecture) encrypts everything from the home address to the intranet, the MN's
Registration Request to a foreign agent inside included, while the IKE SA lives. Mobile IP
control of that architecture never rides the VPN (it is between the care-of address and the
proxy outside, or the MN and an FA inside), so its socket is exempt in both directions.
kernel-libipsec has no kernel policies (it routes into ``ipsec0``), so there it changes
nothing.
"""

from __future__ import annotations

import socket
import struct
from typing import Final

IP_XFRM_POLICY: Final = 17  # linux/in.h
XFRM_POLICY_IN, XFRM_POLICY_OUT = 0, 1
XFRM_POLICY_ALLOW: Final = 0
# struct xfrm_userpolicy_info: selector (56 bytes, family at 40), lifetime cfg (64) and cur
# (32), priority, index, then dir, action, flags, share; 168 with its 8-byte alignment
POLICY_INFO_LEN: Final = 168
_FAMILY_AT, _DIR_AT, _ACTION_AT = 40, 160, 161


def bypass_policy(direction: int, family: int = socket.AF_INET) -> bytes:
    """An ``xfrm_userpolicy_info`` with no templates: allow, in the clear."""
    info = bytearray(POLICY_INFO_LEN)
    struct.pack_into("=H", info, _FAMILY_AT, family)
    info[_DIR_AT], info[_ACTION_AT] = direction, XFRM_POLICY_ALLOW
    return bytes(info)


def bypass_ipsec(sock: socket.socket) -> bool:
    """Exempt ``sock`` from IPsec policies both ways; False where the kernel has no XFRM
    key manager to compile the policy (nothing to bypass there)."""
    try:
        for direction in (XFRM_POLICY_IN, XFRM_POLICY_OUT):
            sock.setsockopt(socket.IPPROTO_IP, IP_XFRM_POLICY, bypass_policy(direction))
    except OSError:
        return False
    return True
