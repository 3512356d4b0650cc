"""Removing a lab: stop its processes (by PID), delete its namespaces, forget its state."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time

from testbed import netns
from testbed.lab.state import LabState

STOP_GRACE_S = 2.0


def _alive(pid: int, start: int | None) -> bool:
    now = netns.process_start_time(pid)
    return now is not None and (start is None or now == start)


def stop_processes(targets: list[tuple[int, int | None]], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM, wait up to ``grace_s``, SIGKILL what is left; reap our own children."""
    live = [(pid, start) for pid, start in targets if netns.kill_process(pid, start)]
    deadline = time.monotonic() + grace_s
    while live and time.monotonic() < deadline:
        for pid, _ in live:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        live = [(pid, start) for pid, start in live if _alive(pid, start)]
        if live:
            time.sleep(0.01)
    for pid, start in live:
        netns.kill_process(pid, start, signal.SIGKILL)
    for pid, _ in live:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)


def destroy(state: LabState) -> None:
    """Remove everything the state lists; safe to call on a half-built or half-removed lab."""
    stop_processes([(p.pid, p.start_time) for p in state.processes])
    # Anything else still running inside our own namespaces (e.g. a command the user started
    # with 'testbed exec' and left behind) would keep them alive: end those too. They are
    # found by namespace identity, not by name pattern, so nothing outside the lab is touched.
    leftovers = netns.pids_inside(state.namespaces)
    leftovers.pop(os.getpid(), None)
    stop_processes([(pid, netns.process_start_time(pid)) for pid in leftovers], grace_s=1.0)
    for ns in state.namespaces:
        netns.delete(ns)
    shutil.rmtree(state.dir, ignore_errors=True)
