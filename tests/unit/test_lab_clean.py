"""Issue 15 (b): ``testbed clean --all`` removed labs whose owner was alive (another
engineer's run died of it). A lab in use (its owner process alive) is never removed by
clean, with or without --all; it is reported as skipped, naming it, its owner and how to
remove it explicitly. Fakes for the labs on the machine; no namespaces."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from testbed import netns
from testbed.lab import clean as cleaning
from testbed.lab.state import LabState

ME = (os.getpid(), netns.process_start_time(os.getpid()))


def _dead_pid() -> tuple[int, int | None]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = netns.process_start_time(proc.pid)
    proc.wait()
    return proc.pid, start


def lab(name: str, kind: str, owner: tuple[int, int | None] | None) -> LabState:
    pid, start = owner if owner is not None else (None, None)
    return LabState(name, "t.yaml", kind=kind, owner_pid=pid, owner_start=start)


@pytest.mark.parametrize(
    ("kind", "owner", "plain", "everything"),
    [
        ("run", "alive", "skip", "skip"),  # the bug: --all removed it
        ("run", "dead", "remove", "remove"),  # a killed run's leftovers
        ("lab", "alive", "skip", "skip"),  # built by a test or script still using it
        ("lab", "dead", "keep", "remove"),  # testbed up, which has returned
        ("lab", None, "keep", "remove"),  # a state file that names no owner
    ],
)
def test_who_is_removed(kind: str, owner: str | None, plain: str, everything: str) -> None:
    pid = {"alive": ME, "dead": _dead_pid(), None: None}[owner]
    state = lab("x", kind, pid)
    assert cleaning.verdict(state, include_idle_labs=False) == plain
    assert cleaning.verdict(state, include_idle_labs=True) == everything


def test_a_reused_pid_is_not_the_owner() -> None:
    """Same PID, other start time: the owner is gone (PIDs are reused)."""
    state = lab("x", "run", (os.getpid(), (ME[1] or 0) + 1))
    assert cleaning.verdict(state, include_idle_labs=True) == "remove"


def test_clean_all_leaves_live_labs_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    labs = [
        lab("live-run", "run", ME),
        lab("dead-run", "run", _dead_pid()),
        lab("idle", "lab", _dead_pid()),
    ]
    destroyed: list[str] = []
    monkeypatch.setattr(cleaning, "all_labs", lambda: labs)
    monkeypatch.setattr(cleaning, "destroy", lambda state: destroyed.append(state.name))
    monkeypatch.setattr(cleaning.netns, "list_netns", lambda: [])
    cleaned = cleaning.clean(include_idle_labs=True)
    assert destroyed == ["dead-run", "idle"]
    assert [r.split()[1] for r in cleaned.removed] == ["dead-run", "idle"]
    [skipped] = cleaned.skipped
    assert skipped.startswith("lab live-run (run): in use by PID ")
    assert str(os.getpid()) in skipped and "python" in skipped  # the owner's command line
    assert skipped.endswith("to remove it anyway: testbed down live-run")
