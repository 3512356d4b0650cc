"""Run a function in a forked child and take back its result: for work whose garbage should
not stay in this process. A large configuration's parse (the YAML parser's tokens and nodes,
the line map, the validated models) is freed after the load, but CPython keeps the memory of
every arena one long-lived object still sits in: an HA configured with 100k MNs held ~4 KB
of parser garbage per MN for 0.9 KB of live data. Parsed in a child, only the result, built
by the unpickler in one pass, lands here."""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def call(func: Callable[..., T], *args: object) -> T:
    """``func(*args)`` computed in a forked child; its exception, if it raised, is raised
    here. The child must need no thread of this process (it is forked alone)."""
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: compute, send, leave without running the parent's cleanups
        status = 0
        try:
            _die_with_parent(parent)
            os.close(read_fd)
            try:
                payload = _dumps(True, func(*args))
            except BaseException as exc:  # the parent's to handle, as if raised there
                payload = _dumps(False, exc)
            with os.fdopen(write_fd, "wb") as out:
                out.write(payload)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            data = pipe.read()
    except BaseException:  # Ctrl-C, SIGTERM as an exception: the child goes too
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    _, status = os.waitpid(pid, 0)
    if not data:
        code = os.waitstatus_to_exitcode(status)
        raise RuntimeError(f"the child computing {func.__name__} ended with status {code}")
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value


def _dumps(ok: bool, value: object) -> bytes:
    try:
        return pickle.dumps((ok, value), pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # an exception (or result) that does not pickle: say what it was
        return pickle.dumps((False, RuntimeError(f"{value!r} (not picklable: {exc})")))


def _die_with_parent(parent: int) -> None:
    """SIGKILL this child when the process that forked it ends (a stopped agent leaves no
    parse running): prctl(PR_SET_PDEATHSIG), and a parent gone before it was set."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
