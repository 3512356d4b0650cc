"""Issue 15 (a), the gateway's side: a VPN service counts as started only once its
configuration is loaded. charon listens for IKE from the moment it runs and, before its
connections are loaded, answers NO_PROPOSAL_CHOSEN (final for the peer); so IKE to the node
is held back (nftables) from before the daemon starts until the connections are loaded, on
every start, a restart's included. Fakes for the lab, the daemon and vici: the order only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testbed.vpn import service
from testbed.vpn.charon import CharonConfig


class FakeLab:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.rules: list[str] = []

    def run(self, node: str, argv: list[str], check: bool = True, **kwargs: Any) -> None:
        if argv[:2] == ["nft", "-f"]:
            self.rules.append(kwargs["input"])
            self.calls.append("hold")
        elif argv[:3] == ["nft", "delete", "table"]:
            self.calls.append("release")
        else:
            self.calls.append(" ".join(argv[:2]))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    class FakeNode:
        def __init__(self, lab: Any, node: str, on_event: Any, **options: Any) -> None:
            self.charon = type("C", (), {"config": CharonConfig(node, Path("/nonexistent"))})
            self.vici = object()

        def start(self) -> FakeNode:
            calls.append("charon listening")
            return self

        def stop(self) -> None:
            calls.append("stop")

    monkeypatch.setattr(service, "VpnNode", FakeNode)
    for name in ("load_shared_psk", "load_pool", "load_conn"):
        monkeypatch.setattr(service.vc, name, lambda *_a, _n=name, **_k: calls.append(_n))
    return calls


GATEWAY = {"role": "gateway", "psk": "p", "pool": "10.10.0.0/24"}
CLIENT = {"role": "client", "gateway": "192.0.2.10", "psk": "p"}


@pytest.mark.parametrize("cfg", [GATEWAY, CLIENT], ids=["gateway", "client"])
def test_ike_is_held_back_until_the_connections_are_loaded(calls: list[str], cfg: dict) -> None:
    lab = FakeLab(calls)
    service.start_vpn_service(lab, "gw", dict(cfg), Path("/nonexistent"), print)
    service.start_vpn_service(lab, "gw", dict(cfg), Path("/nonexistent"), print)  # restart
    for run in (calls[: len(calls) // 2], calls[len(calls) // 2 :]):
        assert run.index("hold") < run.index("charon listening") < run.index("load_conn")
        assert run.index("load_conn") < run.index("release") and run[-1] == "release"
    assert "udp dport { 500, 4500 } drop" in lab.rules[0]


def test_a_failed_configuration_stops_the_daemon_and_releases_ike(
    calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: Any) -> None:
        raise RuntimeError("load_conn: bad proposal")

    monkeypatch.setattr(service.vc, "load_conn", refuse)
    with pytest.raises(RuntimeError, match="bad proposal"):
        service.start_vpn_service(FakeLab(calls), "gw", dict(GATEWAY), Path("/x"), print)
    assert calls[-2:] == ["stop", "release"]
