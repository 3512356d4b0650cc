"""Applying link impairments on the kernel (netem) or the userspace (relay) path.

Kernel path: netem on the node's interface (egress) and on its switch-side end (ingress).
Userspace path: every interface's switch-side end ``P`` is joined to its bridge port
``Pb`` through a veth ``Pr``-``Pb`` and the delay relay copying frames between ``P`` and
``Pr``; loss is drawn by nftables in the switch namespace's bridge; rate is tbf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from testbed.topology.plan import Impairment, InterfacePlan

TBF_BURST = "64kb"
TBF_LATENCY = "50ms"
TBF_LATENCY_S = 0.050
# netem counts its queue in packets; size it for full-size frames, but never so small that a
# burst of small probe packets is dropped at a rate that would carry them
NETEM_FRAME_BYTES = 1500
NETEM_MIN_LIMIT = 8


def relay_port(port: str) -> str:
    return f"{port}r"


def bridge_port(port: str, relayed: bool) -> str:
    return f"{port}b" if relayed else port


@dataclass(frozen=True)
class TcCommand:
    where: str  # "node" or "switch"
    argv: tuple[str, ...]


def netem_args(imp: Impairment) -> list[str]:
    args = ["netem"]
    if imp.delay_ms or imp.jitter_ms:
        args += ["delay", f"{imp.delay_ms}ms"]
        if imp.jitter_ms:
            args += [f"{imp.jitter_ms}ms", "distribution", "normal"]
    if imp.loss:
        args += ["loss", f"{imp.loss * 100:.4f}%"]
    if imp.rate_bps:
        args += ["rate", f"{imp.rate_bps}bit", "limit", str(netem_limit(imp))]
    return args


def netem_limit(imp: Impairment) -> int:
    """Packets netem may hold with a rate: those in flight on the delay line plus as much
    queue as the userspace path's tbf holds (``TBF_LATENCY``). netem's default of 1000
    packets would queue for seconds at a low rate (1000 x 1500 B at 10 Mbit/s: 1.2 s)."""
    assert imp.rate_bps
    held_s = imp.delay_ms / 1000 + 3 * imp.jitter_ms / 1000 + TBF_LATENCY_S
    frames = math.ceil(imp.rate_bps / 8 * held_s / NETEM_FRAME_BYTES)
    return max(NETEM_MIN_LIMIT, frames)


def tc_commands(iface: InterfacePlan, egress: Impairment, ingress: Impairment, path: str):
    """tc invocations that make an interface's qdiscs match the impairments.

    ``replace``/``del`` forms so the same call serves the build and live changes.
    """
    commands: list[TcCommand] = []
    for where, dev, imp in (("node", iface.name, egress), ("switch", iface.port, ingress)):
        if path == "netem":
            if imp.is_null:
                argv = ("tc", "qdisc", "del", "dev", dev, "root")
            else:
                argv = ("tc", "qdisc", "replace", "dev", dev, "root", *netem_args(imp))
        elif imp.rate_bps:
            argv = (
                "tc",
                "qdisc",
                "replace",
                "dev",
                dev,
                "root",
                "tbf",
                "rate",
                f"{imp.rate_bps}bit",
                "burst",
                TBF_BURST,
                "latency",
                TBF_LATENCY,
            )
        else:
            argv = ("tc", "qdisc", "del", "dev", dev, "root")
        commands.append(TcCommand(where, argv))
    return commands


def installed(imp: Impairment, path: str) -> bool:
    """Whether :func:`tc_commands` leaves a qdisc in place for ``imp``: netem for any
    impairment on the kernel path, tbf for a rate on the userspace one."""
    return not imp.is_null if path == "netem" else bool(imp.rate_bps)


def tc_changes(
    iface: InterfacePlan,
    before: tuple[Impairment, Impairment],
    egress: Impairment,
    ingress: Impairment,
    path: str,
) -> list[TcCommand]:
    """The tc invocations that take an interface from ``before`` (egress, ingress) to the
    new impairments: none for a direction that keeps its own, and no ``del`` of a qdisc
    that is not there. On the relay path a move between networks without a rate changed
    nothing for tc, yet ran two ``tc qdisc del`` that failed: ~70 ms per move with 100
    mobile nodes on the loaded 2-core machine, a group's moves seconds apart."""
    commands = tc_commands(iface, egress, ingress, path)
    return [
        cmd
        for cmd, old, new in zip(commands, before, (egress, ingress), strict=True)
        if new != old and not (cmd.argv[2] == "del" and not installed(old, path))
    ]


def relay_direction(imp: Impairment) -> dict[str, float]:
    return {"delay_ms": imp.delay_ms, "jitter_ms": imp.jitter_ms}
