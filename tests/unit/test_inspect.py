"""``testbed state`` / ``testbed events`` on synthetic run directories, and the labs'
``expected`` block parser and checker (testbed/labcheck.py)."""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mipbase import events as eventlog
from testbed import inspect, labcheck
from testbed.summary import RunSummary

T0 = 5_000_000_000_000  # a CLOCK_MONOTONIC-like origin, in ns
MS = 1_000_000


def ev(t_ms: float, node: str, event: str, **fields: Any) -> dict[str, Any]:
    return {"t_ns": T0 + int(t_ms * MS), "node": node, "event": event, **fields}


RUNNER = [
    ev(0, "runner", "run_start", scenario="lab-x", run=0),
    ev(150, "runner", "lab_up", lab="r123-0-ab", impairments="relay"),
    ev(160, "runner", "service_started", service="ha", target="ha", pid=1),
    ev(161, "runner", "service_started", service="fa", target="fa", pid=2),
    ev(162, "runner", "service_started", service="mobile", target="mn", pid=3),
    ev(2000, "runner", "move_start", index=0, target="mn", **{"from": "home", "to": "visited"}),
    ev(2001, "runner", "link_up", target="mn", network="visited", phase="link_up"),
    ev(4000, "runner", "move_start", index=1, target="mn", **{"from": "visited", "to": "home"}),
]
MN = [
    ev(400, "mn", "agent_discovered", address="10.1.0.1", home=True, flags=8192),
    ev(2006, "mn", "agent_solicitation_sent", count=1),
    ev(2011, "mn", "agent_discovered", address="10.2.0.254", home=False),
    ev(2012, "mn", "registration_sent", mode="f", care_of="10.2.0.254", lifetime=600),
    ev(2052, "mn", "registration_accepted", mode="f", care_of="10.2.0.254", udp=False, code=0),
    ev(4020, "mn", "returned_home", iface="eth0"),
    ev(4021, "mn", "registration_sent", mode="home", lifetime=0, agent=None, dereg=True),
    ev(4030, "mn", "deregistered", latency=0.009),
]
HA = [
    ev(2030, "ha", "binding_added", care_of="10.2.0.254", encapsulation="ipip", reverse=True),
    ev(4025, "ha", "binding_removed", care_of="10.2.0.254", reason="deregistered"),
]
FA = [
    ev(2020, "fa", "request_relayed", care_of="10.2.0.254"),
    ev(2045, "fa", "visitor_added", home_address="10.1.0.100"),
]
SUMMARY = {
    "scenario": "lab-x",
    "passed": True,
    "error": None,
    "handoffs": [
        {
            "index": 0,
            "t_ns": T0 + 2000 * MS,
            "from": "home",
            "to": "visited",
            "mode": "f",
            "tunnel": "ipip",
            "interruption_ms": 60.5,
            "phases_ms": {"link_up": 1.0, "agent_discovered": 11.0, "registration_sent": 12.0},
        },
        {
            "index": 1,
            "t_ns": T0 + 4000 * MS,
            "from": "visited",
            "to": "home",
            "mode": "home",
            "tunnel": None,
            "interruption_ms": 23.4,
            "phases_ms": {"returned_home": 20.0, "deregistered": 30.0},
        },
    ],
    "streams": {"down": {"lost": 12, "received": 900}},
    "percentiles": {"interruption_ms": {"p50": 42.0, "p95": 58.8, "max": 60.5}},
    "loss_before_first_move": 0,
    "final_mode": "home",
    "tcp": {"errors": 0, "bytes_after_last_move": 1000},
}


def write_jsonl(path: Path, events: list[dict[str, Any]], torn: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(e) + "\n" for e in events)
    path.write_text(text + ('{"t_ns": 1, "node"' if torn else ""))


