"""Unit parsing and nftables rendering (pure functions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import units
from testbed.lab import impair, nftables
from testbed.topology import load_topology
from testbed.topology.plan import Impairment

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "ms"), [("10ms", 10), ("1.5s", 1500), ("250us", 0.25), (3, 3), ("1h", 3_600_000)]
)
def test_durations(text: object, ms: float) -> None:
    assert units.duration_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("bad", ["fast", "-1ms", True, "10 parsecs"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        units.duration_ms(bad)


def test_rates_and_loss() -> None:
    assert units.rate_bps("100mbit") == 100_000_000
    assert units.rate_bps("1gbit") == 1_000_000_000
    assert units.rate_bps("10mbps") == 80_000_000
    assert units.loss_fraction("1%") == pytest.approx(0.01)
    assert units.loss_fraction(0.2) == pytest.approx(0.2)
    for bad in ("150%", -0.1, "lots"):
        with pytest.raises(ValueError):
            units.loss_fraction(bad)


def test_enterprise_firewall_ruleset() -> None:
    plan = load_topology(ROOT / "topologies" / "enterprise.yaml")
    script = nftables.render_node(plan.nodes["fw"])
    assert script is not None
    assert "policy drop;" in script
    assert "ct state established,related counter accept" in script
    ike = 'iifname "eth2" oifname "eth1" ip daddr 192.0.2.10/32 meta l4proto udp'
    assert f"{ike} udp dport {{ 500, 4500 }}" in script
    assert 'oifname "eth2" ip saddr 10.0.0.0/8 counter masquerade' in script
    assert nftables.render_node(plan.nodes["cn"]) is None


def test_nat_rebind_replaces_the_rules_render_nat_installs() -> None:
    """A timeline's NAT rebind (scenario step ``nat``) is rendered here, not by the runner:
    the same matches as the node's table, with TCP and UDP mapped to the new ports first."""
    from ipaddress import IPv4Network

    from testbed.topology.plan import NatPlan

    rules = [NatPlan("eth2", (IPv4Network("10.0.0.0/8"),)), NatPlan("eth3", ())]
    table = nftables.render_nat(rules)
    assert '    oifname "eth2" ip saddr 10.0.0.0/8 counter masquerade' in table
    assert '    oifname "eth3" counter masquerade' in table
    script = nftables.render_nat_rebind(rules, (21000, 21999))
    chain = "ip testbed_nat postrouting"
    assert script.splitlines() == [
        f"flush chain {chain}",
        f'add rule {chain} oifname "eth2" ip saddr 10.0.0.0/8 meta l4proto {{ tcp, udp }} '
        "counter masquerade to :21000-21999 random",
        f'add rule {chain} oifname "eth2" ip saddr 10.0.0.0/8 counter masquerade',
        f'add rule {chain} oifname "eth3" meta l4proto {{ tcp, udp }} '
        "counter masquerade to :21000-21999 random",
        f'add rule {chain} oifname "eth3" counter masquerade',
    ]


def test_loss_rules_use_per_mille_precision() -> None:
    script = nftables.render_loss({"mn-eth0b": (0.05, 0.0), "ha-eth0b": (0.0, 0.001)})
    assert script is not None
    assert 'iifname "mn-eth0b" numgen random mod 1000000 < 50000 counter drop' in script
    assert 'oifname "ha-eth0b" numgen random mod 1000000 < 1000 counter drop' in script
    assert 'mn-eth0b" numgen' in script and 'oifname "mn-eth0b"' not in script


def test_tc_commands_per_path() -> None:
    plan = load_topology(ROOT / "topologies" / "enterprise.yaml")
    iface = plan.nodes["mn"].interfaces[0]
    slow = Impairment(delay_ms=10, jitter_ms=1, loss=0.01, rate_bps=10_000_000)
    netem = impair.tc_commands(iface, slow, Impairment(), "netem")
    assert netem[0].where == "node" and "netem" in netem[0].argv
    assert netem[0].argv[netem[0].argv.index("delay") + 1] == "10ms"
    assert netem[1].argv[2] == "del"  # null ingress removes the qdisc
    relay = impair.tc_commands(iface, slow, Impairment(), "relay")
    assert "tbf" in relay[0].argv and "netem" not in relay[0].argv


def test_tc_changes_run_nothing_a_move_does_not_need() -> None:
    """Issue 19, item 3: on the relay path a move between networks without a rate ran two
    failing ``tc qdisc del`` (~70 ms a move with 100 mobile nodes on a loaded machine)."""
    plan = load_topology(ROOT / "topologies" / "enterprise.yaml")
    iface = plan.nodes["mn"].interfaces[0]
    home, public = Impairment(delay_ms=1), Impairment(delay_ms=5)
    assert impair.tc_changes(iface, (home, home), public, public, "relay") == []
    # a rate is a tbf: put in place, changed, and removed when it goes
    rated = Impairment(delay_ms=5, rate_bps=1_000_000)
    put = impair.tc_changes(iface, (home, home), rated, public, "relay")
    assert [c.argv[2] for c in put] == ["replace"] and "tbf" in put[0].argv
    gone = impair.tc_changes(iface, (rated, home), public, public, "relay")
    assert [(c.where, c.argv[2]) for c in gone] == [("node", "del")]
    # the kernel path: netem for any impairment; a direction that keeps its own is left
    netem = impair.tc_changes(iface, (home, home), public, home, "netem")
    assert [(c.where, c.argv[2]) for c in netem] == [("node", "replace")]
    null = Impairment()
    assert impair.tc_changes(iface, (null, null), null, null, "netem") == []
    cleared = impair.tc_changes(iface, (home, null), null, null, "netem")
    assert [(c.where, c.argv[2]) for c in cleared] == [("node", "del")]


@pytest.mark.parametrize(
    ("delay_ms", "rate_bps"), [(0, 1_000_000), (10, 10_000_000), (20, 100_000_000), (5, 64_000)]
)
def test_netem_with_a_rate_queues_no_longer_than_the_relays_tbf(delay_ms: float, rate_bps: int):
    """netem's default queue (1000 packets) would hold seconds of traffic at a low rate: its
    limit covers the delay line plus the userspace path's tbf latency, no more."""
    argv = impair.netem_args(Impairment(delay_ms=delay_ms, rate_bps=rate_bps))
    limit = int(argv[argv.index("limit") + 1])
    queued_s = limit * impair.NETEM_FRAME_BYTES * 8 / rate_bps
    if limit > impair.NETEM_MIN_LIMIT:
        assert queued_s <= delay_ms / 1000 + impair.TBF_LATENCY_S + 0.002
    assert (
        queued_s >= delay_ms / 1000 + impair.TBF_LATENCY_S - 0.002
        or limit == impair.NETEM_MIN_LIMIT
    )
    assert "limit" not in impair.netem_args(Impairment(delay_ms=delay_ms))  # no rate, no queue
