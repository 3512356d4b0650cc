"""The lab's warm ARP entries at build (issue 19, item 3): which pairs of a network's nodes
get one. The kernel's ARP table is shared by every namespace (1,024 entries by default), so
mobile nodes by the hundred must not know each other."""

from __future__ import annotations

from testbed.lab.builder import warm_pairs


def test_nodes_of_different_groups_get_no_entries_for_each_other() -> None:
    """Three groups on home (the mixed crowd: inside, MOBIKE, proxy) and ha, cn, core:
    with entries between the groups, 50 mobile nodes were 1,562 entries of their own and
    the build failed with ENOBUFS."""
    groups = {
        "mn": [f"mn{k:02d}" for k in range(1, 26)],
        "mk": [f"mk{k:02d}" for k in range(1, 13)],
        "mp": [f"mp{k:02d}" for k in range(1, 14)],
    }
    grouped = {node for members in groups.values() for node in members}
    home = ["ha", "cn", "core", *grouped]
    pairs = {(home[i], home[j]) for i, j in warm_pairs(home, grouped)}
    assert not any(a in grouped and b in grouped for a, b in pairs)
    # the fixed nodes know each other and every mobile node, and each mobile node them
    assert ("ha", "cn") in pairs and ("core", "mk05") in pairs and ("mp13", "ha") in pairs
    assert len(pairs) == 3 * 2 + 2 * 3 * 50


def test_a_hundred_mobile_nodes_stay_well_under_the_arp_table() -> None:
    grouped = {f"m{k:03d}" for k in range(100)}
    home = ["ha", "cn", "core", *sorted(grouped)]
    assert len(warm_pairs(home, grouped)) == 606 < 1024


def test_without_groups_every_pair_and_never_a_node_for_itself() -> None:
    nodes = ["a", "b", "c", "a"]  # a with two interfaces on the network
    pairs = warm_pairs(nodes, set())
    assert (0, 3) not in pairs and (3, 0) not in pairs
    assert len(pairs) == 4 * 3 - 2
