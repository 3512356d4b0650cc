"""Handoff metrics and expectations on synthetic probe records and events (pure logic)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mipbase.specfile import SpecError
from testbed.scenario import metrics
from testbed.scenario.expect import evaluate
from testbed.scenario.load import load_scenario
from testbed.scenario.model import ExpectSpec
from testbed.summary import RunSummary

MS = 1_000_000


def stream(
    sent: int,
    lost: set[int],
    delay_ms: float = 2.0,
    interval_ms: float = 2.0,
    extra_delay: dict[int, float] | None = None,
) -> metrics.Stream:
    s = metrics.Stream("down", attempted=sent, interval_ns=int(interval_ms * MS))
    for seq in range(sent):
        if seq in lost:
            continue
        t_send = 1_000 * MS + seq * int(interval_ms * MS)
        extra = (extra_delay or {}).get(seq, 0.0)
        s.seq.append(seq)
        s.t_send.append(t_send)
        s.t_recv.append(t_send + int((delay_ms + extra) * MS))
    return s


def test_interruption_spans_last_before_to_first_after() -> None:
    # packets 100..249 lost: a 300 ms hole in a 2 ms stream
    s = stream(500, set(range(100, 250)))
    t_move = 1_000 * MS + 100 * 2 * MS  # packet 100's send time
    result = metrics.interruption(s, t_move, None)
    assert result.lost == 150
    assert result.ms == pytest.approx(302.0)  # from packet 99's arrival to packet 250's


def test_never_recovered_is_none_and_counts_what_was_sent() -> None:
    s = stream(500, set(range(100, 500)))
    result = metrics.interruption(s, 1_000 * MS + 200 * MS, None)
    assert result.ms is None and result.lost == 400


def test_late_packets_from_before_the_move_do_not_count_as_recovery() -> None:
    # packet 99 is sent before the move but delayed 500 ms: it is not evidence of recovery
    s = stream(500, set(range(100, 150)), extra_delay={99: 500.0})
    t_move = 1_000 * MS + 100 * 2 * MS
    result = metrics.interruption(s, t_move, None)
    assert result.first_after_ns == s.t_recv[s.seq.index(150)]
    assert result.lost == 50


def test_window_ends_at_the_next_move() -> None:
    s = stream(1000, set(range(100, 400)))
    t1 = 1_000 * MS + 100 * 2 * MS
    t2 = 1_000 * MS + 300 * 2 * MS  # the next move happens before recovery
    result = metrics.interruption(s, t1, t2)
    assert result.ms is None and result.lost == 200


def test_loss_before_and_percentiles() -> None:
    s = stream(100, {5, 6})
    assert metrics.lost_before(s, 1_000 * MS + 50 * 2 * MS) == 2
    assert metrics.percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert metrics.percentile([], 95) is None
    assert metrics.owd_stats(s)["p50"] == pytest.approx(2.0)


def test_phases_take_the_first_event_of_each_phase_in_the_window() -> None:
    t = 10 * MS
    events = [
        {"t_ns": t - 1, "node": "mn", "event": "dhcp_ack"},  # before the move: ignored
        {"t_ns": t, "node": "runner", "event": "link_down"},
        {"t_ns": t + 2 * MS, "node": "mn", "event": "movement_detected"},
        {"t_ns": t + 5 * MS, "node": "mn", "event": "dhcp_ack"},
        {"t_ns": t + 6 * MS, "node": "mn", "event": "dhcp_ack"},
        {"t_ns": t + 7 * MS, "node": "ha", "event": "whatever", "phase": "ha_bound"},
        {"t_ns": t + 8 * MS, "node": "cn", "event": "movement_detected"},  # not the MN
        {"t_ns": t + 9 * MS, "node": "mn", "event": "registration_accepted", "mode": "c"},
    ]
    phases = metrics.phases(events, t, None, "mn")
    assert phases == {
        "link_down": 0.0,
        "movement_detected": 2.0,
        "address_acquired": 5.0,
        "ha_bound": 7.0,
        "registration_accepted": 9.0,
    }
    assert metrics.mode_at(events, t, None, "mn", "none") == "c"
    assert metrics.mode_at(events, t, t + 8 * MS, "mn", "none") == "none"


def run(handoffs: list[dict], **extra) -> RunSummary:
    """One repetition's summary, each handoff numbered by its place unless it says."""
    return RunSummary.model_validate(
        {
            "scenario": "s",
            "handoffs": [{"index": i, **h} for i, h in enumerate(handoffs)],
            "streams": {},
            "loss_before_first_move": 0,
            "final_mode": handoffs[-1]["mode"] if handoffs else "home",
            **extra,
        }
    )


