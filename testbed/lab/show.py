"""Plain-text views of a topology and of labs, for the terminal."""

from __future__ import annotations

import time

from testbed.lab.state import LabState
from testbed.topology.plan import Impairment, TopologyPlan


def _imp(imp: Impairment) -> str:
    parts = []
    if imp.delay_ms:
        parts.append(f"{imp.delay_ms:g}ms")
    if imp.jitter_ms:
        parts.append(f"±{imp.jitter_ms:g}ms")
    if imp.loss:
        parts.append(f"{imp.loss * 100:g}% loss")
    if imp.rate_bps:
        parts.append(f"{imp.rate_bps / 1e6:g}Mbit/s")
    return " ".join(parts) or "-"


def describe(plan: TopologyPlan, attachments: dict | None = None) -> str:
    lines = [f"topology {plan.name}: {plan.description}", "", "networks:"]
    for net in plan.networks.values():
        dhcp = f"  DHCP {net.dhcp.first}-{net.dhcp.last} by {net.dhcp.server}" if net.dhcp else ""
        lines.append(f"  {net.name:<10} {net.subnet!s:<18} {net.trust:<9}{dhcp}")
    lines += ["", "nodes:"]
    for node in plan.nodes.values():
        roles = ",".join(r.value for r in node.roles)
        lines.append(f"  {node.name:<8} {roles}")
        for iface in node.interfaces:
            network = (attachments or {}).get(node.name, {}).get(iface.name, iface.network)
            address = str(iface.address) if iface.address else iface.addressing
            delay = (
                _imp(iface.egress)
                if iface.egress == iface.ingress
                else (f"out {_imp(iface.egress)} / in {_imp(iface.ingress)}")
            )
            lines.append(
                f"      {iface.name:<5} {network or '(detached)':<10} {address:<18} {delay}"
            )
        for route in node.routes:
            dst = "default" if route.dst.prefixlen == 0 else str(route.dst)
            lines.append(f"      route {dst} via {route.via}")
    return "\n".join(lines)


def lab_table(labs: list[LabState]) -> str:
    if not labs:
        return "no labs"
    rows = [("NAME", "KIND", "STUDENT", "STATUS", "AGE", "NAMESPACES", "TOPOLOGY")]
    now = time.time()
    for lab in labs:
        status = "ready" if lab.ready else "building"
        if not lab.owner_alive():
            status = "stale (owner gone: testbed clean)"
        rows.append(
            (
                lab.name,
                lab.kind,
                lab.student or "-",
                status,
                f"{now - lab.created:.0f}s",
                str(len(lab.namespaces)),
                lab.topology,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
