"""One lab node's VPN endpoint: its charon, a command session and an event listener.

Also the re-addressing a mobile node needs after ``Lab.move``: the old address is removed
(a stale address left configured makes charon try the dead path first and wait out a 2.5 s
path check), the new one added and the default route replaced, in one ``ip -batch``.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import vici

from mipbase.vici_client import close_session
from testbed.vpn.charon import Charon
from testbed.vpn.events import Callback, EventListener


class VpnNode:
    """``with VpnNode(lab, "mn", events.append) as mn: mn.session.load_conn(...)``."""

    def __init__(
        self,
        lab: Any,
        node: str,
        callback: Callback,
        *,
        run_dir: Path | None = None,
        messages: bool = True,  # ike_message events from the log (else inferred msg fields)
        **charon_options: Any,
    ) -> None:
        self.lab = lab
        self.node = node
        self.charon = Charon.in_lab(lab, node, run_dir=run_dir, **charon_options)
        if messages:
            # the message lines are ENC ("generating", "parsed") and NET ("... packet") level 1
            levels = self.charon.config.log_levels
            for group in ("enc", "net"):
                if levels.get(group, levels.get("default", 1)) < 1:
                    raise ValueError(f"messages=True needs log level {group} >= 1")
        self.callback = callback
        self.messages = messages
        self.session: vici.Session | None = None
        self.listener: EventListener | None = None

    @property
    def vici(self) -> vici.Session:
        if self.session is None:
            raise RuntimeError(f"the VPN endpoint on {self.node} is not started")
        return self.session

    def start(self) -> VpnNode:
        self.charon.start()
        try:
            self.listener = EventListener(
                self.charon.vici_socket,
                self.node,
                self.callback,
                log_file=self.charon.log_file if self.messages else None,
            ).start()
            self.session = self.charon.session()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> int | None:
        """Stop listening, then the daemon (always reaped); returns its exit status."""
        if self.session is not None:
            close_session(self.session)
            self.session = None
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
        return self.charon.stop()

    def __enter__(self) -> VpnNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def readdress(
    lab: Any,
    node: str,
    old: str | None,
    new: str,
    gateway: str,
    iface: str = "eth0",
) -> None:
    """Replace ``old`` (CIDR) by ``new`` (CIDR) on ``iface`` and route default via ``gateway``."""
    commands = []
    if old is not None:
        commands.append(f"address del {old} dev {iface}")
    commands += [
        f"address add {new} dev {iface}",
        f"route replace default via {gateway} dev {iface}",
    ]
    lab.run(node, ["ip", "-batch", "-"], input="\n".join(commands) + "\n")
