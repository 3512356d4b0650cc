"""Rendering of firewall and NAT policy into nftables rulesets (pure functions).

Each node gets its own tables, named ``testbed_*`` so a person reading ``nft list ruleset``
in a node sees at once what the testbed installed.
"""

from __future__ import annotations

from testbed.topology.plan import FirewallPlan, FirewallRulePlan, NatPlan, NodePlan

_PROTO_MATCH = {
    "tcp": "meta l4proto tcp",
    "udp": "meta l4proto udp",
    "icmp": "meta l4proto icmp",
    "esp": "meta l4proto esp",
    "ipip": "meta l4proto 4",  # IP in IP; /etc/protocols calls 4 "ipencap" and 94 "ipip"
}


def _set(items: tuple, quote: bool = False) -> str:
    """An nft value or anonymous set; interface names are quoted, addresses are not."""
    values = ", ".join(f'"{x}"' if quote else str(x) for x in items)
    return values if len(items) == 1 else "{ " + values + " }"


def render_rule(rule: FirewallRulePlan) -> str:
    parts: list[str] = []
    if rule.in_ifaces:
        parts.append(f"iifname {_set(rule.in_ifaces, quote=True)}")
    if rule.out_ifaces:
        parts.append(f"oifname {_set(rule.out_ifaces, quote=True)}")
    if rule.src:
        parts.append(f"ip saddr {_set(rule.src)}")
    if rule.dst:
        parts.append(f"ip daddr {_set(rule.dst)}")
    if rule.proto != "any":
        parts.append(_PROTO_MATCH[rule.proto])
    if rule.dports:
        parts.append(f"{rule.proto} dport {_set(rule.dports)}")
    parts.append("counter")
    parts.append(rule.action)
    if rule.comment:
        parts.append('comment "' + rule.comment.replace('"', "'")[:120] + '"')
    return " ".join(parts)


def render_firewall(firewall: FirewallPlan) -> str:
    lines = [
        "table inet testbed_fw {",
        "  chain forward {",
        f"    type filter hook forward priority filter; policy {firewall.forward_policy};",
        "    ct state established,related counter accept",
        "    ct state invalid counter drop",
    ]
    lines += [f"    {render_rule(rule)}" for rule in firewall.rules]
    lines += ["  }", "}"]
    return "\n".join(lines)


def nat_rules(rules: list[NatPlan], ports: tuple[int, int] | None = None) -> list[str]:
    """The postrouting rules of a node's NAT: each masquerades what leaves its interface
    (from its sources). With ``ports`` (first, last), TCP and UDP mappings take their
    external port from that range, at random; other protocols have no ports to map."""
    lines = []
    for rule in rules:
        match = f'oifname "{rule.out_iface}"'
        if rule.sources:
            match += f" ip saddr {_set(rule.sources)}"
        if ports is not None:
            lines.append(
                f"{match} meta l4proto {{ tcp, udp }} counter masquerade "
                f"to :{ports[0]}-{ports[1]} random"
            )
        lines.append(f"{match} counter masquerade")
    return lines


def render_nat(rules: list[NatPlan]) -> str:
    lines = [
        "table ip testbed_nat {",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
    ]
    lines += [f"    {rule}" for rule in nat_rules(rules)]
    lines += ["  }", "}"]
    return "\n".join(lines)


def render_nat_rebind(rules: list[NatPlan], ports: tuple[int, int]) -> str:
    """The script that replaces a running node's NAT rules (``render_nat``'s table) with
    ones that map to new external ports: new connections get new mappings (a NAT that
    rebinds), existing ones keep theirs until conntrack forgets them."""
    chain = "ip testbed_nat postrouting"
    adds = "".join(f"add rule {chain} {rule}\n" for rule in nat_rules(rules, ports))
    return f"flush chain {chain}\n" + adds


def render_node(node: NodePlan) -> str | None:
    """The whole nft script for a node, or None when it needs no tables."""
    parts = []
    if node.firewall is not None:
        parts.append(render_firewall(node.firewall))
    if node.nat:
        parts.append(render_nat(node.nat))
    return "\n".join(parts) + "\n" if parts else None


def render_loss(port_loss: dict[str, tuple[float, float]]) -> str | None:
    """Bridge-family loss in the switch namespace: {bridge_port: (egress, ingress)}.

    egress (node -> network) frames enter the bridge through the port; ingress frames leave
    through it. ``numgen random`` draws per frame, in the kernel, so loss is independent.
    """
    rules = []
    for port, (egress, ingress) in sorted(port_loss.items()):
        if egress > 0:
            rules.append(
                f'iifname "{port}" numgen random mod 1000000 < {round(egress * 1e6)} counter drop'
            )
        if ingress > 0:
            rules.append(
                f'oifname "{port}" numgen random mod 1000000 < {round(ingress * 1e6)} counter drop'
            )
    body = "\n".join(f"    {r}" for r in rules)
    return (
        "table bridge testbed_impair {\n  chain loss {\n"
        "    type filter hook forward priority filter; policy accept;\n"
        f"{body}\n  }}\n}}\n"
    )
