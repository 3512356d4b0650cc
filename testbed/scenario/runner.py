"""``testbed run``: build the scenario's lab, run services, probes and the timeline, measure.

One run = one lab (kind "run", owned by this process) from build to teardown. Everything a
run starts is recorded in the lab's state before it can leak, and teardown runs on every
exit path (success, failure, Ctrl-C, SIGTERM, errors). Results are written as they come;
``summary.json`` is written atomically last, so a crash never leaves half of one.

The runner orchestrates; the command lines it starts come from ``testbed.launch`` (one
builder per kind of process), the timeline's steps from ``testbed.scenario.steps`` (a table
from action to handler), the run directory and its record from ``testbed.scenario.record``.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import yaml

from mipbase import events as eventlog
from mipbase.clock import scaled
from mipbase.events import EventWriter
from testbed import launch
from testbed.lab.builder import SW, build, spawn
from testbed.lab.lab import Lab
from testbed.lab.state import ProcessRecord
from testbed.scenario.catalogue import AGENT_READY_EVENTS
from testbed.scenario.load import Scenario
from testbed.scenario.model import ServiceSpec
from testbed.scenario.record import PROBE_DOWN, PROBE_UP, RunDir, RunRecord
from testbed.scenario.resources import Usage
from testbed.scenario.steps import carry_out, describe

PROBE_READY_S = 30.0  # both probe ends bound their sockets (Python start-up, loaded)
PROBE_STARTUP_NS = 50_000_000  # start file written -> both ends send (they look every 5 ms)
DRAIN_S = 0.3  # longer than any one-way delay a scenario configures in practice


class RunInterrupted(Exception):
    """Ctrl-C or SIGTERM during a run."""


class StepFailed(Exception):
    """A timeline step could not be carried out (e.g. a wait timed out)."""


class ServiceDied(StepFailed):
    """An agent or daemon exited on its own: the testbed failed, not the system under test
    (exit 2 and a JUnit error rather than a failed expectation)."""


WATCH_INTERVAL_S = 0.05  # how often long sleeps look at the agents and daemons


@dataclass
class RunOptions:
    results: Path = Path("results")
    pcap: str | list[str] | None = None  # None: the scenario's choice
    pause_on_error: bool = False
    interactive: bool = False  # --cli: pause steps open the shell
    figures: bool = True  # False (--no-figures): the report without its pictures (slow machines)
    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)


class _Run:
    """One repetition: the lab, the services and probes in it, the timeline, the record.
    The timeline's steps (``testbed.scenario.steps``) act on it through ``lab``, ``events``,
    ``record``, the services (``service_spec``, ``start_service``, ``stop_service``), the
    events read (``new_events``, ``events_read``, ``step_starts``), ``check_alive``,
    ``sleep`` and ``pause``."""

    def __init__(self, scenario: Scenario, options: RunOptions, run_dir: Path, index: int):
        self.sc = scenario
        self.spec = scenario.spec
        self.options = options
        self.dir = run_dir
        self.record = RunRecord(run_dir, index)
        self.lab: Lab | None = None
        self.services: dict[str, ProcessRecord] = {}
        # agents and clients whose exit is an error, unless a timeline step stopped them
        self._watched: dict[str, subprocess.Popen] = {}
        self.vpn_nodes: dict[str, tuple[Any, EventWriter]] = {}
        self.paths = RunDir(run_dir).create()
        self.events_dir = self.paths.events
        self.logs_dir = self.paths.logs
        self.events = EventWriter.open(str(self.events_dir / "runner.jsonl"), "runner")
        self.t0_ns = 0
        self._events_tail = eventlog.Tail(self.events_dir)
        self.events_read: list[dict[str, Any]] = []  # by wait steps, for later ones too
        self.step_starts: list[int] = []
        # for resources.json: the runner's own CPU time at the start and when the timeline
        # began, and each process's then
        self._cpu_start = os.times()
        self._cpu_timeline: tuple[os.times_result, dict[int, int]] | None = None
        # processes a timeline step stopped, read just before: (pid, start time) -> usage
        self._stopped_usage: dict[tuple[int, int | None], Usage] = {}

    # -- the run --------------------------------------------------------------------------

    def execute(self) -> RunRecord:
        name = f"r{os.getpid() % 100000}-{self.record.index}-{secrets.token_hex(1)}"
        self.record.started_ns = time.monotonic_ns()
        self.events.emit("run_start", scenario=self.spec.name, run=self.record.index)
        try:
            self.lab = Lab(build(self.sc.plan, name, kind="run"), self.sc.plan)
            self.events.emit("lab_up", lab=name, impairments=self.lab.state.impairment_path)
            self._start_captures()
            for service in self.spec.services:
                self.start_service(service)
            self._wait_services_ready()
            self._start_probes()
            self.sleep(scaled(self.spec.settle / 1000))
            self._timeline()
            self.sleep(scaled(self.spec.tail / 1000))
        except (
            StepFailed,
            RuntimeError,
            OSError,
            LookupError,
            ValueError,
            subprocess.SubprocessError,
        ) as exc:
            self.record.error = f"{type(exc).__name__}: {exc}"
            # the testbed's fault, not the system under test's: anything but a step that
            # failed (a wait's timeout is an expectation; agents never ready, a failure)
            self.record.infrastructure = isinstance(exc, ServiceDied) or not isinstance(
                exc, StepFailed
            )
            if self._lab_removed():
                self.record.infrastructure = True
                self.record.error = f"lab {name} was removed during the run ({self.record.error})"
            self.events.emit("run_error", error=self.record.error)
            self.options.progress(f"  error: {self.record.error}")
            if self.options.pause_on_error and self.lab is not None and sys.stdin.isatty():
                self.pause("error: " + str(exc))
        except KeyboardInterrupt:  # and SIGTERM (run_once): keep what was measured so far
            self.record.interrupted = True
            self.record.error = "interrupted"
            self.events.emit("run_interrupted")
        finally:
            self.record.ended_ns = time.monotonic_ns()
            self._finish()
        return self.record

    def _lab_removed(self) -> bool:
        """Whether the lab went away under the run (``testbed down`` or ``clean`` of it)."""
        if self.lab is None:
            return False
        from testbed import netns
        from testbed.lab.teardown import REMOVING

        state = self.lab.state
        if (state.dir / REMOVING).exists() or not state.file.exists():
            return True
        present = set(netns.list_netns())
        return any(ns not in present for ns in state.namespaces)

    def _finish(self) -> None:
        """Stop probes first (they flush their records), then everything else."""
        if self.lab is not None:
            from testbed import netns
            from testbed.lab.teardown import stop_processes

            self._write_resources()  # while every process is still there to be read
            probes = [p for p in self.lab.state.processes if p.role.startswith("probe")]
            for probe in probes:  # drain: stop sending, let what is in flight arrive
                netns.kill_process(probe.pid, probe.start_time, signal.SIGUSR1)
            if probes:
                time.sleep(DRAIN_S)
            stop_processes([(p.pid, p.start_time) for p in probes])
            for label, (node, writer) in self.vpn_nodes.items():
                node.stop()  # listener first, then the daemon, reaped
                writer.close()
                self._keep_vpn_log(label, node)
            self.events.emit("run_end")
            self.lab.down()
        self.events.close()

    def _write_resources(self) -> None:
        """``resources.json`` (``testbed.scenario.resources``): CPU time and memory of each
        process the run started, by kind, and the runner's own. A measurement, never the
        run's failure: a process that is gone is left out."""
        from testbed.scenario import resources

        assert self.lab is not None
        at_timeline, _ = self._cpu_timeline or (None, {})
        stopped = dict(self._stopped_usage)  # a stopped charon has left the lab's record
        usages = []
        for p in self.lab.state.processes:
            usage = stopped.pop((p.pid, p.start_time), None) or self._usage(p)
            if usage is not None:
                usages.append(usage)
        usages += stopped.values()
        now = os.times()
        # this process and the short-lived commands it ran and reaped (ip, nft, tc)
        runner = sum(now[:4]) - sum(self._cpu_start[:4])
        runner_timeline = None if at_timeline is None else sum(now[:4]) - sum(at_timeline[:4])
        wall = (time.monotonic_ns() - self.record.started_ns) / 1e9
        timeline = (time.monotonic_ns() - self.t0_ns) / 1e9 if self.t0_ns else None
        try:
            resources.write(
                self.dir / resources.FILE, usages, runner, wall, runner_timeline, timeline
            )
        except OSError as exc:
            self.options.progress(f"  resources.json not written: {exc}")

    def _usage(self, p: ProcessRecord) -> Usage | None:
        """A process's usage now (None: it is gone)."""
        from testbed.scenario import resources

        agents = {s.label: str(s.agent) for s in self.spec.services if s.kind == "agent"}
        at_timeline, before = self._cpu_timeline or (None, {})
        kind = resources.kind_of(p.role, p.node, agents, self.sc.mobiles)
        started = before.get(p.pid, 0) if at_timeline is not None else None
        return resources.usage_of(p.pid, p.role, p.node, kind, ticks_before=started)

    def _read_before_stop(self, pid: int | None, start_time: int | None) -> None:
        """Keep the usage of a process a timeline step is about to stop: resources.json is
        read at the end, when it is gone (a fault scenario's HA, a restarted gateway)."""
        assert self.lab is not None
        record = next(
            (p for p in self.lab.state.processes if (p.pid, p.start_time) == (pid, start_time)),
            None,
        )
        usage = None if record is None else self._usage(record)
        if usage is not None:
            self._stopped_usage[(usage.pid, start_time)] = replace(usage, stopped_by_step=True)

    def _cpu_ticks(self) -> dict[int, int]:
        """Each running process's CPU time so far (clock ticks), by PID."""
        from testbed.scenario import resources

        assert self.lab is not None
        ticks = {p.pid: resources.ticks_of(p.pid) for p in self.lab.state.processes}
        return {pid: t for pid, t in ticks.items() if t is not None}

    # -- things that run ------------------------------------------------------------------

    def _spawn(
        self, node: str, role: str, argv: list[str], log: str
    ) -> tuple[ProcessRecord, subprocess.Popen]:
        assert self.lab is not None
        proc = spawn(self.lab.state, node, role, argv, self.logs_dir / log)
        return self.lab.state.processes[-1], proc

    # -- noticing dead agents and daemons ---------------------------------------------------

    def check_alive(self) -> None:
        """Raise :class:`ServiceDied` naming the first agent, client or daemon that exited
        on its own, with its exit status and the end of its log, in one line."""
        for label, proc in self._watched.items():
            status = proc.poll()
            if status is not None:
                record = self.services[label]
                raise ServiceDied(_died(f"service {label} on {record.node}", status, record.log))
        for label, (node, _writer) in self.vpn_nodes.items():
            charon = node.charon
            if charon.proc is not None and charon.proc.poll() is not None:
                raise ServiceDied(
                    _died(f"charon of {label}", charon.proc.returncode, str(charon.log_file))
                )
        if self.lab is None:
            return
        from testbed import netns

        for p in self.lab.state.processes:
            # the UDP probes run until teardown: one that ended left the streams without
            # data, which the metrics would read as an outage that never ended
            daemon = p.role == "relay" or p.role.startswith(("dhcp:", "probe:cn", "probe:mn"))
            if daemon and not netns.process_running(p.pid, p.start_time):
                raise ServiceDied(_died(f"{p.role} in {p.node}", None, p.log))

    def sleep(self, seconds: float) -> None:
        """Sleep, looking at the agents and daemons now and then: a dead one ends the run at
        once rather than after the timeline's waits have all timed out."""
        end = time.monotonic() + seconds
        while True:
            self.check_alive()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, WATCH_INTERVAL_S))

    def _start_captures(self) -> None:
        choice = self.options.pcap if self.options.pcap is not None else self.spec.pcap
        if choice == "all":
            networks = list(self.sc.plan.networks)
        elif choice == "none":
            networks = []
        elif isinstance(choice, str):  # "visited,office", as on the command line
            networks = [n for n in choice.split(",") if n]
        else:
            networks = list(choice)
        for network in networks:
            self._spawn(
                SW,
                f"capture:{network}",
                launch.capture_argv(network, self.paths.pcap / f"{network}.pcap", snaplen=512),
                f"tcpdump-{network}.log",
            )

    def _service_argv(self, service: ServiceSpec) -> list[str]:
        events = self.events_dir / f"{service.label}.jsonl"
        if service.kind == "dhcp-client":
            return launch.dhcp_watch_argv(service.iface, service.node, events)
        if service.kind == "command":
            assert service.argv is not None
            return launch.command_argv(service.argv)
        self.paths.configs.mkdir(exist_ok=True)
        config = self.paths.configs / f"{service.label}.yaml"
        config.write_text(yaml.safe_dump(self._agent_config(service), sort_keys=False))
        state = self.paths.state / f"{service.label}.json"
        return launch.agent_argv(str(service.agent), config, events, service.node, state)

    def _start_vpn(self, service: ServiceSpec) -> None:
        """One charon per node (strongSwan through vici), its events into the run's log."""
        from testbed.vpn.service import start_vpn_service

        assert self.lab is not None
        cfg = dict(service.config or {})
        writer = EventWriter.open(str(self.events_dir / f"{service.label}.jsonl"), service.node)
        try:
            # the daemon's files live in the lab's short state directory; its log is copied
            # into the results when it stops
            node = start_vpn_service(
                self.lab, service.node, cfg, self.lab.state.dir / service.label, writer.record
            )
        except BaseException:
            writer.close()
            raise
        self.vpn_nodes[service.label] = (node, writer)
        self.events.emit(
            "service_started",
            service=service.label,
            target=service.node,
            pid=node.charon.pid,
            kind="vpn",
            role=cfg["role"],
            esp="libipsec" if node.charon.config.esp_in_userspace else "kernel",
        )

    def _keep_vpn_log(self, label: str, node: Any) -> None:
        import shutil

        target = self.paths.vpn(label)
        target.mkdir(parents=True, exist_ok=True)
        for path in (node.charon.log_file, node.charon.config.conf_file):
            if Path(path).exists():
                shutil.copy(path, target / Path(path).name)

    def _agent_config(self, service: ServiceSpec) -> dict[str, Any]:
        """The agent's configuration, with a VPN service name resolved to its vici socket."""
        from testbed.vpn.service import agent_vpn_config

        config = dict(service.config or {})
        vpn = config.get("vpn")
        if isinstance(vpn, dict) and "service" in vpn:
            node, _ = self.vpn_nodes[vpn["service"]]
            service_cfg = next(s for s in self.spec.services if s.label == vpn["service"]).config
            config["vpn"] = agent_vpn_config(vpn, service_cfg, node.charon.vici_socket)
        if service.agent == "proxy" and config.get("gateway") is None:
            # one box: the proxy takes decrypted traffic from where this node's charon puts it
            config.setdefault("esp_in_userspace", self._esp_in_userspace(service.node))
        return config

    def _esp_in_userspace(self, node: str) -> bool:
        """Whether the charon of ``node`` (started, or as it will start) does ESP in userspace."""
        from testbed.features import use_libipsec

        for spec in self.spec.services:
            if spec.kind == "vpn" and spec.node == node and spec.label in self.vpn_nodes:
                return bool(self.vpn_nodes[spec.label][0].charon.config.esp_in_userspace)
        return use_libipsec()

    def start_service(self, service: ServiceSpec) -> None:
        if service.kind == "vpn":
            self._start_vpn(service)
            return
        record, proc = self._spawn(
            service.node,
            f"service:{service.label}",
            self._service_argv(service),
            f"{service.label}.log",
        )
        self.services[service.label] = record
        if service.kind in ("agent", "dhcp-client"):
            self._watched[service.label] = proc
        self.events.emit(
            "service_started", service=service.label, target=service.node, pid=record.pid
        )

    def service_spec(self, label: str) -> ServiceSpec:
        return next(s for s in self.spec.services if s.label == label)

    def stop_service(self, service: ServiceSpec, kill: bool = False) -> None:
        """Stop (SIGTERM, then SIGKILL after a grace) or kill a service, for a timeline step:
        its exit is no longer the testbed's failure. A VPN service that is not running is
        left as it is."""
        from testbed import netns
        from testbed.lab.teardown import stop_processes

        if service.kind == "vpn":
            if service.label in self.vpn_nodes:
                node, writer = self.vpn_nodes.pop(service.label)
                self._read_before_stop(node.charon.pid, node.charon.start_time)
                if kill and node.charon.pid:
                    netns.kill_process(node.charon.pid, node.charon.start_time, signal.SIGKILL)
                node.stop()
                writer.close()
                self._keep_vpn_log(service.label, node)
            return
        record = self.services[service.label]
        self._watched.pop(service.label, None)
        self._read_before_stop(record.pid, record.start_time)
        if kill:
            netns.kill_process(record.pid, record.start_time, signal.SIGKILL)
        else:
            stop_processes([(record.pid, record.start_time)])

    READY_EVENTS: ClassVar[dict[str, tuple[str, ...]]] = AGENT_READY_EVENTS

    def _wait_services_ready(self, timeout_s: float = 20.0) -> None:
        """Probes start only once agents are up: their start-up is not part of a handoff."""
        timeout_s = scaled(timeout_s)
        waiting = {
            s.node: self.READY_EVENTS[s.agent]
            for s in self.spec.services
            if s.kind == "agent" and s.agent in self.READY_EVENTS
        }
        deadline = time.monotonic() + timeout_s
        while waiting and time.monotonic() < deadline:
            self.check_alive()  # an agent that died at start-up: now, not at the deadline
            for event in self.new_events():
                names = waiting.get(event.get("node", ""))
                if names and event.get("event") in names:
                    del waiting[event["node"]]
            time.sleep(0.01)
        if waiting:
            raise StepFailed(f"agents not ready within {timeout_s:g} s: {', '.join(waiting)}")
        self.events.emit("services_ready")

    def _start_probe_streams(self, start_file: Path, ready: list[Path]) -> int:
        """Both ends start sending together once both have bound their sockets (a fixed
        head start was not enough for a Python start-up in a loaded or emulated machine):
        wait for their ready files (every probe's, with several mobile nodes), then write
        the start time they wait for."""
        deadline = time.monotonic() + scaled(PROBE_READY_S)
        while not all(path.exists() for path in ready):
            self.check_alive()
            if time.monotonic() > deadline:
                missing = ", ".join(p.name for p in ready if not p.exists())
                limit = scaled(PROBE_READY_S)
                raise ServiceDied(f"probes not ready within {limit:g} s ({missing})")
            time.sleep(0.01)
        start_ns = time.monotonic_ns() + PROBE_STARTUP_NS
        tmp = start_file.with_name(start_file.name + ".tmp")
        tmp.write_text(str(start_ns))
        os.replace(tmp, start_file)  # read whole or not at all
        return start_ns

    def _start_probes(self) -> None:
        probe = self.spec.probes
        if probe is None:
            return
        cn = str(self.sc.plan.address(probe.correspondent))
        start_file = self.paths.probes / ".start_ns"
        homes: list[str] = []
        ready: list[Path] = []
        for mobile in self.sc.probed:  # one pair of streams per mobile node, its own port
            home = str(probe.address or self.sc.plan.address(mobile))
            homes.append(home)
            port = self.sc.probe_port(mobile)
            cn_end: dict[str, Any] = {}
            mn_end: dict[str, Any] = {}
            if probe.directions in ("both", "down"):
                cn_end.update(out_stream=PROBE_DOWN, to=f"{home}:{port}")
                mn_end.update(in_stream=PROBE_DOWN, listen=port)
            if probe.directions in ("both", "up"):
                mn_end.update(out_stream=PROBE_UP, to=f"{cn}:{port}")
                if self.spec.mobility == "mip":  # applications use the home address
                    mn_end.update(source=home)
                cn_end.update(in_stream=PROBE_UP, listen=port)
            # several mobile nodes: each node's records in probes/NODE/, roles probe:cn:NODE
            suffix = f":{mobile}" if self.sc.many else ""
            for node, role, end in (
                (probe.correspondent, f"probe:cn{suffix}", cn_end),
                (mobile, f"probe:mn{suffix}", mn_end),
            ):
                ready.append(self.paths.probes / f".{role.replace(':', '-')}.ready")
                argv = launch.probe_argv(
                    self.paths.probes / self.sc.probe_dir(mobile),
                    probe.interval,
                    probe.size,
                    0,
                    ready=ready[-1],
                    start_file=start_file,
                    **end,
                )
                self._spawn(node, role, argv, f"{role.replace(':', '-')}.log")
        start_ns = self._start_probe_streams(start_file, ready)
        home = homes[0]
        if probe.tcp:
            port = probe.port + 1
            server = launch.tcpprobe_argv(
                "server",
                self.paths.probes,
                port,
                self.events_dir / "tcp-server.jsonl",
                probe.correspondent,
            )
            self._spawn(probe.correspondent, "probe:tcp-server", server, "tcp-server.log")
            time.sleep(0.2)  # listening before the client connects
            client = launch.tcpprobe_argv(
                "client",
                self.paths.probes,
                port,
                self.events_dir / "tcp-client.jsonl",
                probe.mobile,
                to=f"{cn}:{port}",
                bind=home,
            )
            self._spawn(probe.mobile, "probe:tcp-client", client, "tcp-client.log")
        if probe.icmp:
            for mobile, address in zip(self.sc.probed, homes, strict=True):
                self._spawn(
                    probe.correspondent,
                    f"probe:icmp:{mobile}" if self.sc.many else "probe:icmp",
                    launch.icmp_ping_argv(address),
                    f"ping-{mobile}.log" if self.sc.many else "ping-home.log",
                )
        self.events.emit(
            "probes_started",
            home=home,
            correspondent=cn,
            interval_ms=probe.interval,
            start_ns=start_ns,
            **({"nodes": list(self.sc.probed), "homes": homes} if self.sc.many else {}),
        )
        time.sleep(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))

    # -- the timeline ---------------------------------------------------------------------

    def _timeline(self) -> None:
        self._cpu_timeline = (os.times(), self._cpu_ticks())
        self.t0_ns = time.monotonic_ns()
        self.events.emit("timeline_start")
        previous_end = self.t0_ns
        total = len(self.spec.timeline)
        for i, step in enumerate(self.spec.timeline):
            # stretched with the time scale: on a slow machine a handoff must still be over
            # before the next move, as the scenario's author planned it
            if step.at is not None:
                target = self.t0_ns + int(scaled(step.at) * 1e6)
            elif step.after is not None:
                target = previous_end + int(scaled(step.after) * 1e6)
            else:
                target = previous_end
            delay = (target - time.monotonic_ns()) / 1e9
            if delay > 0:
                self.sleep(delay)
            else:
                self.check_alive()
            elapsed = (time.monotonic_ns() - self.t0_ns) / 1e9
            self.options.progress(f"  [{elapsed:6.2f}s] step {i + 1}/{total}: {describe(step)}")
            self.step_starts.append(time.monotonic_ns())
            self.events.emit("step", index=i, action=step.action, text=describe(step))
            carry_out(self, step, i)
            previous_end = time.monotonic_ns()

    def pause(self, why: str) -> None:
        from testbed.lab.mncli import run_cli

        assert self.lab is not None
        self.events.emit("pause", reason=why)
        print(f"*** paused ({why}); the run continues when you leave the shell (exit)")
        run_cli(self.lab)
        self.events.emit("resume")

    def new_events(self) -> list[dict[str, Any]]:
        """Events appended to any events file since the last call (for wait steps)."""
        fresh = self._events_tail.poll()
        self.events_read += fresh
        return fresh


def run_once(scenario: Scenario, options: RunOptions, run_dir: Path, index: int) -> RunRecord:
    """One repetition, with SIGTERM turned into the same clean exit as Ctrl-C.

    SIGINT is set to raise KeyboardInterrupt even where the process inherited it ignored:
    a shell without job control (a CI script's ``testbed run ... &``, ``nohup``) starts
    background commands with SIGINT ignored, and Python then leaves it so; a SIGINT sent to
    such a run would be lost and the run would go on to its end."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    if threading_is_main():
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _Run(scenario, options, run_dir, index).execute()
    finally:
        if threading_is_main():
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def ensure_ready() -> None:
    from testbed import features

    features.ensure_root()
    features.require_binaries("nft", "tc", "tcpdump", "dnsmasq", "conntrack")


def _died(what: str, status: int | None, log: str | None, lines: int = 3) -> str:
    """'WHAT exited with STATUS: the last lines of its log' on one line."""
    how = "exited" if status is None else f"exited with status {status}"
    tail = ""
    if log:
        try:
            with open(log, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 4096))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            text = ""
        last = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
        tail = ": " + " | ".join(last) if last else f" (empty log {log})"
    return f"{what} {how}{tail}"[:600]
