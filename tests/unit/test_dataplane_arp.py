"""Gratuitous ARP frames (RFC 5944 section 4.6), checked against scapy's decoder."""

from __future__ import annotations

import pytest

from agents.dataplane.arp import gratuitous_arp_frame, mac_str, parse_arp

MAC = bytes.fromhex("020000aabbcc")
HOME = "10.1.0.10"


def test_gratuitous_request_layout() -> None:
    frame = gratuitous_arp_frame(MAC, HOME)
    assert len(frame) == 42  # 14 Ethernet + 28 ARP; the kernel pads to the minimum
    info = parse_arp(frame)
    assert info == {
        "eth_dst": "ff:ff:ff:ff:ff:ff",
        "eth_src": "02:00:00:aa:bb:cc",
        "op": 1,
        "sha": "02:00:00:aa:bb:cc",
        "spa": HOME,
        "tha": "00:00:00:00:00:00",
        "tpa": HOME,
        "gratuitous": True,
    }


def test_gratuitous_reply_targets_broadcast() -> None:
    info = parse_arp(gratuitous_arp_frame(MAC, HOME, "reply"))
    assert info is not None
    assert (info["op"], info["tha"], info["spa"], info["tpa"]) == (
        2,
        "ff:ff:ff:ff:ff:ff",
        HOME,
        HOME,
    )


def test_scapy_agrees() -> None:
    scapy_l2 = pytest.importorskip("scapy.layers.l2")
    pkt = scapy_l2.Ether(gratuitous_arp_frame(MAC, HOME))
    arp = pkt[scapy_l2.ARP]
    assert pkt.dst == "ff:ff:ff:ff:ff:ff" and pkt.type == 0x0806
    assert (arp.op, arp.hwsrc, arp.psrc, arp.pdst) == (1, "02:00:00:aa:bb:cc", HOME, HOME)


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        gratuitous_arp_frame(b"\x00" * 5, HOME)
    assert parse_arp(b"") is None
    assert parse_arp(b"\x00" * 12 + b"\x08\x00" + b"\x00" * 28) is None  # IPv4, not ARP
    assert mac_str(MAC) == "02:00:00:aa:bb:cc"
