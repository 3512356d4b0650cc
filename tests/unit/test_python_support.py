"""The Python the suite runs on is a supported one, and Mininet imports on it.

Mininet 2.3.0.dev6 imports ``distutils``, which left the standard library in Python 3.12;
setuptools (a dependency) puts its copy in place. A fresh interpreter is used, as the
``testbed`` command and the lab helpers start one: nothing imported by pytest helps it.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]


def test_this_python_is_one_the_project_supports() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    supported = SpecifierSet(project["requires-python"])
    version = ".".join(map(str, sys.version_info[:3]))
    assert version in supported, f"Python {version} is outside requires-python {supported}"


def test_mininet_imports_in_a_fresh_interpreter() -> None:
    code = (
        "import mininet.net, mininet.node, mininet.link, mininet.cli\n"
        "import distutils.version, sys\n"
        "print(distutils.version.__file__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    if sys.version_info >= (3, 12):  # no distutils of its own: it must be setuptools' copy
        assert "setuptools" in done.stdout, done.stdout
