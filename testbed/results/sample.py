"""A synthetic run directory with the runner's file layout, for tests and demos.

Two handoffs: home → office (DHCP, a lost first RRQ, the downlink never recovers before
the next move) and office → home (deregistration, a burst of buffered downlink packets).
``python -m testbed.results sample DIR`` writes one and renders its report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from testbed.scenario import metrics
from testbed.summary import write_summary

T0 = 1_000_000_000_000  # CLOCK_MONOTONIC of the first probe packet
MS = 1_000_000
INTERVAL_MS = 2
DURATION_MS = 6000
MOVES_MS = (2000, 4000)


def _delivery(stream: str, t_send_ms: float, down_recovers: bool) -> float | None:
    """One-way delay (ms) of a packet sent at ``t_send_ms`` from T0, or None if lost."""
    m0, m1 = MOVES_MS
    base = 2.1 + 0.15 * ((t_send_ms / INTERVAL_MS) % 3)
    if stream == "up":
        if m0 <= t_send_ms < m0 + 310 or m1 <= t_send_ms < m1 + 40:
            return None
        return base
    if m0 <= t_send_ms < m1:
        if down_recovers and t_send_ms >= m0 + 420:
            return base
        return None
    if m1 <= t_send_ms < m1 + 100:
        return None
    if m1 + 100 <= t_send_ms < m1 + 150:  # buffered at the home agent, released together
        return m1 + 152 - t_send_ms
    return base


def _event(t_ms: float, node: str, event: str, **fields: Any) -> dict[str, Any]:
    return {"t_ns": T0 + int(t_ms * MS), "node": node, "event": event, **fields}


def _events() -> list[dict[str, Any]]:
    m0, m1 = MOVES_MS
    e = _event
    out = [
        e(m0, "runner", "move_start", index=0, **{"from": "home", "to": "office"}),
        e(m0, "mn", "link_down", iface="eth0"),
        e(m0 + 0.9, "mn", "link_up", iface="eth0"),
        e(m0 + 1.2, "mn", "movement_detected", mode="c"),
        e(m0 + 2.0, "mn", "dhcp_discover_sent", msg="DHCPDISCOVER", to_node="core", dir="tx"),
        e(m0 + 3.1, "core", "dhcp_rx", msg="DHCPDISCOVER", dir="rx", from_node="mn"),
        e(m0 + 4.0, "core", "dhcp_tx", msg="DHCPOFFER", to_node="mn", dir="tx"),
        e(m0 + 5.1, "mn", "dhcp_offer", msg="DHCPOFFER", dir="rx", from_node="core"),
        e(m0 + 6.0, "mn", "dhcp_tx", msg="DHCPREQUEST", to_node="core", dir="tx"),
        e(m0 + 7.1, "core", "dhcp_rx", msg="DHCPREQUEST", dir="rx", from_node="mn"),
        e(m0 + 8.0, "core", "dhcp_tx", msg="DHCPACK", to_node="mn", dir="tx"),
        e(m0 + 9.1, "mn", "dhcp_ack", msg="DHCPACK", dir="rx", from_node="core"),
        e(m0 + 25.3, "mn", "address_acquired", address="10.3.0.100"),
        e(m0 + 26.0, "mn", "registration_sent", msg="RRQ", to_node="ha", dir="tx", mode="c"),
        e(m0 + 290.0, "mn", "registration_sent", msg="RRQ", to_node="ha", dir="tx", retry=1),
        e(m0 + 292.2, "ha", "registration_received", msg="RRQ", dir="rx", from_node="mn"),
        e(m0 + 292.5, "ha", "binding_added", coa="10.3.0.100"),
        e(m0 + 292.6, "ha", "registration_reply", msg="RRP 0", to_node="mn", dir="tx"),
        e(m0 + 294.8, "mn", "registration_accepted", msg="RRP 0", dir="rx", from_node="ha"),
        e(m1, "runner", "move_start", index=1, **{"from": "office", "to": "home"}),
        e(m1, "mn", "link_down", iface="eth0"),
        e(m1 + 0.8, "mn", "link_up", iface="eth0"),
        e(m1 + 1.5, "mn", "movement_detected", mode="home"),
        e(m1 + 2.0, "mn", "registration_sent", msg="RRQ lifetime 0", to_node="ha", dir="tx"),
        e(
            m1 + 3.0,
            "ha",
            "registration_received",
            msg="RRQ lifetime 0",
            dir="rx",
            from_node="mn",
        ),
        e(m1 + 3.1, "ha", "binding_removed"),
        e(m1 + 3.2, "ha", "registration_reply", msg="RRP 0", to_node="mn", dir="tx"),
        e(m1 + 4.3, "mn", "registration_accepted", msg="RRP 0", dir="rx", from_node="ha"),
        e(m1 + 4.4, "ha", "gratuitous_arp", msg="ARP", dir="tx", to_node="cn"),
    ]
    return sorted(out, key=lambda ev: ev["t_ns"])


def _probe_rows(stream: str, down_recovers: bool) -> tuple[list[tuple[int, int, int]], int]:
    rows = []
    sent = DURATION_MS // INTERVAL_MS
    for seq in range(sent):
        t_ms = seq * INTERVAL_MS
        owd = _delivery(stream, t_ms, down_recovers)
        if owd is not None:
            rows.append((seq, T0 + t_ms * MS, T0 + int((t_ms + owd) * MS)))
    rows.sort(key=lambda r: r[2])  # file order is arrival order, like the real recorder
    return rows, sent


def write_sample_run(
    run_dir: Path | str, *, down_recovers: bool = False, with_probes: bool = True
) -> Path:
    """Write ``summary.json``, ``events.jsonl`` and ``probes/*.csv`` into ``run_dir``."""

    run = Path(run_dir)
    (run / "probes").mkdir(parents=True, exist_ok=True)
    events = _events()
    (run / "events.jsonl").write_text("".join(json.dumps(ev) + "\n" for ev in events))
    sent = {}
    for stream in ("down", "up"):
        rows, sent[stream] = _probe_rows(stream, down_recovers)
        if with_probes:
            lines = ["seq,t_send_ns,t_recv_ns,src"] + [f"{s},{a},{b},10.1.0.10" for s, a, b in rows]
            (run / "probes" / f"{stream}.csv").write_text("\n".join(lines) + "\n")

    moves = [T0 + m * MS for m in MOVES_MS]
    handoffs = []
    expectations = []
    lost_up = 0
    for i, t_move in enumerate(moves):
        t_next = moves[i + 1] if i + 1 < len(moves) else None
        entry: dict[str, Any] = {"index": i, "t_s": (t_move - T0) / 1e9, "t_ns": t_move}
        entry.update({"from": ("home", "office")[i], "to": ("office", "home")[i]})
        entry["mode"] = ("c", "home")[i]
        worst: float | None = 0.0
        for stream in ("down", "up"):
            rows, _ = _probe_rows(stream, down_recovers)
            probe = metrics.load_stream(run / "probes", stream) if with_probes else None
            ms = None
            if probe is not None:  # the runner's definition of an outage, and its bounds
                result = metrics.interruption(probe, t_move, t_next)
                ms = None if result.ms is None else round(result.ms, 1)
                entry.setdefault("outage", {})[stream] = metrics.outage_bounds(result)
            entry[f"interruption_{stream}_ms"] = ms
            window_end = (t_next or T0 + DURATION_MS * MS) - t_move
            lost = sum(
                1
                for seq in range(sent[stream])
                if 0 <= seq * INTERVAL_MS * MS + T0 - t_move < window_end
                and _delivery(stream, seq * INTERVAL_MS, down_recovers) is None
            )
            entry[f"lost_{stream}"] = lost
            worst = None if worst is None or ms is None else max(worst, ms)
        entry["interruption_ms"] = worst
        entry["lost_packets"] = entry["lost_up"]
        lost_up += entry["lost_up"]
        expectations.append(
            {
                "name": f"handoff[{i}].interruption_ms below 500",
                "value": worst,
                "limit": 500,
                "passed": worst is not None and worst < 500,
                "detail": "stream never recovered" if worst is None else "",
            }
        )
        phase_names = (
            "link_down",
            "link_up",
            "movement_detected",
            "address_acquired",
            "registration_sent",
            "registration_accepted",
        )
        entry["phases_ms"] = {}
        for ev in events:
            name = ev["event"]
            first = name in phase_names and name not in entry["phases_ms"]
            in_window = t_move <= ev["t_ns"] < (t_next or 1 << 62)
            if first and in_window and ev["node"] == "mn":
                entry["phases_ms"][name] = round((ev["t_ns"] - t_move) / 1e6, 3)
        entry["run"] = 0
        handoffs.append(entry)

    expectations.append(
        {
            "name": "lost_up total below 1000",
            "value": lost_up,
            "limit": 1000,
            "passed": True,
            "detail": "",
        }
    )
    summary = {
        "scenario": "sample-home-office",
        "run_id": "20261123-201500-ab12",
        "passed": all(x["passed"] for x in expectations),
        "started": "2026-11-23T20:15:00+00:00",
        "duration_s": DURATION_MS / 1000,
        "topology": "topologies/enterprise.yaml",
        "repeat": 1,
        "runs": 1,
        "move_times_ns": moves,
        "handoffs": handoffs,
        "streams": {
            "down": {"from": "cn", "to": "mn", "sent": sent["down"], "interval_ms": INTERVAL_MS},
            "up": {"from": "mn", "to": "cn", "sent": sent["up"], "interval_ms": INTERVAL_MS},
        },
        "percentiles": metrics.move_percentiles(handoffs),
        "expectations": expectations,
        "events": "events.jsonl",
        "nodes": ["mn", "ha", "cn", "core"],
        "signalling_nodes": ["mn", "core", "ha"],
        "mobile": "mn",
    }
    for stream in ("down", "up"):
        rows, _ = _probe_rows(stream, down_recovers)
        delays = sorted((b - a) / 1e6 for _, a, b in rows)
        info = summary["streams"][stream]
        info["received"] = len(rows) if with_probes else 0
        if delays and with_probes:
            info["owd_ms"] = {
                "p50": round(delays[len(delays) // 2], 2),
                "p95": round(delays[int(len(delays) * 0.95)], 2),
            }
    write_summary(run / "summary.json", summary)  # validated, as the runner's
    return run
