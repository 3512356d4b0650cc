"""vici events -> structured events, and IKE messages from charon's log lines.

The messages and log lines are trimmed copies of what charon-systemd 5.9.8 produced in a
real MOBIKE run.
"""

from __future__ import annotations

from typing import Any

from testbed.vpn.events import MessageTracker, exchange_label, parse_log_line, state_events


def sa(**over: Any) -> dict[str, Any]:
    base = {
        "uniqueid": b"1",
        "version": b"2",
        "state": b"ESTABLISHED",
        "local-host": b"203.0.113.50",
        "local-port": b"4500",
        "local-id": b"mn@vpn.test",
        "remote-host": b"192.0.2.10",
        "remote-port": b"4500",
        "remote-id": b"gw.vpn.test",
        "initiator": b"yes",
        "initiator-spi": b"95333544b0ec9d2b",
        "responder-spi": b"45ff7bdf462b6394",
        "nat-remote": b"yes",
        "nat-any": b"yes",
        "local-vips": [b"10.10.0.1"],
    }
    base.update(over)
    return base


CHILD = {
    "name": b"net",
    "uniqueid": b"1",
    "state": b"INSTALLED",
    "encap": b"yes",
    "spi-in": b"4b028c3a",
    "spi-out": b"6e46b05f",
    "local-ts": [b"10.10.0.1/32"],
    "remote-ts": [b"10.0.0.0/8"],
}


def test_ike_updown_up_and_down() -> None:
    (up,) = state_events("ike-updown", {"up": b"yes", "home": sa()})
    assert up["event"] == "ike_updown" and up["up"] is True
    assert (up["ike"], up["ike_id"], up["state"]) == ("home", 1, "ESTABLISHED")
    assert (up["local"], up["remote"], up["remote_port"]) == ("203.0.113.50", "192.0.2.10", 4500)
    assert up["vips"] == ["10.10.0.1"] and up["initiator"] is True
    assert up["nat_remote"] is True and up["nat_local"] is False
    assert "msg" not in up  # the log gives the real messages
    (down,) = state_events("ike-updown", {"home": sa(state=b"DELETING")})
    assert down["up"] is False and down["state"] == "DELETING"


def test_inferred_messages_when_the_log_is_not_used() -> None:
    (up,) = state_events("ike-updown", {"up": b"yes", "home": sa()}, infer=True)
    assert (up["msg"], up["dir"], up["from"]) == ("IKE_AUTH", "rx", "192.0.2.10")
    gw = sa(initiator=b"no", **{"remote-host": b"203.0.113.50", "local-host": b"192.0.2.10"})
    (up,) = state_events("ike-updown", {"up": b"yes", "rw": gw}, infer=True)
    assert (up["msg"], up["dir"], up["to"]) == ("IKE_AUTH", "tx", "203.0.113.50")


def test_ike_update_has_old_and_new_endpoints() -> None:
    message = {
        "local-host": b"198.51.100.50",
        "local-port": b"4500",
        "remote-host": b"192.0.2.10",
        "remote-port": b"4500",
        "home": sa(),  # still the old endpoints
    }
    (event,) = state_events("ike-update", message, infer=True)
    assert event["event"] == "ike_update" and event["moved"] == "local"
    assert (event["old_local"], event["local"]) == ("203.0.113.50", "198.51.100.50")
    assert event["remote"] == event["old_remote"] == "192.0.2.10"
    assert (event["msg"], event["dir"], event["to"]) == (
        "INFORMATIONAL/UPDATE_SA_ADDRESSES",
        "tx",
        "192.0.2.10",
    )
    # the gateway sees the remote end move (here behind a NAT)
    gw = sa(**{"local-host": b"192.0.2.10", "remote-host": b"198.51.100.50"})
    message = {
        "local-host": b"192.0.2.10",
        "local-port": b"4500",
        "remote-host": b"198.51.100.3",
        "remote-port": b"4500",
        "rw": gw,
    }
    (event,) = state_events("ike-update", message, infer=True)
    assert event["moved"] == "remote" and event["dir"] == "rx"
    assert event["from"] == "198.51.100.3"
    (plain,) = state_events("ike-update", message)
    assert "msg" not in plain and "from" not in plain


def test_child_updown_and_rekey() -> None:
    (event,) = state_events(
        "child-updown", {"up": b"yes", "home": sa(**{"child-sas": {"net-1": CHILD}})}
    )
    assert event["event"] == "child_updown" and event["up"] is True
    assert (event["child"], event["child_id"], event["child_state"]) == ("net", 1, "INSTALLED")
    assert event["spi_in"] == "4b028c3a" and event["encap"] is True
    assert event["local_ts"] == ["10.10.0.1/32"] and event["ike"] == "home"
    new = {**CHILD, "uniqueid": b"2", "spi-in": b"eff9bec6", "spi-out": b"d8ae29b1"}
    old = {**CHILD, "state": b"REKEYED"}
    rekey = {"home": sa(**{"child-sas": {"net": {"old": old, "new": new}}})}
    (event,) = state_events("child-rekey", rekey)
    assert event["event"] == "child_rekey"
    assert (event["child_id"], event["spi_in"], event["old_spi_in"]) == (2, "eff9bec6", "4b028c3a")
    assert event["old_child_id"] == 1


