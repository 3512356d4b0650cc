"""Tunnel throughput through the real HA -> FA -> MN agents next to plain forwarding.

Run as root:

    .venv/bin/python benchmarks/bench_agent_chain.py [--seconds 5] [--repeat 3] [--reverse]
        [--delay topology|zero|both] [--no-delay] [--tunnel auto|userspace|kernel] [--keep]

Builds topologies/enterprise.yaml with the project's lab API (testbed.lab.builder.build,
a unique lab name), starts the HA on ha, the FA on fa and the MN on mn exactly as
scenarios/roam-inside.yaml configures them (``testbed agent ha|fa|mn --config --events``,
recorded in the lab's state like the scenario runner's services), moves mn to ``visited``
and waits for the MN's ``registration_accepted`` in mode f. Then iperf3 (TCP, one stream):

- tunnel: cn -> home address 10.1.0.100: cn -> HA (proxy ARP) -> IP in IP -> FA -> mn;
  with --reverse also -R: mn -> FA -> reverse tunnel -> HA -> cn;
- plain:  cn -> 10.2.0.77, a second address the benchmark gives mn on the visited network:
  cn -> core -> fa -> mn by ordinary routing over the same links (and back with -R).

Prints Mbit/s per repetition and the median, the ratio tunnel/plain, ping RTT, TCP MSS and
retransmissions, the CPU the agents (whose userspace tunnel engines carry the tunnel) and
the link-delay relay used, and the tunnel engines' packet counters per phase, which show
that the tunnel path went through HA and FA and the plain path did not.

--delay topology keeps the topology's link delays (1 ms per attachment and direction inside
the enterprise; the userspace relay adds them where the kernel has no netem); zero
overrides every network's impairment to nothing (--no-delay is short for it); both runs
one lab after the other. --tunnel sets TESTBED_TUNNEL for the agents (default: auto, the
kernel's ipip where present, else the userspace engine).

Everything it starts is stopped on every exit path (Ctrl-C and SIGTERM too): iperf3 and
the agents by PID (SIGTERM, a grace period, then SIGKILL of those PIDs only), then the lab
is removed with its own teardown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mipbase.modes import Mode  # noqa: E402
from testbed import features, netns  # noqa: E402
from testbed.lab.builder import build, spawn  # noqa: E402
from testbed.lab.lab import Lab  # noqa: E402
from testbed.lab.state import ProcessRecord  # noqa: E402
from testbed.lab.teardown import stop_processes  # noqa: E402
from testbed.launch import agent_argv  # noqa: E402
from testbed.scenario.catalogue import AGENT_READY_EVENTS  # noqa: E402
from testbed.scenario.load import load_scenario  # noqa: E402
from testbed.topology import load_topology  # noqa: E402
from testbed.topology.load import deep_merge  # noqa: E402

SCENARIO = ROOT / "scenarios" / "roam-inside.yaml"
IPERF3 = shutil.which("iperf3") or "/usr/bin/iperf3"
CLK_TCK = os.sysconf("SC_CLK_TCK")

CN, CN_ADDR = "cn", "10.1.0.10"
HOME_ADDR = "10.1.0.100"
PLAIN_ADDR, PLAIN_PREFIX = "10.2.0.77", 24
MN_IFACE = "eth0"
VISITED = "visited"
PORT_TUNNEL, PORT_PLAIN = 5201, 5202
ROLES = ("ha", "fa", "mn")  # the agents of the chain, as roam-inside runs them
AGENT_STOP_GRACE_S = 5.0  # the MN deregisters on SIGTERM (about 0.3 s)
REGISTRATION_TIMEOUT_S = 10.0


class BenchError(RuntimeError):
    """A set-up step failed: the message says which and why."""


class Interrupted(Exception):
    """SIGTERM (Ctrl-C is KeyboardInterrupt)."""


# -- agents -------------------------------------------------------------------------------


@dataclass
class Agent:
    role: str
    node: str
    record: ProcessRecord
    events_file: Path
    state_file: Path
    log_file: Path

    @property
    def pid(self) -> int:
        return self.record.pid

    def events(self) -> list[dict[str, Any]]:
        if not self.events_file.exists():
            return []
        out = []
        for line in self.events_file.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a line being written
                out.append(json.loads(line))
        return out

    def running(self) -> bool:
        return netns.process_running(self.record.pid, self.record.start_time)

    def wait_event(
        self, names: tuple[str, ...], timeout: float, after_ns: int = 0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events():
                if event.get("event") in names and event.get("t_ns", 0) >= after_ns:
                    return event
            if not self.running():
                raise BenchError(f"the {self.role} agent exited: see {self.log_file}")
            if time.monotonic() > deadline:
                seen = [e.get("event") for e in self.events() if e.get("t_ns", 0) >= after_ns]
                raise BenchError(
                    f"no {' or '.join(names)} from the {self.role} agent within {timeout:g} s "
                    f"(events: {', '.join(map(str, seen)) or 'none'}; log {self.log_file})"
                )
            time.sleep(0.02)

    def state(self, timeout: float = 3.0) -> dict[str, Any]:
        """The state the agent writes every second, written after this call began."""
        since = time.monotonic_ns()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                state = json.loads(self.state_file.read_text())
                if state.get("t_ns", 0) >= since:
                    return state
            time.sleep(0.05)
        return {}


def agent_configs() -> dict[str, tuple[str, dict[str, Any]]]:
    """role -> (node, configuration) of the agent services of roam-inside."""
    scenario = load_scenario(SCENARIO)
    out = {}
    for service in scenario.spec.services:
        if service.kind == "agent" and service.agent in ROLES:
            out[service.agent] = (service.node, dict(service.config or {}))
    missing = set(ROLES) - set(out)
    if missing:
        raise BenchError(f"{SCENARIO} has no agent service for {', '.join(sorted(missing))}")
    return out


def start_agent(lab: Lab, role: str, node: str, config: dict[str, Any], work: Path) -> Agent:
    """As the scenario runner starts an agent service: config file, events, state, log."""
    config_file = work / f"{role}.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    events = work / f"{role}-events.jsonl"
    state = work / f"{role}-state.json"
    log = work / f"{role}.log"
    argv = agent_argv(role, config_file, events, node, state)
    spawn(lab.state, node, f"service:{role}", argv, log)
    return Agent(role, node, lab.state.processes[-1], events, state, log)


# -- measurements -------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Row:
    path: str  # tunnel | plain
    direction: str  # cn->mn | mn->cn
    target: str
    mbps: list[float] = field(default_factory=list)
    retransmits: list[int] = field(default_factory=list)
    mss: int | None = None
    rtt_ms: float | None = None
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU s per wall s
    relay_frames: int = 0  # frames the relay took in (all pairs, both directions)
    relay_bytes: int = 0
    relay_max_frame: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.mbps) if self.mbps else float("nan")


@dataclass
class LabResult:
    variant: str
    lab_name: str
    impairment: str
    rows: list[Row] = field(default_factory=list)
    routes: dict[str, str] = field(default_factory=dict)
    backends: dict[str, str] = field(default_factory=dict)
    counters: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # phase->role
    notes: list[str] = field(default_factory=list)


def ping(lab: Lab, node: str, target: str, what: str) -> float:
    """Median RTT of a few pings; BenchError naming the path if none comes back."""
    res = lab.run(
        node, ["ping", "-n", "-c", "5", "-i", "0.1", "-W", "1", target], check=False, timeout=15
    )
    rtts = [float(w.split("=")[1]) for w in res.stdout.split() if w.startswith("time=")]
    if not rtts:
        raise BenchError(
            f"{what}: no ping reply from {target} on {node} "
            f"({(res.stdout.strip().splitlines() or [res.stderr.strip()])[-1]})"
        )
    return statistics.median(rtts)


def iperf(lab: Lab, target: str, port: int, seconds: int, reverse: bool) -> tuple[float, int, int]:
    """(Mbit/s received, retransmissions, MSS) of one iperf3 TCP run from cn."""
    argv = [IPERF3, "-c", target, "-p", str(port), "-t", str(seconds), "-J"]
    argv += ["--connect-timeout", "3000"]
    if reverse:
        argv.append("-R")
    # subprocess.run kills the client (by its PID) on any exception, Ctrl-C included
    res = lab.run(CN, argv, check=False, timeout=seconds + 30)
    try:
        data = json.loads(res.stdout)
    except ValueError:
        raise BenchError(f"iperf3 to {target}: no JSON ({res.stderr.strip()})") from None
    if "error" in data:
        raise BenchError(f"iperf3 to {target}:{port}: {data['error']}")
    end = data["end"]
    mss = int(data.get("start", {}).get("tcp_mss_default", 0))
    retr = int(end["sum_sent"].get("retransmits", 0))
    return end["sum_received"]["bits_per_second"] / 1e6, retr, mss


def wait_listening(lab: Lab, node: str, port: int, proc: ProcessRecord, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = lab.run(node, ["ss", "-Hltn", f"sport = :{port}"], check=False)
        if res.stdout.strip():
            return
        if not netns.process_running(proc.pid, proc.start_time):
            break
        time.sleep(0.05)
    raise BenchError(f"iperf3 server on {node} port {port} is not listening (log {proc.log})")


def route_of(lab: Lab, node: str, dst: str, src: str | None = None, iif: str | None = None) -> str:
    """``ip route get`` in one line (with the learned path MTU, if the route cache has one)
    and the MTU of the device it leaves by."""
    argv = ["ip", "-o", "route", "get", dst]
    argv += (["from", src] if src else []) + (["iif", iif] if iif else [])
    res = lab.run(node, argv, check=False)
    words = [w for w in res.stdout.split() if w != "\\"]
    if "uid" in words:  # "uid 0": who asked, not part of the route
        del words[words.index("uid") : words.index("uid") + 2]
    if "cache" in words and "mtu" not in words[words.index("cache") :]:
        words = words[: words.index("cache")]  # nothing learned: leave the cache flags out
    line = " ".join(words)
    if "dev" in words:
        dev = words[words.index("dev") + 1]
        link = lab.run(node, ["ip", "-o", "link", "show", "dev", dev], check=False).stdout.split()
        if "mtu" in link:
            line += f" [{dev} mtu {link[link.index('mtu') + 1]}]"
    return line or res.stderr.strip()


def iface_on(lab: Lab, node: str, network: str) -> str:
    return next(i.name for i in lab.plan.nodes[node].interfaces if i.network == network)


def counters_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    b, a = before.get("tunnels", {}), after.get("tunnels", {})
    return {k: v - b.get(k, 0) for k, v in a.items() if v - b.get(k, 0)}


def zero_impairment_overrides(topology_file: Path) -> dict[str, Any]:
    """Topology overrides that take every network's delay, jitter and loss to zero."""
    plan = load_topology(topology_file)
    zero = {"impair": {"delay": "0ms", "jitter": "0ms", "loss": 0}}
    return {"networks": dict.fromkeys(plan.networks, zero)}


