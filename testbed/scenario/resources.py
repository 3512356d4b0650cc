"""Where a run's CPU time and memory went (issue 19, item 3): ``resources.json``.

At the end of a run, before anything is stopped, the runner reads ``/proc/PID/stat`` and
``/proc/PID/smaps_rollup`` of every process it started (the lab's record of them: agents,
charons, probes, the delay relay, dnsmasq, captures) and its own CPU time since the run
began; and, read when the timeline begins, how much of each was spent before it (start-up,
configuration, settling): ``timeline_cpu_s`` is the rest, what the moves cost. Each
process's CPU time is its whole life's (user + system, its reaped children's too): every one
of them was started by this run. A process a timeline step stopped (a fault scenario's HA,
a restarted gateway's charon) is read just before the step stops it (``stopped_by_step``);
one started during the timeline counts whole.

``kind_of`` sorts a process into the kinds the load benchmark adds up: ``mn``, ``ha``,
``fa``, ``proxy`` (agents), ``charon-mn`` and ``charon-gw`` (a mobile node's IKE client, a
gateway's), ``relay``, ``probe``, ``dhcp`` (dnsmasq), ``capture``, ``other``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FILE = "resources.json"
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
KINDS = (
    "mn",
    "ha",
    "fa",
    "proxy",
    "charon-mn",
    "charon-gw",
    "relay",
    "probe",
    "dhcp",
    "capture",
    "runner",
    "other",
)


@dataclass(frozen=True)
class Usage:
    pid: int
    role: str
    node: str
    kind: str
    cpu_s: float  # user + system, of the process and its reaped children
    rss_kb: int | None
    pss_kb: int | None  # its share of pages it shares with others (the interpreter's)
    # of it, since the timeline began (start-up, configuration and settling excluded);
    # None: not running then
    timeline_cpu_s: float | None = None
    # read just before a timeline step stopped it (its last moments are not counted)
    stopped_by_step: bool = False


def cpu_ticks(stat: str) -> int:
    """utime + stime + cutime + cstime of a ``/proc/PID/stat`` line, in clock ticks. The
    command name (field 2) may hold spaces and parentheses: fields are counted after its
    last ``)``."""
    fields = stat[stat.rindex(")") + 2 :].split()
    # after the name: state is field 3, so utime (14) .. cstime (17) are 11..14 here
    return sum(int(v) for v in fields[11:15])


def memory_kb(rollup: str) -> tuple[int | None, int | None]:
    """(Rss, Pss) of a ``/proc/PID/smaps_rollup``, in kB."""
    found: dict[str, int] = {}
    for line in rollup.splitlines():
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss"):
            found[name] = int(rest.split()[0])
    return found.get("Rss"), found.get("Pss")


def kind_of(role: str, node: str, agents: Mapping[str, str], mobiles: Iterable[str]) -> str:
    """The kind of a process the lab recorded with ``role`` on ``node``; ``agents`` maps a
    service's label to its agent (mn, ha, fa, proxy)."""
    if role.startswith("service:"):
        return agents.get(role.removeprefix("service:"), "other")
    if role == "charon":
        return "charon-mn" if node in set(mobiles) else "charon-gw"
    for prefix, kind in (
        ("probe", "probe"),
        ("relay", "relay"),
        ("dhcp:", "dhcp"),
        ("capture:", "capture"),
    ):
        if role.startswith(prefix):
            return kind
    return "other"


def ticks_of(pid: int, proc: Path = Path("/proc")) -> int | None:
    """A process's CPU time so far (clock ticks), None when it is gone."""
    try:
        return cpu_ticks((proc / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def usage_of(
    pid: int,
    role: str,
    node: str,
    kind: str,
    proc: Path = Path("/proc"),
    ticks_before: int | None = None,
) -> Usage | None:
    """A process's usage now, None when it is gone; ``ticks_before``: its CPU time when the
    timeline began."""
    ticks = ticks_of(pid, proc)
    if ticks is None:
        return None
    try:
        rss, pss = memory_kb((proc / str(pid) / "smaps_rollup").read_text())
    except (OSError, ValueError, IndexError):
        rss = pss = None
    since = None if ticks_before is None else round((ticks - ticks_before) / TICKS_PER_S, 3)
    return Usage(pid, role, node, kind, round(ticks / TICKS_PER_S, 3), rss, pss, since)


def by_kind(usages: Iterable[Usage]) -> dict[str, dict[str, Any]]:
    """Per kind: processes, CPU seconds summed (over their lives, and since the timeline
    began), and the mean and largest PSS of one."""
    out: dict[str, dict[str, Any]] = {}
    for u in usages:
        entry = out.setdefault(
            u.kind, {"processes": 0, "cpu_s": 0.0, "timeline_cpu_s": 0.0, "pss_kb": []}
        )
        entry["processes"] += 1
        entry["cpu_s"] = round(entry["cpu_s"] + u.cpu_s, 3)
        entry["timeline_cpu_s"] = round(entry["timeline_cpu_s"] + (u.timeline_cpu_s or 0), 3)
        if u.pss_kb is not None:
            entry["pss_kb"].append(u.pss_kb)
    for entry in out.values():
        pss = entry.pop("pss_kb")
        entry["pss_kb_mean"] = round(sum(pss) / len(pss)) if pss else None
        entry["pss_kb_max"] = max(pss) if pss else None
    return out


def write(
    path: Path,
    usages: list[Usage],
    runner_cpu_s: float,
    wall_s: float,
    runner_timeline_cpu_s: float | None = None,
    timeline_s: float | None = None,
) -> None:
    """``resources.json``: every process's usage, the sums per kind, the runner's own CPU
    time (and its short-lived commands': ip, nft, tc), the run's wall time and the
    timeline's (from its start to the end of the run)."""
    kinds = by_kind(usages)
    kinds["runner"] = {
        "processes": 1,
        "cpu_s": round(runner_cpu_s, 3),
        "timeline_cpu_s": None
        if runner_timeline_cpu_s is None
        else round(runner_timeline_cpu_s, 3),
    }
    data = {
        "wall_s": round(wall_s, 3),
        "timeline_s": None if timeline_s is None else round(timeline_s, 3),
        "kinds": kinds,
        "processes": [asdict(u) for u in usages],
    }
    path.write_text(json.dumps(data, indent=1) + "\n")


def read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
