"""Comparing architectures across the VPN boundary from finished runs (pure: files in, table out).

Each run is one scenario (RFC 5266 with MOBIKE, the MIP proxy in one or two boxes, ...) over
the same movement script. Per kind of move (``public -> hotspot``) and architecture:

* interruption p50/p95 over all repetitions (the probe streams' outage, ``summary.json``);
* Mobile IP signalling per handoff: messages and bytes of registration requests and replies
  at the mobile node (both clients with dual MIP) and, for the proxy, its own registrations
  at the home agent (events);
* IKE per handoff: exchanges the mobile node took part in, messages and bytes (the
  ``ike_message`` events charon's log yields);
* the per-packet encapsulation overhead of the stack in effect after the move, in bytes for a
  given inner packet: computed from the mode and tunnel encapsulation the events report,
  with ESP-in-UDP sizes for AES-CBC-128 and HMAC-SHA-256-128 (strongSwan's first proposal);
* the same overhead measured on the mobile node's access link where the run has captures:
  the most common IP length of the packets addressed to the mobile node there (the probe
  stream dominates) minus the probe's inner packet length;
* where it breaks: a move whose stream never recovered.
"""

from __future__ import annotations

import socket
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mipbase import events as eventlog
from mipbase.modes import Mode
from testbed.scenario.metrics import percentile
from testbed.summary import read_summary

IP, UDP, MIP_UDP_TUNNEL = 20, 8, 4
ESP_HEADER, ESP_IV, ESP_ICV, ESP_TRAILER, ESP_BLOCK = 8, 16, 16, 2, 16

MIP_REQUESTS = ("registration_sent", "registration_retransmitted")
MIP_REPLIES = ("registration_accepted", "registration_denied")
PROXY_UPSTREAM = ("proxy_upstream_sent", "proxy_upstream_accepted", "proxy_upstream_denied")


def esp_in_udp(inner: int) -> int:
    """Bytes ESP in UDP adds to an ``inner``-byte packet (tunnel mode, CBC padding)."""
    pad = (ESP_BLOCK - (inner + ESP_TRAILER) % ESP_BLOCK) % ESP_BLOCK
    return IP + UDP + ESP_HEADER + ESP_IV + pad + ESP_TRAILER + ESP_ICV


def mip_tunnel(encapsulation: str | None) -> int:
    return IP + UDP + MIP_UDP_TUNNEL if encapsulation == "udp" else IP


def overhead(mode: str | None, encapsulation: str | None, inner: int) -> int:
    """Per-packet bytes added to an ``inner``-byte packet between home agent and mobile node.

    ``mc``: the HA's IP-in-IP inside the ESP tunnel to the TIA; ``proxy``: ESP (bound to the
    home address) inside the Mobile IP tunnel from the proxy; ``dual``: the i-HA's IP-in-IP
    inside ESP inside the x-HA's tunnel (``encapsulation`` is the x-MIP one); ``f``/``c``:
    the Mobile IP tunnel; ``home``: nothing.
    """
    if mode in (None, Mode.HOME):
        return 0
    if mode == Mode.MC:
        return IP + esp_in_udp(inner + IP)
    if mode == Mode.DUAL:
        return IP + esp_in_udp(inner + IP) + mip_tunnel(encapsulation)
    if mode == Mode.PROXY:
        return esp_in_udp(inner) + mip_tunnel(encapsulation)
    return mip_tunnel(encapsulation)


PROBE_INNER = IP + UDP + 64  # a probe datagram with the default 64-byte payload


def link_overhead(pcap: Path, dst: str, inner: int = PROBE_INNER) -> int | None:
    """Measured per-packet overhead on a captured network: the most common IPv4 length of
    the Ethernet frames addressed to ``dst``, minus ``inner``. None without such frames."""
    from scapy.utils import RawPcapReader

    dst4 = socket.inet_aton(dst)
    lengths: Counter[int] = Counter()
    reader = RawPcapReader(str(pcap))
    try:
        for data, _meta in reader:
            if len(data) >= 34 and data[12:14] == b"\x08\x00" and data[30:34] == dst4:
                lengths[int.from_bytes(data[16:18], "big")] += 1
    finally:
        reader.close()
    if not lengths:
        return None
    return lengths.most_common(1)[0][0] - inner


@dataclass
class MoveStats:
    interruptions: list[float] = field(default_factory=list)
    never: int = 0
    mip_messages: list[int] = field(default_factory=list)
    mip_bytes: list[int] = field(default_factory=list)
    ike_exchanges: list[int] = field(default_factory=list)
    ike_messages: list[int] = field(default_factory=list)
    ike_bytes: list[int] = field(default_factory=list)
    modes: set[str] = field(default_factory=set)
    overhead: set[int] = field(default_factory=set)
    measured: set[int] = field(default_factory=set)