def expect(**kwargs) -> ExpectSpec:
    return ExpectSpec.model_validate(kwargs)


def test_expectations() -> None:
    runs = [
        run(
            [
                {"interruption_ms": 120.0, "mode": "f", "phases_ms": {"registration_accepted": 9}},
                {"interruption_ms": None, "mode": "none", "phases_ms": {}},
            ]
        )
    ]
    results = evaluate(
        [
            expect(metric="handoff[0].interruption_ms", below=200),
            expect(metric="handoff[1].interruption_ms", below=200),
            expect(metric="handoff[*].mode", equals="f"),
            expect(metric="handoff[0].phases_ms.registration_accepted", at_most=9),
            expect(metric="handoff[5].mode", equals="f"),
            expect(metric="handoff[1].interruption_ms", is_null=True),
            expect(metric="final_mode", equals="none"),
            expect(metric="handoffs", equals=2),
        ],
        runs,
    )
    assert [r["passed"] for r in results] == [
        True,
        False,
        True,
        False,
        True,
        False,
        True,
        True,
        True,
    ]
    assert results[1]["detail"].startswith("no value")
    assert results[5]["detail"] == "there is no handoff 5"


def test_percentile_expectation_across_repetitions() -> None:
    runs = [run([{"interruption_ms": float(v), "mode": "c"}]) for v in (100, 110, 300)]
    (result,) = evaluate([expect(metric="interruption_ms.p50", below=150)], runs)
    assert result["passed"] and result["value"] == 110


def two_kinds_of_move(away: list[float | None], back: list[float]) -> list[RunSummary]:
    """Repetitions of home -> visited then visited -> home, the returns much shorter."""
    return [
        run(
            [
                {"index": 0, "from": "home", "to": "visited", "interruption_ms": a, "mode": "f"},
                {"index": 1, "from": "visited", "to": "home", "interruption_ms": b, "mode": "home"},
            ]
        )
        for a, b in zip(away, back, strict=True)
    ]


def test_percentiles_are_per_move_never_pooled_over_kinds_of_move() -> None:
    runs = two_kinds_of_move([100.0, 110.0, 300.0], [10.0, 12.0, 11.0])
    away, back = evaluate([expect(metric="interruption_ms.p50", below=50)], runs)
    # pooled over all six, the median would be 55.5 and both moves would fail or pass alike
    assert (away["value"], away["passed"]) == (110.0, False)
    assert (back["value"], back["passed"]) == (11.0, True)
    assert away["name"].startswith("handoff[0].interruption_ms.p50 (home->visited, n=3)")
    (one,) = evaluate([expect(metric="handoff[1].interruption_ms.max", below=12.5)], runs)
    assert one["value"] == 12.0 and one["passed"]
    (gone,) = evaluate([expect(metric="handoff[4].interruption_ms.p95", below=1)], runs)
    assert gone["detail"] == "there is no handoff 4"


