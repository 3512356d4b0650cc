"""Lab 04 by hand: the VPN gateway's and the mobile node's strongSwan in a lab of your own.

A scenario's ``kind: vpn`` services are started by ``testbed run``; in a lab built with
``testbed up`` nothing starts them. This script starts them as the runner does
(``testbed.vpn.service``), with the values of this lab's scenario
file: one ``charon-systemd`` on ``gw`` and one on ``mn``, each with its files and vici
socket in ``/run/testbed/LAB/gw-vpn/`` and ``/run/testbed/LAB/mn-vpn/``; the pre-shared key,
the gateway's pool of tunnel inner addresses and the two connections loaded through vici.
It writes the IKE events of both into ``DIR/events/`` (so ``testbed events DIR`` shows
them) and the mobile node's agent configuration, ``mn.yaml`` with the vici socket in place
of the service name, into ``DIR/mn.yaml``. Then it waits; Ctrl-C or ``kill %N`` stops
both daemons (``testbed down LAB`` does too). With ``LAB=lab04-$TESTBED_STUDENT`` (the
lab's README):

    sudo .venv/bin/python labs/04-leaving-the-enterprise-mobike/vpn.py $LAB /tmp/$LAB
    sudo .venv/bin/python labs/04-leaving-the-enterprise-mobike/vpn.py $LAB /tmp/$LAB --no-mobike
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from testbed.vpn.service import serve_by_hand

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lab", help="a lab built from topologies/enterprise.yaml (testbed up)")
    parser.add_argument("dir", type=Path, help="where events/ and mn.yaml go, e.g. /tmp/LAB")
    parser.add_argument(
        "--no-mobike", action="store_true", help="as scenario-nomobike.yaml: MOBIKE off"
    )
    args = parser.parse_args(argv)
    scenario = HERE / ("scenario-nomobike.yaml" if args.no_mobike else "scenario.yaml")
    return serve_by_hand(args.lab, scenario, args.dir, args.dir / ("mn.yaml"))


if __name__ == "__main__":
    sys.exit(main())
