"""Every command line the testbed starts in a lab, one builder per kind of process.

Pure functions: they return argv lists and start nothing (``testbed.lab.builder.spawn`` and
``Lab.popen`` do, in a node's namespace). Python programs are started as modules of the
interpreter that runs the testbed; the agents' entry points are strings here, never imports
(``tests/unit/test_import_layers.py``).

=================  ==================================================  ====================
kind               program                                             started by
=================  ==================================================  ====================
agent              ``python -m agents.runtime.main ROLE``              scenario runner
dhcp client watch  ``python -m agents.dhcp.watch``                     scenario runner
dhcp server        ``dnsmasq`` (DHCP only, one interface)              lab builder
delay relay        ``python -m testbed.programs.relay``                lab builder
capture            ``tcpdump`` on a network's bridge                   lab, scenario runner
UDP probe          ``python -m testbed.programs.probe``                scenario runner
TCP probe          ``python -m testbed.programs.tcpprobe server|client``  scenario runner
ICMP ping          ``ping`` (iputils, timestamped)                     scenario runner
ICMP prober        ``python -m testbed.programs.pinger``               tests, benchmarks
IKE daemon         ``charon-systemd`` (no arguments)                   ``testbed.vpn.charon``
=================  ==================================================  ====================
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from testbed.topology.plan import DhcpPlan

# the Python programs, as ``python -m`` names
AGENT = "agents.runtime.main"
DHCP_WATCH = "agents.dhcp.watch"
RELAY = "testbed.programs.relay"
PROBE = "testbed.programs.probe"
TCPPROBE = "testbed.programs.tcpprobe"
PINGER = "testbed.programs.pinger"


def python_module(module: str, *args: str) -> list[str]:
    """``python -m MODULE ARGS``, with the interpreter that runs the testbed."""
    return [sys.executable, "-m", module, *args]


def agent_argv(role: str, config: Path, events: Path | str, node: str, state: Path) -> list[str]:
    """The command of one Mobile IP agent (``role``: ha, fa, mn, proxy) in a node."""
    argv = python_module(AGENT, role, "--config", str(config))
    return [*argv, "--events", str(events), "--node", node, "--state", str(state)]


def dhcp_watch_argv(iface: str, node: str, events: Path | str) -> list[str]:
    """The DHCP client of a node that runs no agent: its leases as events."""
    return python_module(DHCP_WATCH, "--iface", iface, "--node", node, "--events", str(events))


def dnsmasq_argv(dhcp: DhcpPlan, state_dir: Path) -> list[str]:
    """A dnsmasq that is only a DHCP server on one interface, with no system config."""
    # RFC 4039: a client that asks (ours does, by default) gets its DHCPACK straight after
    # the DISCOVER, saving a round trip on every move; other clients still get an OFFER.
    rapid = ["--dhcp-rapid-commit"] if dhcp.rapid_commit else []
    return [
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--port=0",
        f"--interface={dhcp.iface}",
        "--bind-interfaces",
        "--no-ping",
        "--dhcp-authoritative",
        *rapid,
        "--user=root",
        "--group=root",
        "--log-dhcp",
        "--log-facility=-",
        f"--dhcp-range={dhcp.first},{dhcp.last},{dhcp.subnet.netmask},{dhcp.lease_s}",
        f"--dhcp-option=option:router,{dhcp.router}",
        # leases in memory only: dnsmasq rewrites and fsyncs its lease file before each
        # ACK goes out (0.2-1 ms here, where /run is on disk), on the handoff path
        "--leasefile-ro",
        f"--pid-file={state_dir / f'dhcp-{dhcp.network}.pid'}",
    ]


def relay_argv(config: Path | str, control: Path | str) -> list[str]:
    """The userspace delay relay, in the switch namespace: pairs from a JSON file, commands
    on a UNIX socket."""
    return python_module(RELAY, "--config", str(config), "--control", str(control))


def capture_argv(
    network: str, out: Path | str, snaplen: int = 262144, bpf: str | None = None
) -> list[str]:
    """tcpdump on a network's bridge (in the switch namespace) into the pcap ``out``.
    Immediate mode and packet-buffered output: no frames wait in a buffer when the capture
    is stopped soon after the traffic."""
    argv = ["tcpdump", "-i", network, "-s", str(snaplen), "--immediate-mode", "-U", "-n"]
    return [*argv, "-w", str(out), *([bpf] if bpf else [])]


def probe_argv(
    out_dir: Path,
    interval_ms: float,
    size: int,
    start_ns: int,
    *,
    out_stream: str | None = None,
    to: str | None = None,
    source: str | None = None,
    in_stream: str | None = None,
    listen: int | None = None,
    ready: Path | None = None,
    start_file: Path | None = None,
) -> list[str]:
    """One end of the UDP probe streams: it sends ``out_stream`` ``to`` ADDR:PORT (from
    ``source``, a mobile node's home address) and receives ``in_stream`` on port ``listen``;
    both ends start sending at ``start_ns`` (CLOCK_MONOTONIC), or, with ``start_file``, at the
    time written there; ``ready`` is created once its sockets are bound."""
    argv = python_module(PROBE, "--dir", str(out_dir), "--interval-ms", str(interval_ms))
    argv += ["--size", str(size), "--start-ns", str(start_ns)]
    if out_stream is not None:
        argv += ["--out-stream", out_stream, "--to", str(to)]
        if source is not None:
            argv += ["--source", source]
    if in_stream is not None:
        argv += ["--in-stream", in_stream, "--listen", str(listen)]
    if ready is not None:
        argv += ["--ready", str(ready)]
    if start_file is not None:
        argv += ["--start-file", str(start_file)]
    return argv


def tcpprobe_argv(
    mode: str,
    out_dir: Path,
    port: int,
    events: Path | str,
    node: str,
    *,
    to: str | None = None,
    bind: str | None = None,
) -> list[str]:
    """The TCP probe: ``server`` listens on ``port``; ``client`` connects ``to`` ADDR:PORT
    from ``bind``."""
    argv = python_module(TCPPROBE, mode, "--dir", str(out_dir), "--port", str(port))
    if to is not None:
        argv += ["--to", to]
    if bind is not None:
        argv += ["--bind", bind]
    return [*argv, "--events", str(events), "--node", node]


def icmp_ping_argv(target: str, interval_s: float = 0.01) -> list[str]:
    """iputils ping with a timestamp per reply (``-D``), every ``interval_s``."""
    return ["ping", "-n", "-D", "-i", f"{interval_s:g}", target]


def pinger_argv(target: str, interval_ms: float, *extra: str) -> list[str]:
    """The ICMP prober with CLOCK_MONOTONIC send and receive times, one line per reply."""
    return python_module(PINGER, target, "--interval-ms", str(interval_ms), *extra)


def command_argv(argv: Sequence[str]) -> list[str]:
    """A scenario's own command, as written."""
    return list(argv)
