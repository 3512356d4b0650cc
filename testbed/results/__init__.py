"""Turning a run directory into things people and CI read: figures, reports, JUnit, diffs.

Everything here is file-in/file-out and needs neither root nor namespaces. The figure
functions import matplotlib, so they are loaded lazily: ``text_summary`` and ``compare``
stay cheap for the runner's end-of-run output.
"""

from __future__ import annotations

from typing import Any

from testbed.results.compare import CompareResult, compare, format_table
from testbed.results.junit import write_junit

__all__ = [
    "CompareResult",
    "compare",
    "format_table",
    "ladder",
    "probe_timeline",
    "render_report",
    "text_summary",
    "topology_diagram",
    "write_junit",
]

_LAZY = {
    "render_report": "testbed.results.report",
    "text_summary": "testbed.results.report",
    "probe_timeline": "testbed.results.plots",
    "ladder": "testbed.results.plots",
    "topology_diagram": "testbed.results.plots",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