# -- one lab ------------------------------------------------------------------------------


def run_lab(variant: str, args: argparse.Namespace, work: Path) -> LabResult:
    scenario = load_scenario(SCENARIO)
    overrides: dict[str, Any] = dict(scenario.spec.topology_ref.overrides or {})
    if variant == "zero":
        overrides = deep_merge(overrides, zero_impairment_overrides(scenario.topology_path))
    plan = load_topology(scenario.topology_path, overrides or None)
    if variant == "zero":
        left = [f"{i.node}.{i.name}" for i in plan.interfaces() if not i.egress.is_null]
        left += [f"{i.node}.{i.name}" for i in plan.interfaces() if not i.ingress.is_null]
        if left:
            raise BenchError(f"impairments left after the zero overrides: {', '.join(left)}")
    configs = agent_configs()
    name = f"bac-{secrets.token_hex(3)}"
    work = work / variant
    work.mkdir(parents=True, exist_ok=True)

    lab: Lab | None = None
    agents: dict[str, Agent] = {}
    servers: list[ProcessRecord] = []
    try:
        print(f"[{variant}] building lab {name} from {scenario.topology_path.name}", flush=True)
        lab = Lab(build(plan, name, kind="run", overrides=overrides or None), plan)
        relay = next((p for p in lab.state.processes if p.role == "relay"), None)
        if lab.state.relayed:
            impairment = "the userspace relay (every interface)"
        elif lab.state.impairment_path == "relay":
            impairment = "none (no delays, no relay)"
        else:
            impairment = lab.state.impairment_path
        result = LabResult(variant, name, impairment)

        for role in ROLES:
            node, config = configs[role]
            agents[role] = start_agent(lab, role, node, config, work)
        for role, agent in agents.items():
            agent.wait_event(AGENT_READY_EVENTS[role], timeout=10)

        t_move = time.monotonic_ns()
        lab.move("mn", VISITED)
        accepted = agents["mn"].wait_event(
            ("registration_accepted",), timeout=REGISTRATION_TIMEOUT_S, after_ns=t_move
        )
        if accepted.get("mode") != Mode.F:
            raise BenchError(
                f"the MN registered in mode {accepted.get('mode')!r}, not f "
                f"(care-of {accepted.get('care_of')}): the FA path is not in use"
            )
        print(
            f"[{variant}] registered in mode f, care-of {accepted.get('care_of')}, "
            f"{(accepted['t_ns'] - t_move) / 1e6:.0f} ms after the move",
            flush=True,
        )
        for role in ("ha", "fa"):
            up = agents[role].wait_event(("tunnel_up",), timeout=3, after_ns=t_move)
            result.backends[role] = f"{up.get('backend', 'userspace')} {up.get('encapsulation')}"

        # the plain path: a second address for mn on the visited network
        lab.run("mn", ["ip", "addr", "add", f"{PLAIN_ADDR}/{PLAIN_PREFIX}", "dev", MN_IFACE])

        for port, bind in ((PORT_TUNNEL, HOME_ADDR), (PORT_PLAIN, PLAIN_ADDR)):
            argv = [IPERF3, "-s", "-B", bind, "-p", str(port)]
            spawn(lab.state, "mn", f"iperf3:{port}", argv, work / f"iperf3-server-{port}.log")
            servers.append(lab.state.processes[-1])
            wait_listening(lab, "mn", port, servers[-1])

        rtt = {
            "tunnel": ping(lab, CN, HOME_ADDR, "tunnel path cn -> HA -> FA -> mn"),
            "plain": ping(lab, CN, PLAIN_ADDR, "plain path cn -> core -> fa -> mn"),
        }
        pids = {role: a.pid for role, a in agents.items()}
        if relay is not None:
            pids["relay"] = relay.pid
        directions = [False, True] if args.reverse else [False]
        states = {role: agents[role].state() for role in ROLES}
        for path, target, port in (
            ("tunnel", HOME_ADDR, PORT_TUNNEL),
            ("plain", PLAIN_ADDR, PORT_PLAIN),
        ):
            for reverse in directions:
                row = Row(path, "mn->cn" if reverse else "cn->mn", target, rtt_ms=rtt[path])
                cpu0 = {k: cpu_seconds(pid) for k, pid in pids.items()}
                relay0 = relay_totals(lab)
                for _ in range(args.repeat):
                    mbps, retr, mss = iperf(lab, target, port, args.seconds, reverse)
                    row.mbps.append(mbps)
                    row.retransmits.append(retr)
                    row.mss = mss
                busy = args.seconds * args.repeat
                row.cpu = {k: (cpu_seconds(pid) - cpu0[k]) / busy for k, pid in pids.items()}
                relay1 = relay_totals(lab)
                if relay0 and relay1:
                    row.relay_frames = relay1[0] - relay0[0]
                    row.relay_bytes = relay1[1] - relay0[1]
                    row.relay_max_frame = relay1[2]
                result.rows.append(row)
                print(
                    f"[{variant}] {path:<6} {row.direction}: "
                    + " ".join(f"{m:.0f}" for m in row.mbps)
                    + " Mbit/s",
                    flush=True,
                )
            after = {role: agents[role].state() for role in ROLES}
            result.counters[path] = {
                role: counters_delta(states[role], after[role]) for role in after
            }
            states = after
        # after the runs: the route cache then shows the path MTUs TCP has learned
        fa_visited = iface_on(lab, "fa", VISITED)
        result.routes = {
            "cn -> home address": route_of(lab, CN, HOME_ADDR),
            "ha -> home address": route_of(lab, "ha", HOME_ADDR),
            "fa -> home address": route_of(lab, "fa", HOME_ADDR),
            "fa, reverse tunnel": route_of(lab, "fa", CN_ADDR, HOME_ADDR, fa_visited),
            "mn -> cn from home address": route_of(lab, "mn", CN_ADDR, HOME_ADDR),
            "cn -> plain address": route_of(lab, CN, PLAIN_ADDR),
            "core -> plain address": route_of(lab, "core", PLAIN_ADDR),
            "mn -> cn from plain address": route_of(lab, "mn", CN_ADDR, PLAIN_ADDR),
        }
        mn_state = states["mn"]
        if mn_state.get("mode") != Mode.F:
            result.notes.append(f"the MN is in mode {mn_state.get('mode')!r} after the runs")
        for role, agent in agents.items():
            if not agent.running():
                result.notes.append(f"the {role} agent exited during the runs ({agent.log_file})")
        return result
    finally:
        with ignoring_signals():
            if lab is not None:
                stop_processes([(p.pid, p.start_time) for p in servers])
                # the MN first: it deregisters through the FA, which must still be there
                for group in (["mn"], ["fa", "ha"]):
                    stop_processes(
                        [
                            (agents[r].record.pid, agents[r].record.start_time)
                            for r in group
                            if r in agents
                        ],
                        grace_s=AGENT_STOP_GRACE_S,
                    )
                lab.down()
                print(f"[{variant}] lab {name} removed", flush=True)


