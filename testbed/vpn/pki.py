"""A throw-away certificate authority per run: CA, gateway and client certificates.

Made with the ``openssl`` command line tool: the ``cryptography`` package is not a project
dependency and strongSwan's ``pki`` tool (strongswan-pki) is not installed by setup.sh.
Keys are Ed25519: fast to make, and strongSwan's built-in curve25519 plugin handles them
without its openssl plugin (which Debian ships separately). Certificates and keys go to
charon through vici (``load_cert``/``load_key``, PEM data), never through swanctl files.
"""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = "openssl"
VALID_DAYS = 7


class PkiError(RuntimeError):
    pass


@dataclass(frozen=True)
class Credential:
    """A certificate, its private key (PEM text) and the IKE identity it carries."""

    ident: str
    cert_pem: str
    key_pem: str


@dataclass(frozen=True)
class Pki:
    ca: Credential
    gateway: Credential
    clients: dict[str, Credential]


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which(OPENSSL) is None:
        raise PkiError("the openssl command is not installed (Debian package 'openssl')")
    result = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PkiError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def subject_alt_name(ident: str) -> str:
    """The SAN that makes strongSwan accept the certificate for the IKE identity ``ident``."""
    try:
        return f"IP:{ipaddress.ip_address(ident)}"
    except ValueError:
        pass
    if "@" in ident:
        return f"email:{ident}"
    if not ident or "=" in ident or " " in ident:
        raise ValueError(f"identity {ident!r}: use an FQDN, user@domain or an IP address")
    return f"DNS:{ident}"


def _new_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "ed25519", "-out", path.name, cwd=path.parent)


def make_ca(directory: Path, name: str = "testbed VPN CA") -> Credential:
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / "ca.key", directory / "ca.crt"
    _new_key(key)
    _openssl(
        "req", "-x509", "-new", "-key", key.name, "-out", cert.name,
        "-subj", f"/O=testbed/CN={name}", "-days", str(VALID_DAYS),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return Credential(name, cert.read_text(), key.read_text())


def issue(ca: Credential, directory: Path, ident: str, label: str) -> Credential:
    """A certificate for ``ident`` signed by ``ca`` (files ``label.key``/``label.crt``)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    if not ca_key.exists():
        ca_key.write_text(ca.key_pem)
        ca_cert.write_text(ca.cert_pem)
    key, csr, cert = (directory / f"{label}.{ext}" for ext in ("key", "csr", "crt"))
    ext = directory / f"{label}.ext"
    ext.write_text(
        f"subjectAltName={subject_alt_name(ident)}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
    )
    _new_key(key)
    _openssl(
        "req", "-new", "-key", key.name, "-out", csr.name, "-subj", f"/O=testbed/CN={ident}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr.name, "-CA", ca_cert.name, "-CAkey", ca_key.name,
        "-set_serial", str(secrets.randbits(63)), "-days", str(VALID_DAYS),
        "-extfile", ext.name, "-out", cert.name,
        cwd=directory,
    )  # fmt: skip
    return Credential(ident, cert.read_text(), key.read_text())


def make_pki(directory: Path, gateway_id: str, client_ids: list[str]) -> Pki:
    """CA + gateway certificate + one certificate per client identity, in ``directory``."""
    ca = make_ca(directory)
    gateway = issue(ca, directory, gateway_id, "gateway")
    clients = {cid: issue(ca, directory, cid, f"client{i}") for i, cid in enumerate(client_ids)}
    return Pki(ca, gateway, clients)
