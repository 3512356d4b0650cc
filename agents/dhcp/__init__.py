"""DHCPv4 client for the mobile node: sans-I/O core plus a thin Linux driver.

* :mod:`agents.dhcp.codec` -- wire format (``decode`` raises only ``DhcpMalformed``)
* :mod:`agents.dhcp.client` -- the state machine (RFC 2131 figure 5), actions out
* :mod:`agents.dhcp.driver` -- sockets, timers, pyroute2 (``acquire``, ``DhcpDriver``)
* ``python -m agents.dhcp.watch`` -- a plain DHCP host (a scenario's ``dhcp-client``)

Only the first two are imported here, so the core needs neither root nor pyroute2.
"""

from agents.dhcp.client import (
    Bound,
    CancelTimer,
    ClientConfig,
    DhcpClient,
    Event,
    Lease,
    SendDhcp,
    SetTimer,
    State,
    Unbound,
)
from agents.dhcp.codec import DhcpMalformed, DhcpMessage, MessageType, Opt, decode, encode

__all__ = [
    "Bound",
    "CancelTimer",
    "ClientConfig",
    "DhcpClient",
    "DhcpMalformed",
    "DhcpMessage",
    "Event",
    "Lease",
    "MessageType",
    "Opt",
    "SendDhcp",
    "SetTimer",
    "State",
    "Unbound",
    "decode",
    "encode",
]
