"""The MIP proxy's data plane (seed 003): two tunnel engines and the routing between them.

Front, toward mobile nodes outside (``mippx0``, keyed by inner destination, like a home
agent): ``HOME/32 dev mippx0``; what a mobile node reverse-tunnels to us is its IPsec
traffic to the VPN gateway (ESP in UDP and IKE, from its home address), which comes out of
the TUN and is forwarded to the gateway -- or delivered locally when the gateway runs here.

Back, toward the real home agent (``mippb0``, like a mobile node with a co-located care-of
address): the HA tunnels the home address's traffic to our internal address; decapsulated,
it must be encrypted by the gateway before it goes out to the mobile node, so

* one box (the gateway on this node): the kernel routes it by strongSwan's table 220 into
  ``ipsec0`` (a route to the home address the gateway's charon installs); the gateway's ESP
  to the home address takes the main table to ``mippx0`` by a rule the runner installs;
* two boxes: ``iif mippb0 lookup 151``, table 151 ``default via GATEWAY``; the gateway's
  ESP to the home address comes back to us and takes ``HOME/32 dev mippx0``.

The other way, what the gateway decrypts (from a home address) goes back to the HA in our
tunnel (we register with the T flag, RFC 3024): ``from HOME_NET iif ipsec0`` (one box;
with the kernel's XFRM ``iif mippx0``, where the ESP came in) or
``iif eth0`` (two boxes: the gateway routes it to us) ``lookup 153``, table 153 ``default
dev mippb0``. The firewall then sees the MN's traffic in both directions as the tunnel
between us and the HA, and a correspondent may open connections to an MN outside.

Mobile IP control traffic never enters the VPN: it is UDP 434 between the mobile node's
care-of address and our external address, and between our internal address and the HA.

Nothing but IKE and ESP-in-UDP to the gateway may come out of a mobile node's tunnel: the
firewall admits the home addresses from the DMZ (what the gateway decrypts), so a proxy that
forwarded anything else would let plain traffic around the VPN. An nftables table here drops
the rest (counted).
"""

from __future__ import annotations

import socket
import subprocess
from typing import Any

from agents.dataplane.arp import set_forwarding
from agents.mip.actions import Action, TunnelDown, TunnelUp
from agents.runtime.dataplane import _Base
from mipbase.events import EventWriter

BACK_TABLE, BACK_RULE_PRIORITY = 151, 150
REVERSE_TABLE, REVERSE_RULE_PRIORITY = 153, 140
CONTROL_RULE_PRIORITY = 99  # before the gateway's IKE/ESP rules (100) and table 220
FILTER_TABLE = "testbed_mipproxy"


class _Front(_Base):
    tun_name = "mippx0"
    key = "dst"

    def tunnel_up(self, t: TunnelUp) -> None:
        super().tunnel_up(t)
        self.plumbing.add_host_route(t.home_address, self.tun_name)

    def tunnel_down(self, t: TunnelDown) -> None:
        super().tunnel_down(t)
        self.plumbing.del_host_route(t.home_address)


class _Back(_Base):
    tun_name = "mippb0"
    key = "src"


