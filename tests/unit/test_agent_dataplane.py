"""Which backend carries a tunnel: the kernel's ipip where present, else the userspace engine."""

from __future__ import annotations

from typing import Any

import pytest

from agents.mip.actions import TunnelDown, TunnelUp
from agents.runtime.dataplane import FaDataPlane, HaDataPlane


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.homes: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any, **_kw: Any) -> Any:
            self.calls.append((name, args))
            if name == "add":
                self.homes.add(str(args[0]))
            if name == "remove":
                present = str(args[0]) in self.homes
                self.homes.discard(str(args[0]))
                return present
            if name == "ifindex":
                return 7
            return None

        return record


def plane(cls: type, kernel: bool) -> Any:
    """A data plane without its constructor (which would touch the current namespace)."""
    dp = object.__new__(cls)
    dp.events, dp.plumbing, dp._engine = Recorder(), Recorder(), Recorder()
    dp.kernel = Recorder() if kernel else None
    dp.home_iface = "eth0"
    return dp


def up(encapsulation: str, role: str) -> TunnelUp:
    return TunnelUp(
        "10.1.0.100", "10.2.0.254", "10.2.0.254", "10.1.0.1", encapsulation, None, True, None, role
    )


def test_kernel_backend_carries_ipip_and_engine_carries_udp() -> None:
    for cls, role in ((HaDataPlane, "ha"), (FaDataPlane, "fa")):
        dp = plane(cls, kernel=True)
        dp.tunnel_up(up("ipip", role))
        assert [c[0] for c in dp.kernel.calls] == ["add"]
        assert dp._engine.calls == []
        dp.tunnel_down(TunnelDown("10.1.0.100", "10.2.0.254", "10.2.0.254", role))
        assert [c[0] for c in dp.kernel.calls] == ["add", "remove"]
        dp.tunnel_up(up("udp", role))
        assert [c[0] for c in dp._engine.calls] == ["add"]


def test_userspace_only_without_kernel_ipip() -> None:
    dp = plane(HaDataPlane, kernel=False)
    dp.tunnel_up(up("ipip", "ha"))
    assert [c[0] for c in dp._engine.calls] == ["add"]
    assert ("add_host_route", ("10.1.0.100", "mipha0")) in dp.plumbing.calls


class FakeTunDevice:
    def __init__(self) -> None:
        self.mtus: list[int] = []

    def set_mtu(self, mtu: int) -> None:
        self.mtus.append(mtu)


@pytest.mark.parametrize("vpn_iface", ["ipsec0", "eth0"], ids=["libipsec", "xfrm"])
def test_mode_mc_fits_the_mobile_ip_tun_into_the_vpn(monkeypatch: Any, vpn_iface: str) -> None:
    """Mode mc: IP in IP (+20) goes into the VPN (1400): the TUN gets 1380, back to 1480
    after. With kernel-libipsec the inner address is on ipsec0 (MTU 1400); with the kernel's
    XFRM it is on the outer link (1500), and the tunnel is still one through the VPN."""
    from agents.runtime.dataplane import MnDataPlane

    mtus = {"ipsec0": 1400, "eth0": 1500}
    monkeypatch.setattr("agents.runtime.dataplane.get_mtu", lambda name: mtus[name])
    dp = object.__new__(MnDataPlane)
    dp.events, dp.plumbing, dp.nl, dp._engine = Recorder(), Recorder(), Recorder(), Recorder()
    dp._engine.tun = tun = FakeTunDevice()
    dp.udp_socket, dp.kernel, dp.coa_router = None, None, None
    dp.iface, dp.home, dp.home_prefix, dp.home_agent = "eth0", "10.1.0.100", 24, "10.1.0.1"
    dp._mc, dp._tun_mtu = False, 1480

    def mc(encapsulation: str = "ipip") -> TunnelUp:
        return TunnelUp(
            "10.1.0.100", "10.10.0.1", "10.1.0.1", "10.10.0.1", encapsulation, None, True,
            None, "mn", vpn_iface, via_vpn=True,
        )  # fmt: skip

    dp.tunnel_up(mc())
    assert tun.mtus == [1380]
    assert dp._mc  # the rule that steers the home address into our TUN ahead of table 220
    dp.tunnel_up(mc())  # a re-registration changes nothing
    dp.tunnel_down(TunnelDown("10.1.0.100", "10.10.0.1", "10.1.0.1", "mn"))
    assert tun.mtus == [1380, 1480]
    dp.tunnel_up(mc("udp"))  # IP in UDP: 8 + 4 bytes more
    assert tun.mtus == [1380, 1480, 1368]
    dp.tunnel_up(up("ipip", "mn"))  # mode c on the link: the MTU for 1500 bytes again
    assert tun.mtus == [1380, 1480, 1368, 1480]
    events = [c[1][0] for c in dp.events.calls if c[0] == "emit"]
    assert events.count("tun_mtu") == 4


def test_home_address_changes_only_touch_what_is_there() -> None:
    """The MN's home address on the link: a removal only for a prefix it has (first: both
    may be, the topology put it there), nothing when it already is as asked."""
    from agents.runtime.dataplane import MnDataPlane
    from mipbase import rtnl

    dp = object.__new__(MnDataPlane)
    dp.plumbing, dp.iface, dp.home, dp.home_prefix = Recorder(), "eth0", "10.1.0.100", 24

    def ops(prefix: int | None) -> list[tuple[str, int]]:
        out = []
        for request in dp._home_link_ops(prefix):
            kind = "del" if request.type == rtnl.RTM_DELADDR else "set"
            out.append((kind, request.body[1]))  # ifaddrmsg: family, prefixlen, ...
        return out

    assert ops(32) == [("del", 24), ("set", 32)]  # unknown at first: /24 may be there
    assert ops(32) == []
    assert ops(None) == [("del", 32)]
    assert ops(None) == []
    assert ops(32) == [("set", 32)]  # nothing to remove: it was off the link
    assert ops(24) == [("del", 32), ("set", 24)]
