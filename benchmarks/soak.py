"""Soak (issue 15, item 6): do the tests pass every time, not most times?

Two soaks, each printing a table and the first failure of every test that failed:

  faults  every test that drives a fault scenario of tests/scenarios/ (gateway restarts, NAT
          rebinding, stale advertisements, the proxy twice, gaps, delays, every step kind),
          --repeat times in a row; one pytest process per round, all tests in each round.
  suite   the whole suite --repeat times in a row (./setup.sh test on the first round, as
          CI does).

Both run on a fresh clone of --rev with its own .venv (./setup.sh), never on the working
tree: a soak takes half an hour or more, and files edited meanwhile must not leak into it.

Run as root:  .venv/bin/python benchmarks/soak.py faults --repeat 20
              .venv/bin/python benchmarks/soak.py suite --repeat 5 [--rev HEAD]
              [--lock /tmp/tb-heavy.lock]  (hold this lock during each round, so that other
              heavy work on a shared machine waits instead of overlapping)

A failure is a finding: its output is kept under --keep (default /tmp/tb-soak-<pid>).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The tests that run a fault scenario of tests/scenarios/ (found with
# grep -n "tests/scenarios\|SCENARIOS /" tests/integration); dead-agent, failing and long are
# fixtures of failure reporting and interruption, whose tests are in the suite soak.
FAULT_TESTS = (
    "tests/integration/test_boundary.py::test_outside_mn_survives_nat_rebind_and_gateway_restart",
    "tests/integration/test_boundary.py::test_a_restarted_gateway_takes_ike_only_once_configured",
    "tests/integration/test_boundary.py::test_outside_mn_retries_until_a_restarted_gateway_takes_it",
    "tests/integration/test_agents.py::test_frames_in_flight_do_not_follow_a_move",
    "tests/integration/test_proxy.py::test_one_box_proxy_keeps_mobile_ip_control_out_of_the_vpn",
    "tests/integration/test_proxy.py::test_proxy_twice_outside_and_correspondent_opened_traffic",
    "tests/integration/test_scenarios.py::test_gap_move_interruption_and_loss",
    "tests/integration/test_scenarios.py::test_delay_shows_in_one_way_delay",
    "tests/integration/test_scenarios.py::test_nat_rebind_changes_the_external_port",
    "tests/integration/test_scenarios.py::test_every_step_kind",
)


@dataclass
class Tally:
    passed: int = 0
    failed: int = 0
    seconds: list[float] = field(default_factory=list)
    first_failure: str = ""


@contextlib.contextmanager
def held(lock: Path | None) -> Iterator[None]:
    if lock is None:
        yield
        return
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_junit(path: Path) -> list[tuple[str, str, float, str]]:
    """(node id, outcome, seconds, message) per test case of a pytest JUnit file."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/") + ".py"
        node = f"{module}::{case.get('name')}"
        outcome, message = "passed", ""
        for kind in ("failure", "error"):
            found = case.find(kind)
            if found is not None:
                outcome = "failed"
                message = (found.get("message") or "") + "\n" + (found.text or "")
        if case.find("skipped") is not None:
            outcome = "skipped"
        cases.append((node, outcome, float(case.get("time", 0)), message))
    return cases