def relay_totals(lab: Lab) -> tuple[int, int, int] | None:
    """(frames, bytes, largest frame) the link-delay relay has taken in so far, over all
    its pairs and directions; None without a relay. GSO frames count once, at full size."""
    if not (lab.state.relayed and lab.state.relay_control):
        return None
    from testbed.programs.relay.control import relay_command

    pairs = relay_command(lab.state.relay_control, {"cmd": "stats"})["pairs"].values()
    directions = [p[d] for p in pairs for d in ("a_to_b", "b_to_a")]
    return (
        sum(d["rx_frames"] for d in directions),
        sum(d["rx_bytes"] for d in directions),
        max((d["max_frame_bytes"] for d in directions), default=0),
    )


@contextlib.contextmanager
def ignoring_signals() -> Iterator[None]:
    """Clean-up is not interrupted by a second Ctrl-C or SIGTERM."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


# -- report -------------------------------------------------------------------------------


def describe_variant(variant: str) -> str:
    return "link delays as in the topology" if variant == "topology" else "no link delays"


def report(result: LabResult, args: argparse.Namespace) -> None:
    print(
        f"\n== {describe_variant(result.variant)} (lab {result.lab_name}, link emulation: "
        f"{result.impairment}); iperf3 TCP 1 stream, {args.seconds:g} s x {args.repeat}, "
        f"{os.cpu_count()} CPUs"
    )
    print(
        "tunnel engines: "
        + ", ".join(f"{role} {backend}" for role, backend in result.backends.items())
    )
    head = (
        f"{'path':<8}{'direction':<11}{'target':<13}{'Mbit/s per run':<24}{'median':>8}"
        f"{'retr':>7}{'MSS':>6}{'RTT ms':>8}"
    )
    print(head)
    for row in result.rows:
        runs = " ".join(f"{m:.0f}" for m in row.mbps)
        retr = int(statistics.median(row.retransmits)) if row.retransmits else 0
        print(
            f"{row.path:<8}{row.direction:<11}{row.target:<13}{runs:<24}{row.median:>8.0f}"
            f"{retr:>7}{row.mss or '-':>6}{row.rtt_ms or float('nan'):>8.2f}"
        )
    for direction in ("cn->mn", "mn->cn"):
        pair = {r.path: r for r in result.rows if r.direction == direction}
        if "tunnel" in pair and "plain" in pair and pair["plain"].median > 0:
            ratio = pair["tunnel"].median / pair["plain"].median
            print(
                f"ratio tunnel/plain {direction}: {ratio:.2f} "
                f"({pair['tunnel'].median:.0f} / {pair['plain'].median:.0f} Mbit/s)"
            )
    roles = [k for k in ("ha", "fa", "mn", "relay") if any(k in r.cpu for r in result.rows)]
    print("CPU per second of iperf3 (utime+stime from /proc/PID/stat; relay = link delays)")
    print(f"{'path':<8}{'direction':<11}" + "".join(f"{k:>9}" for k in roles))
    for row in result.rows:
        cells = "".join(f"{row.cpu.get(k, 0.0) * 100:>8.0f}%" for k in roles)
        print(f"{row.path:<8}{row.direction:<11}{cells}")
    if any(row.relay_frames for row in result.rows):
        print("frames through the relay (all pairs, both directions), per second of iperf3")
        print(f"{'path':<8}{'direction':<11}{'frames/s':>10}{'mean B':>8}{'largest so far':>16}")
        busy = args.seconds * args.repeat
        for row in result.rows:
            mean = row.relay_bytes / row.relay_frames if row.relay_frames else 0
            print(
                f"{row.path:<8}{row.direction:<11}{row.relay_frames / busy:>10.0f}"
                f"{mean:>8.0f}{row.relay_max_frame:>16}"
            )
    print("tunnel engine counters during each phase:")
    for phase, by_role in result.counters.items():
        shown = "; ".join(f"{role} {json.dumps(c) if c else '{}'}" for role, c in by_role.items())
        print(f"  {phase}: {shown}")
    print("routes:")
    for what, line in result.routes.items():
        print(f"  {what}: {line}")
    for note in result.notes:
        print(f"NOTE: {note}")


# -- main ---------------------------------------------------------------------------------


def on_sigterm(_signum: int, _frame: object) -> None:
    raise Interrupted()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=int, default=5, help="iperf3 -t per run (whole seconds)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per path and direction")
    ap.add_argument("--reverse", action="store_true", help="also mn -> cn (iperf3 -R)")
    ap.add_argument(
        "--delay",
        choices=["topology", "zero", "both"],
        default="topology",
        help="link delays: as in the topology, overridden to zero, or one lab of each",
    )
    ap.add_argument("--no-delay", action="store_true", help="short for --delay zero")
    ap.add_argument(
        "--tunnel",
        choices=["auto", "userspace", "kernel"],
        default=None,
        help="TESTBED_TUNNEL for the agents (default: as in the environment, else auto)",
    )
    ap.add_argument("--keep", action="store_true", help="keep agent configs, events and logs")
    args = ap.parse_args()
    if args.seconds <= 0 or args.repeat < 1:
        ap.error("--seconds must be > 0 and --repeat >= 1")
    try:
        features.ensure_root()
        features.require_binaries("iperf3")
    except (PermissionError, RuntimeError) as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.tunnel is not None:
        os.environ["TESTBED_TUNNEL"] = args.tunnel  # inherited by the agents
    delay = "zero" if args.no_delay else args.delay
    variants = ["topology", "zero"] if delay == "both" else [delay]

    work = Path(tempfile.mkdtemp(prefix="bench-agent-chain-"))
    signal.signal(signal.SIGTERM, on_sigterm)
    results: list[LabResult] = []
    status = 0
    try:
        for variant in variants:
            results.append(run_lab(variant, args, work))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = 1
    except (KeyboardInterrupt, Interrupted):
        print("interrupted: agents, iperf3 and the lab were stopped", file=sys.stderr)
        status = 130
    for result in results:
        report(result, args)
    if status == 0 and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"agent configs, events and logs: {work}", file=sys.stderr)
    print(
        f"\ncommand: sudo {sys.executable} benchmarks/bench_agent_chain.py "
        + " ".join(sys.argv[1:])
    )
    return status


if __name__ == "__main__":
    raise SystemExit(main())
