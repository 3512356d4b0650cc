"""A scenario's ``kind: vpn`` service on a lab node: one charon, configured from the service's
``config`` (role gateway or client, binding, pool, PSK, ...). The scenario runner and the
labs' by-hand scripts both start VPN services through here, so a lab set up by hand is the
lab a scenario runs.

Bindings: ``tia`` (RFC 5266, mode mc, and dual MIP with ``local_address``: the tunnel's inner
address comes from the gateway's pool) or ``home`` (the MIP proxy of seed 003: the tunnel is
bound to the mobile node's home address; its outer packets ride the Mobile IP tunnel via the
proxy).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mipbase import vici_client as vc
from testbed.vpn import profiles
from testbed.vpn.charon import Retransmit
from testbed.vpn.node import VpnNode

GATEWAY_INNER_ADDRESS = "10.255.255.254"
PROXY_TABLE = "152"  # a two-box gateway's table for IKE/ESP to home addresses via the proxy
HOLD_TABLE = "testbed_vpn_hold"  # the node's nftables table that holds IKE back at start


def start_vpn_service(
    lab: Any, node: str, cfg: dict[str, Any], run_dir: Path, on_event: Callable[..., Any]
) -> VpnNode:
    """Start and configure the charon of one VPN service on ``node`` (files in ``run_dir``:
    a vici socket path must fit 108 bytes); IKE events go to ``on_event``."""
    gateway = cfg["role"] == "gateway"
    home_bound = _home_bound(cfg)
    if gateway:
        # A gateway in the DMZ has no address inside the intranet it protects, and
        # kernel-libipsec needs one (inside its local traffic selector) as the source of its
        # routes to the clients' inner addresses: give it a host address for that (on lo, so
        # that MOBIKE never offers it to peers as an additional address).
        inner = str(cfg.get("inner_address", GATEWAY_INNER_ADDRESS))
        lab.run(node, ["ip", "addr", "replace", f"{inner}/32", "dev", "lo"])
    options: dict[str, Any] = {}
    if gateway and home_bound:
        options["allow_peer_ts"] = True  # the client's home address is its traffic selector
    elif not gateway and not home_bound:
        # A mobile node's charon must never pick the home address on the Mobile IP TUN as the
        # tunnel's outer address (not routable outside): ignore that interface.
        options["interfaces_ignore"] = ("mipmn0",)
    if "retransmit" in cfg:  # e.g. {timeout: 0.5, tries: 2}: fast DPD failure detection
        r = cfg["retransmit"]
        options["retransmit"] = Retransmit(
            float(r.get("timeout", 4.0)), float(r.get("base", 1.8)), int(r.get("tries", 5))
        )
    vpn = VpnNode(lab, node, on_event, run_dir=run_dir, **options)
    # Started means configured: charon listens for IKE as soon as it runs, and until its
    # connections are loaded it answers every IKE_SA_INIT with NO_PROPOSAL_CHOSEN, which
    # ends the peer's attempt for good (a client re-initiating at once after a gateway's
    # restart DELETE got exactly that). Held back until then, IKE is retransmitted by the
    # peer and answered by a configured daemon.
    ports = (vpn.charon.config.port, vpn.charon.config.port_nat_t)
    hold_ike(lab, node, ports)
    try:
        vpn.start()
        try:
            _configure(vpn, lab, node, cfg)
        except BaseException:
            vpn.stop()
            raise
    finally:
        release_ike(lab, node)
    return vpn


def _configure(vpn: VpnNode, lab: Any, node: str, cfg: dict[str, Any]) -> None:
    """Secrets, pool and connections of a started charon, through vici."""
    gateway = cfg["role"] == "gateway"
    home_bound = _home_bound(cfg)
    mobike = _mobike(cfg)
    psk = str(cfg.get("psk", "testbed-psk"))
    # a client's IKE identity (several clients of one gateway each need their own: the
    # gateway replaces an IKE SA of the same identity); the gateway's key matches by its own
    ident = str(cfg.get("id", profiles.CLIENT_ID))
    vc.load_shared_psk(vpn.vici, psk, [profiles.GATEWAY_ID, ident])
    if gateway and home_bound:
        route_home_bound_ike(lab, node, cfg, libipsec=vpn.charon.config.esp_in_userspace)
        conn = profiles.gateway_conn(
            pools=(),
            encap=True,
            mobike=mobike,
            dpd_delay_s=float(cfg.get("dpd_delay", 30.0)),
        )
    elif gateway:
        vc.load_pool(vpn.vici, "tia", str(cfg.get("pool", profiles.TIA_POOL)))
        conn = profiles.gateway_conn(mobike=mobike, dpd_delay_s=float(cfg.get("dpd_delay", 30.0)))
    else:
        # home-bound (proxy), or bound to an external home address (dual MIP)
        local = cfg.get("home_address") if home_bound else cfg.get("local_address")
        # the gateway (connection home) and any more (gateways: home2, home3, ... in order),
        # which the MN agent chooses by visited network (its vpn.gateways)
        gateways = [cfg["gateway"], *cfg.get("gateways", [])]
        for index, address in enumerate(gateways, start=1):
            name = "home" if index == 1 else f"home{index}"
            conn = profiles.client_conn(
                str(address),
                local_id=ident,
                name=name,
                child="net",
                mobike=mobike,
                encap=home_bound,
                vips=() if home_bound else ("0.0.0.0",),
                local_addrs=(str(local),) if local else (),
                dpd_delay_s=float(cfg.get("dpd_delay", 10.0)),
            )
            # a client whose gateway closes the tunnel (e.g. on restart) brings it back up
            conn[name]["children"]["net"]["close_action"] = cfg.get("close_action", "restart")
            vc.load_conn(vpn.vici, conn)
        return
    vc.load_conn(vpn.vici, conn)


def hold_ike(lab: Any, node: str, ports: tuple[int, int]) -> None:
    """Drop IKE (and NAT-T) to ``node`` until :func:`release_ike`: a table of our own, ahead
    of conntrack, so that no other rule of the node is touched."""
    plist = ", ".join(str(p) for p in ports)
    script = (
        f"add table inet {HOLD_TABLE}\n"
        f"add chain inet {HOLD_TABLE} input "
        "{ type filter hook input priority -300; policy accept; }\n"
        f"add rule inet {HOLD_TABLE} input udp dport {{ {plist} }} drop\n"
    )
    lab.run(node, ["nft", "-f", "-"], input=script)


def release_ike(lab: Any, node: str) -> None:
    lab.run(node, ["nft", "delete", "table", "inet", HOLD_TABLE], check=False)


def decrypted_interface(lab: Any, node: str, via: str, libipsec: bool) -> str:
    """Where what the gateway decrypts enters its routing: kernel-libipsec's TUN
    ``ipsec0``; with the kernel's XFRM, the interface the ESP itself came in on (the way to
    ``via``, the MIP proxy, who forwards the mobile nodes' ESP)."""
    if libipsec:
        return "ipsec0"
    route = lab.run(node, ["ip", "-o", "route", "get", via]).stdout.split()
    return route[route.index("dev") + 1]


