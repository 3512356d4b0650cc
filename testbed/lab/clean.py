"""``testbed clean``: remove what killed runs of this tool left, and nothing else.

Only things this tool recorded are touched: labs with a state file (written before anything
is created), and the tool's own feature-probe namespaces whose creating process is gone.

A lab whose owner (the process that built it, recorded in its state with its start time)
is still running is in use: a scenario run, a test, a script. It is never removed here, not
even with ``--all`` (another engineer's run died of exactly that: its relay vanished under
it, ConnectionResetError); it is reported as skipped, and ``testbed down NAME`` removes it
when that is really meant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from testbed import netns
from testbed.lab.state import LabState, all_labs
from testbed.lab.teardown import destroy

PROBE = re.compile(r"^tb-probe-(\d+)$")
REMOVE, SKIP, KEEP = "remove", "skip", "keep"


@dataclass
class Cleaned:
    removed: list[str] = field(default_factory=list)  # "lab NAME (N namespaces)", ...
    skipped: list[str] = field(default_factory=list)  # why each lab in use was left alone


def verdict(lab: LabState, include_idle_labs: bool) -> str:
    """REMOVE a killed run's lab (and, with ``include_idle_labs``, a lab of ``testbed up``
    or one whose builder is gone), SKIP a lab whose owner is alive, KEEP the rest."""
    if lab.owner_running():
        return SKIP
    if not lab.owner_alive() or include_idle_labs:
        return REMOVE
    return KEEP


def clean(include_idle_labs: bool = False) -> Cleaned:
    """Remove stale labs (``include_idle_labs``: every lab no live process owns) and stale
    probe namespaces; report the labs in use that were left alone."""
    cleaned = Cleaned()
    for lab in all_labs():
        decision = verdict(lab, include_idle_labs)
        if decision == REMOVE:
            destroy(lab)
            cleaned.removed.append(f"lab {lab.name} ({len(lab.namespaces)} namespaces)")
        elif decision == SKIP:
            cleaned.skipped.append(skip_reason(lab))
    for name in netns.list_netns():
        match = PROBE.match(name)
        if match and netns.process_start_time(int(match.group(1))) is None:
            netns.delete(name)
            cleaned.removed.append(f"probe namespace {name}")
    return cleaned


def skip_reason(lab: LabState) -> str:
    """One line: which lab, who is using it, how to remove it anyway."""
    owner = f"PID {lab.owner_pid}"
    command = _command(lab.owner_pid) if lab.owner_pid is not None else ""
    if command:
        owner += f" ({command})"
    return (
        f"lab {lab.name} ({lab.kind}): in use by {owner}; "
        f"to remove it anyway: testbed down {lab.name}"
    )


def _command(pid: int, limit: int = 60) -> str:
    """The command line of ``pid``, shortened, for the report ('' if it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    text = " ".join(raw.replace(b"\0", b" ").decode(errors="replace").split())  # one line
    return text if len(text) <= limit else text[: limit - 3] + "..."
