"""Named network namespaces, created and entered from this process without helpers.

``ip netns add`` and pyroute2's ``netns.create`` each fork a process (~10 ms); building a
200-node topology that way is slow. Here a namespace is made by ``unshare(CLONE_NEWNET)`` on
the calling thread, bind-mounted at ``/run/netns/NAME`` (so ``ip netns exec`` and other tools
see it), and the thread returns to where it was with ``setns``. Netlink sockets opened while
inside stay bound to that namespace, which is how the builder talks to every node.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def netns_path(name: str) -> Path:
    return NETNS_DIR / name


def exists(name: str) -> bool:
    return netns_path(name).exists()


def list_netns() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


@contextlib.contextmanager
def _returning_home() -> Iterator[None]:
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        yield
    finally:
        try:
            _check(_libc.setns(home, CLONE_NEWNET), "setns back")
        finally:
            os.close(home)


def create(name: str) -> None:
    """Create the named namespace ``name`` (error if it exists)."""
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    path = netns_path(name)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    os.close(fd)
    try:
        with _returning_home():
            _check(_libc.unshare(CLONE_NEWNET), "unshare")
            _check(
                _libc.mount(b"/proc/thread-self/ns/net", bytes(path), None, MS_BIND, None),
                f"bind-mount {path}",
            )
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def delete(name: str) -> None:
    """Unmount and remove the namespace's file. Processes inside keep it alive until they end."""
    path = netns_path(name)
    # EINVAL: not a mount point (half-created); ENOENT: already gone. Both fine.
    _libc.umount2(bytes(path), MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the body with this thread inside the named namespace."""
    fd = os.open(netns_path(name), os.O_RDONLY)
    try:
        with _returning_home():
            _check(_libc.setns(fd, CLONE_NEWNET), f"setns {name}")
            yield
    finally:
        os.close(fd)


def write_sysctls(name: str, values: dict[str, str | int]) -> None:
    """Write per-namespace sysctls (net.*) inside ``name``; never touches the root namespace."""
    for key in values:
        if not key.startswith("net."):
            raise ValueError(f"only per-namespace net.* sysctls may be set here, not {key}")
    with entered(name):
        for key, value in values.items():
            Path("/proc/sys", *key.split(".")).write_text(f"{value}\n")


def write_sysctl(name: str, key: str, value: str | int) -> None:
    write_sysctls(name, {key: value})


def _enter_in_child(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    _check(_libc.setns(fd, CLONE_NEWNET), "setns")
    os.close(fd)


def popen(name: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen:
    """Start ``argv`` inside the namespace (the child enters it before exec)."""
    path = str(netns_path(name))
    if not Path(path).exists():
        raise FileNotFoundError(f"no network namespace {name}")
    return subprocess.Popen(list(argv), preexec_fn=lambda: _enter_in_child(path), **kwargs)  # type: ignore[call-overload]


def run(name: str, argv: Sequence[str], check: bool = True, **kwargs: object):
    """subprocess.run inside the namespace; returns CompletedProcess."""
    path = str(netns_path(name))
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    result = subprocess.run(list(argv), preexec_fn=lambda: _enter_in_child(path), **kwargs)  # type: ignore[call-overload]
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, argv, result.stdout, result.stderr)
    return result


def inode(name: str) -> int | None:
    try:
        return os.stat(netns_path(name)).st_ino
    except FileNotFoundError:
        return None


def pids_inside(names: Sequence[str]) -> dict[int, str]:
    """PIDs of all processes whose network namespace is one of ``names`` (like ip netns pids)."""
    wanted = {ino: n for n in names if (ino := inode(n)) is not None}
    found: dict[int, str] = {}
    if not wanted:
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ino = os.stat(f"/proc/{entry.name}/ns/net").st_ino
        except OSError:
            continue
        if ino in wanted:
            found[int(entry.name)] = wanted[ino]
    return found


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: identifies a process across PID reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def process_running(pid: int, start_time: int | None) -> bool:
    """True while ``pid`` is the process we started and has not exited (zombies count as
    exited: a daemon whose parent is gone may wait a while for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return False
    return start_time is None or int(fields[19]) == start_time


def kill_process(pid: int, start_time: int | None, sig: int = signal.SIGTERM) -> bool:
    """Signal ``pid`` only if it is still the process we started (same start time)."""
    if start_time is not None and process_start_time(pid) != start_time:
        return False
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False
