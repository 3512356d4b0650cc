"""One strongSwan IKE daemon (charon-systemd) inside one network namespace of a lab.

Each instance gets its own ``strongswan.conf`` (own vici socket, own log file, explicit plugin
list) in its own run directory and is pointed at it with ``STRONGSWAN_CONF``; nothing under
/etc is read for configuration or written. ``charon-systemd`` stays in the foreground and
writes no pid file, so any number of them coexist (``/usr/lib/ipsec/charon`` would not: it
hard-codes ``/var/run/charon.pid``). The process is only ever signalled through its Popen
object (by PID, never by name) and always reaped.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
import vici
from vici.exception import SessionException

from mipbase.clock import scaled
from mipbase.vici_client import close_session, connect
from testbed import features, netns
from testbed.lab.state import LabState, ProcessRecord

CHARON_BINARY = "/usr/sbin/charon-systemd"
TEMPLATE_DIR = Path(__file__).with_name("templates")
UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL
POLL_INTERVAL_S = 0.001
ROLE = "charon"


class CharonError(RuntimeError):
    pass


PLUGIN_DIR = Path("/usr/lib/ipsec/plugins")

# Plugins in load order. The list measured on the project's machine used ``openssl`` for the
# crypto; Debian ships it in libstrongswan-standard-plugins, which is not always installed,
# so the built-in crypto plugins (aes, sha2, hmac, gmp, ...; in libstrongswan) are listed as
# well and whatever is absent is skipped. Ed25519 (curve25519 plugin) needs no openssl.
# The ORDER matters: kernel-libipsec must come before kernel-netlink, or charon installs SAs
# into XFRM, which fails on a kernel without ESP ("Function not implemented").
# kernel-netlink still provides addresses, routes and the roam events that trigger MOBIKE.
_CRYPTO_PLUGINS = [
    "random", "nonce", "openssl", "aes", "des", "sha1", "sha2", "md5", "hmac", "gmp", "gcm",
    "xcbc", "cmac", "ctr", "ccm", "chapoly", "kdf", "pem", "pkcs1", "pkcs8", "x509", "pubkey",
    "revocation", "constraints", "curve25519",
]  # fmt: skip
_TAIL_PLUGINS = ["socket-default", "vici", "updown"]
# charon does not start without these (hashers, nonces, DH, the socket, vici itself)
REQUIRED_PLUGINS = ["random", "nonce", "kernel-netlink", "socket-default", "vici"]


def installed_plugins(plugin_dir: Path = PLUGIN_DIR) -> set[str]:
    prefix, suffix = "libstrongswan-", ".so"
    return {p.name[len(prefix) : -len(suffix)] for p in plugin_dir.glob(f"{prefix}*{suffix}")}


def plugins(libipsec: bool, available: set[str] | None = None) -> list[str]:
    """The ``charon.load`` list for a data path: userspace ESP or the kernel's XFRM.

    ``available``: the installed plugins (default: those in /usr/lib/ipsec/plugins).
    """
    if available is None:
        available = installed_plugins()
    kernel = ["kernel-libipsec", "kernel-netlink"] if libipsec else ["kernel-netlink"]
    wanted = [*_CRYPTO_PLUGINS, *kernel, *_TAIL_PLUGINS]
    missing = [p for p in [*REQUIRED_PLUGINS, *kernel] if p not in available]
    if missing:
        raise CharonError(
            f"strongSwan plugins not installed: {', '.join(missing)} (run ./setup.sh)"
        )
    return [p for p in wanted if p in available]


# Log levels per subsystem: IKE state machine in detail, the rest at control level.
DEFAULT_LOG_LEVELS: dict[str, int] = {
    "default": 1,
    "ike": 2,
    "knl": 1,
    "cfg": 1,
    "net": 1,
    "enc": 1,
    "mgr": 1,
    "esp": 1,
}


@dataclass(frozen=True)
class Retransmit:
    """IKE retransmission: the n-th retransmission waits ``timeout_s * base**n``."""

    timeout_s: float = 4.0
    base: float = 1.8
    tries: int = 5
    jitter_pct: int = 0
    limit_s: float | None = None


@dataclass
class CharonConfig:
    """Everything that goes into one instance's strongswan.conf."""

    node: str
    run_dir: Path
    libipsec: bool | None = None  # None: userspace ESP where the kernel has none
    interfaces_use: Sequence[str] = ()
    interfaces_ignore: Sequence[str] = ()
    install_routes: bool = True
    install_virtual_ip: bool = True
    roam_events: bool = True
    # a remote traffic selector that is the IKE peer itself (the MIP proxy architecture binds
    # the tunnel to the mobile node's home address); its IKE/ESP must then be routed around
    # the route into ipsec0 (a rule ahead of table 220)
    allow_peer_ts: bool = False
    routing_table: int = 220
    port: int = 500
    port_nat_t: int = 4500
    retransmit: Retransmit = field(default_factory=Retransmit)
    log_levels: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_LOG_LEVELS))
    extra: Mapping[str, Any] = field(default_factory=dict)  # more charon.* settings
    available_plugins: set[str] | None = None  # None: what is installed

    @property
    def vici_socket(self) -> Path:
        return self.run_dir / "charon.vici"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "charon.log"

    @property
    def esp_in_userspace(self) -> bool:
        """kernel-libipsec (True) or the kernel's XFRM (False) for this instance."""
        return features.use_libipsec() if self.libipsec is None else self.libipsec

    @property
    def conf_file(self) -> Path:
        return self.run_dir / "strongswan.conf"


