"""The ``testbed`` command line.

Exit status: 0 success, 1 a check failed (e.g. a scenario expectation), 2 invalid input or
a set-up error (one line on stderr saying what and where; nothing left half-built).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mipbase import clock
from mipbase.specfile import SpecError

if TYPE_CHECKING:  # types only: each command imports what it uses when it runs
    from testbed.scenario.execute import Outcome
    from testbed.summary import RunSummary

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input that is not a spec file error (unknown lab, node, network...)."""


def _lab(name: str):
    from testbed.lab.lab import Lab

    return Lab.open(name)


def cmd_up(args: argparse.Namespace) -> int:
    from testbed import student as students
    from testbed.lab.builder import build
    from testbed.lab.show import describe
    from testbed.topology import load_topology

    plan = load_topology(args.topology)
    student = students.current(args.student)
    name = students.lab_name(args.name, student, plan.name.replace("_", "-"))
    started = time.perf_counter()
    state = build(plan, name, student=student)
    took = time.perf_counter() - started
    if not args.quiet:
        print(describe(plan))
        print()
    print(
        f"lab {name} is up in {took * 1000:.0f} ms ({len(plan.nodes)} nodes, "
        f"{len(plan.networks)} networks, impairments: {state.impairment_path})"
    )
    print(f"  testbed exec {name} NODE -- CMD   |   testbed cli {name}   |   testbed down {name}")
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    from testbed.lab.state import LabState
    from testbed.lab.teardown import destroy

    for name in args.names:
        started = time.perf_counter()
        destroy(LabState.load(name))
        print(f"lab {name} removed in {(time.perf_counter() - started) * 1000:.0f} ms")
    return EXIT_OK


def cmd_ls(args: argparse.Namespace) -> int:
    from testbed.lab.show import lab_table
    from testbed.lab.state import all_labs

    labs = all_labs()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": x.name,
                        "kind": x.kind,
                        "student": x.student,
                        "ready": x.ready,
                        "topology": x.topology,
                        "namespaces": x.namespaces,
                    }
                    for x in labs
                ]
            )
        )
    else:
        print(lab_table(labs))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from testbed.lab.show import describe

    lab = _lab(args.name)
    print(describe(lab.plan, lab.state.attachments))
    return EXIT_OK


def cmd_exec(args: argparse.Namespace) -> int:
    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not argv:
        raise UsageError("exec needs a command after --, e.g. testbed exec LAB ha -- ip addr")
    lab = _lab(args.name)
    try:
        lab.exec(args.node, argv)  # does not return
    except FileNotFoundError:
        raise UsageError(f"{args.node}: command not found: {argv[0]}") from None
    except PermissionError:
        raise UsageError(f"{args.node}: cannot execute {argv[0]}: permission denied") from None
    return EXIT_OK


def cmd_cli(args: argparse.Namespace) -> int:
    from testbed.lab.mncli import run_cli

    run_cli(_lab(args.name))
    return EXIT_OK


def cmd_move(args: argparse.Namespace) -> int:
    if not args.gap >= 0:
        raise UsageError(f"--gap cannot be negative: {args.gap:g} ms")
    lab = _lab(args.name)
    times = lab.move(args.node, args.network, args.gap, args.iface)
    took = (times.link_up_ns - times.link_down_ns) / 1e6
    print(f"{args.node} moved to {args.network} (carrier off for {took:.1f} ms)")
    return EXIT_OK


def cmd_capture(args: argparse.Namespace) -> int:
    lab = _lab(args.name)
    out = args.write or f"{args.name}-{args.network}.pcap"
    proc = lab.capture(
        args.network, "-" if out == "-" else os.path.abspath(out), bpf=args.filter or None
    )
    if out != "-":
        print(
            f"capturing {args.network} of {args.name} into {out} (Ctrl-C to stop)", file=sys.stderr
        )
    try:
        proc.wait(timeout=args.duration)
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=5)
    return EXIT_OK