def _repetitions(run_dir: Path) -> list[Path]:
    reps = sorted(run_dir.glob("rep-*"))
    return reps or [run_dir]


def _window(events: Sequence[dict[str, Any]], start: int, end: float) -> list[dict[str, Any]]:
    return [e for e in events if start <= e["t_ns"] < end]


def _signalling(window: Iterable[dict[str, Any]], mobile: str) -> dict[str, int]:
    mip = mip_bytes = ike = ike_bytes = exchanges = 0
    for e in window:
        name, node = e["event"], e.get("node")
        ours = node in (mobile, f"{mobile}.x")  # .x: the dual MIP's external client
        if (ours and name in MIP_REQUESTS + MIP_REPLIES) or name in PROXY_UPSTREAM:
            mip += 1
            mip_bytes += int(e.get("bytes", 0))
        elif name == "ike_message" and node == mobile:
            ike += 1
            ike_bytes += int(e.get("bytes", 0))
            if e.get("kind") == "request" and not e.get("retransmit"):
                exchanges += 1
    return {
        "mip": mip,
        "mip_bytes": mip_bytes,
        "ike": ike,
        "ike_bytes": ike_bytes,
        "exchanges": exchanges,
    }


def _encapsulation(window: Iterable[dict[str, Any]], mobile: str, mode: str | None) -> str | None:
    encapsulation = outer = None
    for e in window:
        if e.get("node") == mobile and e["event"] == "registration_accepted":
            encapsulation = "udp" if e.get("udp") else "ipip"
        elif e.get("node") == mobile and e["event"] == "external_registration":
            outer = "udp" if e.get("udp") else "ipip"
    return outer if mode == Mode.DUAL else encapsulation


def collect(run_dir: Path, inner: int = PROBE_INNER) -> dict[str, MoveStats]:
    """Per kind of move ("from -> to"), the figures of one architecture's run directory
    (the signalling of the node its summary names as the mobile one)."""
    moves: dict[str, MoveStats] = defaultdict(MoveStats)
    overheads: dict[tuple[Path, str], int | None] = {}  # each capture is read once per address
    for rep in _repetitions(run_dir):  # each repetition has its own summary and events
        summary = read_summary(rep / "summary.json")
        events = eventlog.read_file(rep / summary.events)
        times = summary.move_times_ns
        mobile = summary.mobile_node
        for i, handoff in enumerate(summary.handoffs):
            kind = f"{handoff.from_} -> {handoff.to}"
            stats = moves[kind]
            value = handoff.interruption_ms
            if value is None:
                stats.never += 1
            else:
                stats.interruptions.append(value)
            if i < len(times):
                end = times[i + 1] if i + 1 < len(times) else float("inf")
                window = _window(events, times[i], end)
                sig = _signalling(window, mobile)
                stats.mip_messages.append(sig["mip"])
                stats.mip_bytes.append(sig["mip_bytes"])
                stats.ike_messages.append(sig["ike"])
                stats.ike_bytes.append(sig["ike_bytes"])
                stats.ike_exchanges.append(sig["exchanges"])
                mode = handoff.mode
                stats.modes.add(str(mode))
                encapsulation = _encapsulation(window, mobile, mode)
                stats.overhead.add(overhead(mode, encapsulation, inner))
                measured = _measured(rep, handoff.to, window, mobile, mode, overheads)
                if measured is not None:
                    stats.measured.add(measured)
    return dict(moves)


def _measured(
    rep: Path,
    network: str | None,
    window: Sequence[dict[str, Any]],
    mobile: str,
    mode: Any,
    cache: dict[tuple[Path, str], int | None],
) -> int | None:
    """The overhead on the access link the move went to, from the run's capture of it
    (``cache``: what each capture gave for each address already)."""
    pcap = rep / "pcap" / f"{network}.pcap"
    if network is None or not pcap.exists():
        return None
    dst = None
    for e in window:  # the mobile node's own address there (a lease); else its home address
        if e.get("node") == mobile and e["event"] == "dhcp_bound":
            dst = e.get("address")
    if dst is None or mode in (Mode.F, Mode.HOME):
        # on the link the FA (or home) delivers the plain packets to the home address
        dst = _home_address(rep, mobile)
    if not dst:
        return None
    if (pcap, dst) not in cache:
        cache[pcap, dst] = link_overhead(pcap, dst)
    return cache[pcap, dst]


