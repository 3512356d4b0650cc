"""strongswan.conf rendering and the plugin list of testbed.vpn.charon (no daemon started)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from testbed.vpn.charon import (
    REQUIRED_PLUGINS,
    CharonConfig,
    CharonError,
    Retransmit,
    installed_plugins,
    plugins,
    render,
)

ALL = {
    "random", "nonce", "openssl", "aes", "sha1", "sha2", "hmac", "gmp", "kdf", "pem", "pkcs1",
    "pkcs8", "x509", "pubkey", "revocation", "constraints", "curve25519", "kernel-libipsec",
    "kernel-netlink", "socket-default", "vici", "updown", "resolve", "lookip", "error-notify",
}  # fmt: skip


def config(tmp_path: Path, **kw) -> CharonConfig:
    kw.setdefault("libipsec", True)
    return CharonConfig(node="gw", run_dir=tmp_path, available_plugins=ALL, **kw)


def setting(text: str, key: str) -> str:
    m = re.search(rf"^\s*{re.escape(key)} = (.*)$", text, re.M)
    assert m, f"{key} not in\n{text}"
    return m.group(1).strip()


def test_libipsec_comes_before_kernel_netlink() -> None:
    load = plugins(libipsec=True, available=ALL)
    assert load.index("kernel-libipsec") < load.index("kernel-netlink")
    assert load[-3:] == ["socket-default", "vici", "updown"]


def test_kernel_path_has_no_libipsec() -> None:
    load = plugins(libipsec=False, available=ALL)
    assert "kernel-libipsec" not in load and "kernel-netlink" in load


def test_plugins_that_touch_the_host_are_never_loaded() -> None:
    # resolve rewrites /etc/resolv.conf; lookip/error-notify make sockets under /run
    for libipsec in (True, False):
        assert not {"resolve", "lookip", "error-notify"} & set(plugins(libipsec, ALL))


def test_absent_optional_plugins_are_skipped_required_ones_fail() -> None:
    without_openssl = ALL - {"openssl"}
    assert "openssl" not in plugins(True, without_openssl)
    assert "aes" in plugins(True, without_openssl)
    with pytest.raises(CharonError, match="kernel-libipsec"):
        plugins(True, ALL - {"kernel-libipsec"})
    assert "kernel-netlink" in REQUIRED_PLUGINS


def test_installed_plugins_reads_the_plugin_directory(tmp_path: Path) -> None:
    for name in ("libstrongswan-vici.so", "libstrongswan-kernel-libipsec.so", "other.so"):
        (tmp_path / name).touch()
    assert installed_plugins(tmp_path) == {"vici", "kernel-libipsec"}


def test_render_has_own_socket_log_and_options(tmp_path: Path) -> None:
    text = render(
        config(
            tmp_path,
            interfaces_use=["eth0"],
            retransmit=Retransmit(timeout_s=1.0, base=1.4, tries=3, limit_s=5),
            log_levels={"default": 1, "ike": 2, "knl": 1, "cfg": 1},
        )
    )
    assert setting(text, "socket") == f"unix://{tmp_path}/charon.vici"
    assert setting(text, "path") == f"{tmp_path}/charon.log"
    assert setting(text, "load_modular") == "no"
    assert setting(text, "load").split() == plugins(True, ALL)
    assert setting(text, "install_routes") == "yes"
    assert setting(text, "interfaces_use") == "eth0"
    assert setting(text, "retransmit_timeout") == "1.0"
    assert setting(text, "retransmit_base") == "1.4"
    assert setting(text, "retransmit_tries") == "3"
    assert setting(text, "retransmit_limit") == "5"
    assert setting(text, "ike") == "2" and setting(text, "knl") == "1"
    assert not re.search(r"^\s*include", text, re.M)  # nothing from /etc/strongswan.d
    assert text.count("{") == text.count("}")


def test_render_defaults_and_kernel_path(tmp_path: Path) -> None:
    text = render(config(tmp_path, libipsec=False, install_routes=False, roam_events=False))
    assert "kernel-libipsec" not in setting(text, "load")
    assert setting(text, "install_routes") == "no"
    assert setting(text, "roam_events") == "no"
    assert "interfaces_use" not in text and "retransmit_limit" not in text
    assert setting(text, "retransmit_tries") == "5"  # strongSwan's defaults stay explicit


def test_extra_settings_and_bad_input(tmp_path: Path) -> None:
    text = render(config(tmp_path, extra={"make_before_break": "yes"}))
    assert setting(text, "make_before_break") == "yes"
    with pytest.raises(ValueError, match="log group"):
        render(config(tmp_path, log_levels={"ike; x": 1}))
    with pytest.raises(ValueError, match="too long"):
        render(
            CharonConfig(
                node="x", run_dir=Path("/" + "d" * 120), available_plugins=ALL, libipsec=True
            )
        )