def test_ike_rekey() -> None:
    message = {"home": {"old": sa(), "new": sa(uniqueid=b"2", **{"initiator-spi": b"aa"})}}
    (event,) = state_events("ike-rekey", message)
    assert (event["event"], event["ike_id"], event["old_ike_id"]) == ("ike_rekey", 2, 1)
    assert (event["spi_i"], event["old_spi_i"]) == ("aa", "95333544b0ec9d2b")


def test_unknown_events_are_ignored() -> None:
    assert state_events("list-sa", {"x": {}}) == []


def test_exchange_labels() -> None:
    assert exchange_label("INFORMATIONAL", []) == "INFORMATIONAL"
    upd = ["N(UPD_SA_ADDR)", "N(NATD_S_IP)", "N(NATD_D_IP)", "N(COOKIE2)", "N(NO_ADD_ADDR)"]
    assert exchange_label("INFORMATIONAL", upd) == "INFORMATIONAL/UPDATE_SA_ADDRESSES"
    assert exchange_label("INFORMATIONAL", ["D"]) == "INFORMATIONAL/DELETE"
    assert exchange_label("CREATE_CHILD_SA", ["N(REKEY_SA)", "SA", "No", "TSi", "TSr"]) == (
        "CREATE_CHILD_SA/REKEY"
    )
    assert exchange_label("CREATE_CHILD_SA", ["SA", "No", "KE"]) == "CREATE_CHILD_SA/REKEY_IKE"
    assert exchange_label("IKE_SA_INIT", ["SA", "KE", "No"]) == "IKE_SA_INIT"


