"""Raw rtnetlink requests (mipbase.rtnl) and Plumbing against the kernel, in a
namespace of our own (needs root): what ``ip`` shows afterwards, the error codes of refused
requests, and a batch in which one request fails without stopping the others."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import Any

import pytest
from labtools import veth_namespace

from agents.dataplane.arp import Plumbing
from mipbase import rtnl
from testbed import netns

IP = shutil.which("ip") or "/usr/sbin/ip"

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(IP), reason="needs root and ip"),
]

PEER_MAC = "02:00:5e:00:01:02"


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    with veth_namespace("rt") as name:
        yield name


def ip_json(ns: str, *argv: str) -> list[dict[str, Any]]:
    out = subprocess.run([IP, "-n", ns, "-j", *argv], check=True, capture_output=True, text=True)
    return json.loads(out.stdout or "[]")


@pytest.fixture
def sock(ns: str) -> Iterator[tuple[rtnl.Rtnl, int]]:
    with netns.entered(ns):
        link = rtnl.Rtnl()
        index = int(ip_json(ns, "link", "show", "va")[0]["ifindex"])
    try:
        yield link, index
    finally:
        link.close()


def test_addresses_add_replace_dump_and_delete(ns: str, sock: tuple[rtnl.Rtnl, int]) -> None:
    link, a = sock
    assert link.run([rtnl.addr("add", a, "10.77.0.1", 24)]) == [0]
    assert link.run([rtnl.addr("add", a, "10.77.0.1", 24)]) == [errno.EEXIST]
    shown = {
        (i["local"], i["prefixlen"]) for i in ip_json(ns, "addr", "show", "va")[0]["addr_info"]
    }
    assert ("10.77.0.1", 24) in shown
    # a lifetime makes it dynamic, which is how the DHCP client finds stale ones
    assert link.call(rtnl.addr("replace", a, "10.77.0.1", 24, valid_lft=600))
    (info,) = [i for i in link.addresses(a) if str(i.address) == "10.77.0.1"]
    assert info.prefixlen == 24 and not info.flags & rtnl.IFA_F_PERMANENT
    assert link.call(rtnl.addr("del", a, "10.77.0.1", 24))
    assert not [i for i in link.addresses(a) if str(i.address) == "10.77.0.1"]
    with pytest.raises(rtnl.NetlinkError) as failed:
        link.call(rtnl.addr("del", a, "10.77.0.1", 24))
    assert failed.value.errno == errno.EADDRNOTAVAIL


def test_routes_in_main_and_other_tables(ns: str, sock: tuple[rtnl.Rtnl, int]) -> None:
    link, a = sock
    link.call(rtnl.addr("replace", a, "10.78.0.1", 24))
    link.call(rtnl.route("replace", "10.88.0.0/24", gateway="10.78.0.2", oif=a, priority=5))
    (route,) = ip_json(ns, "route", "show", "10.88.0.0/24")
    assert (route["gateway"], route["dev"], route["metric"]) == ("10.78.0.2", "va", 5)
    link.call(rtnl.route("replace", "0.0.0.0/0", oif=a, prefsrc="10.78.0.1", table=100))
    (default,) = ip_json(ns, "route", "show", "table", "100")
    assert (default["dst"], default["dev"], default["prefsrc"]) == ("default", "va", "10.78.0.1")
    # a gateway off every link is refused unless onlink
    assert link.run([rtnl.route("replace", "10.89.0.0/24", gateway="10.99.0.1", oif=a)]) == [
        errno.ENETUNREACH
    ]
    assert link.call(rtnl.route("replace", "10.89.0.0/24", gateway="10.99.0.1", oif=a, onlink=True))
    (onlink,) = ip_json(ns, "route", "show", "10.89.0.0/24")
    assert "onlink" in onlink["flags"]
    for dst, table in (("10.88.0.0/24", 254), ("0.0.0.0/0", 100), ("10.89.0.0/24", 254)):
        assert link.call(rtnl.route("del", dst, table=table))
    assert link.run([rtnl.route("del", "10.88.0.0/24")]) == [errno.ESRCH]
    assert ip_json(ns, "route", "show", "table", "100") == []


def test_a_refused_request_does_not_stop_the_batch(ns: str, sock: tuple[rtnl.Rtnl, int]) -> None:
    link, a = sock
    codes = link.run(
        [
            rtnl.addr("replace", a, "10.79.0.1", 24),
            rtnl.route("del", "10.123.0.0/24"),  # not there
            rtnl.route("replace", "10.124.0.0/24", gateway="10.79.0.2", oif=a),
        ]
    )
    assert codes == [0, errno.ESRCH, 0]
    assert ip_json(ns, "route", "show", "10.124.0.0/24")


def test_a_learnt_mac_fills_an_unresolved_entry(ns: str) -> None:
    """Issue 15, item 6: a packet routed to a neighbour before we learnt its MAC leaves an entry
    without one (INCOMPLETE, then FAILED), on which "add" fails. The MN's kernel never resolves
    it by broadcast (agents.runtime.arpgate), so the MAC from an advertisement or a DHCP ACK
    must fill it in; a usable entry still stays as it is (no needless probes)."""
    from agents.dhcp.client import Lease
    from agents.dhcp.netconf import LinkConfigurator

    agent, router = "10.82.0.2", "10.82.0.254"
    lease = Lease(
        IPv4Address("10.82.0.7"), 24, IPv4Address(router), IPv4Address(router), 0.0,
        None, None, None,
    )  # fmt: skip
    # Plumbing and the configurator look interfaces up by name: in the namespace
    with netns.entered(ns):
        plumbing, net = Plumbing(), LinkConfigurator("va")
        index = plumbing.ifindex("va")
        try:
            for state in ("failed", "incomplete"):
                for address in (agent, router):
                    ip_args = ["neigh", "replace", address, "dev", "va", "nud", state]
                    subprocess.run([IP, "-n", ns, *ip_args], check=True)
                entry = plumbing.rtnl.neighbour(agent, index)
                assert entry is not None and not entry.state & rtnl.NUD_VALID, entry
                assert plumbing.learn_neighbour(agent, PEER_MAC, "va")
                (shown,) = ip_json(ns, "neigh", "show", agent, "dev", "va")
                assert shown["lladdr"] == PEER_MAC and shown["state"] == ["STALE"], shown
                net.apply(lease, None, 0.0, router_mac=PEER_MAC)
                (shown,) = ip_json(ns, "neigh", "show", router, "dev", "va")
                assert shown["lladdr"] == PEER_MAC and shown["state"] == ["STALE"], shown
            # a usable entry is left alone (False), whatever the MAC offered
            assert not plumbing.learn_neighbour(agent, "02:00:5e:00:01:09", "va")
            (shown,) = ip_json(ns, "neigh", "show", agent, "dev", "va")
            assert shown["lladdr"] == PEER_MAC
            assert plumbing.rtnl.neighbour("10.82.0.99", index) is None
        finally:
            net.remove(lease)
            net.close()
            plumbing.close()


def test_plumbing_neighbours_proxy_entries_and_rules(ns: str) -> None:
    # Plumbing looks interfaces up by name: in the namespace, as an agent runs
    with netns.entered(ns):
        plumbing = Plumbing()
        try:
            plumbing.add_address("va", "10.80.0.1", 24)
            plumbing.add_address("va", "10.80.0.1", 24)  # already there: fine
            assert plumbing.learn_neighbour("10.80.0.2", PEER_MAC, "va")
            assert not plumbing.learn_neighbour("10.80.0.2", "02:00:5e:00:01:03", "va")
            (entry,) = ip_json(ns, "neigh", "show", "10.80.0.2", "dev", "va")
            assert entry["lladdr"] == PEER_MAC and entry["state"] == ["STALE"]
            assert plumbing.learn_neighbour("10.80.0.2", "02:00:5e:00:01:03", "va", replace=True)
            (entry,) = ip_json(ns, "neigh", "show", "10.80.0.2", "dev", "va")
            assert entry["lladdr"] == "02:00:5e:00:01:03"

            plumbing.add_proxy_arp("10.80.0.100", "va")
            assert ip_json(ns, "neigh", "show", "proxy", "10.80.0.100")
            assert plumbing.del_proxy_arp("10.80.0.100", "va")
            assert not plumbing.del_proxy_arp("10.80.0.100", "va")

            plumbing.add_source_rule("10.80.0.1", 100, priority=1234)
            plumbing.add_source_rule("10.80.0.1", 100, priority=1234)  # no duplicate
            rules = [r for r in ip_json(ns, "rule", "show") if r.get("priority") == 1234]
            assert [(r["src"], r["table"]) for r in rules] == [("10.80.0.1", "100")]
            assert plumbing.del_source_rule("10.80.0.1", 100, priority=1234)
            assert not plumbing.del_source_rule("10.80.0.1", 100, priority=1234)

            plumbing.add_host_route("10.80.5.5", "va", src="10.80.0.1")
            (host,) = ip_json(ns, "route", "show", "10.80.5.5")
            assert (host["dev"], host["prefsrc"], host["scope"]) == ("va", "10.80.0.1", "link")
            assert plumbing.del_host_route("10.80.5.5")
            assert not plumbing.del_host_route("10.80.5.5")
            assert plumbing.del_address("va", "10.80.0.1", 24)
            assert not plumbing.del_address("va", "10.80.0.1", 24)
        finally:
            plumbing.close()


def test_mn_reaches_its_fa_past_a_vpn_table_220_route(ns: str) -> None:
    """Back inside after mode mc on a stock kernel: charon's kernel-netlink keeps, while the
    IKE SA lives, ``10.0.0.0/8 via <old router> dev <link>`` in table 220. A Registration
    Request to the FA (from the home address, bound to the link) must not take it: the
    MN's plane puts the FA on the link in the main table, and takes it away with the link."""
    from types import SimpleNamespace

    from agents.runtime.dataplane import MnDataPlane

    home, fa, old_router = "10.1.0.100", "10.2.0.254", "192.0.2.1"
    for argv in (
        ["addr", "add", f"{home}/32", "dev", "va"],  # ours on the link, as for mode f
        ["rule", "add", "priority", "220", "table", "220"],
        ["route", "add", "10.0.0.0/8", "via", old_router, "dev", "va", "onlink", "table", "220"],
    ):
        subprocess.run([IP, "-n", ns, *argv], check=True)

    def route_to_fa() -> str:
        argv = ["route", "get", fa, "from", home, "oif", "va"]
        return subprocess.run([IP, "-n", ns, *argv], capture_output=True, text=True).stdout

    events = SimpleNamespace(emit=lambda *_a, **_k: None)
    try:
        with netns.entered(ns):
            dp = MnDataPlane(
                events,  # type: ignore[arg-type]
                None,
                iface="va",
                home=home,
                home_prefix=24,
                home_router="10.1.0.254",
                home_agent="10.1.0.1",
            )
            assert f"via {old_router}" in route_to_fa()  # what the request met before
            dp.home_for_fa(fa)
            assert route_to_fa().split()[:3] == [fa, "from", home], route_to_fa()
            assert "via" not in route_to_fa()
            dp.left_link(True, "f")
            assert f"via {old_router}" in route_to_fa()  # the FA is not on the next link
    finally:
        subprocess.run([IP, "-n", ns, "rule", "del", "priority", "220"], check=False)
        subprocess.run([IP, "-n", ns, "route", "flush", "table", "220"], check=False)
        subprocess.run([IP, "-n", ns, "addr", "del", f"{home}/32", "dev", "va"], check=False)
