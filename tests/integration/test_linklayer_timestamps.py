"""The MN reads agent advertisements with the time the kernel took each frame, not the time
it got round to reading it (issue 15 a: a frame that waited in the socket across a move is
the old link's). A veth pair in a namespace of our own (needs root)."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator

import pytest
from labtools import veth_namespace

from agents.mip.icmp import AgentAdvertisement, MobilityAgentExtension, encode_icmp
from agents.mip.ipv4 import build_ipv4
from agents.runtime.linklayer import ADVERTISEMENTS, open_filtered_socket, read_frames
from testbed import netns

IP = shutil.which("ip") or "/usr/sbin/ip"

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(IP), reason="needs root and ip"),
]

ADVERT = encode_icmp(
    AgentAdvertisement(
        lifetime=3,
        routers=[("10.2.0.254", 0)],
        agent=MobilityAgentExtension(1, 600, 0x1100, ["10.2.0.254"]),
    )
)


@pytest.fixture
def ns() -> Iterator[str]:
    with veth_namespace("ll") as name:
        yield name


def _until_frames_are_stamped_on_arrival(
    reader: socket.socket, sender: socket.socket, frame: bytes
) -> None:
    """The kernel stamps frames on arrival only once the first timestamping socket has
    switched that on, which it does in deferred work after setsockopt (a frame that arrives
    before is stamped when it is read): on a machine where no other socket wants
    timestamps, the first frames right after opening the reader are stamped late."""
    got: list[float] = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        got.clear()
        sender.send(frame)
        time.sleep(0.03)
        read_frames(reader, lambda packet, mac, ifname, received: got.append(received))
        if got and time.monotonic() - got[-1] >= 0.02:
            return
    raise AssertionError("frames are never stamped on arrival")


def test_a_frame_that_waited_in_the_socket_keeps_its_arrival_time(ns: str) -> None:
    with netns.entered(ns):
        reader = open_filtered_socket("vb", ADVERTISEMENTS, timestamps=True)
        sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        sender.bind(("va", 0))
        ether = bytes.fromhex("01005e000001") + bytes.fromhex("020000000001") + b"\x08\x00"
        frame = ether + build_ipv4("10.2.0.254", "224.0.0.1", 1, ADVERT, ttl=1)
        _until_frames_are_stamped_on_arrival(reader, sender, frame)
        sent = time.monotonic()
        sender.send(frame)
        time.sleep(0.2)  # the agent is busy: the frame waits in the socket
        got: list[tuple[str, float]] = []
        read_frames(reader, lambda packet, mac, ifname, received: got.append((mac, received)))
        read = time.monotonic()
    finally:
        reader.close()
        sender.close()
    assert len(got) == 1, got
    mac, received = got[0]
    assert mac == "02:00:00:00:00:01"
    assert sent - 0.005 <= received <= sent + 0.05, (sent, received, read)
    assert read - received >= 0.15
