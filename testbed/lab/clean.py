"""``testbed clean``: remove what killed runs of this tool left, and nothing else.

Only things this tool recorded are touched: labs with a state file (written before anything
is created), and the tool's own feature-probe namespaces whose creating process is gone.
"""

from __future__ import annotations

import re

from testbed import netns
from testbed.lab.state import all_labs
from testbed.lab.teardown import destroy

PROBE = re.compile(r"^tb-probe-(\d+)$")


def clean(include_live_labs: bool = False) -> list[str]:
    removed = []
    for lab in all_labs():
        if include_live_labs or not lab.owner_alive():
            destroy(lab)
            removed.append(f"lab {lab.name} ({len(lab.namespaces)} namespaces)")
    for name in netns.list_netns():
        match = PROBE.match(name)
        if match and netns.process_start_time(int(match.group(1))) is None:
            netns.delete(name)
            removed.append(f"probe namespace {name}")
    return removed
