"""Replay protection (RFC 5944 5.7): NTP timestamps, the window, 133 resync, nonces."""

from __future__ import annotations

import itertools

import pytest

from agents.mip.replay import (
    HomeReplayState,
    MobileReplayState,
    check_request,
    commit,
    ntp_from_unix,
    ntp_offset_seconds,
    unix_from_ntp,
)

WALL = 1_700_000_000.25  # 2023-11-14T22:13:20.25Z


def rand_counter():
    c = itertools.count(1)
    return lambda: next(c)


def test_ntp_format() -> None:
    ident = ntp_from_unix(WALL, 0, 0)
    assert ident >> 32 == 1_700_000_000 + 2_208_988_800
    assert ident & 0xFFFFFFFF == 0x40000000  # .25 s
    assert unix_from_ntp(ident) == pytest.approx(WALL)
    # Bits finer than the clock are random (RFC 5944 5.7.1): only the low 12 by default.
    noisy = ntp_from_unix(WALL, 0xFFFFFFFF)
    assert noisy >> 12 == ident >> 12 and noisy & 0xFFF == 0xFFF


def test_offset_is_wrap_safe() -> None:
    a = ntp_from_unix(WALL)
    assert ntp_offset_seconds(a + (5 << 32), a) == pytest.approx(5)
    assert ntp_offset_seconds(a, a + (5 << 32)) == pytest.approx(-5)
    assert ntp_offset_seconds(3 << 32, (2**64 - (2 << 32))) == pytest.approx(5)  # across 2^64


def test_window_accepts_and_rejects_with_ha_time() -> None:
    st = HomeReplayState()
    ok, ident = check_request(
        "timestamp", ntp_from_unix(WALL - 5), st, wall=WALL, window=7, rand32=rand_counter()
    )
    assert ok and ident == ntp_from_unix(WALL - 5)
    req = ntp_from_unix(WALL - 60, 0xABC)
    ok, reply = check_request("timestamp", req, st, wall=WALL, window=7, rand32=rand_counter())
    assert not ok
    # RFC 5944 5.7.1: HA's time in the high 32 bits, request's low 32 bits copied.
    assert reply >> 32 == ntp_from_unix(WALL) >> 32
    assert reply & 0xFFFFFFFF == req & 0xFFFFFFFF
    # Ahead of the HA by more than the window: rejected as well.
    ok, _ = check_request(
        "timestamp", ntp_from_unix(WALL + 8), st, wall=WALL, window=7, rand32=rand_counter()
    )
    assert not ok


def test_replay_of_accepted_identification_is_rejected() -> None:
    st = HomeReplayState()
    req = ntp_from_unix(WALL)
    ok, rid = check_request("timestamp", req, st, wall=WALL, window=7, rand32=rand_counter())
    assert ok
    commit("timestamp", st, req, rid)
    for again in (req, req - 1):
        ok, _ = check_request("timestamp", again, st, wall=WALL, window=7, rand32=rand_counter())
        assert not ok
    ok, _ = check_request("timestamp", req + 1, st, wall=WALL, window=7, rand32=rand_counter())
    assert ok


def test_mobile_node_resynchronises_after_133() -> None:
    mn_wall = WALL + 3600  # MN clock an hour fast
    mn = MobileReplayState("timestamp")
    rnd = rand_counter()
    req = mn.next_identification(mn_wall, rnd)
    st = HomeReplayState()
    ok, reply = check_request("timestamp", req, st, wall=WALL, window=7, rand32=rnd)
    assert not ok
    assert mn.reply_matches(req, reply, 133)
    assert not mn.reply_matches(req, reply ^ 1, 133)  # low bits must match
    assert not mn.reply_matches(req, reply, 0)  # non-133 replies copy the whole value
    mn.learn(reply, 133, mn_wall)
    req2 = mn.next_identification(mn_wall + 0.5, rnd)
    ok, _ = check_request("timestamp", req2, st, wall=WALL + 0.5, window=7, rand32=rnd)
    assert ok


def test_mobile_identifications_strictly_increase_with_a_stuck_clock() -> None:
    mn = MobileReplayState("timestamp")
    rnd = rand_counter()
    ids = [mn.next_identification(WALL, lambda: 0) for _ in range(5)]
    assert ids == sorted(set(ids))
    assert mn.next_identification(WALL + 1, rnd) > ids[-1]


def test_nonces() -> None:
    st = HomeReplayState()
    mn = MobileReplayState("nonce")
    rnd = rand_counter()
    ha_rnd = iter([0x11111111, 0x22222222, 0x33333333, 0x44444444]).__next__
    # First request: the MN knows no HA nonce yet -> 133 with a nonce to use.
    req = mn.next_identification(WALL, rnd)
    ok, reply = check_request("nonce", req, st, wall=WALL, window=7, rand32=ha_rnd)
    assert not ok and reply >> 32 == 0x11111111 and reply & 0xFFFFFFFF == req & 0xFFFFFFFF
    st.nonce = reply >> 32
    assert mn.reply_matches(req, reply, 133)
    mn.learn(reply, 133, WALL)
    req2 = mn.next_identification(WALL, rnd)
    assert req2 >> 32 == 0x11111111
    ok, reply2 = check_request("nonce", req2, st, wall=WALL, window=7, rand32=ha_rnd)
    assert ok and reply2 >> 32 == 0x22222222
    commit("nonce", st, req2, reply2)
    assert st.nonce == 0x22222222
    # Replaying the accepted request fails: the HA now expects its new nonce.
    ok, _ = check_request("nonce", req2, st, wall=WALL, window=7, rand32=ha_rnd)
    assert not ok


def test_unknown_style() -> None:
    with pytest.raises(ValueError):
        check_request("counter", 1, HomeReplayState(), wall=WALL, window=1, rand32=lambda: 0)


def test_which_request_a_reply_answers() -> None:
    stamps = MobileReplayState("timestamp")
    sent = {0x1111_0000_0000_0001: 1.0, 0x2222_0000_0000_0002: 2.0}
    assert stamps.request_answered(sent, 0x2222_0000_0000_0002, 0) == 2.0
    # 133 carries the HA's time in the high bits: the low 32 bits decide
    assert stamps.request_answered(sent, 0x9999_0000_0000_0001, 133) == 1.0
    assert stamps.request_answered(sent, 0x9999_0000_0000_0001, 0) is None
    assert stamps.request_answered({}, 1, 0) is None
    nonces = MobileReplayState("nonce")
    assert nonces.request_answered(sent, 0x7777_0000_0000_0002, 0) == 2.0


def test_new_identification_on_every_timestamp_retransmission_only() -> None:
    assert [MobileReplayState("timestamp").new_identification_for(a) for a in range(3)] == [
        True,
        True,
        True,
    ]
    assert [MobileReplayState("nonce").new_identification_for(a) for a in range(3)] == [
        True,
        False,
        False,
    ]
