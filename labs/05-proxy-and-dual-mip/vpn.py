"""Lab 05 by hand: the VPN gateway's and the mobile node's strongSwan in a lab of your own.

A scenario's ``kind: vpn`` services are started by ``testbed run``; in a lab built with
``testbed up`` nothing starts them. This script does what the runner does for them
(``testbed/scenario/runner.py``, ``_start_vpn``), with the values of this lab's scenario
files: one ``charon-systemd`` on ``gw`` and one on ``mn``, each with its files and vici
socket in ``/run/testbed/LAB/gw-vpn/`` and ``/run/testbed/LAB/mn-vpn/``, the pre-shared key
and the two connections loaded through vici.

* MIP proxy (``scenario.yaml``, the default): both tunnels are bound to the home address
  (``binding: home``): the gateway accepts the client's home address as its traffic
  selector and hands out no TIA; its IKE and ESP to the home network leave through the MIP
  proxy (a routing rule ahead of strongSwan's table 220, table 152 ``default via`` the
  proxy); the client's tunnel leaves from the home address, with UDP encapsulation.
* Dual MIP (``--dual``, ``scenario-dual.yaml``): the gateway as in lab 04 (TIA pool
  10.10.0.0/24); the client's tunnel leaves from the external home address 192.0.2.100.

It writes the IKE events of both into ``DIR/events/`` (so ``testbed events DIR`` shows them)
and the mobile node's agent configuration, ``mn.yaml`` (or ``mn-dual.yaml``) with the vici
socket in place of the service name, into ``DIR/``. Then it waits; Ctrl-C or ``kill %N``
stops both daemons (``testbed down LAB`` does too).

    sudo .venv/bin/python labs/05-proxy-and-dual-mip/vpn.py lab05 /tmp/lab05
    sudo .venv/bin/python labs/05-proxy-and-dual-mip/vpn.py lab05 /tmp/lab05 --dual
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from testbed.lab.lab import Lab
from testbed.services.events import EventWriter
from testbed.vpn import profiles
from testbed.vpn import vici_client as vc
from testbed.vpn.node import VpnNode

HERE = Path(__file__).resolve().parent
PROXY_TABLE = "152"  # the runner's table for a two-box gateway's IKE/ESP via the proxy


def _services(scenario: Path) -> dict[str, dict[str, Any]]:
    spec = yaml.safe_load(scenario.read_text())
    return {s["name"]: s for s in spec["services"]}


def _route_via_proxy(lab: Lab, node: str, cfg: dict[str, Any]) -> None:
    """A gateway whose tunnels are bound to home addresses sends its IKE and ESP to them
    through the MIP proxy, not into its own ipsec0 (runner: _route_home_bound_ike)."""
    table = "main"
    proxy = cfg.get("proxy")
    if proxy is not None:
        table = PROXY_TABLE
        via = str(lab.plan.address(proxy)) if proxy in lab.plan.nodes else str(proxy)
        lab.run(node, ["ip", "route", "replace", "default", "via", via, "table", table])
    for port in ("500", "4500"):
        lab.run(
            node,
            ["ip", "rule", "add", "priority", "100", "to", str(cfg["home_network"]),
             "ipproto", "udp", "sport", port, "lookup", table],
        )  # fmt: skip


def start(lab: Lab, service: dict[str, Any], events: Path) -> tuple[VpnNode, EventWriter]:
    """One charon for a ``kind: vpn`` service, configured as the runner configures it."""
    cfg = dict(service["config"])
    node_name = service["node"]
    writer = EventWriter.open(str(events / f"{service['name']}.jsonl"), node_name)
    gateway = cfg["role"] == "gateway"
    home_bound = cfg.get("binding", "tia") == "home"
    if gateway:
        # kernel-libipsec needs an intranet-side source address on the gateway (see runner)
        inner = str(cfg.get("inner_address", "10.255.255.254"))
        lab.run(node_name, ["ip", "addr", "replace", f"{inner}/32", "dev", "lo"])
    options: dict[str, Any] = {}
    if gateway and home_bound:
        options["allow_peer_ts"] = True  # the client's home address as its traffic selector
    elif not gateway and not home_bound:
        options["interfaces_ignore"] = ("mipmn0",)
    node = VpnNode(
        lab, node_name, writer.record, run_dir=lab.state.dir / service["name"], **options
    )
    node.start()
    psk = str(cfg.get("psk", "testbed-psk"))
    vc.load_shared_psk(node.vici, psk, [profiles.GATEWAY_ID, profiles.CLIENT_ID])
    if gateway and home_bound:
        _route_via_proxy(lab, node_name, cfg)
        conn = profiles.gateway_conn(pools=(), encap=True, mobike=cfg.get("mobike", False))
        vc.load_conn(node.vici, conn)
    elif gateway:
        vc.load_pool(node.vici, "tia", str(cfg.get("pool", profiles.TIA_POOL)))
        vc.load_conn(node.vici, profiles.gateway_conn(mobike=cfg.get("mobike", True)))
    else:
        local = cfg.get("home_address") if home_bound else cfg.get("local_address")
        conn = profiles.client_conn(
            str(cfg["gateway"]),
            name="home",
            child="net",
            mobike=cfg.get("mobike", not home_bound),
            encap=home_bound,
            vips=() if home_bound else ("0.0.0.0",),
            local_addrs=(str(local),) if local else (),
        )
        conn["home"]["children"]["net"]["close_action"] = cfg.get("close_action", "restart")
        vc.load_conn(node.vici, conn)
    print(f"{service['name']}: charon on {node_name}, vici {node.charon.vici_socket}")
    return node, writer


def mn_config(services: dict[str, dict[str, Any]], nodes: dict[str, VpnNode]) -> dict[str, Any]:
    """The MN's agent configuration with its VPN service resolved to the vici socket."""
    config = dict(services["mn"]["config"])
    vpn = dict(config["vpn"])
    label = vpn.pop("service")
    service = services[label]["config"]
    home_bound = service.get("binding", "tia") == "home"
    vpn.update(
        vici=str(nodes[label].charon.vici_socket),
        ike="home",
        child="net",
        mobike=bool(service.get("mobike", not home_bound)),
    )
    config["vpn"] = vpn
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lab", help="a lab built from topologies/enterprise.yaml (testbed up)")
    parser.add_argument("dir", type=Path, help="where events/ and mn.yaml go, e.g. /tmp/lab05")
    parser.add_argument("--dual", action="store_true", help="scenario-dual.yaml: dual MIP")
    args = parser.parse_args(argv)
    scenario = HERE / ("scenario-dual.yaml" if args.dual else "scenario.yaml")
    services = _services(scenario)
    lab = Lab.open(args.lab)
    events = args.dir / "events"
    events.mkdir(parents=True, exist_ok=True)
    mn_file = args.dir / ("mn-dual.yaml" if args.dual else "mn.yaml")
    mn_file.unlink(missing_ok=True)  # it appears again once both daemons are ready

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started: dict[str, tuple[VpnNode, EventWriter]] = {}
    try:
        for name, service in services.items():
            if service["kind"] == "vpn":
                started[name] = start(lab, service, events)
        nodes = {name: node for name, (node, _) in started.items()}
        config = mn_config(services, nodes)
        tmp = mn_file.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        tmp.replace(mn_file)
        print(f"the MN's configuration: {mn_file}  (stop: Ctrl-C or kill %N)")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        for node, writer in started.values():
            node.stop()
            writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