def route_home_bound_ike(lab: Any, node: str, cfg: dict[str, Any], *, libipsec: bool) -> None:
    """A gateway whose tunnels are bound to home addresses sends its IKE and ESP (UDP from
    ports 500/4500) to those addresses through the MIP proxy, around the route into ipsec0
    that charon installs for the same address: a rule ahead of table 220. One box (no
    ``proxy``): the proxy's own routes in the main table; two boxes: via the proxy, which
    also gets what the gateway decrypts from a home address (back to the HA in its tunnel)."""
    given = cfg["home_network"]  # one home network, or a list (a proxy serving several HAs)
    networks = [str(n) for n in given] if isinstance(given, list) else [str(given)]
    proxy = cfg.get("proxy")
    table = "main"
    if proxy is not None:
        table = PROXY_TABLE
        via = str(lab.plan.address(proxy)) if proxy in lab.plan.nodes else str(proxy)
        lab.run(node, ["ip", "route", "replace", "default", "via", via, "table", table])
        decrypted = decrypted_interface(lab, node, via, libipsec)
        for home_network in networks:
            lab.run(
                node,
                ["ip", "rule", "add", "priority", "100", "iif", decrypted, "from", home_network,
                 "lookup", table],
            )  # fmt: skip
    for home_network in networks:
        for port in ("500", "4500"):
            lab.run(
                node,
                ["ip", "rule", "add", "priority", "100", "to", home_network,
                 "ipproto", "udp", "sport", port, "lookup", table],
            )  # fmt: skip


