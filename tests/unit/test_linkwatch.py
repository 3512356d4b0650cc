"""Carrier changes from rtnetlink, including a down-up too fast to be seen as two messages."""

from __future__ import annotations

import struct

from mipbase.linkwatch import IFF_LOWER_UP, IFF_UP, RTM_NEWLINK, LinkWatcher, parse_link_messages


def newlink(index: int, carrier: bool, changes: int | None) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, IFF_UP | (IFF_LOWER_UP if carrier else 0), 0)
    if changes is not None:
        body += struct.pack("=HHI", 8, 35, changes)
    return struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK, 0, 0, 0) + body


def test_parse_reads_carrier_and_counter_and_survives_garbage() -> None:
    assert parse_link_messages(newlink(3, True, 7)) == [(3, True, True, 7)]
    assert parse_link_messages(newlink(3, False, None)) == [(3, True, False, None)]
    assert parse_link_messages(newlink(3, True, 7)[:20]) == []
    assert parse_link_messages(b"\xff" * 40) == []


class FakeSocket:
    def __init__(self, datagrams: list[bytes]) -> None:
        self.datagrams = datagrams

    def recv(self, _size: int) -> bytes:
        if not self.datagrams:
            raise BlockingIOError
        return self.datagrams.pop(0)


def watcher(datagrams: list[bytes], carrier: bool = True, changes: int = 4) -> LinkWatcher:
    w = object.__new__(LinkWatcher)
    w.ifname, w.index, w.carrier, w.changes = "eth0", 3, carrier, changes
    w.sock = FakeSocket(datagrams)  # type: ignore[assignment]
    return w


def test_each_transition_is_reported_once() -> None:
    w = watcher([newlink(3, False, 5), newlink(3, True, 6), newlink(9, False, 1)])
    assert w.read() == [False, True]


def test_a_coalesced_down_up_is_still_a_move() -> None:
    # the kernel reported only the final state, but the counter moved by two
    assert watcher([newlink(3, True, 6)]).read() == [False, True]
    # an unrelated attribute change (counter unchanged) is not a move
    assert watcher([newlink(3, True, 4)]).read() == []
