"""RFC 5266 at the mobile node: crossing the security boundary with the VPN gateway.

On every move the MN registers with its home agent directly, without the VPN (the core does
that from the new FA or co-located address), and at the same time makes sure the IPsec
tunnel to the gateway is there: charon moves an existing IKE SA by itself (MOBIKE, from the
address change), or we initiate one. Then:

* the home agent answers the direct request: we are inside. Plain ``f``/``c``; the VPN is
  not used for that traffic (its routes would capture the intranet), so it is closed;
* only the gateway answers (no accepted direct registration within ``decision_timeout``,
  but a tunnel inner address, TIA): we are outside. The TIA is registered as co-located
  care-of address through the tunnel: mode ``mc``. Later moves between foreign networks
  change only the tunnel's outer address (MOBIKE); a new TIA means a new registration.

The decision and its time are events (``boundary_decision``), a phase of the handoff.
vici calls block, so they run on a worker thread; results come back to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agents.mip.mn import Attachment
from testbed.services.events import EventWriter


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list) and value:
        return _text(value[0])
    return str(value)


class VpnClient:
    """The MN's charon, through vici: is the tunnel up, what is our TIA, bring it up/down."""

    def __init__(self, vici_socket: str, ike: str, child: str) -> None:
        self.path = vici_socket
        self.ike = ike
        self.child = child

    def _session(self):
        import vici

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.path)
        return vici.Session(sock)

    def tia(self) -> str | None:
        """Our virtual IP when the IKE SA is established and its child installed."""
        session = self._session()
        try:
            for sa in session.list_sas({"ike": self.ike}):
                ike = sa.get(self.ike.encode()) or next(iter(sa.values()))
                if _text(ike.get(b"state", b"")) != "ESTABLISHED":
                    continue
                children = ike.get(b"child-sas", {})
                installed = any(
                    _text(c.get(b"state", b"")) == "INSTALLED" for c in children.values()
                )
                vips = ike.get(b"local-vips", [])
                if installed and vips:
                    return _text(vips)
            return None
        finally:
            session.close()

    def initiate(self, timeout_ms: int = 5000) -> bool:
        session = self._session()
        try:
            for _ in session.initiate(
                {"child": self.child, "ike": self.ike, "timeout": timeout_ms}
            ):
                pass  # a lazy generator: nothing is sent until it is iterated
            return True
        except Exception:
            return False
        finally:
            session.close()

    def terminate(self) -> None:
        session = self._session()
        try:
            for _ in session.terminate({"ike": self.ike, "timeout": 2000}):
                pass
        except Exception:
            pass
        finally:
            session.close()


class BoundaryController:
    def __init__(self, config: Any, machine: Any, driver: Any, events: EventWriter) -> None:
        self.config = config
        self.machine = machine
        self.driver = driver
        self.events = events
        self.vpn = VpnClient(config.vici, config.ike, config.child)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vici")
        self.loop = asyncio.get_event_loop()
        self._decision: asyncio.TimerHandle | None = None
        self._moved_at = 0.0
        self._outside_tia: str | None = None
        self._inside = True

    # called by the movement detector and the driver ------------------------------------

    def moved(self) -> None:
        """A new point of attachment: race the direct registration against the gateway."""
        self._moved_at = time.monotonic()
        self.events.emit("boundary_probe", gateway=self.config.gateway)
        # back to automatic: the core registers directly (FA or co-located address)
        if self._outside_tia is not None:
            self.driver.feed(self.machine.use_attachment(None, time.monotonic()))
        self.pool.submit(self._ensure_tunnel)
        if self._decision is not None:
            self._decision.cancel()
        self._decision = self.loop.call_later(self.config.decision_timeout, self._decide)

    def on_event(self, name: str, data: dict[str, Any]) -> None:
        """Core events: a directly accepted registration means we are inside."""
        if name in ("registration_accepted", "returned_home") and data.get("mode") != "mc":
            if self._decision is not None:
                self._decision.cancel()
                self._decision = None
            if name == "returned_home" or data.get("mode") in ("f", "c", "home"):
                self._set_inside()

    # internals ----------------------------------------------------------------------------

    def _ensure_tunnel(self) -> None:
        with contextlib.suppress(OSError):
            if self.vpn.tia() is None:
                self.vpn.initiate()

    def _set_inside(self) -> None:
        was_outside = not self._inside
        self._inside = True
        self._outside_tia = None
        self.events.emit(
            "boundary_decision",
            inside=True,
            phase="boundary_decision",
            after_ms=round((time.monotonic() - self._moved_at) * 1000, 3),
            changed=was_outside,
        )
        self.pool.submit(self.vpn.terminate)

    def _decide(self) -> None:
        self._decision = None
        future = self.pool.submit(self._wait_tia, 5.0)
        future.add_done_callback(
            lambda f: self.loop.call_soon_threadsafe(self._outside, f.result())
        )

    def _wait_tia(self, timeout_s: float) -> str | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                tia = self.vpn.tia()
                if tia:
                    return tia
            time.sleep(0.02)
        return None

    def _outside(self, tia: str | None) -> None:
        if tia is None:
            self.events.emit("boundary_decision", inside=None, reason="neither answered")
            return
        if self.machine.mode in ("f", "c", "home") and self.machine.registered:
            return  # the home agent answered meanwhile: inside after all
        self._inside = False
        self.events.emit(
            "boundary_decision",
            inside=False,
            tia=tia,
            phase="boundary_decision",
            after_ms=round((time.monotonic() - self._moved_at) * 1000, 3),
        )
        if tia != self._outside_tia:
            self._outside_tia = tia
            attachment = Attachment(
                "mc", care_of=tia, src=tia, iface=self.config.iface, colocated=True
            )
            self.driver.feed(self.machine.use_attachment(attachment, time.monotonic()))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
