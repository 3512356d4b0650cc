"""L2 triggers: carrier changes of interfaces, straight from rtnetlink (RTMGRP_LINK).

A raw NETLINK_ROUTE socket subscribed to link notifications; each RTM_NEWLINK says whether
the interface has carrier (IFF_LOWER_UP). Small and allocation-light on purpose: movement
detection latency starts here, and a generic netlink library adds milliseconds of parsing
and, in event loops, buffering delays.
"""

from __future__ import annotations

import socket
import struct

from mipbase import rtnl

RTMGRP_LINK = 0x1
RTM_NEWLINK = 16
RTM_DELLINK = 17
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
IFLA_CARRIER_CHANGES = 35
_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_RTATTR = struct.Struct("=HH")


def _carrier_changes(data: bytes, start: int, end: int) -> int | None:
    offset = start
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > end:
            return None
        if kind == IFLA_CARRIER_CHANGES and length >= _RTATTR.size + 4:
            return int.from_bytes(data[offset + 4 : offset + 8], "little")
        offset += (length + 3) & ~3
    return None


def parse_link_messages(data: bytes) -> list[tuple[int, bool, bool, int | None]]:
    """(ifindex, admin up, carrier, carrier change counter) for each RTM_NEWLINK.

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
            changes = _carrier_changes(data, body + _IFINFOMSG.size, offset + length)
            out.append((index, bool(flags & IFF_UP), bool(flags & IFF_LOWER_UP), changes))
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
        # A down-up faster than the kernel's link watch may arrive as one message with the
        # final state only: the carrier change counter still tells that a move happened.
        # ``changes`` is also how far we have followed the link: the kernel counts each
        # change as it happens, before we are told (agents.runtime.arpgate relies on it).
        self.carrier, self.changes = self._read_state()

    def _read_state(self) -> tuple[bool, int | None]:
        """Carrier and change count from the kernel, over netlink: /sys/class/net is the
        network namespace of whoever mounted /sys, not necessarily ours (an agent started
        with setns sees the host's interfaces there, and may find one of the same name)."""
        with rtnl.Rtnl() as link:
            info = link.link_info(self.index)
        return info.carrier, info.carrier_changes

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[bool]:
        """Carrier transitions of our interface since the last call, oldest first."""
        changes: list[bool] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return changes
            except OSError:  # ENOBUFS: we missed notifications; resynchronise
                changes += self._follow(*self._read_state())
                continue
            for index, _up, carrier, counter in parse_link_messages(data):
                if index == self.index:
                    changes += self._follow(carrier, counter)

    def _follow(self, carrier: bool, counter: int | None) -> list[bool]:
        """The transitions that lead from what we knew to ``carrier`` at ``counter``."""
        missed = 0
        if counter is not None and self.changes is not None:
            missed = counter - self.changes - (carrier != self.carrier)
        if counter is not None:
            self.changes = counter
        before, self.carrier = self.carrier, carrier
        if missed >= 2 and carrier == before:
            return [not carrier, carrier]  # a whole off/on we did not see
        return [carrier] if carrier != before else []

    def close(self) -> None:
        self.sock.close()