@contextlib.contextmanager
def fresh_clone(rev: str) -> Iterator[Path]:
    """A clone of ``rev`` with its own .venv, removed afterwards."""
    clone = Path(tempfile.mkdtemp(prefix="tb-soak-clone-"))
    try:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", rev], check=True)
        head = subprocess.run(
            ["git", "-C", str(clone), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        print(f"fresh clone of {head} in {clone}", flush=True)
        yield clone
    finally:
        shutil.rmtree(clone, ignore_errors=True)


def soak_faults(repeat: int, rev: str, lock: Path | None, keep: Path) -> int:
    with fresh_clone(rev) as clone:
        subprocess.run(["./setup.sh"], cwd=clone, check=True)
        return _soak_faults(clone, repeat, lock, keep)


def _soak_faults(clone: Path, repeat: int, lock: Path | None, keep: Path) -> int:
    tallies = {test: Tally() for test in FAULT_TESTS}
    python = clone / ".venv" / "bin" / "python"
    for round_ in range(1, repeat + 1):
        junit = keep / f"faults-{round_}.xml"
        with held(lock):
            started = time.monotonic()
            done = subprocess.run(
                [str(python), "-m", "pytest", "-q", f"--junitxml={junit}", *FAULT_TESTS],
                cwd=clone,
                capture_output=True,
                text=True,
            )
        (keep / f"faults-{round_}.log").write_text(done.stdout + done.stderr)
        if not junit.exists():
            print(f"round {round_}: pytest wrote no JUnit (exit {done.returncode})", flush=True)
            return 2
        for node, outcome, seconds, message in read_junit(junit):
            tally = tallies.setdefault(node, Tally())
            tally.seconds.append(seconds)
            if outcome == "failed":
                tally.failed += 1
                tally.first_failure = tally.first_failure or f"round {round_}: {message}"
            elif outcome == "passed":
                tally.passed += 1
        failed = sum(t.failed for t in tallies.values())
        print(
            f"round {round_}/{repeat}: exit {done.returncode}, "
            f"{time.monotonic() - started:.0f} s, failures so far {failed}",
            flush=True,
        )
    print(f"\n{'test':<72} {'passed':>6} {'failed':>6} {'median s':>8}")
    for node, tally in tallies.items():
        seconds = sorted(tally.seconds) or [0.0]
        median = seconds[len(seconds) // 2]
        print(f"{node.split('::')[-1]:<72} {tally.passed:>6} {tally.failed:>6} {median:>8.1f}")
    for node, tally in tallies.items():
        if tally.first_failure:
            print(f"\n--- {node}\n{tally.first_failure[:3000]}")
    return 1 if any(t.failed for t in tallies.values()) else 0


def soak_suite(repeat: int, rev: str, lock: Path | None, keep: Path) -> int:
    outcomes = []
    with fresh_clone(rev) as clone:
        for round_ in range(1, repeat + 1):
            # round 1 is what CI runs (setup, then the suite); later rounds reuse that .venv
            junit = keep / f"suite-{round_}.xml"
            command = (
                ["./setup.sh", "test", f"--junitxml={junit}"]
                if round_ == 1
                else [".venv/bin/python", "-m", "pytest", "-q", f"--junitxml={junit}"]
            )
            with held(lock):
                started = time.monotonic()
                done = subprocess.run(command, cwd=clone, capture_output=True, text=True)
            seconds = time.monotonic() - started
            (keep / f"suite-{round_}.log").write_text(done.stdout + done.stderr)
            cases = read_junit(junit) if junit.exists() else []
            failed = [node for node, outcome, _, _ in cases if outcome == "failed"]
            passed = sum(1 for _, outcome, _, _ in cases if outcome == "passed")
            outcomes.append((round_, done.returncode, passed, failed, seconds))
            print(
                f"round {round_}/{repeat}: exit {done.returncode}, {passed} passed, "
                f"{len(failed)} failed, {seconds:.0f} s  {' '.join(failed)}",
                flush=True,
            )
    clean = sum(1 for _, code, _, failed, _ in outcomes if code == 0 and not failed)
    print(f"\n{clean} of {len(outcomes)} suite runs passed on a fresh clone of {rev}")
    return 0 if clean == len(outcomes) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("faults", "suite"))
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--rev", default="HEAD", help="the revision to clone")
    parser.add_argument("--lock", type=Path, help="a lock file to hold during each round")
    parser.add_argument("--keep", type=Path, help="where logs and JUnit files go")
    args = parser.parse_args()
    # Started in the background (nohup ... &), this process inherits SIGINT ignored and would
    # pass that on to every test; CI runs the suite in the foreground. A handled signal is
    # reset to the default in the programs it starts.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.geteuid() != 0:
        print("soak: run as root (the tests build network namespaces)", file=sys.stderr)
        return 2
    keep = args.keep or Path(f"/tmp/tb-soak-{os.getpid()}")
    keep.mkdir(parents=True, exist_ok=True)
    print(f"logs and JUnit files in {keep}", flush=True)
    if args.what == "faults":
        return soak_faults(args.repeat, args.rev, args.lock, keep)
    return soak_suite(args.repeat, args.rev, args.lock, keep)


if __name__ == "__main__":
    sys.exit(main())
