"""What this kernel and system offer, probed once per boot, and which path each feature takes.

Users' ordinary kernels have netem, ipip, ESP and Open vSwitch; the CI machine has none of
them. Every feature has a kernel path and a userspace path; this module decides which.
Probes run in a scratch namespace of our own, never in the root namespace.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from mipbase.clock import scaled
from testbed import netns
from testbed.lab.state import STATE_ROOT

CACHE = STATE_ROOT / "features.json"

# (package, binary that proves it is installed, what the testbed uses it for)
SYSTEM_PACKAGES: list[tuple[str, str, str]] = [
    ("iproute2", "/usr/sbin/ip", "namespaces, links, routes"),
    ("mininet", "/usr/bin/mnexec", "node shells for 'testbed cli'"),
    ("nftables", "/usr/sbin/nft", "firewalls, NAT, link loss"),
    ("conntrack", "/usr/sbin/conntrack", "flushing NAT mappings"),
    ("dnsmasq-base", "/usr/sbin/dnsmasq", "DHCP servers"),
    ("tcpdump", "/usr/bin/tcpdump", "captures"),
    ("tshark", "/usr/bin/tshark", "decoding captures, wire-format oracle"),
    ("iputils-ping", "/usr/bin/ping", "reachability"),
    ("iperf3", "/usr/bin/iperf3", "throughput"),
    ("charon-systemd", "/usr/sbin/charon-systemd", "IKEv2/MOBIKE daemons"),
    ("strongswan-swanctl", "/usr/sbin/swanctl", "inspecting IPsec SAs"),
    (
        "libstrongswan-extra-plugins",
        "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so",
        "userspace ESP",
    ),
    ("chromium", "/usr/bin/chromium", "headless browser: the test of 'testbed watch'"),
]


@dataclass
class Features:
    kernel: str
    netem: bool
    ipip: bool
    esp: bool
    openvswitch: bool
    bridge_nft: bool
    tbf: bool

    @property
    def impairment_path(self) -> str:
        return "netem" if self.netem else "relay"

    def paths(self) -> dict[str, str]:
        """Feature -> the path the testbed takes for it on this machine."""
        return {
            "delay/jitter": "kernel netem" if self.netem else "userspace relay (AF_PACKET)",
            "loss": "kernel netem" if self.netem else "nftables numgen in the switch namespace",
            "rate": "kernel netem" if self.netem else "kernel tbf",
            "mobile ip tunnels": "kernel ipip" if self.ipip else "userspace TUN (IP-in-IP, UDP)",
            "ipsec esp": "kernel xfrm" if self.esp else "strongSwan kernel-libipsec (userspace)",
            "switching": "Linux bridges in the lab's switch namespace (no Open vSwitch)",
        }


TUN_DEVICE = "/dev/net/tun"
SUPPORTED_PYTHON = ((3, 11), (3, 13))  # oldest and newest minor version tested
SUPPORTED_STRONGSWAN = ("5.9", "6.0")


def tun_available() -> bool:
    """The userspace tunnels and kernel-libipsec open /dev/net/tun; a kernel without the tun
    module loaded (a fresh VM) has no such node, and every agent would die at start-up."""
    try:
        fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def strongswan_version() -> str | None:
    """strongSwan's version from swanctl (charon-systemd has no --version)."""
    import re
    import subprocess

    swanctl = shutil.which("swanctl") or "/usr/sbin/swanctl"
    if not Path(swanctl).exists():
        return None
    try:
        # --version asks the daemon; the usage text names the installed release offline
        done = subprocess.run(
            [swanctl, "--help"], capture_output=True, text=True, timeout=scaled(10)
        )
        out = done.stdout + done.stderr
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"strongSwan (\d+\.\d+(?:\.\d+)?)", out)
    return match.group(1) if match else None


def versions() -> list[tuple[str, str, bool]]:
    """(component, version, within what the testbed is tested on)."""
    import sys

    py = sys.version_info[:2]
    rows = [
        (
            "python",
            ".".join(map(str, sys.version_info[:3])),
            SUPPORTED_PYTHON[0] <= py <= SUPPORTED_PYTHON[1],
        )
    ]
    swan = strongswan_version()
    rows.append(
        (
            "strongswan",
            swan or "not found",
            swan is not None and swan.startswith(SUPPORTED_STRONGSWAN),
        )
    )
    return rows


