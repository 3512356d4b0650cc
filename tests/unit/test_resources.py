"""resources.json (issue 19, item 3): a run's CPU time and memory per process and kind,
read from /proc (a fake one here, and this test's own process)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from testbed.scenario import resources
from testbed.scenario.resources import Usage

# a stat line whose command holds a space and a ")": fields count after the last one
STAT = (
    "4242 (python3 -m x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 "
    "150 50 7 3 20 0 1 0 123456 1000000 2000 18446744073709551615"
)
ROLLUP = """55d0-7ffd ---p 00000000 00:00 0   [rollup]
Rss:               39936 kB
Pss:               25170 kB
Pss_Anon:          20000 kB
"""


def test_cpu_ticks_are_user_system_and_reaped_children() -> None:
    assert resources.cpu_ticks(STAT) == 150 + 50 + 7 + 3


def test_memory_is_rss_and_pss() -> None:
    assert resources.memory_kb(ROLLUP) == (39936, 25170)
    assert resources.memory_kb("") == (None, None)


def test_kinds() -> None:
    agents = {"ha": "ha", "fa": "fa", "proxy": "proxy", "mn01": "mn", "mk01": "mn"}
    mobiles = ["mn01", "mk01"]

    def kind(role: str, node: str = "x") -> str:
        return resources.kind_of(role, node, agents, mobiles)

    assert kind("service:mn01") == kind("service:mk01") == "mn"
    assert (kind("service:ha"), kind("service:fa"), kind("service:proxy")) == ("ha", "fa", "proxy")
    assert kind("charon", "mk01") == "charon-mn" and kind("charon", "gw") == "charon-gw"
    assert kind("probe:cn:mn01") == kind("probe:tcp-server") == "probe"
    assert kind("relay") == "relay" and kind("dhcp:office") == "dhcp"
    assert kind("capture:dmz") == "capture"
    assert kind("service:dhcp") == kind("nft") == "other"  # a dhcp-client service, unknown


def test_usage_from_a_proc_directory(tmp_path: Path) -> None:
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "stat").write_text(STAT)
    (tmp_path / "4242" / "smaps_rollup").write_text(ROLLUP)
    usage = resources.usage_of(4242, "service:mn01", "mn01", "mn", proc=tmp_path)
    assert usage == Usage(4242, "service:mn01", "mn01", "mn", 210 / resources.TICKS_PER_S,
                          39936, 25170)  # fmt: skip
    assert resources.usage_of(4343, "relay", "sw", "relay", proc=tmp_path) is None  # gone
    # its CPU time since the timeline began, from its ticks then
    since = resources.usage_of(4242, "service:mn01", "mn01", "mn", tmp_path, ticks_before=10)
    assert since is not None and since.timeline_cpu_s == 200 / resources.TICKS_PER_S
    assert resources.ticks_of(4242, tmp_path) == 210 and resources.ticks_of(1, tmp_path) is None


def test_this_process_is_read_from_the_real_proc() -> None:
    usage = resources.usage_of(os.getpid(), "runner", "-", "runner")
    assert usage is not None and usage.cpu_s > 0 and (usage.rss_kb or 0) > 0


def test_by_kind_and_the_file(tmp_path: Path) -> None:
    usages = [
        Usage(1, "service:mn01", "mn01", "mn", 0.5, 40000, 25000, timeline_cpu_s=0.1),
        Usage(2, "service:mn02", "mn02", "mn", 0.7, 40000, 27000, timeline_cpu_s=0.2),
        Usage(3, "charon", "gw", "charon-gw", 1.25, 20000, None),
    ]
    kinds = resources.by_kind(usages)
    assert kinds["mn"] == {
        "processes": 2,
        "cpu_s": 1.2,
        "timeline_cpu_s": 0.3,
        "pss_kb_mean": 26000,
        "pss_kb_max": 27000,
    }
    assert kinds["charon-gw"]["pss_kb_mean"] is None
    path = tmp_path / resources.FILE
    resources.write(path, usages, 2.5, 12.0, runner_timeline_cpu_s=1.5, timeline_s=8.0)
    data = resources.read(path)
    assert data is not None and data["kinds"]["runner"]["cpu_s"] == 2.5
    assert data["kinds"]["runner"]["timeline_cpu_s"] == 1.5 and data["timeline_s"] == 8.0
    assert data["wall_s"] == 12.0 and len(data["processes"]) == 3
    assert json.loads(path.read_text())["processes"][0]["kind"] == "mn"
    assert resources.read(tmp_path / "absent.json") is None