def feed(tracker: MessageTracker, lines: list[tuple[int, int, str]]) -> list[dict[str, Any]]:
    """Each (t_ms, thread, text) goes through a real log line and parse_log_line."""
    out = []
    for t, thread, text in lines:
        line = f"{1763932330 + t // 1000}.{t % 1000:03d} {thread:02d}[NET] <home|1> {text}\n"
        parsed = parse_log_line(line)
        assert parsed is not None
        t_ns, fields = parsed
        out += tracker.feed(t_ns // 1_000_000 - 1763932330_000, fields)
    return out


def test_parse_log_line() -> None:
    t, fields = parse_log_line(
        "1763932330.539 05[NET] <1> received packet: from 1.2.3.4[500] to 5.6.7.8[500] (684 bytes)"
    )  # type: ignore[misc]
    assert t == 1763932330_539_000_000
    assert fields == {
        "thread": "05",
        "group": "NET",
        "msg": "received packet: from 1.2.3.4[500] to 5.6.7.8[500] (684 bytes)",
        "ikesa-uniqueid": "1",
        "ikesa-name": "(unnamed)",
    }
    _, fields = parse_log_line("1763932330.542 13[ENC] <rw|1> generating IKE_AUTH response 1 [ ]")  # type: ignore[misc]
    assert (fields["ikesa-name"], fields["ikesa-uniqueid"]) == ("rw", "1")
    _, fields = parse_log_line("1763932330.542 00[DMN] SIGTERM received, shutting down")  # type: ignore[misc]
    assert "ikesa-name" not in fields and fields["msg"].startswith("SIGTERM")
    assert parse_log_line("garbage") is None


def test_tracker_mobike_exchange_on_the_mobile_node() -> None:
    events = feed(
        MessageTracker(),
        [
            (100, 11, "requesting address change using MOBIKE"),
            (101, 11, "generating INFORMATIONAL request 2 [ ]"),
            (102, 11, "sending packet: from 198.51.100.50[4500] to 192.0.2.10[4500] (80 bytes)"),
            (200, 13, "received packet: from 192.0.2.10[4500] to 198.51.100.50[4500] (80 bytes)"),
            (201, 13, "parsed INFORMATIONAL response 2 [ ]"),
            (
                202,
                13,
                "generating INFORMATIONAL request 3 [ N(UPD_SA_ADDR) N(NATD_S_IP) N(NATD_D_IP) "
                "N(COOKIE2) N(NO_ADD_ADDR) ]",
            ),
            (203, 13, "sending packet: from 198.51.100.50[4500] to 192.0.2.10[4500] (176 bytes)"),
            (300, 7, "received packet: from 192.0.2.10[4500] to 198.51.100.50[4500] (160 bytes)"),
            (301, 7, "parsed INFORMATIONAL response 3 [ N(NATD_S_IP) N(NATD_D_IP) N(COOKIE2) ]"),
        ],
    )
    summary = [(e["t_ns"], e["dir"], e["kind"], e["msg"], e["msg_id"]) for e in events]
    assert summary == [
        (102, "tx", "request", "INFORMATIONAL", 2),
        (200, "rx", "response", "INFORMATIONAL", 2),  # the time the packet arrived
        (203, "tx", "request", "INFORMATIONAL/UPDATE_SA_ADDRESSES", 3),
        (300, "rx", "response", "INFORMATIONAL/UPDATE_SA_ADDRESSES", 3),  # named like its request
    ]
    assert events[2]["to"] == "192.0.2.10" and events[2]["local"] == "198.51.100.50"
    assert events[3]["from"] == "192.0.2.10" and events[3]["bytes"] == 160
    assert events[0]["ike"] == "home" and events[0]["ike_id"] == 1


def test_tracker_responder_side_and_interleaved_threads() -> None:
    events = feed(
        MessageTracker(),
        [
            (10, 8, "received packet: from 198.51.100.3[4500] to 192.0.2.10[4500] (176 bytes)"),
            (11, 9, "received packet: from 198.51.100.3[4500] to 192.0.2.10[4500] (80 bytes)"),
            (12, 8, "parsed INFORMATIONAL request 5 [ N(UPD_SA_ADDR) N(COOKIE2) ]"),
            (13, 8, "generating INFORMATIONAL response 5 [ N(COOKIE2) ]"),
            (14, 9, "parsed INFORMATIONAL request 6 [ D ]"),
            (15, 8, "sending packet: from 192.0.2.10[4500] to 198.51.100.3[4500] (160 bytes)"),
        ],
    )
    assert [(e["dir"], e["msg"], e["t_ns"]) for e in events] == [
        ("rx", "INFORMATIONAL/UPDATE_SA_ADDRESSES", 10),
        ("rx", "INFORMATIONAL/DELETE", 11),
        ("tx", "INFORMATIONAL/UPDATE_SA_ADDRESSES", 15),
    ]
    assert events[0]["from"] == "198.51.100.3" and events[2]["to"] == "198.51.100.3"


def test_tracker_retransmission() -> None:
    events = feed(
        MessageTracker(),
        [
            (1, 3, "generating IKE_AUTH request 1 [ IDi AUTH SA TSi TSr ]"),
            (2, 3, "sending packet: from 203.0.113.50[4500] to 192.0.2.10[4500] (448 bytes)"),
            (4000, 5, "retransmit 1 of request with message ID 1"),
            (4001, 5, "sending packet: from 203.0.113.50[4500] to 192.0.2.10[4500] (448 bytes)"),
            (4002, 5, "sending packet: from 203.0.113.50[4500] to 192.0.2.10[4500] (80 bytes)"),
        ],
    )
    assert [(e["t_ns"], e["msg"], e.get("retransmit")) for e in events] == [
        (2, "IKE_AUTH", None),
        (4001, "IKE_AUTH", 1),
    ]


def test_tracker_ignores_other_lines_and_orphans() -> None:
    tracker = MessageTracker()
    assert feed(tracker, [(1, 1, "parsed IKE_AUTH response 1 [ IDr ]")]) == []  # no packet seen
    assert feed(tracker, [(2, 2, "sending packet: from a[1] to b[2] (3 bytes)")]) == []
    assert feed(tracker, [(3, 3, "peer supports MOBIKE")]) == []


def test_a_wall_clock_step_does_not_move_the_log_lines_times(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """charon stamps its log lines with the wall clock; they are put on CLOCK_MONOTONIC with
    one offset for every listener. When the wall clock is stepped mid-run (NTP on a CI
    machine; 6 s here during a suite round) the offset is taken again: a line written just
    after the step is stamped just after the line before it, not 6 s later. A slew (slower
    than STEP_NS between lines) keeps the one offset, so two nodes' lines stay in order."""
    import time

    from testbed.vpn import events

    mono = [1_000 * 10**9]
    wall = [1_700_000_000 * 10**9]
    monkeypatch.setattr(time, "monotonic_ns", lambda: mono[0])
    monkeypatch.setattr(time, "time_ns", lambda: wall[0])
    clock = events.WallClock()
    assert clock.monotonic_ns(wall[0] - 3_000_000) == mono[0] - 3_000_000  # written 3 ms ago

    mono[0] += 10**9  # a second later, the wall clock is stepped 6 s forward
    wall[0] += 10**9 + 6 * 10**9
    assert clock.monotonic_ns(wall[0]) == mono[0]  # not mono + 6 s
    mono[0] += 5_000_000  # then slewed by 1 ms: the offset stays, within a millisecond
    wall[0] += 5_000_000 + 1_000_000
    assert abs(clock.monotonic_ns(wall[0]) - mono[0]) <= 1_000_000
