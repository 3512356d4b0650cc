"""Lab 05 by hand: the VPN gateway's and the mobile node's strongSwan in a lab of your own.

A scenario's ``kind: vpn`` services are started by ``testbed run``; in a lab built with
``testbed up`` nothing starts them. This script starts them as the runner does
(``testbed.vpn.service``), with the values of this lab's scenario
files: one ``charon-systemd`` on ``gw`` and one on ``mn``, each with its files and vici
socket in ``/run/testbed/LAB/gw-vpn/`` and ``/run/testbed/LAB/mn-vpn/``, the pre-shared key
and the two connections loaded through vici.

* MIP proxy (``scenario.yaml``, the default): both tunnels are bound to the home address
  (``binding: home``): the gateway accepts the client's home address as its traffic
  selector and hands out no TIA; its IKE and ESP to the home network leave through the MIP
  proxy (a routing rule ahead of strongSwan's table 220, table 152 ``default via`` the
  proxy); the client's tunnel leaves from the home address, with UDP encapsulation.
* Dual MIP (``--dual``, ``scenario-dual.yaml``): the gateway as in lab 04 (TIA pool
  10.10.0.0/24); the client's tunnel leaves from the external home address 192.0.2.100.

It writes the IKE events of both into ``DIR/events/`` (so ``testbed events DIR`` shows them)
and the mobile node's agent configuration, ``mn.yaml`` (or ``mn-dual.yaml``) with the vici
socket in place of the service name, into ``DIR/``. Then it waits; Ctrl-C or ``kill %N``
stops both daemons (``testbed down LAB`` does too). With ``LAB=lab05-$TESTBED_STUDENT`` (the
lab's README):

    sudo .venv/bin/python labs/05-proxy-and-dual-mip/vpn.py $LAB /tmp/$LAB
    sudo .venv/bin/python labs/05-proxy-and-dual-mip/vpn.py $LAB /tmp/$LAB --dual
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
    parser.add_argument("--dual", action="store_true", help="scenario-dual.yaml: dual MIP")
    args = parser.parse_args(argv)
    scenario = HERE / ("scenario-dual.yaml" if args.dual else "scenario.yaml")
    mn_file = args.dir / ("mn-dual.yaml" if args.dual else "mn.yaml")
    return serve_by_hand(args.lab, scenario, args.dir, mn_file)


if __name__ == "__main__":
    sys.exit(main())
