"""A class on one server (issue 18, item 5): N students run the same lab at the same time.

Run as root, from the repository:

    .venv/bin/python benchmarks/class_runs.py [--students 5 10] [--scenario FILE]
        [--results DIR] [--no-figures]

For each N, starts N ``testbed run --student=sNN FILE --results DIR/N`` at once (default:
lab 01), each as a student of its own (results in ``DIR/N/sNN/SCENARIO/RUN_ID``, a lab of
its own per run), waits for all, and prints, per N: how many passed (the scenario's
expectations and the lab README's ``expected`` block, ``testbed labcheck``), the wall time
of the whole class and each run's duration (p50, max), and each handoff's interruption
across the students (p50, p95, max), with the machine's load (``/proc/loadavg``) before and
after. One N at a time, the next after the previous has ended. Labs the runs build are
their own (``testbed run`` removes them); nothing else on the machine is touched.

The teachers' guide, ``labs/TEACHERS.md``, gives what this printed on the CI machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed import labcheck  # noqa: E402

LAB01 = ROOT / "labs/01-home-and-agent-discovery/scenario.yaml"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_class(n: int, scenario: Path, results: Path, figures: bool) -> dict:
    students = [f"s{i:02d}" for i in range(1, n + 1)]
    out = results / str(n)
    out.mkdir(parents=True, exist_ok=True)
    load_before = _load()
    started = time.monotonic()
    procs = {}
    for student in students:
        argv = [sys.executable, "-m", "testbed.cli", "run", f"--student={student}", str(scenario)]
        argv += ["--results", str(out)] + ([] if figures else ["--no-figures"])
        log = (out / f"{student}.log").open("w")
        procs[student] = (subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=log), log)
    codes = {}
    for student, (proc, log) in procs.items():
        codes[student] = proc.wait()
        log.close()
    wall = time.monotonic() - started
    load_after = _load()
    readme = scenario.parent / "README.md"
    rows = []
    for student in students:
        [run_dir] = [p.resolve() for p in (out / student).glob("*/latest")] or [None]
        summary = json.loads((run_dir / "summary.json").read_text()) if run_dir else {}
        checks = labcheck.check_run(readme, run_dir, scenario.name) if run_dir else []
        rows.append(
            {
                "student": student,
                "exit": codes[student],
                "passed": bool(summary.get("passed")),
                "labcheck": (sum(c.passed for c in checks), len(checks)),
                "duration_s": summary.get("duration_s"),
                "interruptions": [h["interruption_ms"] for h in summary.get("handoffs", [])],
                "run_dir": str(run_dir),
            }
        )
    return {
        "n": n,
        "wall_s": wall,
        "load_before": load_before,
        "load_after": load_after,
        "runs": rows,
    }


def report(result: dict) -> str:
    runs = result["runs"]
    n = result["n"]
    passed = sum(r["passed"] and r["exit"] == 0 for r in runs)
    checked = sum(r["labcheck"][0] == r["labcheck"][1] > 0 for r in runs)
    durations = [r["duration_s"] for r in runs if r["duration_s"] is not None]
    lines = [
        f"N={n}: {passed}/{n} runs passed their expectations, {checked}/{n} the README's "
        f"expected block; class wall time {result['wall_s']:.1f} s; each run "
        f"p50 {statistics.median(durations):.1f} s, max {max(durations):.1f} s; load "
        f"{result['load_before']} before, {result['load_after']} after",
    ]
    handoffs = max((len(r["interruptions"]) for r in runs), default=0)
    for index in range(handoffs):
        values = [
            r["interruptions"][index]
            for r in runs
            if len(r["interruptions"]) > index and r["interruptions"][index] is not None
        ]
        lines.append(
            f"  handoff {index}: interruption_ms across students p50 {_pct(values, 0.5):.1f}, "
            f"p95 {_pct(values, 0.95):.1f}, max {max(values):.1f} (n={len(values)})"
        )
    for r in runs:
        if not (r["passed"] and r["exit"] == 0):
            lines.append(f"  {r['student']}: exit {r['exit']}, see {r['run_dir']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, nargs="+", default=[5, 10], metavar="N")
    parser.add_argument("--scenario", type=Path, default=LAB01)
    parser.add_argument("--results", type=Path, default=Path("/tmp/class-runs"))
    parser.add_argument("--no-figures", action="store_true", help="reports without pictures")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("class_runs: run as root (testbed run builds namespaces)", file=sys.stderr)
        return 2
    uptime = subprocess.check_output(["uptime"], text=True).strip()
    print(f"{os.cpu_count()} CPUs; uptime: {uptime}", flush=True)
    worst = 0
    for n in args.students:
        result = run_class(n, args.scenario.resolve(), args.results, not args.no_figures)
        (args.results / str(n) / "class.json").write_text(json.dumps(result, indent=1))
        print(report(result), flush=True)
        worst = max(worst, 0 if all(r["passed"] for r in result["runs"]) else 1)
    return worst


if __name__ == "__main__":
    sys.exit(main())
