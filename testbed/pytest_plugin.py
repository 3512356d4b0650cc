"""pytest plugin: run a scenario from your own tests and assert on its summary.

Enabled automatically when the package is installed (entry point ``pytest11``)::

    def test_roaming(run_scenario):
        outcome = run_scenario("scenarios/roam-inside.yaml", repeat=3)
        assert outcome.passed, outcome.summary["expectations"]
        assert outcome.summary["handoffs"][0]["interruption_ms"] < 200

Results go under pytest's temporary directory unless ``results=`` is given. Scenarios need
root (network namespaces); without it the test is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def run_scenario(tmp_path: Path) -> Callable[..., Any]:
    if os.geteuid() != 0:
        pytest.skip("scenarios need root (network namespaces)")
    from testbed.scenario.execute import Outcome
    from testbed.scenario.execute import run_scenario as _run
    from testbed.scenario.runner import RunOptions

    def run(
        path: str | Path, *, results: Path | None = None, quiet: bool = True, **kwargs: Any
    ) -> Outcome:
        options = RunOptions(
            results=results or tmp_path / "results",
            progress=(lambda _line: None) if quiet else RunOptions().progress,
            pcap=kwargs.pop("pcap", None),
        )
        return _run(path, options, **kwargs)

    return run
