"""TUN devices for the userspace tunnel ends, set up with plain ioctls.

Why ioctls and not pyroute2: they are synchronous syscalls on a socket of the calling
thread's namespace, so they work on a thread whose asyncio loop is running (pyroute2 0.9's
synchronous ``IPRoute`` does not) and cost microseconds.

A device is created in the network namespace of the thread that opens ``/dev/net/tun`` and
lives as long as the file descriptor (not persistent): closing the fd, or the process dying,
removes it and its routes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
from typing import Final

TUNSETIFF: Final = 0x400454CA
IFF_TUN: Final = 0x0001
IFF_NO_PI: Final = 0x1000  # no 4-byte packet-information prefix: reads are bare IP packets
IFF_UP: Final = 0x1
SIOCGIFFLAGS: Final = 0x8913
SIOCSIFFLAGS: Final = 0x8914
SIOCGIFMTU: Final = 0x8921
SIOCSIFMTU: Final = 0x8922
SIOCSIFTXQLEN: Final = 0x8943
IFNAMSIZ: Final = 16
_IFREQ_LEN: Final = 40  # sizeof(struct ifreq) on 64-bit Linux

DEFAULT_TXQUEUELEN: Final = 1000  # TUN defaults to 500; bursts at ~1 Gbit/s overflow that

TUN_PATH = "/dev/net/tun"


def _ifreq(name: str, fmt: str, *values: int) -> bytes:
    raw = struct.pack(f"{IFNAMSIZ}s{fmt}", name.encode(), *values)
    return raw.ljust(_IFREQ_LEN, b"\0")


def _ifioctl(name: str, request: int, fmt: str, *values: int) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return fcntl.ioctl(s.fileno(), request, _ifreq(name, fmt, *values))


def set_mtu(name: str, mtu: int) -> None:
    _ifioctl(name, SIOCSIFMTU, "i", mtu)


def get_mtu(name: str) -> int:
    """The MTU of any interface of this namespace (OSError if there is none by that name)."""
    return struct.unpack_from("i", _ifioctl(name, SIOCGIFMTU, "i", 0), IFNAMSIZ)[0]


def set_txqueuelen(name: str, qlen: int) -> None:
    _ifioctl(name, SIOCSIFTXQLEN, "i", qlen)


def set_up(name: str, up: bool = True) -> None:
    raw = _ifioctl(name, SIOCGIFFLAGS, "H", 0)
    flags = struct.unpack_from("H", raw, IFNAMSIZ)[0]
    flags = flags | IFF_UP if up else flags & ~IFF_UP
    _ifioctl(name, SIOCSIFFLAGS, "H", flags)


def disable_ipv6(name: str) -> bool:
    """Turn IPv6 off on ``name`` (a per-namespace sysctl); False if IPv6 is absent.

    A new TUN sends router solicitations and MLD reports as soon as it is up; tunnelled to a
    peer that has no use for them they only earn ICMP errors, so switch IPv6 off *before* up.
    """
    path = f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6"
    try:
        with open(path, "w") as f:
            f.write("1")
    except FileNotFoundError:
        return False
    return True


class TunDevice:
    """One TUN device (IFF_TUN | IFF_NO_PI) with a non-blocking fd: read/write IPv4 packets."""

    def __init__(
        self,
        name: str,
        *,
        mtu: int | None = None,
        up: bool = True,
        no_ipv6: bool = True,
        txqueuelen: int | None = DEFAULT_TXQUEUELEN,
    ) -> None:
        if not name or len(name.encode()) >= IFNAMSIZ:
            raise ValueError(f"bad interface name {name!r}")
        try:
            self.fd: int = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{TUN_PATH} is missing: the userspace tunnels need it (modprobe tun, or "
                "mknod /dev/net/tun c 10 200)"
            ) from None
        try:
            res = fcntl.ioctl(self.fd, TUNSETIFF, _ifreq(name, "H", IFF_TUN | IFF_NO_PI))
            self.name: str = res[:IFNAMSIZ].rstrip(b"\0").decode()
            if no_ipv6:
                disable_ipv6(self.name)
            if mtu is not None:
                set_mtu(self.name, mtu)
            if txqueuelen is not None:
                set_txqueuelen(self.name, txqueuelen)
            if up:
                set_up(self.name)
            self.ifindex: int = socket.if_nametoindex(self.name)
        except BaseException:
            os.close(self.fd)
            raise
        self.mtu = mtu

    def fileno(self) -> int:
        return self.fd

    def set_mtu(self, mtu: int) -> None:
        set_mtu(self.name, mtu)
        self.mtu = mtu

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def __enter__(self) -> TunDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TunDevice({self.name!r}, fd={self.fd}, mtu={self.mtu})"


def open_tun(name: str, mtu: int | None = None, **kwargs: object) -> TunDevice:
    """Create (or attach to) TUN ``name`` in this thread's namespace, up, IPv6 off."""
    return TunDevice(name, mtu=mtu, **kwargs)  # type: ignore[arg-type]


__all__ = [
    "TunDevice",
    "disable_ipv6",
    "get_mtu",
    "open_tun",
    "set_mtu",
    "set_txqueuelen",
    "set_up",
]
