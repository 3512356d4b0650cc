"""The topology format: validation errors name file, line and field; resolution is right."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from mipbase.specfile import SpecError
from testbed.topology import load_topology
from testbed.topology.model import Role

ROOT = Path(__file__).resolve().parents[2]
ENTERPRISE = ROOT / "topologies" / "enterprise.yaml"

MINIMAL = """\
name: mini
networks:
  lan: {subnet: 10.0.0.0/24, impair: {delay: 2ms}}
  wan: {subnet: 10.9.0.0/24, dhcp: {server: r, range: [10.9.0.100, 10.9.0.110]}}
nodes:
  a:
    links: [{network: lan}]
    routes: [{to: default, via: r}]
  r:
    role: [router, dhcp-server]
    links:
      - {network: lan}
      - {network: wan, impair: {delay: 10ms, egress: {loss: 1%}}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topo.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_topology(write(tmp_path, text))
    return info.value


def test_enterprise_has_the_nodes_the_seeds_need() -> None:
    plan = load_topology(ENTERPRISE)
    expected = {"mn", "ha", "cn", "fa", "core", "fw", "gw", "proxy", "isp", "nat"}
    assert expected <= set(plan.nodes)
    assert {"home", "visited", "office", "dmz", "internet", "public", "hotspot"} <= set(
        plan.networks
    )
    for node in ("mn", "ha", "cn"):
        assert plan.nodes[node].interfaces[0].network == "home"
    assert plan.networks["office"].dhcp and plan.networks["office"].dhcp.server == "core"
    assert plan.networks["hotspot"].subnet.is_private
    assert Role.NAT in plan.nodes["nat"].roles and plan.nodes["nat"].nat
    # the Internet side is slower than the intranet
    assert (
        plan.nodes["isp"].interfaces[0].egress.delay_ms
        > plan.nodes["ha"].interfaces[0].egress.delay_ms
    )


def test_enterprise_firewall_opens_only_vpn_and_mobile_ip_in_the_dmz() -> None:
    plan = load_topology(ENTERPRISE)
    fw = plan.nodes["fw"]
    internet_if = fw.interface_on("internet").name
    assert fw.firewall and fw.firewall.forward_policy == "drop"
    from_internet = [r for r in fw.firewall.rules if internet_if in r.in_ifaces]
    gw = ipaddress.IPv4Network(f"{plan.address('gw')}/32")
    proxy = ipaddress.IPv4Network(f"{plan.address('proxy')}/32")
    assert {r.proto for r in from_internet} == {"udp", "esp", "ipip"}
    # IKE, NAT-T and ESP only to the gateway; Mobile IP only to the proxy (or gw: one box)
    vpn = [r for r in from_internet if r.proto == "esp" or 500 in r.dports]
    assert vpn and all(r.dst == (gw,) for r in vpn)
    assert {p for r in vpn for p in r.dports} == {500, 4500}
    mip = [r for r in from_internet if r not in vpn]
    assert mip and all(set(r.dst) == {gw, proxy} for r in mip)
    assert {p for r in mip for p in r.dports} == {434}
    # nothing from the Internet is addressed to the intranet
    assert all(
        not r.dst or all(d.subnet_of(ipaddress.IPv4Network("192.0.2.0/24")) for d in r.dst)
        for r in from_internet
    )


def test_addresses_are_allocated_and_impairments_merged(tmp_path: Path) -> None:
    plan = load_topology(write(tmp_path, MINIMAL))
    a, r = plan.nodes["a"], plan.nodes["r"]
    assert str(a.interfaces[0].address) == "10.0.0.1/24"
    assert str(r.interfaces[0].address) == "10.0.0.2/24"
    # allocation skips the DHCP pool
    assert r.interfaces[1].ip == ipaddress.IPv4Address("10.9.0.1")
    assert a.routes[0].via == r.interfaces[0].ip
    wan = r.interfaces[1]
    assert wan.egress.delay_ms == 10 and wan.egress.loss == pytest.approx(0.01)
    assert wan.ingress.delay_ms == 10 and wan.ingress.loss == 0
    assert a.interfaces[0].egress.delay_ms == 2  # network default
    assert r.forwarding and not a.forwarding


def test_impairment_after_a_move_uses_the_new_network(tmp_path: Path) -> None:
    plan = load_topology(write(tmp_path, MINIMAL))
    egress, ingress = plan.impairment_on(plan.nodes["a"].interfaces[0], "wan")
    assert (egress.delay_ms, ingress.delay_ms) == (0, 0)


def test_unknown_network_names_file_line_and_field(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL.replace("links: [{network: lan}]", "links: [{network: lab}]"))
    assert err.file.endswith("topo.yaml")
    assert err.line == 7
    assert err.field == "nodes.a.links[0].network"
    assert "unknown network 'lab'" in str(err)
    assert str(err).startswith(f"{err.file}:7: nodes.a.links[0].network:")


def test_typo_in_field_is_rejected_with_its_line(tmp_path: Path) -> None:
    err = error_of(
        tmp_path,
        MINIMAL.replace("routes: [{to: default, via: r}]", "routez: [{to: default, via: r}]"),
    )
    assert err.line == 8 and err.field == "nodes.a.routez"
    assert "unknown field" in err.message


def test_bad_delay_value(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL.replace("delay: 2ms", "delay: fast"))
    assert err.line == 3 and err.field == "networks.lan.impair.delay"
    assert "duration" in err.message


@pytest.mark.parametrize(
    ("change", "field", "needle"),
    [
        (
            ("{network: lan}]", "{network: lan, address: 10.1.0.5}]"),
            "nodes.a.links[0].address",
            "not inside",
        ),
        (
            ("- {network: lan}", "- {network: lan, address: 10.0.0.1}\n      - {network: lan}"),
            "nodes.r.links[1].network",
            "already on",
        ),
        (("via: r}", "via: zz}"), "nodes.a.routes[0].via", "unknown node"),
        (
            ("range: [10.9.0.100, 10.9.0.110]", "range: [10.9.0.100, 10.8.0.110]"),
            "networks.wan.dhcp",
            "first address",
        ),
        (("{server: r,", "{server: a,"), "networks.wan.dhcp.server", "needs a static address"),
    ],
)
def test_semantic_errors(tmp_path: Path, change: tuple[str, str], field: str, needle: str) -> None:
    text = MINIMAL.replace(*change)
    assert text != MINIMAL
    err = error_of(tmp_path, text)
    assert err.field.startswith(field), str(err)
    assert needle in err.message, str(err)
    assert err.line is not None


def test_duplicate_address(tmp_path: Path) -> None:
    text = MINIMAL.replace("links: [{network: lan}]", "links: [{network: lan, address: 10.0.0.7}]")
    text = text.replace("      - {network: lan}\n", "      - {network: lan, address: 10.0.0.7}\n")
    err = error_of(tmp_path, text)
    assert "already used (line 7)" in err.message and err.line == 12


def test_yaml_syntax_error_and_duplicate_keys(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: x\nnetworks: {a: [}\n")
    assert err.line == 2 and "YAML syntax error" in err.message
    err = error_of(tmp_path, MINIMAL + "name: again\n")
    assert err.field == "name" and "duplicate key" in err.message


def test_missing_file() -> None:
    with pytest.raises(SpecError, match="cannot read file"):
        load_topology("/nonexistent/topology.yaml")


def test_overrides_deep_merge(tmp_path: Path) -> None:
    plan = load_topology(
        write(tmp_path, MINIMAL), {"networks": {"lan": {"impair": {"delay": "7ms"}}}}
    )
    assert plan.nodes["a"].interfaces[0].egress.delay_ms == 7
    assert plan.networks["lan"].subnet == ipaddress.IPv4Network("10.0.0.0/24")


def test_json_schema_exports() -> None:
    from testbed.topology.model import TopologySpec

    schema = TopologySpec.model_json_schema(by_alias=True)
    assert "networks" in schema["properties"] and "$defs" in schema


def test_dhcp_rapid_commit_defaults_on_and_reaches_dnsmasq(tmp_path: Path) -> None:
    from testbed.launch import dnsmasq_argv

    dhcp = load_topology(write(tmp_path, MINIMAL)).networks["wan"].dhcp
    assert dhcp is not None and dhcp.rapid_commit is True
    assert "--dhcp-rapid-commit" in dnsmasq_argv(dhcp, tmp_path)
    off = {"networks": {"wan": {"dhcp": {"rapid_commit": False}}}}
    dhcp = load_topology(write(tmp_path, MINIMAL), off).networks["wan"].dhcp
    assert dhcp is not None and dhcp.rapid_commit is False
    assert "--dhcp-rapid-commit" not in dnsmasq_argv(dhcp, tmp_path)
