"""L2 triggers: carrier changes of interfaces, straight from rtnetlink (RTMGRP_LINK).

A raw NETLINK_ROUTE socket subscribed to link notifications; each RTM_NEWLINK says whether
the interface has carrier (IFF_LOWER_UP). Small and allocation-light on purpose: movement
detection latency starts here, and a generic netlink library adds milliseconds of parsing
and, in event loops, buffering delays.
"""

from __future__ import annotations

import socket
import struct

RTMGRP_LINK = 0x1
RTM_NEWLINK = 16
RTM_DELLINK = 17
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")


def parse_link_messages(data: bytes) -> list[tuple[int, bool, bool]]:
    """(ifindex, admin up, carrier) for each RTM_NEWLINK in a netlink datagram.

    Truncated or malformed messages end the parse (the kernel never sends them; a short
    read would), they never raise.
    """
    out = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        body = offset + _NLMSGHDR.size
        if msg_type == RTM_NEWLINK and length >= _NLMSGHDR.size + _IFINFOMSG.size:
            _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(data, body)
            out.append((index, bool(flags & IFF_UP), bool(flags & IFF_LOWER_UP)))
        offset += (length + 3) & ~3
    return out


class LinkWatcher:
    """Carrier state of one interface, updated from netlink notifications."""

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.index = socket.if_nametoindex(ifname)
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, RTMGRP_LINK))
        self.sock.setblocking(False)
        self.carrier = self._read_carrier()

    def _read_carrier(self) -> bool:
        try:
            with open(f"/sys/class/net/{self.ifname}/carrier") as handle:
                return handle.read().strip() == "1"
        except OSError:  # reading carrier of an admin-down link fails with EINVAL
            return False

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[bool]:
        """Carrier transitions of our interface since the last call, oldest first."""
        changes = []
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return changes
            except OSError:  # ENOBUFS: we missed notifications; resynchronise from sysfs
                now = self._read_carrier()
                if now != self.carrier:
                    self.carrier = now
                    changes.append(now)
                continue
            for index, _up, carrier in parse_link_messages(data):
                if index == self.index and carrier != self.carrier:
                    self.carrier = carrier
                    changes.append(carrier)

    def close(self) -> None:
        self.sock.close()
