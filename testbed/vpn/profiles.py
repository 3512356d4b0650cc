"""Connection, secret and pool definitions (vici message dicts) for the two VPN roles.

The gateway is an IKEv2 responder for road warriors: tunnel inner addresses (TIA) from a
pool, MOBIKE, NAT-T, DPD, the intranet as its traffic selector; the mobile node (MN) is the
initiator asking for a virtual IP and the intranet. Authentication is a pre-shared key or
certificates (see ``testbed.vpn.pki``). The dicts go to ``mipbase.vici_client.load_conn`` etc.;
the pre-shared key's is ``mipbase.vici_client.psk_secret``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

Auth = Literal["psk", "pubkey"]

INTRANET = "10.0.0.0/8"
TIA_POOL = "10.10.0.0/24"
GATEWAY_ID = "gw.vpn.test"
CLIENT_ID = "mn@vpn.test"
# Explicit proposals that need no openssl plugin (aes, sha2, hmac, curve25519 are built into
# libstrongswan); "default" follows, so a peer with other preferences still negotiates.
IKE_PROPOSALS = ("aes128-sha256-x25519", "default")
ESP_PROPOSALS = ("aes128-sha256", "default")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _seconds(value: float) -> str:
    return f"{int(value)}s" if float(value).is_integer() else f"{int(value * 1000)}ms"


def _auth_round(auth: Auth, ident: str, cert: str | None = None, cacert: str | None = None):
    section: dict[str, Any] = {"auth": auth, "id": ident}
    if auth == "pubkey":
        if cert is not None:
            section["certs"] = [cert]  # PEM data, not a file name: nothing on disk
        if cacert is not None:
            section["cacerts"] = [cacert]  # trust only this CA for the peer
    elif cert is not None or cacert is not None:
        raise ValueError("certificates only go with auth='pubkey'")
    return section


def pool(name: str = "tia", addrs: str = TIA_POOL, **attributes: Any) -> dict[str, Any]:
    """A virtual IP pool: ``addrs`` is a CIDR or ``first-last`` range; attributes e.g. dns."""
    return {name: {"addrs": addrs, **attributes}}


def gateway_conn(
    name: str = "rw",
    *,
    auth: Auth = "psk",
    local_id: str = GATEWAY_ID,
    remote_id: str = "%any",
    local_addrs: Sequence[str] = (),
    pools: Sequence[str] = ("tia",),
    local_ts: Sequence[str] = (INTRANET,),
    child: str = "net",
    cert: str | None = None,
    cacert: str | None = None,
    mobike: bool = True,
    encap: bool = False,
    dpd_delay_s: float = 30.0,
    rekey_time_s: float | None = None,
    unique: str = "replace",
    ike_proposals: Sequence[str] = IKE_PROPOSALS,
    esp_proposals: Sequence[str] = ESP_PROPOSALS,
) -> dict[str, Any]:
    """The VPN gateway: IKEv2 responder handing out TIAs, MOBIKE on, DPD, intranet behind it.

    NAT-T needs no switch: with kernel-libipsec ESP is always in UDP 4500; on the kernel
    path strongSwan encapsulates when it detects a NAT (``encap`` forces it).
    """
    conn: dict[str, Any] = {
        "version": "2",
        "mobike": _yes(mobike),
        "encap": _yes(encap),
        "dpd_delay": _seconds(dpd_delay_s),
        "unique": unique,
        "proposals": list(ike_proposals),
        "local": _auth_round(auth, local_id, cert),
        "remote": _auth_round(auth, remote_id, None, cacert),
        "children": {
            child: {
                "local_ts": list(local_ts),
                # remote_ts stays "dynamic": the TIA the client was given
                "esp_proposals": list(esp_proposals),
                "dpd_action": "clear",
                "mode": "tunnel",
            }
        },
    }
    if pools:
        conn["pools"] = list(pools)
    if local_addrs:
        conn["local_addrs"] = list(local_addrs)
    if rekey_time_s is not None:
        conn["rekey_time"] = _seconds(rekey_time_s)
    return {name: conn}


def client_conn(
    gateway: str,
    name: str = "home",
    *,
    auth: Auth = "psk",
    local_id: str = CLIENT_ID,
    remote_id: str = GATEWAY_ID,
    remote_ts: Sequence[str] = (INTRANET,),
    vips: Sequence[str] = ("0.0.0.0",),
    child: str = "net",
    cert: str | None = None,
    cacert: str | None = None,
    mobike: bool = True,
    encap: bool = False,
    dpd_delay_s: float = 10.0,
    dpd_action: str = "restart",
    keyingtries: int = 1,
    local_addrs: Sequence[str] = (),
    ike_proposals: Sequence[str] = IKE_PROPOSALS,
    esp_proposals: Sequence[str] = ESP_PROPOSALS,
) -> dict[str, Any]:
    """The mobile node: initiator to ``gateway`` (address or name) asking for a TIA.

    ``vips = [0.0.0.0]`` requests any address from the gateway's pool; the child's local
    side is then that TIA and its remote side the intranet. ``vips = []`` with
    ``local_addrs = [home address]``: the tunnel is bound to the home address (MIP proxy).
    """
    conn: dict[str, Any] = {
        "version": "2",
        "remote_addrs": [gateway],
        "mobike": _yes(mobike),
        "encap": _yes(encap),
        "dpd_delay": _seconds(dpd_delay_s),
        "keyingtries": str(keyingtries),
        "proposals": list(ike_proposals),
        "local": _auth_round(auth, local_id, cert),
        "remote": _auth_round(auth, remote_id, None, cacert),
        "children": {
            child: {
                "remote_ts": list(remote_ts),
                "esp_proposals": list(esp_proposals),
                "dpd_action": dpd_action,
                "start_action": "none",
                "mode": "tunnel",
            }
        },
    }
    if vips:
        conn["vips"] = list(vips)
    if local_addrs:
        conn["local_addrs"] = list(local_addrs)
    return {name: conn}