def make_run(root: Path, name: str = "20260101-120000-aaaa", finished: bool = False) -> Path:
    run = root / name
    write_jsonl(run / "events" / "runner.jsonl", RUNNER)
    write_jsonl(run / "events" / "mobile.jsonl", MN, torn=True)
    write_jsonl(run / "events" / "ha.jsonl", HA)
    write_jsonl(run / "events" / "fa.jsonl", FA)
    state = run / "state"
    state.mkdir()
    now_ns = T0 + 5000 * MS
    (state / "ha.json").write_text(
        json.dumps(
            {
                "role": "ha",
                "t_ns": now_ns,
                "counters": {"requests": 2, "accepted": 2},
                "bindings": [
                    {
                        "home_address": "192.0.2.100",
                        "care_of": "192.168.1.119",
                        "expires": now_ns / 1e9 + 590,
                        "lifetime": 600,
                        "peer": "198.51.100.3",
                        "peer_port": 434,
                        "encapsulation": "udp",
                        "reverse": True,
                        "src": "198.51.100.3",
                        "src_port": 434,
                    }
                ],
                "tunnels": {"tx_udp": 10, "rx_udp": 9},
            }
        )
    )
    (state / "fa.json").write_text(
        json.dumps(
            {
                "role": "fa",
                "t_ns": now_ns,
                "counters": {"relayed": 1},
                "visitors": [
                    {
                        "home_address": "10.1.0.100",
                        "home_agent": "10.1.0.1",
                        "iface": "eth0",
                        "care_of": "10.2.0.254",
                        "expires": now_ns / 1e9 + 595,
                        "lifetime": 600,
                        "reverse": True,
                    }
                ],
                "tunnels": {},
            }
        )
    )
    (state / "mobile.json").write_text(
        json.dumps(
            {
                "role": "mn",
                "t_ns": now_ns,
                "counters": {"requests_sent": 2},
                "mode": "c",
                "registered": True,
                "state": "registered",
                "care_of": "192.168.1.119",
                "binding": {
                    "mode": "c",
                    "care_of": "192.168.1.119",
                    "lifetime": 600,
                    "expires": now_ns / 1e9 + 599,
                    "udp": True,
                    "keepalive": 1,
                    "home_agent": "192.0.2.1",
                },
            }
        )
    )
    if finished:
        merged = sorted(RUNNER + MN + HA + FA, key=lambda e: e["t_ns"])
        for e in merged:
            if e["event"] == "request_relayed":
                e["msg"] = "annotated"
        write_jsonl(run / "events.jsonl", merged)
        (run / "summary.json").write_text(json.dumps(SUMMARY))
    return run


def args(**kw: Any) -> argparse.Namespace:
    base = {"node": None, "event": None, "json": False, "follow": False, "watch": None}
    return argparse.Namespace(**{**base, **kw})


# --- finding runs ---------------------------------------------------------------------------


def test_resolve_run_dir(tmp_path: Path) -> None:
    old = make_run(tmp_path / "lab-x", "20260101-120000-aaaa")
    new = make_run(tmp_path / "lab-x", "20260101-120500-bbbb")
    assert inspect.resolve_run_dir(old) == old
    assert inspect.resolve_run_dir(tmp_path / "lab-x") == new
    reps = tmp_path / "rep-run"
    (reps / "summary.json").parent.mkdir()
    (reps / "summary.json").write_text("{}")
    make_run(reps, "rep-00")
    last = make_run(reps, "rep-01")
    assert inspect.resolve_run_dir(reps) == last
    (tmp_path / "empty").mkdir()
    with pytest.raises(LookupError, match="not a run directory"):
        inspect.resolve_run_dir(tmp_path / "empty")
    with pytest.raises(LookupError, match="no such directory"):
        inspect.resolve_run_dir(tmp_path / "missing")


def test_await_run_waits_for_a_run_to_start(tmp_path: Path) -> None:
    scenario = tmp_path / "lab-x"
    finished = make_run(scenario, "20260101-120000-aaaa", finished=True)
    assert inspect.await_run(finished) == finished  # a run directory is taken as it is
    with pytest.raises(LookupError, match="no run started"):
        inspect.await_run(scenario, poll_s=0.01, timeout_s=0.05)  # only a finished one

    def start() -> None:
        time.sleep(0.05)
        make_run(scenario, "20260101-120500-bbbb")

    thread = threading.Thread(target=start)
    thread.start()
    new = inspect.await_run(scenario, poll_s=0.01, timeout_s=5)
    thread.join()
    assert new == scenario / "20260101-120500-bbbb"
    assert inspect.await_run(scenario, timeout_s=0) == new  # still going on: follow it
    later = tmp_path / "not-yet"
    thread = threading.Thread(target=lambda: (time.sleep(0.05), make_run(later)))
    thread.start()
    assert inspect.await_run(later, poll_s=0.01, timeout_s=5).parent == later
    thread.join()


