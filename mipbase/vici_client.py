"""A vici client: sessions on charon's socket and thin helpers over the ``vici`` package.

Both sides use it: the testbed configures its charons (secrets, pools, connections), the
mobile node's boundary controller asks its own charon for SAs and brings the tunnel up and
down. vici returns every value as bytes (and nested OrderedDicts); :func:`decode` turns replies
into plain ``str``/``dict``/``list``. ``Session.initiate``/``terminate``/``list_sas`` are
lazy generators: nothing is sent to charon until they are iterated, so the helpers here
always drain them.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import vici
from vici.exception import CommandException


def connect(path: Path | str, timeout: float | None = None) -> vici.Session:
    """A vici session on a unix socket (a socket timeout also bounds every reply)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(str(path))
    except BaseException:
        sock.close()
        raise
    return vici.Session(sock)


def close_session(session: vici.Session) -> None:
    with contextlib.suppress(OSError):
        session.transport.close()


class VpnError(RuntimeError):
    """A vici command failed; ``log`` holds charon's control log lines of the attempt."""

    def __init__(self, message: str, log: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.log = list(log)


def decode(value: Any) -> Any:
    """bytes -> str, recursively through dicts and lists."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return {str(k): decode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [decode(v) for v in value]
    return value


def _drain(stream: Iterable[Any]) -> list[str]:
    """Iterate a streamed vici command to its end; returns its control-log lines."""
    lines = []
    for event in stream:
        msg = event.get("msg")
        if msg is not None:
            lines.append(decode(msg))
    return lines


def psk_secret(psk: str, owners: Sequence[str], name: str | None = None) -> dict[str, Any]:
    """A shared IKE secret for the given identities (both ends' ids, or one for any peer)."""
    if not psk:
        raise ValueError("empty pre-shared key")
    secret: dict[str, Any] = {"type": "IKE", "data": psk, "owners": list(owners)}
    if name is not None:
        secret["id"] = name
    return secret


def load_shared_psk(
    session: vici.Session, psk: str, owners: Sequence[str], name: str | None = None
) -> None:
    """Load an IKE pre-shared key for the identities ``owners``."""
    session.load_shared(psk_secret(psk, owners, name))


def load_shared(session: vici.Session, secret: Mapping[str, Any]) -> None:
    session.load_shared(dict(secret))


def load_pool(session: vici.Session, name: str, addrs: str, **attributes: Any) -> None:
    """A virtual IP pool (``addrs``: CIDR or ``first-last``)."""
    session.load_pool({name: {"addrs": addrs, **attributes}})


def load_conn(session: vici.Session, conn: Mapping[str, Any]) -> None:
    """Load connections given as ``{name: {...}}`` (see ``testbed.vpn.profiles``)."""
    for name, body in conn.items():
        session.load_conn({name: body})


def load_cert(session: vici.Session, pem: str, flag: str = "NONE") -> None:
    """An X.509 certificate; ``flag="CA"`` for a trust anchor."""
    session.load_cert({"type": "X509", "flag": flag, "data": pem})


def load_key(session: vici.Session, pem: str, key_type: str = "any") -> None:
    """A private key (PEM; ``any`` lets charon detect RSA/ECDSA/Ed25519 in PKCS#8)."""
    session.load_key({"type": key_type, "data": pem})


def load_credential(session: vici.Session, cert_pem: str, key_pem: str) -> None:
    load_cert(session, cert_pem)
    load_key(session, key_pem)


def initiate(
    session: vici.Session,
    child: str,
    ike: str | None = None,
    timeout: float = 10.0,
    loglevel: int = 1,
) -> list[str]:
    """Bring up ``child`` (of ``ike``) and wait for the result; returns charon's log lines.

    Raises :class:`VpnError` (with the log) when charon reports failure, e.g. on an
    authentication failure or after ``timeout`` seconds.
    """
    request: dict[str, Any] = {
        "child": child,
        "timeout": str(int(timeout * 1000)),
        "loglevel": str(loglevel),
    }
    if ike is not None:
        request["ike"] = ike
    lines: list[str] = []
    try:
        for event in session.initiate(request):
            if "msg" in event:
                lines.append(decode(event["msg"]))
    except CommandException as exc:
        reason = failure_reason(lines)
        message = f"initiate {ike or ''}/{child} failed: {exc}" + (f" ({reason})" if reason else "")
        raise VpnError(message, lines) from None
    return lines


# what charon's control log says about a failed initiation, most telling first: vici's own
# error is only "establishing CHILD_SA 'net' failed"
_REASONS = ("notify error", "giving up", "no IKE config", "failed")


def failure_reason(lines: Sequence[str]) -> str | None:
    """The line of an initiation's log that says why it failed (e.g. "received
    NO_PROPOSAL_CHOSEN notify error"), or None."""
    for marker in _REASONS:
        for line in lines:
            if marker in line:
                return line.strip()
    return None


def terminate(
    session: vici.Session,
    ike: str | None = None,
    child: str | None = None,
    *,
    ike_id: int | None = None,
    timeout: float = 5.0,
    force: bool = False,
) -> list[str]:
    """Close an IKE SA (and its children) or one CHILD_SA; returns charon's log lines.

    A negative ``timeout`` returns at once (vici's -1) while charon goes on closing."""
    wait = "-1" if timeout < 0 else str(int(timeout * 1000))
    request: dict[str, Any] = {"timeout": wait, "loglevel": "1"}
    if ike is not None:
        request["ike"] = ike
    if child is not None:
        request["child"] = child
    if ike_id is not None:
        request["ike-id"] = str(ike_id)
    if force:
        request["force"] = "yes"
    if len(request) == 2:
        raise ValueError("terminate what? give ike, child or ike_id")
    try:
        return _drain(session.terminate(request))
    except CommandException as exc:
        raise VpnError(f"terminate failed: {exc}") from None


def list_sas(session: vici.Session, ike: str | None = None) -> list[dict[str, Any]]:
    """IKE SAs as plain dicts: ``{"name": ..., "uniqueid": ..., "state": ..., "child-sas":
    {...}, ...}`` (strongSwan's field names, values decoded)."""
    filters = {"ike": ike} if ike is not None else None
    sas = []
    for entry in session.list_sas(filters):
        for name, sa in decode(entry).items():
            sas.append({"name": name, **sa})
    return sas


def installed_children(sa: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The CHILD_SAs of an IKE SA that carry traffic (after a MOBIKE update on
    kernel-libipsec the old ones linger a few seconds in state DELETED/REKEYED)."""
    children = sa.get("child-sas") or {}
    return [c for c in children.values() if c.get("state") == "INSTALLED"]


def virtual_ips(sa: Mapping[str, Any]) -> list[str]:
    """The TIAs assigned to the local end of an IKE SA (client side)."""
    return list(sa.get("local-vips") or [])


def get_pools(session: vici.Session, leases: bool = False) -> dict[str, Any]:
    return decode(session.get_pools({"leases": "yes"} if leases else None))
