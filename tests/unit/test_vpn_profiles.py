"""Connection, secret and pool dicts of testbed.vpn.profiles, and the per-run PKI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mipbase import vici_client
from testbed.vpn import profiles
from testbed.vpn.pki import make_pki, subject_alt_name


def test_gateway_conn_psk() -> None:
    ((name, conn),) = profiles.gateway_conn(dpd_delay_s=5).items()
    assert name == "rw"
    assert conn["version"] == "2" and conn["mobike"] == "yes" and conn["pools"] == ["tia"]
    assert conn["dpd_delay"] == "5s"
    assert conn["local"] == {"auth": "psk", "id": profiles.GATEWAY_ID}
    assert conn["remote"] == {"auth": "psk", "id": "%any"}
    child = conn["children"]["net"]
    assert child["local_ts"] == ["10.0.0.0/8"] and "remote_ts" not in child  # dynamic: the TIA
    assert "local_addrs" not in conn


def test_client_conn_asks_for_a_tia_and_the_intranet() -> None:
    conn = profiles.client_conn("192.0.2.10", dpd_delay_s=0.5)["home"]
    assert conn["remote_addrs"] == ["192.0.2.10"] and conn["vips"] == ["0.0.0.0"]
    assert conn["mobike"] == "yes" and conn["dpd_delay"] == "500ms"
    assert conn["children"]["net"]["remote_ts"] == ["10.0.0.0/8"]
    assert conn["children"]["net"]["start_action"] == "none"
    assert conn["remote"]["id"] == profiles.GATEWAY_ID


def test_certificate_auth_sections() -> None:
    conn = profiles.gateway_conn("c", auth="pubkey", cert="CERT", cacert="CA")["c"]
    assert conn["local"] == {"auth": "pubkey", "id": profiles.GATEWAY_ID, "certs": ["CERT"]}
    assert conn["remote"] == {"auth": "pubkey", "id": "%any", "cacerts": ["CA"]}
    with pytest.raises(ValueError):
        profiles.client_conn("gw", cert="CERT")  # a certificate with PSK auth


def test_secret_and_pool() -> None:
    assert vici_client.psk_secret("k", ["a", "b"]) == {
        "type": "IKE",
        "data": "k",
        "owners": ["a", "b"],
    }
    assert vici_client.psk_secret("k", ["a"], name="s1")["id"] == "s1"
    with pytest.raises(ValueError):
        vici_client.psk_secret("", ["a"])
    assert profiles.pool("p", "10.10.0.0/24", dns=["10.0.0.53"]) == {
        "p": {"addrs": "10.10.0.0/24", "dns": ["10.0.0.53"]}
    }


def test_subject_alt_name_follows_the_identity_type() -> None:
    assert subject_alt_name("gw.vpn.test") == "DNS:gw.vpn.test"
    assert subject_alt_name("mn@vpn.test") == "email:mn@vpn.test"
    assert subject_alt_name("192.0.2.10") == "IP:192.0.2.10"
    with pytest.raises(ValueError):
        subject_alt_name("CN=x")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_make_pki_issues_certificates_the_ca_verifies(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, "gw.vpn.test", ["mn@vpn.test"])
    assert pki.gateway.cert_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" in pki.clients["mn@vpn.test"].key_pem
    for label in ("gateway", "client0"):
        ok = subprocess.run(
            ["openssl", "verify", "-CAfile", "ca.crt", f"{label}.crt"],
            cwd=tmp_path, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert ok.returncode == 0, ok.stderr
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", "gateway.crt"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "DNS:gw.vpn.test" in text
