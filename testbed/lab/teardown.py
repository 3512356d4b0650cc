"""Removing a lab: stop its processes (by PID), delete its namespaces, forget its state."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time

from testbed import netns
from testbed.lab.state import LabState

STOP_GRACE_S = 2.0
# Processes with nothing to flush, whose exit we do not wait for: the relay's exit is slow
# only because the kernel waits an RCU grace period per packet socket it closes (~12 ms
# each, ~0.4 s for the enterprise), and nothing depends on it having finished.
NO_WAIT_ROLES = {"relay"}


def stop_processes(targets: list[tuple[int, int | None]], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM, wait up to ``grace_s``, SIGKILL what is left; reap our own children."""
    live = [(pid, start) for pid, start in targets if netns.kill_process(pid, start)]
    deadline = time.monotonic() + grace_s
    while live and time.monotonic() < deadline:
        for pid, _ in live:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        live = [(pid, start) for pid, start in live if netns.process_running(pid, start)]
        if live:
            time.sleep(0.01)
    for pid, start in live:
        netns.kill_process(pid, start, signal.SIGKILL)
    for pid, _ in live:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)


def _reap_later(pid: int) -> None:
    """If ``pid`` is our child, collect its exit status in the background (no zombie)."""

    def reap() -> None:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)

    threading.Thread(target=reap, name=f"reap-{pid}", daemon=True).start()


REMOVING = "removing"  # a file in the lab's state directory while it is being removed


def destroy(state: LabState) -> None:
    """Remove everything the state lists; safe to call on a half-built or half-removed lab."""
    # first: a run whose lab this is (removed under it by 'testbed down') then knows that its
    # processes die because the lab goes, not on their own
    with contextlib.suppress(OSError):
        (state.dir / REMOVING).touch()
    for proc in state.processes:
        if proc.role in NO_WAIT_ROLES and netns.kill_process(proc.pid, proc.start_time):
            _reap_later(proc.pid)
    stop_processes([(p.pid, p.start_time) for p in state.processes if p.role not in NO_WAIT_ROLES])
    # Anything else still running inside our own namespaces (e.g. a command the user started
    # with 'testbed exec' and left behind) would keep them alive: end those too. They are
    # found by namespace identity, not by name pattern, so nothing outside the lab is touched.
    leftovers = netns.pids_inside(state.namespaces)
    leftovers.pop(os.getpid(), None)
    for proc in state.processes:
        if proc.role in NO_WAIT_ROLES:
            leftovers.pop(proc.pid, None)
    stop_processes([(pid, netns.process_start_time(pid)) for pid in leftovers], grace_s=1.0)
    for ns in state.namespaces:
        netns.delete(ns)
    shutil.rmtree(state.dir, ignore_errors=True)
