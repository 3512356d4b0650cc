"""TESTBED_TIME_SCALE: one factor for every fixed wait (pure)."""

from __future__ import annotations

import pytest

from testbed import timescale


@pytest.fixture(autouse=True)
def fresh_factor():
    timescale.factor.cache_clear()
    yield
    timescale.factor.cache_clear()


def test_unset_is_one_and_a_factor_stretches_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(timescale.ENV, raising=False)
    assert timescale.scaled(10.0) == 10.0
    timescale.factor.cache_clear()
    monkeypatch.setenv(timescale.ENV, "12.5")
    assert timescale.scaled(0.3) == pytest.approx(3.75)
    assert timescale.scaled(-1) == -1  # vici's "do not wait" stays as it is
    assert timescale.scaled(0) == 0


@pytest.mark.parametrize("bad", ["fast", "0", "-2", "nan", "inf"])
def test_a_bad_factor_is_named(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv(timescale.ENV, bad)
    with pytest.raises(ValueError, match=timescale.ENV):
        timescale.factor()