def missing_packages() -> list[tuple[str, str]]:
    return [(pkg, why) for pkg, path, why in SYSTEM_PACKAGES if not Path(path).exists()]


def require_binaries(*binaries: str) -> None:
    """Raise RuntimeError naming the Debian package when a needed binary is absent."""
    by_path = {Path(path).name: pkg for pkg, path, _ in SYSTEM_PACKAGES}
    for binary in binaries:
        if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
            package = by_path.get(binary, binary)
            raise RuntimeError(
                f"missing system package {package!r} (binary {binary}): run ./setup.sh"
            )


def _try(ns: str, *argv: str) -> bool:
    return netns.run(ns, argv, check=False).returncode == 0


def probe() -> Features:
    scratch = f"tb-probe-{os.getpid()}"
    netns.create(scratch)
    try:
        _try(scratch, "ip", "link", "set", "lo", "up")
        netem = _try(scratch, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms")
        tbf = _try(
            scratch,
            "tc",
            "qdisc",
            "replace",
            "dev",
            "lo",
            "root",
            "tbf",
            "rate",
            "1gbit",
            "burst",
            "64k",
            "latency",
            "10ms",
        )
        ipip = _try(scratch, "ip", "link", "add", "tbpipip", "type", "ipip", "remote", "192.0.2.1")
        esp = _try(
            scratch,
            "ip",
            "xfrm",
            "state",
            "add",
            "src",
            "192.0.2.1",
            "dst",
            "192.0.2.2",
            "proto",
            "esp",
            "spi",
            "0x100",
            "enc",
            "cbc(aes)",
            "0x" + "00" * 16,
        )
        bridge_nft = shutil.which("nft") is not None and _try(
            scratch, "nft", "add table bridge tbprobe"
        )
    finally:
        netns.delete(scratch)
    ovs = shutil.which("ovs-vsctl") is not None and Path("/sys/module/openvswitch").exists()
    return Features(os.uname().release, netem, ipip, esp, ovs, bridge_nft, tbf)


def detect(refresh: bool = False) -> Features:
    """Probe results, cached per kernel build (the kernel cannot change without a reboot)."""
    kernel = os.uname().release + " " + os.uname().version
    if not refresh and CACHE.exists():
        try:
            data = json.loads(CACHE.read_text())
            if data.pop("_kernel", None) == kernel:
                return Features(**data)
        except (ValueError, TypeError):
            pass
    found = probe()
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_text(json.dumps({**asdict(found), "_kernel": kernel}))
    return found


def force_path() -> str | None:
    """TESTBED_IMPAIR=relay|netem forces a path (to test the userspace path anywhere)."""
    value = os.environ.get("TESTBED_IMPAIR")
    return value if value in ("relay", "netem") else None


def use_libipsec() -> bool:
    """True when ESP must be done in userspace: the kernel has no ESP (or it is forced).

    ``TESTBED_ESP=libipsec`` forces the userspace path on any kernel (to test it anywhere),
    ``TESTBED_ESP=kernel`` the kernel path.
    """
    forced = os.environ.get("TESTBED_ESP")
    if forced in ("libipsec", "kernel"):
        return forced == "libipsec"
    return not detect().esp


def data_paths() -> dict[str, str]:
    """The data path each figure of a run is measured on, as the run will take it: the
    kernel's probe results with the TESTBED_IMPAIR/TESTBED_TUNNEL/TESTBED_ESP forcings.
    (A stock kernel and this machine's differ in kind: e.g. MOBIKE updates XFRM SAs in
    place but makes kernel-libipsec rekey every CHILD_SA.)"""
    found = detect()  # probed in a scratch namespace, never in the root namespace
    userspace = os.environ.get("TESTBED_TUNNEL", "").strip().lower() == "userspace"
    tunnels = "kernel ipip" if found.ipip and not userspace else "userspace TUN"
    return {
        "kernel": found.kernel,
        "impairments": force_path() or found.impairment_path,
        "ha_fa_tunnels": tunnels,
        "mn_tunnels": "userspace TUN",
        "esp": "kernel-libipsec (userspace)" if use_libipsec() else "kernel xfrm",
    }


def ensure_root() -> None:
    if os.geteuid() != 0:
        raise PermissionError("the testbed needs root (network namespaces): run it with sudo")