def _home_address(rep: Path, mobile: str) -> str | None:
    """The mobile node's home address, from its agent configuration in the run."""
    import yaml

    for path in sorted((rep / "configs").glob("*.yaml")):
        config = yaml.safe_load(path.read_text()) or {}
        if "home_address" in config and "home_agent" in config:
            return str(config["home_address"])
    return None


def _median(values: Sequence[int]) -> float | None:
    return statistics.median(values) if values else None


def table(results: dict[str, dict[str, MoveStats]], inner: int = PROBE_INNER) -> str:
    """A Markdown table: one row per architecture and kind of move."""
    lines = [
        "| architecture | move | mode | interruption p50 / p95 ms | never | "
        "MIP msgs (bytes) | IKE exchanges / msgs (bytes) | overhead B "
        f"({inner} B inner) | on the MN's link B (measured) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arch, moves in results.items():
        for kind, s in moves.items():
            p50 = percentile(s.interruptions, 50) if s.interruptions else None
            p95 = percentile(s.interruptions, 95) if s.interruptions else None
            latency = "-" if p50 is None else f"{p50:.1f} / {p95:.1f}"
            mip = (
                f"{_median(s.mip_messages):g} ({_median(s.mip_bytes):g})" if s.mip_messages else "-"
            )
            ike = (
                f"{_median(s.ike_exchanges):g} / {_median(s.ike_messages):g} "
                f"({_median(s.ike_bytes):g})"
                if s.ike_messages
                else "-"
            )
            over = "/".join(str(v) for v in sorted(s.overhead)) or "-"
            link = "/".join(str(v) for v in sorted(s.measured)) or "-"
            breaks = f"**{s.never}**" if s.never else "0"
            mode = "/".join(sorted(s.modes))
            lines.append(
                f"| {arch} | {kind} | {mode} | {latency} | {breaks} | {mip} | {ike} | {over} "
                f"| {link} |"
            )
    return "\n".join(lines) + "\n"


def _grouped_bars(
    results: dict[str, dict[str, MoveStats]],
    path: Path,
    ylabel: str,
    draw: Callable[[Any, int, str, dict[str, MoveStats], list[str], float], None],
    legend: tuple[int, int] = (8, 1),  # font size, columns
) -> None:
    """One group of bars per kind of move, one bar per architecture in each: ``draw(ax, n,
    arch, moves, kinds, width)`` draws architecture number ``n``'s bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds: list[str] = []
    for moves in results.values():
        kinds += [k for k in moves if k not in kinds]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(kinds)), 4))
    width = 0.8 / max(1, len(results))
    for n, (arch, moves) in enumerate(results.items()):
        draw(ax, n, arch, moves, kinds, width)
    ax.set_xticks([i + width * (len(results) - 1) / 2 for i in range(len(kinds))])
    ax.set_xticklabels(kinds, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=legend[0], ncol=legend[1])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_signalling(results: dict[str, dict[str, MoveStats]], path: Path) -> None:
    """Signalling bytes per handoff (median), Mobile IP stacked under IKE, per kind of move."""

    def draw(
        ax: Any, n: int, arch: str, moves: dict[str, MoveStats], kinds: list[str], width: float
    ) -> None:
        xs, mip, ike = [], [], []
        for i, kind in enumerate(kinds):
            s = moves.get(kind)
            if s is None or not s.mip_bytes:
                continue
            xs.append(i + n * width)
            mip.append(_median(s.mip_bytes) or 0)
            ike.append(_median(s.ike_bytes) or 0)
        bars = ax.bar(xs, mip, width, label=f"{arch}: Mobile IP")
        ax.bar(
            xs,
            ike,
            width,
            bottom=mip,
            label=f"{arch}: IKE",
            alpha=0.55,
            color=bars.patches[0].get_facecolor() if bars.patches else None,
            hatch="//",
        )

    _grouped_bars(results, path, "signalling bytes per handoff (median)", draw, legend=(6, 2))


def plot(results: dict[str, dict[str, MoveStats]], path: Path) -> None:
    """Interruption p50 (bar) and p95 (whisker) per kind of move, one bar per architecture."""

    def draw(
        ax: Any, n: int, arch: str, moves: dict[str, MoveStats], kinds: list[str], width: float
    ) -> None:
        xs, p50s, errs = [], [], []
        for i, kind in enumerate(kinds):
            s = moves.get(kind)
            if s is None or not s.interruptions:
                continue
            p50 = percentile(s.interruptions, 50)
            p95 = percentile(s.interruptions, 95)
            xs.append(i + n * width)
            p50s.append(p50)
            errs.append(p95 - p50)
        ax.bar(xs, p50s, width, yerr=[[0] * len(errs), errs], capsize=3, label=arch)

    _grouped_bars(results, path, "interruption ms (bar p50, whisker p95)", draw)