def test_a_move_that_never_recovered_has_no_percentile() -> None:
    runs = two_kinds_of_move([100.0, None, 300.0], [10.0, 12.0, 11.0])
    away, back = evaluate([expect(metric="interruption_ms.p95", below=1000)], runs)
    assert not away["passed"] and "never recovered" in away["detail"]
    assert back["passed"]
    summary = metrics.move_percentiles(
        h.model_dump(by_alias=True) for r in runs for h in r.handoffs
    )
    assert [m["handoff"] for m in summary] == [0, 1]
    assert summary[0]["interruption_ms"] == {"p50": None, "p95": None, "max": None, "n": 3}
    assert summary[1]["interruption_ms"]["max"] == 12.0


@pytest.mark.parametrize(
    ("metric", "needle"),
    [
        ("handoff[0].mode.p95", "has no parts"),
        ("handoff[0].interruption_ms.p42", "over its repetitions: p50, p95, p99, max"),
    ],
)
def test_percentiles_only_of_numbers(metric: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        expect(metric=metric, below=1)


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ({"metric": "nonsense", "below": 1}, "unknown metric"),
        ({"metric": "final_mode"}, "exactly one of"),
    ],
)
def test_bad_expectations(bad: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        ExpectSpec.model_validate(bad)


def test_scenario_errors_name_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        textwrap.dedent("""\
        name: s
        topology: topologies/enterprise.yaml
        timeline:
          - {at: 1s, move: {node: mn, to: office}}
          - {at: 2s, move: {node: mn, to: office}, link: {node: mn, state: down}}
    """)
    )
    with pytest.raises(SpecError) as info:
        load_scenario(path)
    assert info.value.line == 5 and info.value.field == "timeline[1]"
    assert "exactly one action" in info.value.message
    path.write_text(
        path.read_text()
        .replace(", link: {node: mn, state: down}", "")
        .replace("node: mn, to: office}}\n", "node: nm, to: office}}\n", 1)
    )
    with pytest.raises(SpecError) as info:
        load_scenario(path)
    assert info.value.line == 4 and info.value.field == "timeline[0].move.node"
    assert "unknown node 'nm'" in info.value.message


def test_project_scenarios_validate() -> None:
    root = Path(__file__).resolve().parents[2]
    for path in sorted((root / "scenarios").rglob("*.yaml")):
        assert load_scenario(path).name


def test_packets_through_the_old_link_before_it_went_down_are_not_recovery() -> None:
    # the switch took 100 ms to really cut the link: packets 100..149 still got through,
    # the outage is 150..299 and the node was attached again at packet 300's send time
    s = stream(600, set(range(150, 300)))
    t_move = 1_000 * MS + 100 * 2 * MS
    t_up = 1_000 * MS + 300 * 2 * MS
    naive = metrics.interruption(s, t_move, None)
    assert naive.ms == pytest.approx(2.0)  # what counting from the move stamp alone says
    result = metrics.interruption(s, t_move, None, t_up)
    assert result.ms == pytest.approx(302.0) and result.lost == 150


def test_metric_paths_read_the_summary_by_its_names() -> None:
    """The paths walk the typed summary: a record comes back as summary.json has it, a key a
    tool added is reachable, a field the file did not record reads as its default (null)
    and a name the summary has no field for says so."""
    from testbed.scenario.metricpath import Missing, resolve_one

    summary = run(
        [{"mode": "f", "outage": {"down": {"last_before_ns": 5, "first_after_ns": 9}}}],
        streams={"down": {"lost": 3}},
        tool_note={"k": 1},
    )
    assert resolve_one("handoff[0].outage.down", summary) == {
        "last_before_ns": 5,
        "first_after_ns": 9,
    }
    assert resolve_one("handoff[0].from", summary) is None
    assert resolve_one("tool_note.k", summary) == 1
    assert resolve_one("stream.down.lost", summary) == 3
    assert resolve_one("stream.down.sent", summary) is None  # not recorded: the default
    nothing = resolve_one("stream.down.jitter", summary)
    assert isinstance(nothing, Missing) and nothing.why == "stream down has no jitter"
    assert isinstance(resolve_one("handoff[0].from_", summary), Missing)