def agent_vpn_config(
    vpn: dict[str, Any], service_cfg: dict[str, Any] | None, vici_socket: Path | str
) -> dict[str, Any]:
    """An MN agent's ``vpn:`` section with its ``service`` name resolved to the vici socket
    of that service's charon (and MOBIKE as that service has it)."""
    resolved = {k: v for k, v in vpn.items() if k != "service"}
    resolved.update(vici=str(vici_socket), ike="home", child="net")
    resolved.setdefault("mobike", _mobike(service_cfg or {}))
    return resolved


def serve_by_hand(lab_name: str, scenario: Path, out_dir: Path, mn_file: Path) -> int:
    """The labs' by-hand mode: start the ``kind: vpn`` services of ``scenario`` in a lab built
    with ``testbed up`` (as ``testbed run`` would), their IKE events into ``out_dir/events/``,
    the MN agent's configuration (VPN service resolved) into ``mn_file``; wait for Ctrl-C or
    SIGTERM, then stop the daemons."""
    import signal
    import sys
    import threading

    import yaml

    from mipbase.events import EventWriter
    from testbed.lab.lab import Lab

    services = {s["name"]: s for s in yaml.safe_load(scenario.read_text())["services"]}
    lab = Lab.open(lab_name)
    events = out_dir / "events"
    events.mkdir(parents=True, exist_ok=True)
    mn_file.unlink(missing_ok=True)  # it appears again once both daemons are ready
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    writers: list[EventWriter] = []
    nodes: dict[str, VpnNode] = {}
    try:
        for name, service in services.items():
            if service["kind"] != "vpn":
                continue
            writer = EventWriter.open(str(events / f"{name}.jsonl"), service["node"])
            writers.append(writer)
            cfg = dict(service["config"])
            run_dir = lab.state.dir / name
            nodes[name] = start_vpn_service(lab, service["node"], cfg, run_dir, writer.record)
            print(f"{name}: charon on {service['node']}, vici {nodes[name].charon.vici_socket}")
        config = dict(services["mn"]["config"])
        label = config["vpn"]["service"]
        config["vpn"] = agent_vpn_config(
            config["vpn"], services[label]["config"], nodes[label].charon.vici_socket
        )
        tmp = mn_file.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        tmp.replace(mn_file)
        print(f"the MN's configuration: {mn_file}  (stop: Ctrl-C or kill %N)")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        for node in nodes.values():
            node.stop()
        for writer in writers:
            writer.close()
    return 0


def _home_bound(cfg: dict[str, Any]) -> bool:
    """The tunnel is bound to the home address (the MIP proxy), not to a pool's TIA."""
    return cfg.get("binding", "tia") == "home"


def _mobike(cfg: dict[str, Any]) -> bool:
    """MOBIKE unless asked otherwise; never by default for home-bound tunnels (the proxy
    moves the home address, IKE never sees an address change)."""
    return bool(cfg.get("mobike", not _home_bound(cfg)))