class ProxyDataPlane:
    def __init__(
        self,
        events: EventWriter,
        udp_socket: Any,
        gateway: str | None,
        home_network: str | list[str],
        interface: str = "eth0",
        esp_in_userspace: bool | None = None,
    ) -> None:
        self.events = events
        self.gateway = gateway
        # the home networks of the home agents it serves (one, or several)
        self.home_networks = [home_network] if isinstance(home_network, str) else home_network
        self.home_network = self.home_networks[0]
        self.interface = interface
        self.esp_in_userspace = esp_in_userspace
        self.front = _Front(events, udp_socket)
        self.back = _Back(events, None)
        set_forwarding("all", True)

    def _userspace_esp(self) -> bool:
        """One box: does the gateway's charon beside us do ESP in userspace? As configured
        (the runner says what it started), else whether kernel-libipsec's TUN is here."""
        if self.esp_in_userspace is not None:
            return self.esp_in_userspace
        try:
            socket.if_nametoindex("ipsec0")
        except OSError:
            return False
        return True

    def prepare(self) -> None:
        self.front.prepare()
        self.back.prepare()
        if self.gateway is not None:
            # two boxes: what the HA tunnels to us goes to the gateway to be encrypted
            table, priority = str(BACK_TABLE), str(BACK_RULE_PRIORITY)
            tun = self.back.tun_name
            for argv in (
                ["ip", "route", "replace", "default", "via", self.gateway, "table", table],
                ["ip", "rule", "del", "iif", tun, "priority", priority],
                ["ip", "rule", "add", "iif", tun, "lookup", table, "priority", priority],
            ):
                subprocess.run(argv, capture_output=True, check=False)
        # decrypted traffic from home addresses back to the HA through our tunnel
        decrypted_from = self.interface
        if self.gateway is None:
            # one box: kernel-libipsec hands the decrypted packets out of its TUN; the
            # kernel's XFRM leaves them on the device their ESP came in on, our front TUN
            decrypted_from = "ipsec0" if self._userspace_esp() else self.front.tun_name
        table, priority = str(REVERSE_TABLE), str(REVERSE_RULE_PRIORITY)
        for argv in (
            ["ip", "route", "replace", "default", "dev", self.back.tun_name, "table", table],
            ["ip", "rule", "del", "priority", priority],
            *(
                ["ip", "rule", "add", "iif", decrypted_from, "from", network,
                 "lookup", table, "priority", priority]
                for network in self.home_networks
            ),
        ):  # fmt: skip
            subprocess.run(argv, capture_output=True, check=False)
        if self.gateway is None:
            # one box: our own Mobile IP messages (from port 434) never take the gateway's
            # routes into ipsec0, e.g. a reply to an MN at home whose SA is not yet deleted
            for argv in (
                ["ip", "rule", "del", "priority", str(CONTROL_RULE_PRIORITY)],
                ["ip", "rule", "add", "priority", str(CONTROL_RULE_PRIORITY), "ipproto", "udp",
                 "sport", "434", "lookup", "main"],
            ):  # fmt: skip
                subprocess.run(argv, capture_output=True, check=False)
        self._filter()
        # decapsulated packets arrive from sources not routed via the TUNs
        for tun in (self.front.tun_name, self.back.tun_name):
            with open(f"/proc/sys/net/ipv4/conf/{tun}/rp_filter", "w") as handle:
                handle.write("0")

    def _filter(self) -> None:
        front = self.front.tun_name
        allow = (
            f'iifname "{front}" ip daddr {self.gateway} udp dport {{ 500, 4500 }} accept\n'
            if self.gateway is not None
            else ""  # one box: IKE and ESP are for this node (input), nothing is forwarded
        )
        script = (
            f"table ip {FILTER_TABLE} {{\n"
            "  chain forward {\n"
            "    type filter hook forward priority 0; policy accept;\n"
            f"    {allow}"
            f'    iifname "{front}" counter drop\n'
            # what the HA tunnels to us must be encrypted first: never straight to the MN
            f'    iifname "{self.back.tun_name}" oifname "{front}" counter drop\n'
            "  }\n"
            "}\n"
        )
        subprocess.run(["nft", "-f", "-"], input=script, text=True, capture_output=True, check=True)

    def apply(self, action: Action) -> None:
        role = getattr(action, "role", None)
        (self.back if role == "proxy-back" else self.front).apply(action)

    def handle_tunnel_data(self, payload: bytes, src: tuple[str, int], now: float) -> None:
        self.front.handle_tunnel_data(payload, src, now)

    def stats(self) -> dict[str, int]:
        front, back = self.front.stats(), self.back.stats()
        return {
            **{f"front_{k}": v for k, v in front.items()},
            **{f"back_{k}": v for k, v in back.items()},
        }

    def close(self) -> None:
        self.front.close()
        self.back.close()
        subprocess.run(["nft", "delete", "table", "ip", FILTER_TABLE], capture_output=True)
        if self.gateway is not None:
            subprocess.run(
                ["ip", "rule", "del", "iif", self.back.tun_name, "priority",
                 str(BACK_RULE_PRIORITY)],
                capture_output=True,
                check=False,
            )  # fmt: skip
