"""Issue 15 (a): a failed initiation says why, so that the MN's retries (``vpn_retry``, with a
bounded backoff until the tunnel is up: the boundary core's, tested in
test_boundary_core.py and, through the worker threads, test_vpn_boundary_threads.py) show
what the gateway answered."""

from __future__ import annotations

from typing import Any

import pytest


def test_a_failed_initiation_says_why() -> None:
    """vici's own error is only "establishing CHILD_SA 'net' failed": the reason from
    charon's log of the attempt goes into the message (and so into vpn_retry's error)."""
    from vici.exception import CommandException

    from mipbase import vici_client as vc

    class Session:
        def initiate(self, request: dict) -> Any:
            yield {"msg": b"initiating IKE_SA home[3] to 192.0.2.10"}
            yield {"msg": b"received NO_PROPOSAL_CHOSEN notify error"}
            raise CommandException("establishing CHILD_SA 'net' failed")

    with pytest.raises(vc.VpnError) as failed:
        vc.initiate(Session(), "net", "home")  # type: ignore[arg-type]
    assert "NO_PROPOSAL_CHOSEN" in str(failed.value) and len(failed.value.log) == 2
    assert vc.failure_reason(["sending retransmit 2", "giving up after 2 retransmits"]) == (
        "giving up after 2 retransmits"
    )
    assert vc.failure_reason(["initiating IKE_SA home[3]"]) is None