# --- events -------------------------------------------------------------------------------


def test_events_while_running_are_merged_by_time(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    events = eventlog.read_run(run)
    assert len(events) == len(RUNNER + MN + HA + FA)  # the torn line is skipped
    assert [e["t_ns"] for e in events] == sorted(e["t_ns"] for e in events)
    out = io.StringIO()
    assert inspect.cmd_events(args(run_dir=str(run)), out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["+0.000", "s", "runner", "run_start", "scenario=lab-x", "run=0"]
    accepted = next(x for x in lines if "registration_accepted" in x)
    assert accepted.split()[:4] == ["+2.052", "s", "mn", "registration_accepted"]
    assert "udp=false" in accepted and "care_of=10.2.0.254" in accepted
    assert "  ---- handoff 0: mn home -> visited ----" in lines
    assert lines.index("  ---- handoff 1: mn visited -> home ----") > lines.index(
        next(x for x in lines if "visitor_added" in x)
    )


def test_events_after_the_run_come_from_events_jsonl(tmp_path: Path) -> None:
    make_run(tmp_path, finished=True)
    out = io.StringIO()
    inspect.cmd_events(args(run_dir=str(tmp_path), event=["request_relayed"]), out)
    assert "msg=annotated" in out.getvalue()


def test_event_filters(tmp_path: Path) -> None:
    run = make_run(tmp_path)

    def shown(**kw: Any) -> list[str]:
        out = io.StringIO()
        inspect.cmd_events(args(run_dir=str(run), **kw), out)
        return [x.split()[3] for x in out.getvalue().splitlines() if not x.startswith("  ----")]

    # a node's own events, and the runner's about it (its service, its moves)
    assert set(shown(node=["ha"])) == {"service_started", "binding_added", "binding_removed"}
    # the runner's steps on a node come with it
    assert "move_start" in shown(node=["mn"]) and "lab_up" not in shown(node=["mn"])
    assert shown(event=["registration"]) == [
        "registration_sent",
        "registration_accepted",
        "registration_sent",
    ]
    assert shown(event=["accepted"]) == ["registration_accepted"]
    assert shown(event=["move"]) == ["move_start", "move_start"]  # not binding_removed
    assert shown(event=["binding_*"]) == ["binding_added", "binding_removed"]
    assert shown(node=["fa"], event=["visitor"]) == ["visitor_added"]
    out = io.StringIO()
    inspect.cmd_events(args(run_dir=str(run), node=["fa"], json=True), out)
    assert [json.loads(x)["event"] for x in out.getvalue().splitlines()] == [
        "service_started",
        "request_relayed",
        "visitor_added",
    ]


def test_format_event_values() -> None:
    line = inspect.format_event(
        {"t_ns": 2_500_000_000, "node": "mn", "event": "x", "a": None, "b": [1], "c": "a b"}, 0
    )
    assert line.split()[:4] == ["+2.500", "s", "mn", "x"]
    assert line.endswith('a=null b=[1] c="a b"')


def test_follow_prints_new_events_in_order_until_the_run_ends(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "events").mkdir(parents=True)
    out = io.StringIO()
    printer = inspect.EventPrinter(out, inspect.EventFilter(), raw=False)

    def writer() -> None:
        with (
            (run / "events" / "mn.jsonl").open("a") as mn,
            (run / "events" / "ha.jsonl").open("a") as ha,
        ):
            mn.write(json.dumps(ev(10, "mn", "first")) + "\n")
            mn.flush()
            time.sleep(0.05)
            mn.write(json.dumps(ev(20, "mn", "second")) + '\n{"t_ns": ')  # torn: not yet
            mn.flush()
            ha.write(json.dumps(ev(30, "ha", "third")) + "\n")
            ha.flush()
            time.sleep(0.05)
            mn.write(f'{T0 + 40 * MS}, "node": "mn", "event": "fourth"}}\n')
            mn.flush()
            time.sleep(0.05)
        (run / "summary.json").write_text("{}")

    thread = threading.Thread(target=writer)
    thread.start()
    inspect.follow_events(
        run, printer, poll_s=0.01, hold_ns=0, clock=lambda: T0 + 10**12, timeout_s=5
    )
    thread.join()
    names = [x.split()[3] for x in out.getvalue().splitlines()]
    assert names == ["first", "second", "third", "fourth"]


def test_follow_holds_back_recent_events(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    out = io.StringIO()
    printer = inspect.EventPrinter(out, inspect.EventFilter(), raw=False)
    now = T0 + 2010 * MS  # events after now - hold are held until the end (the timeout)
    seen: list[int] = []

    def clock() -> int:
        seen.append(len(out.getvalue().splitlines()))
        return now

    inspect.follow_events(run, printer, poll_s=0.01, hold_ns=0, clock=clock, timeout_s=0.05)
    assert seen[0] == 0
    assert 0 < seen[-1] < len(RUNNER + MN + HA + FA) + 2  # the held part came only at the end
    assert len(out.getvalue().splitlines()) == len(RUNNER + MN + HA + FA) + 2


def test_follow_on_a_finished_run_prints_it_all(tmp_path: Path) -> None:
    run = make_run(tmp_path, finished=True)
    out = io.StringIO()
    assert inspect.cmd_events(args(run_dir=str(run), follow=True), out) == 0
    assert "deregistered" in out.getvalue()


# --- state --------------------------------------------------------------------------------


def test_state_tables(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    now_s = (T0 + 5300 * MS) / 1e9
    text = inspect.render_states(run, now_s=now_s)
    assert text.splitlines()[0] == f"{run} (lab r123-0-ab: testbed exec r123-0-ab NODE -- CMD)"
    assert "ha (home agent)  at +5.0 s, written 0.3 s ago" in text
    assert "binding cache: 1 binding" in text
    row = next(x for x in text.splitlines() if x.strip().startswith("192.0.2.100"))
    assert row.split() == [
        "192.0.2.100",
        "192.168.1.119",
        "198.51.100.3:434",
        "udp",
        "yes",
        "600",
        "s",
        "590",
        "s",
        "198.51.100.3:434",
    ]
    assert "visitor list: 1 visitor" in text and "10.2.0.254" in text
    # the MN's service is called "mobile" but runs on node mn
    assert "mobile (mobile node on node mn)" in text
    assert "IP-in-UDP (RFC 3519), keepalive every 1.0 s" in text
    assert "counters: requests 2, accepted 2" in text
    assert "data plane: tx_udp 10, rx_udp 9" in text


def test_state_filter_stale_and_finished(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    by_node = inspect.render_states(run, "mn", now_s=(T0 + 9000 * MS) / 1e9)
    assert "mobile (mobile node on node mn)" in by_node and "(home agent" not in by_node
    assert "stale" in by_node
    assert "binding cache" in inspect.render_states(run, "ha", now_s=0)
    with pytest.raises(LookupError, match=r"no agent state for gw .*fa, ha, mobile"):
        inspect.render_states(run, "gw")
    (run / "summary.json").write_text("{}")
    done = inspect.render_states(run, now_s=0)
    assert "the run is over" in done and "has the agent stopped" not in done


def test_state_of_an_agent_at_home_and_of_unknown_roles(tmp_path: Path) -> None:
    run = tmp_path / "hand"
    (run / "state").mkdir(parents=True)
    (run / "state" / "mn.json").write_text(
        json.dumps(
            {
                "role": "mn",
                "t_ns": T0,
                "mode": "home",
                "registered": False,
                "state": "home",
                "care_of": None,
                "binding": None,
            }
        )
    )
    (run / "state" / "proxy.json").write_text(json.dumps({"role": "proxy", "t_ns": T0, "x": 1}))
    (run / "state" / "broken.json").write_text("{")
    text = inspect.render_states(run, now_s=T0 / 1e9)
    assert "binding: none (at home, or not registered)" in text
    assert "proxy (MIP proxy)" in text and "x: 1" in text
    assert "broken" not in text


def test_state_json_and_cli_registration(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    parser = argparse.ArgumentParser(prog="testbed")
    inspect.register(parser.add_subparsers(dest="command"))
    parsed = parser.parse_args(["state", str(run), "ha", "--json"])
    out = io.StringIO()
    assert parsed.func(parsed, out) == 0
    data = json.loads(out.getvalue())
    assert list(data) == ["ha"] and data["ha"]["node"] == "ha"
    parsed = parser.parse_args(["events", str(run), "-f", "--node", "mn", "--event", "reg"])
    assert parsed.follow and parsed.node == ["mn"] and parsed.event == ["reg"]
    parsed = parser.parse_args(["state", str(run), "--watch"])
    assert parsed.watch == 1.0
    (run / "summary.json").write_text("{}")  # --watch stops when the run is over
    out = io.StringIO()
    assert parsed.func(parsed, out) == 0
    assert out.getvalue().startswith("==== ")


def test_main_reports_a_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert inspect.main(["events", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err


# --- the labs' expected blocks ------------------------------------------------------------


README = """# A lab

Text with `inline` code.

```sh
testbed run labs/x/scenario.yaml
```

```expected
handoff[0].mode = f        # a comment
handoffs = 2
```

More text.

~~~expected scenario-b.yaml
final_mode = home
~~~

```expected
tcp.errors = 0
```
"""


def test_expected_blocks() -> None:
    blocks = labcheck.expected_blocks(README)
    assert list(blocks) == ["scenario.yaml", "scenario-b.yaml"]
    assert [text for _, text in blocks["scenario.yaml"]] == [
        "handoff[0].mode = f        # a comment",
        "handoffs = 2",
        "tcp.errors = 0",
    ]
    assert blocks["scenario-b.yaml"] == [(17, "final_mode = home")]


@pytest.mark.parametrize(
    ("line", "left", "op", "right"),
    [
        ("handoff[0].mode = f", labcheck.Metric("handoff[0].mode"), "=", labcheck.Literal("f")),
        ("handoffs == 2", labcheck.Metric("handoffs"), "==", labcheck.Literal(2)),
        (
            "handoff[1].tunnel = null",
            labcheck.Metric("handoff[1].tunnel"),
            "=",
            labcheck.Literal(None),
        ),
        ("tcp.bytes > 0.5", labcheck.Metric("tcp.bytes"), ">", labcheck.Literal(0.5)),
        ("final_mode != 'f'", labcheck.Metric("final_mode"), "!=", labcheck.Literal("f")),
        (
            "handoff[0].phases_ms.a <= handoff[0].phases_ms.b",
            labcheck.Metric("handoff[0].phases_ms.a"),
            "<=",
            labcheck.Metric("handoff[0].phases_ms.b"),
        ),
        (
            "interruption_ms.p95 < 100",
            labcheck.Metric("interruption_ms.p95"),
            "<",
            labcheck.Literal(100),
        ),
    ],
)
def test_parse_comparisons(line: str, left: Any, op: str, right: Any) -> None:
    parsed = labcheck.parse_line(line)
    assert parsed is not None
    assert (parsed.left, parsed.op, parsed.right) == (left, op, right)


def test_parse_selectors() -> None:
    parsed = labcheck.parse_line(
        "events contains registration_accepted from mn in handoff[0] with mode=f udp=false"
    )
    assert parsed is not None
    assert parsed.op == ">=" and parsed.right == labcheck.Literal(1)
    assert parsed.left == labcheck.Func(
        "count",
        labcheck.Selector("registration_accepted", "mn", "0", (("mode", "f"), ("udp", False))),
    )
    lacks = labcheck.parse_line("events lacks visitor_* from fa")
    assert lacks is not None and lacks.op == "==" and lacks.right == labcheck.Literal(0)
    timed = labcheck.parse_line("time(a in handoff[*]) < time(b from x)")
    assert timed is not None
    assert timed.left == labcheck.Func("time", labcheck.Selector("a", None, "*"))
    assert labcheck.parse_line("   # only a comment") is None
    assert labcheck.parse_line("") is None


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("handoff[0].mode", "expected 'TERM OP TERM'"),
        ("handoff[0].mode=f", "expected 'TERM OP TERM'"),
        ("events has x", "events contains"),
        ("events contains", "events contains"),
        ("events contains x from", "unexpected 'from'"),
        ("events contains x in visited", "handoff"),
        ("events contains x with mode", "KEY=VALUE"),
        ("events contains x with", "KEY=VALUE"),
        ("count() > 1", "event name"),
        ("handoff[0].mode = a b", "cannot read"),
    ],
)
def test_parse_errors_name_the_line(line: str, error: str) -> None:
    with pytest.raises(labcheck.LabCheckError, match=error) as info:
        labcheck.parse_line(line, 12)
    assert "line 12" in str(info.value)


EVENTS = sorted(RUNNER + MN + HA + FA, key=lambda e: e["t_ns"])


def check(line: str) -> labcheck.Check:
    return labcheck.check_lines([(1, line)], RunSummary.model_validate(SUMMARY), EVENTS)[0]


@pytest.mark.parametrize(
    "line",
    [
        "handoffs = 2",
        "handoff[0].mode = f",
        "handoff[1].tunnel = null",
        "handoff[1].tunnel != ipip",
        "handoff[0].phases_ms.agent_discovered < handoff[0].phases_ms.registration_sent",
        "handoff[*].interruption_ms < 100",
        "handoff[1].interruption_ms.p95 < 60",  # each move's (one repetition here)
        "handoff[0].interruption_ms.max = 60.5",
        "stream.down.lost = 12",
        "streams.down.received >= 900",
        "loss_before_first_move = 0",
        "final_mode = home",
        "tcp.errors = 0",
        "passed = true",
        "error = null",
        "events contains registration_accepted from mn in handoff[0] with mode=f udp=false code=0",
        "events contains binding_added from ha with care_of=10.2.* reverse=true",
        "events contains registration_sent from mn in handoff[1] with lifetime=0 agent=null",
        "events lacks request_relayed from fa in handoff[1]",
        "events lacks visitor_removed from fa",
        "events contains registration_* from mn in handoff[*]",
        "count(registration_sent from mn) = 2",
        "count(agent_discovered from mn with home=true) = 1",
        "time(request_relayed from fa in handoff[0]) = 20",
        "time(request_relayed in handoff[0]) < time(binding_added in handoff[0])",
        "time(binding_added from ha in handoff[0]) < handoff[0].interruption_ms",
        "time(run_start) = 0",
        "time(deregistered from mn in handoff[1]) = 30",
    ],
)
def test_checks_that_hold(line: str) -> None:
    result = check(line)
    assert result.passed, result


@pytest.mark.parametrize(
    ("line", "detail"),
    [
        ("handoff[0].mode = c", "handoff[0].mode is f"),
        ("handoff[2].mode = f", "there is no handoff 2"),
        ("handoff[0].phases_ms.dhcp_started < 50", "handoff 0 has no phase dhcp_started"),
        ("handoff[*].interruption_ms < 50", "handoff[0].interruption_ms is 60.5"),
        ("handoff[0].mode < 3", "not both numbers"),
        ("events contains binding_added from fa", "count(binding_added from fa) is 0"),
        ("events contains registration_accepted in handoff[1]", "is 0"),
        ("events lacks registration_sent from mn in handoff[1]", "is 1"),
        ("events contains x in handoff[5]", "there is no handoff 5"),
        ("time(visitor_removed from fa) < 10", "no visitor_removed from fa"),
        ("nothing.here = 1", "not a metric"),
        # two moves of different kinds have no pooled percentile
        ("interruption_ms.p95 < 100", "2 moves: name one, handoff[N].interruption_ms.p95"),
    ],
)
def test_checks_that_fail_say_why(line: str, detail: str) -> None:
    try:
        result = check(line)
    except labcheck.LabCheckError as exc:
        assert detail in str(exc)
        return
    assert not result.passed
    assert detail in result.detail, result.detail
    assert str(result).startswith("FAIL  line 1: ")


def test_star_without_handoffs_fails() -> None:
    result = labcheck.check_lines([(3, "handoff[*].mode = f")], RunSummary(scenario="s"), [])[0]
    assert not result.passed and result.detail == "there are no handoffs"


def test_check_run_and_main(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = make_run(tmp_path, finished=True)
    readme = tmp_path / "README.md"
    readme.write_text(
        "```expected\nhandoff[0].mode = f\nevents contains deregistered from mn\n```\n"
        "```expected scenario-b.yaml\nhandoff[0].mode = c\n```\n"
    )
    checks = labcheck.check_run(readme, run)
    assert [c.passed for c in checks] == [True, True]
    assert labcheck.main([str(readme), str(run)]) == 0
    assert "2/2 expected observations hold" in capsys.readouterr().out
    assert labcheck.main([str(readme), str(run), "--scenario", "scenario-b.yaml"]) == 1
    assert "FAIL  line 6: handoff[0].mode = c" in capsys.readouterr().out
    assert labcheck.main([str(readme), str(run), "--scenario", "other.yaml"]) == 2
    assert "no ```expected other.yaml block" in capsys.readouterr().err
