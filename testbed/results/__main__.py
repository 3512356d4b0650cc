"""``python -m testbed.results``: report, junit, compare and sample from the shell.

report RUN_DIR...                 write report.md/.html and figures, print the summary
junit OUT.xml RUN_DIR...          one JUnit file for several runs
compare BASELINE CURRENT [-t PCT] exit 1 on a regression
sample DIR                        write a synthetic run and render its report
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from testbed.summary import RunSummary


def _summary(path: Path) -> RunSummary:
    """A summary file (which must be one), or a run directory's (an empty summary for one
    without a readable summary: its report says what is missing)."""
    from testbed.results.rundata import summary_or_empty
    from testbed.summary import read_summary

    if path.is_file():
        return read_summary(path)
    return summary_or_empty(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.results")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("report", help="render report.md/.html for run directories")
    p.add_argument("runs", nargs="+", type=Path)
    p = sub.add_parser("junit", help="write JUnit XML for run directories")
    p.add_argument("out", type=Path)
    p.add_argument("runs", nargs="+", type=Path)
    p = sub.add_parser("compare", help="compare a run (or summary.json) with a baseline")
    p.add_argument("baseline", type=Path)
    p.add_argument("current", type=Path)
    p.add_argument("-t", "--tolerance-pct", type=float, default=10.0)
    p = sub.add_parser("sample", help="write a synthetic run directory and its report")
    p.add_argument("dir", type=Path)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    if args.command == "report":
        from testbed.results.report import render_report, text_summary

        for run in args.runs:
            print(text_summary(_summary(run)))
            print(f"report: {render_report(run)}")
        return 0
    if args.command == "junit":
        from testbed.results.junit import write_junit

        print(write_junit([_summary(run) for run in args.runs], args.out))
        return 0
    if args.command == "compare":
        from testbed.results.compare import compare, format_table

        result = compare(_summary(args.baseline), _summary(args.current), args.tolerance_pct)
        print(format_table(result))
        return 0 if result.ok else 1
    from testbed.results.report import render_report
    from testbed.results.sample import write_sample_run

    print(render_report(write_sample_run(args.dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
