"""The probe's pacing (testbed/programs/probe.py): a sender kept waiting sends the slots it
missed, so a stream keeps its rate; one stopped for longer than CATCH_UP_NS starts again."""

from __future__ import annotations

from testbed.programs.probe import CATCH_UP_NS, next_slot

MS = 1_000_000


def test_on_time_the_next_slot_follows() -> None:
    assert next_slot(100 * MS, 100 * MS, 2 * MS) == 102 * MS


def test_late_by_a_few_ms_the_missed_slots_are_due_now() -> None:
    # sent 17 ms late: the next slot (and the seven after it) are already due
    assert next_slot(100 * MS, 117 * MS, 2 * MS) == 102 * MS
    slots, at = 0, 100 * MS
    while at <= 117 * MS:  # the loop sends while its slot is due: the missed ones at once
        at = next_slot(at, 117 * MS, 2 * MS)
        slots += 1
    assert slots == 9 and at == 118 * MS  # back on the schedule


def test_stopped_longer_it_starts_again_from_now() -> None:
    late = 100 * MS + 2 * MS + CATCH_UP_NS + 1
    assert next_slot(100 * MS, late, 2 * MS) == late + 2 * MS