def render(config: CharonConfig) -> str:
    """The strongswan.conf text of one instance (pure: no files touched)."""
    if len(str(config.vici_socket)) > UNIX_PATH_MAX:
        raise ValueError(f"vici socket path too long for a unix socket: {config.vici_socket}")
    for group in config.log_levels:
        if not group.isalpha():
            raise ValueError(f"bad log group {group!r}")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    libipsec = config.esp_in_userspace
    return env.get_template("strongswan.conf.j2").render(
        node=config.node,
        plugins=plugins(libipsec, config.available_plugins),
        install_routes=config.install_routes,
        install_virtual_ip=config.install_virtual_ip,
        roam_events=config.roam_events,
        allow_peer_ts=config.allow_peer_ts,
        routing_table=config.routing_table,
        interfaces_use=list(config.interfaces_use),
        interfaces_ignore=list(config.interfaces_ignore),
        port=config.port,
        port_nat_t=config.port_nat_t,
        retransmit=config.retransmit,
        vici_socket=config.vici_socket,
        log_file=config.log_file,
        log_levels=dict(config.log_levels),
        extra=dict(config.extra),
    )


class Charon:
    """A charon-systemd daemon in namespace ``ns``; a context manager (start ... stop).

    ``state``: when given (a lab's state), the process is recorded there too, so that
    ``Lab.down()`` / ``testbed clean`` stop it even if this object never gets to.
    """

    def __init__(
        self,
        ns: str,
        config: CharonConfig,
        *,
        state: LabState | None = None,
    ) -> None:
        if config.libipsec is None:  # decided once, so callers can see which path is taken
            config.libipsec = features.use_libipsec()
        self.ns = ns
        self.config = config
        self.state = state
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None  # kept after stop, so callers can check it is gone
        self.start_time: int | None = None
        self.ready_s: float | None = None  # start-to-vici-ready of the last start

    @classmethod
    def in_lab(cls, lab: Any, node: str, run_dir: Path | None = None, **options: Any) -> Charon:
        """An instance for ``lab``'s node (a ``testbed.lab.lab.Lab``); options: CharonConfig.

        The run directory defaults to the lab's state directory, which ``Lab.down()``
        removes; pass ``run_dir`` to keep the log after the lab is gone.
        """
        config = CharonConfig(
            node=node, run_dir=run_dir or lab.state.dir / f"charon-{node}", **options
        )
        return cls(lab.ns(node), config, state=lab.state)

    # -- paths ------------------------------------------------------------------------------

    @property
    def vici_socket(self) -> Path:
        return self.config.vici_socket

    @property
    def log_file(self) -> Path:
        return self.config.log_file

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> float:
        """Start the daemon and wait until vici answers; returns seconds from spawn to ready."""
        if self.proc is not None:
            raise CharonError(f"charon for {self.config.node} is already started")
        run_dir = self.config.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.config.conf_file.write_text(render(self.config))
        # A stale socket of an earlier (killed) instance in our own run directory: gone, so
        # that the readiness check can only ever reach the new daemon.
        with contextlib.suppress(FileNotFoundError):
            self.vici_socket.unlink()
        env = {
            # A minimal environment: no NOTIFY_SOCKET/JOURNAL_STREAM from a systemd parent.
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "STRONGSWAN_CONF": str(self.config.conf_file),
        }
        t0 = time.monotonic()
        with open(run_dir / "charon.out", "ab") as out:
            self.proc = netns.popen(
                self.ns,
                [CHARON_BINARY],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C is ours to handle, not charon's
            )
        try:
            self.pid = self.proc.pid
            self.start_time = netns.process_start_time(self.proc.pid)
            if self.state is not None:
                self.state.add_process(
                    ProcessRecord(
                        self.proc.pid,
                        self.start_time,
                        self.config.node,
                        ROLE,
                        [CHARON_BINARY],
                        str(self.log_file),
                    )
                )
            self._wait_ready(t0 + scaled(timeout))
        except BaseException:
            self.stop()  # also on Ctrl-C while waiting: never leave it running
            raise
        self.ready_s = time.monotonic() - t0
        return self.ready_s

    def _wait_ready(self, deadline: float) -> None:
        """Poll the vici socket until a ``version`` request is answered."""
        assert self.proc is not None
        while True:
            if self.proc.poll() is not None:
                raise CharonError(
                    f"charon in {self.ns} exited with {self.proc.returncode} before vici was "
                    f"ready:\n{self.log_tail()}"
                )
            try:
                session = connect(self.vici_socket, timeout=1.0)
            except OSError:
                pass  # not there yet / not listening yet
            else:
                try:
                    session.version()
                    return
                except (OSError, SessionException):
                    pass
                finally:
                    close_session(session)
            if time.monotonic() > deadline:
                raise CharonError(f"charon in {self.ns}: vici not ready:\n{self.log_tail()}")
            time.sleep(POLL_INTERVAL_S)

    def stop(self, grace_s: float = 5.0) -> int | None:
        """SIGTERM, wait up to ``grace_s``, SIGKILL; always reaped. Returns the exit status."""
        proc = self.proc
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                # Popen never signals a PID it has already reaped, so this only ever hits the
                # process we started.
                proc.terminate()
                try:
                    proc.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            self.proc = None
            self._forget()
        return proc.returncode

    def _forget(self) -> None:
        if self.state is None:
            return
        before = len(self.state.processes)
        self.state.processes = [p for p in self.state.processes if p.pid != self.pid]
        # not after the lab is gone: saving would bring back a state file of a removed lab
        if len(self.state.processes) != before and self.state.file.exists():
            with contextlib.suppress(OSError):
                self.state.save()

    def __enter__(self) -> Charon:
        if self.proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- use ---------------------------------------------------------------------------------

    def session(self, timeout: float | None = None) -> vici.Session:
        """A new vici session (one per thread; a listening session can do nothing else)."""
        return connect(self.vici_socket, timeout)

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.log_file, self.config.run_dir / "charon.out"):
            with contextlib.suppress(OSError):
                parts += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(parts)
