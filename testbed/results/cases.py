"""Conditions under which to compare the architectures: topology overrides applied to each
scenario of a comparison (``testbed architectures --case NAME``).

Each case changes the network the same way for every architecture, so a move whose stream
never recovers under one architecture and recovers under another shows where it breaks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from testbed.topology.load import deep_merge

CASES: dict[str, dict[str, Any]] = {
    # a hotspot that lets only IPsec out (IKE, NAT-T, ESP) besides its own DHCP: a Mobile IP
    # agent outside the enterprise cannot be reached from it
    "ipsec-only-hotspot": {
        "nodes": {
            "nat": {
                "firewall": {
                    "forward_policy": "drop",
                    "rules": [
                        {"from": ["hotspot"], "to": ["internet"], "proto": "udp",
                         "dport": [500, 4500], "comment": "IKE and NAT-T only"},
                        {"from": ["hotspot"], "to": ["internet"], "proto": "esp"},
                    ],
                }
            }
        }
    },
}  # fmt: skip


def apply_case(scenario: Path, case: str, directory: Path) -> Path:
    """A copy of ``scenario`` with the case's topology overrides, named ``NAME--CASE``."""
    data = yaml.safe_load(scenario.read_text())
    topology = data["topology"]
    if isinstance(topology, str):
        topology = {"file": topology}
    file = Path(topology["file"])
    if not file.is_absolute():  # the copy lives elsewhere: resolve as the original would
        from testbed.scenario.load import resolve_topology_path

        file = resolve_topology_path(scenario, str(file))
    topology = {
        "file": str(file),
        "overrides": deep_merge(topology.get("overrides", {}), CASES[case]),
    }
    data["topology"] = topology
    data["name"] = f"{data['name']}--{case}"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{scenario.stem}--{case}.yaml"
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target
