"""The one definition of an outage and of a TCP stall, as the summary records them for the
figures (issue 17, item 2)."""

from __future__ import annotations

import pytest

from testbed.scenario import metrics

MS = 1_000_000


def stream(sent: int, lost: set[int], delay_ms: float = 2.0) -> metrics.Stream:
    s = metrics.Stream("down", attempted=sent, interval_ns=2 * MS)
    for seq in range(sent):
        if seq not in lost:
            s.seq.append(seq)
            s.t_send.append(1_000 * MS + seq * 2 * MS)
            s.t_recv.append(s.t_send[-1] + int(delay_ms * MS))
    return s


def test_outage_bounds_are_what_the_interruption_measured() -> None:
    s = stream(200, set(range(50, 60)))
    result = metrics.interruption(s, 1_100 * MS, None)
    bounds = metrics.outage_bounds(result)
    assert bounds["first_after_ns"] - bounds["last_before_ns"] == pytest.approx(result.ms * MS)


@pytest.mark.parametrize(
    ("samples", "window", "expected"),
    [
        # progress every 50 ms, none from 100 to 400: the stall across the move
        (
            [(t, t // 10) for t in (0, 50, 100)] + [(t, 10 + t // 10) for t in (400, 450)],
            (120, None),
            {"from_ns": 100, "to_ns": 400, "ms": 0.0},
        ),
        # never resumes: open to the end of the window
        ([(0, 1), (50, 2), (100, 2), (150, 2)], (60, 140), {"from_ns": 50, "to_ns": None}),
        # a longer stall before the window does not count
        ([(0, 1), (1000, 2), (1010, 3), (1030, 4)], (1005, None), {"from_ns": 1010}),
        ([], (0, None), None),
    ],
)
def test_tcp_stall_is_the_longest_without_progress_over_the_move(
    samples: list, window: tuple, expected: dict | None
) -> None:
    stall = metrics.tcp_stall(samples, *window)
    if expected is None:
        assert stall is None
    else:
        assert stall is not None and expected.items() <= stall.items()