def cmd_clean(args: argparse.Namespace) -> int:
    from testbed import student
    from testbed.lab.clean import clean

    cleaned = clean(
        include_idle_labs=args.all, student=student.current(args.student), any_student=args.any
    )
    print("\n".join(f"removed {what}" for what in cleaned.removed) or "nothing to clean")
    for why in cleaned.skipped:  # never a lab whose owner is alive, unless named to 'down'
        print(f"skipped {why}")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from testbed import features

    try:
        features.ensure_root()
    except PermissionError as exc:
        print(f"testbed doctor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    found = features.detect(refresh=True)
    print(f"kernel {found.kernel}")
    for name in ("netem", "ipip", "esp", "openvswitch", "bridge_nft", "tbf"):
        print(f"  {name:<12} {'yes' if getattr(found, name) else 'no'}")
    print("paths:")
    for feature, path in found.paths().items():
        print(f"  {feature:<18} {path}")
    tun = features.tun_available()
    print(
        f"  {'tun device':<18} {features.TUN_DEVICE} " + ("ok" if tun else "MISSING: modprobe tun")
    )
    print("versions:")
    for component, version, tested in features.versions():
        print(f"  {component:<18} {version:<10} {'ok' if tested else 'untested here'}")
    missing = features.missing_packages()
    print("system packages:")
    for pkg, binary, why in features.SYSTEM_PACKAGES:
        ok = Path(binary).exists()
        print(f"  {pkg:<28} {'ok' if ok else 'MISSING':<8} {why}")
    if missing:
        print("run ./setup.sh to install what is missing")
    return EXIT_FAILED if missing or not tun else EXIT_OK


def _is_scenario(file: str) -> bool:
    from mipbase.specfile import load_spec

    data = load_spec(file).data
    return isinstance(data, dict) and ("timeline" in data or "topology" in data)


def _complain(message: object) -> None:
    print(f"testbed: {message}", file=sys.stderr)


def _validate_one(file: str) -> str:
    """``FILE: ok (...)`` for a valid topology or scenario file; raises on a bad one."""
    from testbed.scenario.load import load_scenario
    from testbed.topology import load_topology

    if _is_scenario(file):
        scenario = load_scenario(file)
        return (
            f"{file}: ok (scenario {scenario.name}: {len(scenario.spec.timeline)} steps, "
            f"{len(scenario.spec.expect)} expectations, topology {scenario.plan.name})"
        )
    plan = load_topology(file)
    return (
        f"{file}: ok (topology {plan.name}: {len(plan.nodes)} nodes, {len(plan.networks)} networks)"
    )


def cmd_validate(args: argparse.Namespace) -> int:
    """Every file is checked; each bad one is one line on stderr (exit 2 if any)."""
    worst = EXIT_OK
    for file in args.files:
        try:
            print(_validate_one(file))
        except SpecError as exc:
            _complain(exc)
            worst = EXIT_USAGE
    return worst


def cmd_run(args: argparse.Namespace) -> int:
    """Every scenario file and option is checked before the first lab is built: bad options
    stop everything, a bad file is reported (and is a JUnit error) while the good ones run.
    """
    from testbed import student
    from testbed.scenario import execute
    from testbed.scenario.runner import RunOptions

    pcap = (
        None
        if args.pcap is None
        else (args.pcap if args.pcap in ("all", "none") else args.pcap.split(","))
    )
    try:  # a student's runs go to RESULTS/STUDENT/SCENARIO/RUN_ID
        results = student.results_root(args.results, student.current(args.student))
    except ValueError as exc:
        _complain(exc)
        return EXIT_USAGE
    options = RunOptions(
        results=Path(results),
        pcap=pcap,
        pause_on_error=args.pause_on_error,
        interactive=args.cli,
        figures=not args.no_figures,
    )
    summaries: list[RunSummary] = []
    try:  # what applies to every file
        execute.check_repeat(args.repeat)
        execute.check_tolerance(args.tolerance, args.tolerance_ms, args.min_samples)
        baseline = execute.check_baseline(args.baseline) if args.baseline else None
    except ValueError as exc:
        _complain(exc)
        _write_junit(args, [execute.invalid_summary("testbed run", str(exc))])
        return EXIT_USAGE
    worst = EXIT_OK
    runnable = []
    for file in args.scenarios:
        try:
            execute.check_pcap(execute.load_scenario(file, args.set), pcap)
            runnable.append(file)
        except SpecError as exc:
            _complain(exc)
            summaries.append(execute.invalid_summary(file, str(exc)))
            worst = EXIT_USAGE
    try:  # root, system packages
        execute.ensure_ready()
    except (PermissionError, RuntimeError) as exc:
        _complain(exc)
        _write_junit(args, [*summaries, execute.invalid_summary("testbed run", str(exc))])
        return EXIT_USAGE
    for file in runnable:
        try:
            outcome = execute.run_scenario(
                file,
                options,
                repeat=args.repeat,
                baseline=baseline,
                tolerance_pct=args.tolerance,
                tolerance_ms=args.tolerance_ms,
                min_samples=args.min_samples,
                overrides=args.set,
            )
        except (SpecError, ValueError, LookupError, RuntimeError, OSError) as exc:
            # changed since it was checked, a missing system package...: the others still run
            _complain(exc)
            summaries.append(execute.invalid_summary(file, str(exc)))
            worst = max(worst, EXIT_USAGE)
            continue
        summaries.append(outcome.run_summary)
        _print_outcome(outcome)
        if outcome.exit_code == execute.EXIT_INTERRUPTED:
            worst = execute.EXIT_INTERRUPTED
            break
        worst = max(worst, outcome.exit_code)
    _write_junit(args, summaries)
    return worst


def _write_junit(args: argparse.Namespace, summaries: list[RunSummary]) -> None:
    if args.junit:
        from testbed.results.junit import write_junit

        write_junit(summaries, Path(args.junit))


def _print_outcome(outcome: Outcome) -> None:
    summary = outcome.run_summary
    try:
        from testbed.results.report import text_summary
    except ImportError:
        text_summary = None
    if text_summary is not None:
        print(text_summary(summary))
    else:
        for exp in summary.expectations:
            mark = "PASS" if exp.passed else "FAIL"
            print(f"  {mark}  {exp.name}: {exp.value}")
    for regression in outcome.regressions:
        print(f"  REGRESSION  {regression}")
    verdict = summary.verdict or ("passed" if summary.passed else "failed")
    verdict = verdict if verdict == "passed" else verdict.upper()
    if summary.error:
        verdict += f" ({summary.error})"
    print(f"{summary.scenario}: {verdict}  ({outcome.run_dir})")


def cmd_list(args: argparse.Namespace) -> int:
    from mipbase.specfile import load_spec

    root = Path(args.directory)
    for path in sorted(root.rglob("*.yaml")):
        try:
            data = load_spec(path).data
        except SpecError as exc:
            print(f"{path}  (invalid: {exc.message})")
            continue
        if isinstance(data, dict):
            print(f"{path!s:<40} {data.get('description', '')}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from testbed.results.report import render_report
    from testbed.scenario.execute import rebuild_summary

    for run_dir in args.run_dirs:
        if not (Path(run_dir) / "summary.json").exists():
            # a run that was killed: its events and probe records are there
            rebuild_summary(Path(run_dir))
            print(f"{run_dir}: the run was killed; summary.json rebuilt from its events and probes")
        print(render_report(Path(run_dir)))
    return EXIT_OK


ARCHITECTURES = (
    "scenarios/roam-nat.yaml",  # RFC 5266: MOBIKE, mode mc outside
    "scenarios/proxy-roam.yaml",  # seed 003: MIP proxy beside the gateway (two boxes)
    "scenarios/proxy-onebox-roam.yaml",  # seed 003: MIP proxy on the gateway (one box)
    "scenarios/dual-roam.yaml",  # RFC 5265: x-MIP underneath the VPN, i-MIP through it
)


def _cases() -> list[str]:
    from testbed.results.cases import CASES

    return list(CASES)


def cmd_architectures(args: argparse.Namespace) -> int:
    """The same movement under each architecture: one table and one plot."""
    from testbed.results.architectures import collect, plot, plot_signalling, table
    from testbed.summary import read_summary

    runs: list[Path] = [Path(r) for r in args.runs or []]
    worst = EXIT_OK
    if not runs:
        from testbed.scenario.execute import run_scenario
        from testbed.scenario.runner import RunOptions

        # captures: the overhead on the mobile node's links is measured from them
        options = RunOptions(results=Path(args.results), pcap="all")
        for scenario in args.scenarios or ARCHITECTURES:
            if args.case:
                from testbed.results.cases import apply_case

                generated = Path(args.results) / "architectures" / "scenarios"
                scenario = str(apply_case(Path(scenario), args.case, generated))
            outcome = run_scenario(scenario, options, repeat=args.repeat)
            _print_outcome(outcome)
            worst = max(worst, outcome.exit_code)
            runs.append(outcome.run_dir)
    results = {}
    for run in runs:
        results[read_summary(run / "summary.json").scenario] = collect(run, inner=args.inner)
    out = Path(args.results) / "architectures" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    from testbed.features import data_paths

    paths = ", ".join(f"{k}: {v}" for k, v in data_paths().items())
    text = f"Measured on {paths}.\n\n" + table(results, inner=args.inner)
    (out / "table.md").write_text(text)
    plot(results, out / "interruption.png")
    plot_signalling(results, out / "signalling.png")
    print(text)
    print(f"table and plots in {out}")
    return worst


def cmd_compare(args: argparse.Namespace) -> int:
    from testbed.results.compare import Tolerance, compare, format_table
    from testbed.summary import SummaryError, read_summary

    def load(path: str) -> RunSummary:
        file = Path(path)
        file = file / "summary.json" if file.is_dir() else file
        try:
            return read_summary(file)
        except SummaryError as exc:
            raise UsageError(str(exc)) from None

    tolerance = Tolerance(
        pct=args.tolerance, ms=args.tolerance_ms, min_samples=args.min_samples
    )  # a bad value: a ValueError, one line and exit 2
    result = compare(load(args.baseline), load(args.current), tolerance)
    print(format_table(result, all_rows=not args.brief))
    return EXIT_OK if result.ok else EXIT_FAILED


def cmd_schema(args: argparse.Namespace) -> int:
    if args.kind == "events":  # the catalogue wait steps and phases_ms are checked against
        from testbed.scenario import catalogue

        print(
            json.dumps(
                {
                    "events": catalogue.EVENTS,
                    "phases": catalogue.PHASES,
                    "handoff_fields": {k: v[1] for k, v in catalogue.HANDOFF_FIELDS.items()},
                },
                indent=1,
            )
        )
        return EXIT_OK
    if args.kind == "scenario":
        from testbed.scenario.model import ScenarioSpec as Model
    elif args.kind == "summary":
        from testbed.summary import RunSummary as Model  # type: ignore[assignment]
    else:
        from testbed.topology.model import TopologySpec as Model  # type: ignore[assignment]
    print(json.dumps(Model.model_json_schema(by_alias=True), indent=1))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Until scenarios exist: bring the enterprise up, show reachability, tear it down."""
    from testbed.lab.builder import build
    from testbed.lab.lab import Lab
    from testbed.lab.show import describe
    from testbed.topology import load_topology

    plan = load_topology(Path(__file__).resolve().parent.parent / "topologies/enterprise.yaml")
    name = f"demo-{os.getpid()}"
    started = time.perf_counter()
    lab = Lab(build(plan, name, kind="run"), plan)
    print(describe(plan))
    print(f"\nlab {name} up in {(time.perf_counter() - started) * 1000:.0f} ms\n")
    try:
        checks = [
            ("cn", "10.1.0.1", "home -> home"),
            ("cn", "192.0.2.10", "intranet -> DMZ"),
            ("cn", "203.0.113.1", "intranet -> Internet (NAT)"),
            ("isp", "10.1.0.1", "Internet -> home (must fail)"),
            ("nat", "192.0.2.10", "Internet -> DMZ ping (firewalled)"),
        ]
        for node, target, label in checks:
            result = lab.run(node, ["ping", "-c1", "-W1", target], check=False)
            rtt = next(
                (w.split("=")[1] for w in result.stdout.split() if w.startswith("time=")), None
            )
            print(
                f"  {label:<36} {node} -> {target:<13} "
                f"{'reply ' + rtt + ' ms' if rtt else 'no reply'}"
            )
    finally:
        started = time.perf_counter()
        lab.down()
        print(f"\nlab {name} down in {(time.perf_counter() - started) * 1000:.0f} ms")
    return EXIT_OK


def _gate_options(p: argparse.ArgumentParser) -> None:
    """--tolerance, --tolerance-ms, --min-samples: what a regression against a baseline is."""
    from testbed.results.compare import (
        DEFAULT_MIN_SAMPLES,
        DEFAULT_TOLERANCE_MS,
        DEFAULT_TOLERANCE_PCT,
    )

    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE_PCT,
        metavar="PCT",
        help="a move's metric regresses when it is confidently slower than the baseline by "
        "more than PCT %% of the baseline's median, or --tolerance-ms if more "
        "(default %(default)s)",
    )
    p.add_argument(
        "--tolerance-ms",
        type=float,
        default=DEFAULT_TOLERANCE_MS,
        metavar="MS",
        help="the absolute tolerance (default %(default)s)",
    )
    p.add_argument(
        "--min-samples",
        type=int,
        default=DEFAULT_MIN_SAMPLES,
        metavar="N",
        help="fewer values a side: reported as not judged, never a regression (default "
        "%(default)s; 1 compares single runs pair by pair)",
    )


def _student_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--student",
        metavar="NAME",
        help=f"{what} (default $TESTBED_STUDENT; empty: no student). A class on one server: "
        "see labs/TEACHERS.md",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="testbed", description="Mobile IPv4 across enterprise security boundaries"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("up", help="build a topology into a persistent lab")
    p.add_argument("topology")
    p.add_argument(
        "--name",
        help="lab name (default: the topology's name; for a student, TOPOLOGY-STUDENT, and a "
        "name must end in -STUDENT)",
    )
    _student_option(p, "whose lab it is")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="remove labs")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("ls", help="list labs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("show", help="describe a lab's nodes, addresses and attachments")
    p.add_argument("name")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("exec", help="run a command inside a node: exec LAB NODE -- CMD...")
    p.add_argument("name")
    p.add_argument("node")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("cli", help="interactive shell onto the nodes (Mininet's CLI)")
    p.add_argument("name")
    p.set_defaults(func=cmd_cli)

    p = sub.add_parser("move", help="move a node to another network (carrier off/on)")
    p.add_argument("name")
    p.add_argument("node")
    p.add_argument("network")
    p.add_argument(
        "--gap", type=float, default=0.0, metavar="MS", help="time attached nowhere, in ms"
    )
    p.add_argument("--iface", help="which interface, for nodes with several")
    p.set_defaults(func=cmd_move)

    p = sub.add_parser("capture", help="capture a network's frames into a pcap")
    p.add_argument("name")
    p.add_argument("network")
    p.add_argument("-w", "--write", help="pcap file, or - for stdout (default LAB-NET.pcap)")
    p.add_argument("--duration", type=float, help="seconds (default: until Ctrl-C)")
    p.add_argument("filter", nargs="?", help="capture filter, e.g. 'udp port 434'")
    p.set_defaults(func=cmd_capture)

    p = sub.add_parser("clean", help="remove what killed runs of this tool left behind")
    p.add_argument(
        "--all",
        action="store_true",
        help="also remove labs made by 'testbed up' (never a lab whose owner process is alive: "
        "those are skipped; 'testbed down NAME' removes one), of this student only: another "
        "student's are skipped",
    )
    _student_option(p, "who is cleaning: --all removes this student's idle labs")
    p.add_argument(
        "--any-student",
        dest="any",
        action="store_true",
        help="with --all: every student's idle labs too (the teacher, after class)",
    )
    p.set_defaults(func=cmd_clean)

    p = sub.add_parser("doctor", help="kernel features, packages and the path each takes")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("run", help="run scenarios, measure handoffs, check expectations")
    p.add_argument("scenarios", nargs="+", metavar="SCENARIO")
    p.add_argument("--repeat", type=int, help="override the scenario's repeat")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a scenario field before it is checked (repeatable; VALUE is YAML): "
        "--set timeline[0].move.to=office --set 'topology.overrides.networks.visited.impair="
        "{delay: 20ms}'",
    )
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    p.add_argument("--baseline", metavar="SUMMARY", help="fail on regression against it")
    _gate_options(p)
    p.add_argument("--cli", action="store_true", help="pause steps open the interactive shell")
    p.add_argument("--pause-on-error", action="store_true")
    p.add_argument("--pcap", metavar="none|all|NET,...", help="networks to capture")
    p.add_argument(
        "--results",
        default="results",
        metavar="DIR",
        help="results root: DIR/SCENARIO/RUN_ID, for a student DIR/STUDENT/SCENARIO/RUN_ID "
        "(default results)",
    )
    _student_option(p, "whose runs these are (results in RESULTS/STUDENT)")
    p.add_argument(
        "--no-figures",
        action="store_true",
        help="write the report without its pictures (matplotlib is slow on an emulated CPU)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("list", help="scenarios with their descriptions")
    p.add_argument("directory", nargs="?", default="scenarios")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("report", help="re-render a run's report")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.set_defaults(func=cmd_report)

    from testbed.results import gallery  # testbed gallery: docs/gallery/

    gallery.register(sub)

    p = sub.add_parser("compare", help="compare two summaries (exit 1 on regression)")
    p.add_argument("baseline")
    p.add_argument("current")
    _gate_options(p)
    p.add_argument("--brief", action="store_true", help="only the interruptions and what is not ok")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "architectures",
        help="the same movement under MOBIKE (mc), the MIP proxy (one and two boxes) and "
        "dual MIP: a comparison table and plot",
    )
    p.add_argument("scenarios", nargs="*", help=f"default: {' '.join(ARCHITECTURES)}")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--results", default="results")
    p.add_argument("--runs", nargs="+", metavar="RUN_DIR", help="tabulate these runs instead")
    p.add_argument(
        "--case",
        choices=sorted(_cases()),
        help="change the network the same way for every architecture (where does it break?)",
    )
    p.add_argument(
        "--inner", type=int, default=92, help="inner packet (a probe: 92 B) for the overhead"
    )
    p.set_defaults(func=cmd_architectures)

    p = sub.add_parser("validate", help="check topology and scenario files")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "schema",
        help="JSON Schema of the topology or scenario format (for editors), or of a run's "
        "summary.json; events: the event and phase names",
    )
    p.add_argument("kind", choices=["topology", "scenario", "summary", "events"])
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("agent", help="run a Mobile IP agent (ha, fa, mn, proxy) in this namespace")
    from agents.runtime.main import add_arguments, run

    add_arguments(p)
    p.set_defaults(func=run)

    p = sub.add_parser("demo", help="bring the enterprise up, show it, tear it down")
    p.set_defaults(func=cmd_demo)

    from testbed import answers, mip_cli  # testbed labcheck (expected blocks, answers)
    from testbed import inspect as run_inspect  # testbed state / testbed events
    from testbed.watch import server as watch_server  # testbed watch

    run_inspect.register(sub)
    watch_server.register(sub)
    mip_cli.register(sub)
    answers.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        clock.factor()  # a bad TESTBED_TIME_SCALE: one line now, not deep in a run
        return int(args.func(args) or 0)
    except SpecError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
    except (LookupError, UsageError, ValueError) as exc:
        print(f"testbed: {exc.args[0] if exc.args else exc}", file=sys.stderr)
    except PermissionError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("testbed: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # BuildError, missing system packages
        print(f"testbed: {exc}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
