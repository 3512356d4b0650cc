"""mipbase.clock: one factor for every fixed wait (TESTBED_TIME_SCALE), the skewable wall clock."""

from __future__ import annotations

import time

import pytest

from mipbase import clock


@pytest.fixture(autouse=True)
def fresh_factor():
    clock.factor.cache_clear()
    yield
    clock.factor.cache_clear()


def test_unset_is_one_and_a_factor_stretches_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(clock.ENV, raising=False)
    assert clock.scaled(10.0) == 10.0
    clock.factor.cache_clear()
    monkeypatch.setenv(clock.ENV, "12.5")
    assert clock.scaled(0.3) == pytest.approx(3.75)
    assert clock.scaled(-1) == -1  # vici's "do not wait" stays as it is
    assert clock.scaled(0) == 0


@pytest.mark.parametrize("bad", ["fast", "0", "-2", "nan", "inf"])
def test_a_bad_factor_is_named(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv(clock.ENV, bad)
    with pytest.raises(ValueError, match=clock.ENV):
        clock.factor()


def test_the_wall_clock_is_skewed_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "CLOCK_SKEW_S", 3600.0)
    assert clock.wallclock() - time.time() == pytest.approx(3600.0, abs=5)
    monkeypatch.setattr(clock, "CLOCK_SKEW_S", 0.0)
    assert abs(clock.wallclock() - time.time()) < 5
