"""Large agent configurations (issue 19's weak point: the HA's start-up with 100k MNs).
The HA's file parsed in a forked child (agents/runtime/apart.py): the same result as
in-process, without the MN list in the file model; the child's errors come back as they
were raised (a bad file's file:line: field message); a child that dies is an error here, and
one whose parent dies goes too; the parse's garbage does not stay in this process. Spec files
parsed by libyaml: the same data and lines as PyYAML's parser, and PyYAML's messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agents.runtime import apart
from agents.runtime.config import load_ha, load_ha_apart
from mipbase.specfile import SpecError


def _ha_file(tmp_path: Path, count: int, extra: str = "") -> Path:
    path = tmp_path / "ha.yaml"
    members = [
        {"home_address": f"10.{1 + i // 65536}.{i // 256 % 256}.{i % 256}", "spi": 256 + i,
         "key": f"{i:032x}"}
        for i in range(count)
    ]  # fmt: skip
    config = {"address": "10.0.0.1", "home_network": "10.0.0.0/8", "mobile_nodes": members}
    path.write_text(yaml.safe_dump(config) + extra)
    return path


def test_the_child_loads_what_the_agent_would(tmp_path: Path) -> None:
    path = _ha_file(tmp_path, 50)
    f, cfg = load_ha_apart(path)
    f_here, cfg_here = load_ha(path)
    assert cfg == cfg_here and len(cfg.mobile_nodes) == 50
    assert f.mobile_nodes == [] and f.interface == f_here.interface
    assert f.address == f_here.address


def test_a_bad_file_is_reported_as_in_process(tmp_path: Path) -> None:
    path = tmp_path / "ha.yaml"
    path.write_text("address: 10.0.0.1\nhome_network: 10.0.0.0/8\nmax_lifetime: -3\n")
    with pytest.raises(SpecError) as here:
        load_ha(path)
    with pytest.raises(SpecError) as there:
        load_ha_apart(path)
    assert str(there.value) == str(here.value)
    assert (there.value.file, there.value.line, there.value.field) == (str(path), 3, "max_lifetime")
    with pytest.raises(SpecError, match="cannot read file"):
        load_ha_apart(tmp_path / "missing.yaml")


def test_a_child_that_dies_is_an_error_and_nothing_is_left() -> None:
    with pytest.raises(RuntimeError, match="ended with status 7"):
        apart.call(os._exit, 7)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # reaped: no child of ours is left


_MEASURE = """
import gc, sys
from pathlib import Path
from agents.runtime.config import load_ha, load_ha_apart

def rss_kb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

load = load_ha_apart if sys.argv[2] == "apart" else load_ha
gc.collect()
before = rss_kb()
kept = load(sys.argv[1])
gc.collect()
print(rss_kb() - before)
"""


def _kept_kb(path: Path, how: str) -> int:
    """What loading ``path`` leaves in a fresh interpreter's RSS (KiB)."""
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), how],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return int(out.stdout.split()[-1])


def test_the_parse_garbage_stays_in_the_child(tmp_path: Path) -> None:
    """5,000 MNs: parsed in the agent's process, the process keeps ~4 KB per MN after the
    parse is freed (its arenas are pinned by the objects kept); parsed in the child, it
    keeps the result. Each in a fresh interpreter (one that had freed memory before would
    hide it); a generous bound: at most half of what the in-process parse keeps (measured:
    8 of 50 MiB at 10k MNs, benchmarks/bench_ha_load.py --start-only)."""
    path = _ha_file(tmp_path, 5000)
    here_kb = _kept_kb(path, "here")
    apart_kb = _kept_kb(path, "apart")
    assert here_kb > 10_000, here_kb  # the effect is there to be seen (~4 KB per MN)
    assert apart_kb < here_kb / 2, (apart_kb, here_kb)


def test_a_child_goes_with_its_parent() -> None:
    """An agent stopped while its configuration is parsed (SIGKILL: nothing of it runs)
    leaves no parse running."""
    import signal
    import time

    parent = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom agents.runtime import apart\n"
         "apart.call(time.sleep, 60)"],
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children")
    deadline = time.monotonic() + 20
    while not children.read_text().split() and time.monotonic() < deadline:
        time.sleep(0.02)
    (child,) = (int(c) for c in children.read_text().split())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)  # killed by the kernel, reaped by init (or a subreaper)
    assert not Path(f"/proc/{child}").exists() or "Z" in _state(child)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.mark.parametrize(
    "path",
    [
        "scenarios/roam-nat.yaml",
        "topologies/enterprise.yaml",
        "labs/04-leaving-the-enterprise-mobike/scenario.yaml",
    ],
)
def test_libyamls_parse_is_pyyamls(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec files are parsed by libyaml where PyYAML has it (3x faster on an HA's file of
    many MNs): the same data and the same line of every field as PyYAML's own parser."""
    from mipbase import specfile

    file = Path(__file__).resolve().parents[2] / path
    fast = specfile.load_spec(file)
    monkeypatch.setattr(specfile, "_FAST_LOADER", yaml.SafeLoader)
    pure = specfile.load_spec(file)
    assert (fast.data, fast.lines) == (pure.data, pure.lines)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("\tx: 1\n", "f.yaml:1: YAML syntax error: found character '\\t' that cannot start"),
        ("a: *nope\n", "f.yaml:1: YAML syntax error: found undefined alias 'nope'"),
        ("a: [1, 2\nb: 3\n", "f.yaml:2: YAML syntax error: expected ',' or ']', but got ':'"),
        ("a: 1\na: 2\n", "f.yaml:2: a: duplicate key"),
    ],
)
def test_a_refused_file_gets_pyyamls_message(text: str, message: str) -> None:
    """libyaml's messages leave out what they found (the tab, the alias): a file it refuses
    is parsed again by PyYAML's parser for the message the user reads."""
    from mipbase.specfile import load_spec

    with pytest.raises(SpecError) as refused:
        load_spec("f.yaml", text)
    assert str(refused.value).startswith(message), str(refused.value)
