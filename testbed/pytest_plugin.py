"""pytest plugin: run a scenario from your own tests and assert on its summary.

Enabled automatically when the package is installed (entry point ``pytest11``)::

    def test_roaming(run_scenario):
        outcome = run_scenario("scenarios/roam-inside.yaml", repeat=3)
        assert outcome.passed, outcome.run_summary.reasons
        assert outcome.run_summary.handoffs[0].interruption_ms < 200

``run_scenario(path, *, results=None, quiet=True, pcap=None, repeat=None, junit=None,
baseline=None, tolerance_pct=10.0)`` returns an Outcome (``run_summary``, the typed
``testbed.summary.RunSummary``; ``summary``, the same as summary.json's JSON data;
``run_dir``, ``exit_code``, ``passed``, ``verdict``, ``regressions``). Results go under pytest's
temporary directory unless ``results=`` is given. Bad input raises SpecError (or
InvalidRun, a ValueError) before anything is built.

Scenarios need root (network namespaces); without it the test is skipped, or fails when
pytest runs with ``--testbed-require-root`` (or ``testbed_require_root = true`` in the ini
file, or ``TESTBED_REQUIRE_ROOT=1``): a CI job that must run them cannot pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

NEEDS_ROOT = "scenarios need root (network namespaces)"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--testbed-require-root",
        action="store_true",
        default=False,
        help="run_scenario fails instead of skipping when not root",
    )
    parser.addini(
        "testbed_require_root",
        type="bool",
        default=False,
        help="run_scenario fails instead of skipping when not root",
    )


def require_root(config: pytest.Config) -> bool:
    """Whether a test that needs root must fail (not skip) without it."""
    env = os.environ.get("TESTBED_REQUIRE_ROOT", "").strip().lower()
    return (
        bool(config.getoption("testbed_require_root", default=False))
        or bool(config.getini("testbed_require_root"))
        or env in ("1", "true", "yes")
    )


@pytest.fixture
def run_scenario(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Any]:
    if os.geteuid() != 0:
        if require_root(request.config):
            pytest.fail(f"{NEEDS_ROOT}, and root is required (--testbed-require-root)")
        pytest.skip(NEEDS_ROOT)
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
