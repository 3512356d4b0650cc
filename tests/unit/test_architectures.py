"""The architecture comparison: encapsulation arithmetic and per-move figures from events."""

from __future__ import annotations

import json
from pathlib import Path

from testbed.results.architectures import collect, esp_in_udp, overhead, table


def test_esp_in_udp_pads_to_the_cipher_block() -> None:
    # 20 IP + 8 UDP + 8 SPI/seq + 16 IV + pad + 2 trailer + 16 ICV
    assert esp_in_udp(14) == 70  # 14 + 2 = 16: no padding
    assert esp_in_udp(15) == 70 + 15
    assert esp_in_udp(100) == 70 + 10  # 102 -> 112


def test_overhead_follows_the_stack_of_each_mode() -> None:
    assert overhead("home", None, 100) == 0
    assert overhead("f", "ipip", 100) == 20
    assert overhead("c", "udp", 100) == 32
    # mc: the HA's IP-in-IP (120 B) inside ESP in UDP
    assert overhead("mc", "ipip", 100) == 20 + esp_in_udp(120)
    # proxy: ESP around the 100 B packet, inside the proxy's UDP tunnel through a NAT
    assert overhead("proxy", "udp", 100) == esp_in_udp(100) + 32
    # dual: the i-HA's IP-in-IP inside ESP inside the x-HA's IP-in-IP
    assert overhead("dual", "ipip", 100) == 20 + esp_in_udp(120) + 20


def write_run(path: Path) -> None:
    path.mkdir()
    t = 1_000_000_000
    events = [
        {"t_ns": t + 1, "node": "mn", "event": "registration_sent", "bytes": 46},
        {"t_ns": t + 2, "node": "proxy", "event": "proxy_upstream_sent", "bytes": 46},
        {"t_ns": t + 3, "node": "proxy", "event": "proxy_upstream_accepted", "bytes": 38},
        {"t_ns": t + 4, "node": "mn", "event": "registration_accepted", "udp": True, "bytes": 46},
        {"t_ns": t + 5, "node": "mn", "event": "ike_message", "kind": "request", "bytes": 300},
        {"t_ns": t + 6, "node": "mn", "event": "ike_message", "kind": "response", "bytes": 280},
        {"t_ns": t + 7, "node": "gw", "event": "ike_message", "kind": "request", "bytes": 999},
        {"t_ns": 3 * t, "node": "mn", "event": "registration_sent", "bytes": 46},
    ]
    (path / "events.jsonl").write_text("\n".join(json.dumps(e) for e in events))
    summary = {
        "scenario": "arch",
        "passed": True,
        "move_times_ns": [t, 2 * t],
        "handoffs": [
            {
                "index": 0,
                "from": "visited",
                "to": "hotspot",
                "mode": "proxy",
                "interruption_ms": 300.0,
            },
            {
                "index": 1,
                "from": "hotspot",
                "to": "public",
                "mode": "proxy",
                "interruption_ms": None,
            },
        ],
    }
    (path / "summary.json").write_text(json.dumps(summary))


def test_collect_counts_signalling_per_move_and_where_it_breaks(tmp_path: Path) -> None:
    write_run(tmp_path / "run")
    moves = collect(tmp_path / "run")
    into = moves["visited -> hotspot"]
    assert into.interruptions == [300.0] and into.never == 0
    assert into.mip_messages == [4] and into.mip_bytes == [46 + 46 + 38 + 46]
    # the MN's view of IKE only: one exchange, two messages
    assert into.ike_exchanges == [1] and into.ike_messages == [2] and into.ike_bytes == [580]
    assert into.overhead == {esp_in_udp(92) + 32}  # a probe: 92 B inner
    out = moves["hotspot -> public"]
    assert out.never == 1 and out.mip_messages == [1]
    text = table({"proxy": moves})
    assert "| proxy | hotspot -> public | proxy | - | **1** |" in text


def test_link_overhead_is_the_most_common_length_to_the_node(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    from testbed.results.architectures import PROBE_INNER, link_overhead

    to_mn = Ether() / IP(src="192.0.2.11", dst="192.168.1.5") / UDP() / bytes(PROBE_INNER + 76)
    other = Ether() / IP(src="192.0.2.11", dst="192.168.1.5") / UDP() / bytes(500)
    elsewhere = Ether() / IP(src="192.0.2.11", dst="192.168.1.9") / UDP() / bytes(10)
    wrpcap(str(tmp_path / "x.pcap"), [to_mn] * 5 + [other] * 2 + [elsewhere] * 9)
    # 20 IP + 8 UDP + payload: 104 bytes more than the probe's inner packet
    assert link_overhead(tmp_path / "x.pcap", "192.168.1.5") == 104
    assert link_overhead(tmp_path / "x.pcap", "10.9.9.9") is None


def test_a_case_overrides_the_topology_of_a_copy(tmp_path: Path) -> None:
    import yaml

    from testbed.results.cases import apply_case
    from testbed.scenario.load import load_scenario

    root = Path(__file__).resolve().parents[2]
    copy = apply_case(root / "scenarios" / "proxy-roam.yaml", "ipsec-only-hotspot", tmp_path)
    data = yaml.safe_load(copy.read_text())
    assert data["name"] == "proxy-roam--ipsec-only-hotspot"
    scenario = load_scenario(copy)  # valid, and the NAT router now filters what it forwards
    firewall = scenario.plan.nodes["nat"].firewall
    assert firewall is not None and firewall.forward_policy == "drop"
    assert {r.proto for r in firewall.rules} == {"udp", "esp"}


def test_both_plots_draw_every_architecture(tmp_path: Path) -> None:
    from testbed.results.architectures import MoveStats, plot, plot_signalling

    results = {
        "mc": {"public -> hotspot": MoveStats([400.0, 420.0], mip_bytes=[96], ike_bytes=[900])},
        "proxy": {
            "public -> hotspot": MoveStats([120.0, 130.0], mip_bytes=[180], ike_bytes=[600]),
            "hotspot -> visited": MoveStats([40.0], mip_bytes=[96], ike_bytes=[0]),
        },
    }
    for fn, name in ((plot, "interruption.png"), (plot_signalling, "signalling.png")):
        fn(results, tmp_path / name)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_collect_counts_the_signalling_of_the_node_the_summary_names(tmp_path: Path) -> None:
    write_run(tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    (tmp_path / "run" / "summary.json").write_text(json.dumps({**summary, "mobile": "mb"}))
    moves = collect(tmp_path / "run")
    # the events are mn's: of them, another mobile node's count has only the proxy's upstream
    into = moves["visited -> hotspot"]
    assert into.mip_messages == [2] and into.ike_messages == [0]
