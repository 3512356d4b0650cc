"""``testbed agent ha|fa|mn|proxy --config FILE``: one agent in the current network namespace."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
from pathlib import Path

from mipbase.clock import wallclock
from mipbase.events import DEFAULT_MAX_BYTES, EventWriter
from mipbase.specfile import SpecError

MN_GROUPS = ("224.0.0.1",)  # all systems: advertisements
AGENT_GROUPS = ("224.0.0.2",)  # all routers: solicitations


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("role", choices=["ha", "fa", "mn", "proxy"])
    parser.add_argument("--config", required=True, help="agent configuration (YAML)")
    parser.add_argument("--events", help="JSON-lines event file (default: stdout)")
    parser.add_argument("--node", help="node name in events (default: the role)")
    parser.add_argument("--state", help="write the agent's state here as JSON, every second")
    parser.add_argument(
        "--events-max-mb",
        type=float,
        default=DEFAULT_MAX_BYTES / 2**20,
        help="cap on the event file (MiB; 0: none); at the cap one last event_file_full",
    )


async def _run(args: argparse.Namespace) -> int:

    stream = open(args.events, "a", buffering=1) if args.events else sys.stdout  # noqa: SIM115
    cap = int(args.events_max_mb * 2**20) if args.events_max_mb > 0 else None
    events = EventWriter(stream, args.node or args.role, max_bytes=cap)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    if args.role == "ha":
        driver, machine, extra = _make_ha(args.config, events)
    elif args.role == "fa":
        driver, machine, extra = _make_fa(args.config, events)
    elif args.role == "proxy":
        driver, machine, extra = _make_proxy(args.config, events)
    else:
        driver, machine, extra = _make_mn(args.config, events)
    driver.install_signals(stop.set)
    if driver.dataplane is not None:
        driver.dataplane.prepare()  # TUN and sockets now, not in the first handoff
    events.emit("agent_started", role=args.role, config=str(args.config))
    driver.feed(machine.start(driver.now()))
    if extra is not None:
        extra.start()
    state_task = loop.create_task(_write_state(args, machine, driver)) if args.state else None
    await stop.wait()
    if args.role == "mn":  # SIGTERM deregisters (RFC 5944 3.6.1.2): give the reply a moment
        driver.feed(machine.shutdown(driver.now()))
        await asyncio.sleep(0.3)
    elif args.role == "proxy":  # our registrations at the home agent end with us
        driver.feed(machine.clear(driver.now()))
        await asyncio.sleep(0.1)
    if state_task is not None:
        state_task.cancel()
    if extra is not None:
        extra.close()
    events.emit("agent_stopped", counters={**machine.counters, **driver.counters})
    driver.close()
    return 0


async def _write_state(args: argparse.Namespace, machine: object, driver: object) -> None:
    from agents.runtime.state import snapshot, state_interval

    path = Path(args.state)
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(snapshot(args.role, machine, driver), default=str))
        tmp.replace(path)
        # (the loop stands still while a dump is made: a large one is made less often)
        await asyncio.sleep(state_interval(loop.time() - started))


def _make_ha(path: str, events: EventWriter):
    from agents.mip.ha import HomeAgent
    from agents.runtime.config import load_ha_apart
    from agents.runtime.dataplane import HaDataPlane
    from agents.runtime.driver import AgentDriver

    f, cfg = load_ha_apart(path)  # no thread runs yet: forking is safe
    machine = HomeAgent(cfg, wallclock=wallclock)
    driver = AgentDriver(
        machine, events, None, interfaces=(f.interface,), groups=AGENT_GROUPS, sends_first=True
    )
    driver.dataplane = HaDataPlane(events, driver.udp, f.interface)
    return driver, machine, None


def _make_fa(path: str, events: EventWriter):
    from agents.mip.fa import ForeignAgent
    from agents.runtime.config import load_fa
    from agents.runtime.dataplane import FaDataPlane
    from agents.runtime.driver import AgentDriver

    f, cfg = load_fa(path)
    machine = ForeignAgent(cfg)
    driver = AgentDriver(
        machine, events, None, interfaces=(f.interface,), groups=AGENT_GROUPS, sends_first=True
    )
    driver.dataplane = FaDataPlane(events, driver.udp)
    # RFC 5944 4.6: a visitor's MAC from its Registration Request, not from ARP
    driver.note_registration_sources(f.interface, driver.dataplane.note_link_source)
    return driver, machine, None


def _make_proxy(path: str, events: EventWriter):
    from agents.mip.proxy import MipProxy
    from agents.runtime.config import load_proxy
    from agents.runtime.driver import AgentDriver
    from agents.runtime.proxyplane import ProxyDataPlane

    f, cfg = load_proxy(path)
    machine = MipProxy(cfg, wallclock=wallclock)
    driver = AgentDriver(machine, events, None, interfaces=(f.interface,))
    gateway = str(f.gateway) if f.gateway is not None else None
    driver.dataplane = ProxyDataPlane(
        events, driver.udp, gateway, f.home_networks, f.interface, f.esp_in_userspace
    )
    return driver, machine, None


def _make_mn(path: str, events: EventWriter):
    from agents.mip.mn import MobileNode
    from agents.runtime.config import load_mn
    from agents.runtime.dataplane import MnDataPlane
    from agents.runtime.driver import AgentDriver
    from agents.runtime.movement import MovementDetector

    f, cfg = load_mn(path)
    machine = MobileNode(cfg, wallclock=wallclock)
    driver = AgentDriver(machine, events, None, interfaces=(f.interface,), groups=MN_GROUPS)
    if f.vpn is not None and f.vpn.architecture == "proxy":
        # a tunnel bound to the home address must not swallow our control (see xfrm.py);
        # MOBIKE's and dual MIP's registrations through the tunnel must go into it
        from agents.dataplane.xfrm import bypass_ipsec

        bypass_ipsec(driver.udp)
    home = ipaddress.IPv4Network(f.home_network)
    driver.dataplane = MnDataPlane(
        events,
        driver.udp,
        iface=f.interface,
        home=str(f.home_address),
        home_prefix=home.prefixlen,
        home_router=str(f.home_router),
        home_agent=str(f.home_agent),
    )
    # RFC 5944 4.6: the agent's MAC from its advertisement, not from a broadcast ARP
    driver.read_adverts_at_link_layer(f.interface, driver.dataplane.learn_neighbour)
    return driver, machine, MovementDetector(f, machine, driver, events)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="testbed agent")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except SpecError as exc:
        print(f"testbed agent: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"testbed agent: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
