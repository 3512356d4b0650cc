"""Parsing of the frames the agents read at the link layer (agents.runtime.linklayer)."""

from __future__ import annotations

import random
import socket
import struct

from agents.mip.icmp import AgentAdvertisement, MobilityAgentExtension, encode_icmp
from agents.mip.ipv4 import internet_checksum
from agents.runtime.linklayer import source_address, split_advertisement


def ipv4(src: str, dst: str, proto: int, payload: bytes, frag: int = 0) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        1,
        frag,
        1,
        proto,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
    return header + payload


ADVERT = encode_icmp(
    AgentAdvertisement(
        lifetime=3,
        routers=[("10.2.0.254", 0)],
        agent=MobilityAgentExtension(1, 600, 0x1100, ["10.2.0.254"]),
    )
)


def test_advertisement_is_split_from_its_ip_header() -> None:
    packet = ipv4("10.2.0.254", "224.0.0.1", 1, ADVERT)
    assert split_advertisement(packet) == ("10.2.0.254", ADVERT)
    # trailing link-layer padding is not part of the message
    assert split_advertisement(packet + bytes(10)) == ("10.2.0.254", ADVERT)


def test_other_packets_are_not_advertisements() -> None:
    solicitation = bytes([10, 0]) + bytes(6)
    assert split_advertisement(ipv4("10.2.0.9", "224.0.0.2", 1, solicitation)) is None
    assert split_advertisement(ipv4("10.2.0.9", "10.2.0.254", 17, bytes(16))) is None
    assert split_advertisement(ipv4("10.2.0.254", "224.0.0.1", 1, ADVERT)[:27]) is None
    v6ish = bytes([0x60]) + ipv4("10.2.0.254", "224.0.0.1", 1, ADVERT)[1:]
    assert split_advertisement(v6ish) is None


def test_garbage_never_raises() -> None:
    rng = random.Random(7)
    good = ipv4("10.2.0.254", "224.0.0.1", 1, ADVERT)
    for _ in range(3000):
        data = bytearray(good if rng.random() < 0.5 else rng.randbytes(rng.randrange(60)))
        for _ in range(rng.randrange(4)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        cut = bytes(data[: rng.randrange(len(data) + 1)])
        result = split_advertisement(cut)
        assert result is None or isinstance(result[1], bytes)
        assert source_address(cut) is None or len(cut) >= 20


def test_source_address_of_a_registration_request_frame() -> None:
    header_only = ipv4("10.1.0.100", "10.2.0.254", 17, bytes(8))[:20]
    assert source_address(header_only) == "10.1.0.100"
    assert source_address(header_only[:19]) is None


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def test_registration_datagram_gives_source_destination_and_payload() -> None:
    from agents.runtime.linklayer import registration_datagram

    request = bytes([1]) + bytes(23)
    packet = ipv4("10.1.0.100", "10.2.0.254", 17, udp(434, 434, request))
    assert registration_datagram(packet) == ("10.1.0.100", "10.2.0.254", request)
    assert registration_datagram(packet + bytes(6)) == ("10.1.0.100", "10.2.0.254", request)
    # another port, a fragment, a header only (what the filter used to pass): nothing
    assert registration_datagram(ipv4("10.1.0.100", "10.2.0.254", 17, udp(434, 53, b"x"))) is None
    assert (
        registration_datagram(
            ipv4("10.1.0.100", "10.2.0.254", 17, udp(434, 434, b"x"), frag=0x2000)
        )
        is None
    )
    assert registration_datagram(packet[:20]) is None


def test_only_an_agent_advertisement_naming_its_sender_teaches_the_mn_a_neighbour() -> None:
    """Before: any frame carrying ICMP type 9 entered its IP source at its MAC."""
    from agents.runtime.linklayer import advertises_itself

    mac = "02:00:00:00:00:fe"
    assert advertises_itself(ADVERT, "10.2.0.254", mac)
    plain_router_advert = encode_icmp(AgentAdvertisement(lifetime=3, routers=[("10.2.0.254", 0)]))
    bad_checksum = ADVERT[:2] + bytes([ADVERT[2] ^ 0xFF]) + ADVERT[3:]
    for why, (message, src, from_mac) in {
        "garbage after type 9": (bytes([9, 0]) + bytes(14), "10.2.0.254", mac),
        "bad checksum": (bad_checksum, "10.2.0.254", mac),
        "no mobility agent extension": (plain_router_advert, "10.2.0.254", mac),
        "not one of its routers": (ADVERT, "10.2.0.1", mac),
        "broadcast source": (ADVERT, "255.255.255.255", mac),
        "group MAC": (ADVERT, "10.2.0.254", "01:00:5e:00:00:01"),
    }.items():
        assert not advertises_itself(message, src, from_mac), why
