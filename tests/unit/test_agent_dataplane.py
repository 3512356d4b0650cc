"""Which backend carries a tunnel: the kernel's ipip where present, else the userspace engine."""

from __future__ import annotations

from typing import Any

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
