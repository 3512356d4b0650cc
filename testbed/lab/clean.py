"""``testbed clean``: remove what killed runs of this tool left, and nothing else.

Only things this tool recorded are touched: labs with a state file (written before anything
is created), and the tool's own feature-probe namespaces whose creating process is gone.

A lab whose owner (the process that built it, recorded in its state with its start time)
is still running is in use: a scenario run, a test, a script. It is never removed here, not
even with ``--all`` (another engineer's run died of exactly that: its relay vanished under
it, ConnectionResetError); it is reported as skipped, and ``testbed down NAME`` removes it
when that is really meant.

On a server a class shares (``testbed.student``), ``--all`` removes the idle labs of the
student who cleans (``--student`` or ``$TESTBED_STUDENT``; without one, the labs of no
student) and skips every other student's, naming it: a lab of ``testbed up`` has no owner
process left to say that it is in use, so one student's clean would otherwise remove the
labs the others are working in. ``--any-student`` (the teacher, after class) removes every
student's idle labs too. A killed run's lab is removed, whoever's it was.
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


def verdict(
    lab: LabState,
    include_idle_labs: bool,
    student: str | None = None,
    any_student: bool = False,
) -> str:
    """REMOVE a killed run's lab (and, with ``include_idle_labs``, a lab of ``testbed up``
    or one whose builder is gone, if it is ``student``'s or ``any_student``), SKIP a lab
    whose owner is alive or, with ``include_idle_labs``, another student's; KEEP the rest."""
    if lab.owner_running():
        return SKIP
    if not lab.owner_alive():
        return REMOVE
    if include_idle_labs:
        return REMOVE if any_student or lab.student == student else SKIP
    return KEEP


def clean(
    include_idle_labs: bool = False, student: str | None = None, any_student: bool = False
) -> Cleaned:
    """Remove stale labs (``include_idle_labs``: every lab of ``student``, or of any with
    ``any_student``, that no live process owns) and stale probe namespaces; report the labs
    left alone (in use, or another student's)."""
    cleaned = Cleaned()
    for lab in all_labs():
        decision = verdict(lab, include_idle_labs, student, any_student)
        if decision == REMOVE:
            destroy(lab)
            cleaned.removed.append(f"lab {lab.name} ({len(lab.namespaces)} namespaces)")
        elif decision == SKIP:
            cleaned.skipped.append(skip_reason(lab, student))
    for name in netns.list_netns():
        match = PROBE.match(name)
        if match and netns.process_start_time(int(match.group(1))) is None:
            netns.delete(name)
            cleaned.removed.append(f"probe namespace {name}")
    return cleaned


def skip_reason(lab: LabState, student: str | None = None) -> str:
    """One line: which lab, who is using it (or whose it is), how to remove it anyway."""
    if not lab.owner_running():  # idle, another student's
        yours = f"you are {student}" if student else "you have no TESTBED_STUDENT"
        return (
            f"lab {lab.name} ({lab.kind}): student {lab.student or '(none)'}'s, {yours}; "
            f"to remove it anyway: testbed down {lab.name}"
        )
    owner = f"PID {lab.owner_pid}"
    command = _command(lab.owner_pid) if lab.owner_pid is not None else ""
    if command:
        owner += f" ({command})"
    whose = f", student {lab.student}" if lab.student else ""
    return (
        f"lab {lab.name} ({lab.kind}{whose}): in use by {owner}; "
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
