"""The gate's statistics: the Mann-Whitney U distribution, the Hodges-Lehmann shift and its
distribution-free bounds, Fisher's exact test."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.results import stats
from testbed.scenario import metrics

sizes = st.integers(min_value=1, max_value=6)
timings = st.lists(
    st.floats(min_value=0.0, max_value=500.0, allow_nan=False), min_size=1, max_size=12
)


def brute_u_counts(n: int, m: int) -> tuple[int, ...]:
    """U over every way of ranking n values of one sample among m of the other."""
    counts = [0] * (n * m + 1)
    for positions in itertools.combinations(range(n + m), n):
        chosen = set(positions)
        u = sum(1 for i in positions for j in range(i + 1, n + m) if j not in chosen)
        counts[u] += 1
    return tuple(counts)


@given(sizes, sizes)
@settings(max_examples=40, deadline=None)
def test_u_distribution_is_exact(n: int, m: int) -> None:
    counts = stats.u_counts(n, m)
    assert counts == brute_u_counts(n, m)
    assert sum(counts) == math.comb(n + m, n)
    assert counts == counts[::-1]  # symmetric about n*m/2
    assert stats.u_counts(m, n) == counts


def test_bound_rank_matches_the_published_critical_values() -> None:
    # one-tailed Mann-Whitney critical U for 20 vs 20: 114 at 0.01, 138 at 0.05
    assert stats.bound_rank(20, 20, 0.01) == 115
    assert stats.bound_rank(20, 20, 0.05) == 139
    assert stats.bound_rank(5, 5, 0.01) == 2  # P(U = 0) = 1/252 < 0.01 < P(U <= 1) = 2/252
    assert stats.bound_rank(3, 3, 0.01) == 1  # 1/20 > 0.01: too small, the smallest pair
    assert stats.bound_rank(1, 1, 0.01) == 1


def test_normal_approximation_is_close_to_the_exact_rank() -> None:
    n, m = 99, 102  # beyond EXACT_LIMIT
    assert n * m > stats.EXACT_LIMIT
    counts, total = stats.u_counts(n, m), math.comb(n + m, n)
    for alpha in (0.01, 0.05):
        cumulative, a = 0, -1
        for u, count in enumerate(counts):
            cumulative += count
            if cumulative > alpha * total:
                break
            a = u
        assert abs(stats.bound_rank(n, m, alpha) - (a + 1)) <= 2


def test_percentile_agrees_with_the_scenario_metrics() -> None:
    values = [5.0, 1.0, 3.0, 9.0, 7.0]
    for pct in (0, 25, 50, 95, 100):
        assert stats.percentile(values, pct) == metrics.percentile(values, pct)
    assert stats.percentile([], 50) is None
    assert stats.spread([1.0, 2.0, 3.0, 4.0, 5.0]) == 2.0


@given(timings, timings, st.floats(min_value=-100, max_value=100, allow_nan=False))
@settings(max_examples=60, deadline=None)
def test_the_shift_moves_with_the_current_sample(b: list[float], c: list[float], d: float) -> None:
    one = stats.shift(b, c, 0.95)
    moved = stats.shift(b, [x + d for x in c], 0.95)
    assert one.lower <= one.estimate <= one.upper
    for name in ("estimate", "lower", "upper"):
        assert getattr(moved, name) == pytest.approx(getattr(one, name) + d, abs=1e-6)


@given(timings)
@settings(max_examples=40, deadline=None)
def test_a_sample_against_itself_has_no_shift(values: list[float]) -> None:
    s = stats.shift(values, values, 0.99)
    assert s.estimate == pytest.approx(0.0, abs=1e-9)
    assert s.lower <= 0.0 <= s.upper
    assert not s.slower(0.0) and not s.faster(0.0)


@given(timings, timings, st.integers(min_value=0, max_value=10_000))
@settings(max_examples=60, deadline=None)
def test_large_samples_take_the_same_order_statistics(
    b: list[float], c: list[float], seed: int
) -> None:
    k = random.Random(seed).randint(1, len(b) * len(c))
    sorted_k, sorted_hl = stats.kth_difference(b, c, k), stats.hodges_lehmann(b, c)
    old = stats.SORT_LIMIT
    stats.SORT_LIMIT = 0  # the bisection used beyond it
    try:
        assert stats.kth_difference(b, c, k) == pytest.approx(sorted_k, abs=1e-6)
        assert stats.hodges_lehmann(b, c) == pytest.approx(sorted_hl, abs=1e-6)
    finally:
        stats.SORT_LIMIT = old


def test_the_bound_holds_at_its_level() -> None:
    """The lower bound exceeds the true shift in about 1 - confidence of the trials."""
    rng = random.Random(7)
    trials, above = 1500, 0
    for _ in range(trials):
        b = [rng.gauss(30, 3) for _ in range(20)]
        c = [rng.gauss(33, 3) for _ in range(20)]  # true shift 3
        above += stats.shift(b, c, 0.95).lower > 3.0
    assert 0.02 < above / trials < 0.08


def test_a_wide_baseline_needs_a_larger_shift() -> None:
    rng = random.Random(3)
    tight = [30 + rng.gauss(0, 0.5) for _ in range(20)]
    wide = [30 + rng.gauss(0, 8) for _ in range(20)]
    assert stats.shift(tight, [x + 5 for x in tight], 0.99).slower(2.0)
    assert not stats.shift(wide, [x + 5 for x in wide], 0.99).slower(2.0)


def test_small_samples_need_every_pair() -> None:
    s = stats.shift([10.0], [15.0], 0.99)
    assert not s.exact_level and s.lower == s.upper == s.estimate == 5.0
    s = stats.shift([10.0, 11.0, 12.0], [13.0, 20.0, 21.0], 0.99)
    assert s.lower == 1.0  # the smallest difference, 13 - 12


def test_shift_rejects_what_it_cannot_judge() -> None:
    with pytest.raises(ValueError):
        stats.shift([], [1.0], 0.99)
    with pytest.raises(ValueError):
        stats.shift([1.0], [1.0], 1.0)
    with pytest.raises(ValueError):
        stats.kth_difference([1.0], [2.0], 2)


def brute_fisher(fc: int, nc: int, fb: int, nb: int) -> float:
    runs = [1] * (fc + fb) + [0] * (nc + nb - fc - fb)
    hits = total = 0
    for chosen in itertools.combinations(range(nc + nb), nc):
        total += 1
        hits += sum(runs[i] for i in chosen) >= fc
    return hits / total


@given(st.data())
@settings(max_examples=40, deadline=None)
def test_fisher_is_exact(data: st.DataObject) -> None:
    nc = data.draw(st.integers(1, 6))
    nb = data.draw(st.integers(1, 6))
    fc = data.draw(st.integers(0, nc))
    fb = data.draw(st.integers(0, nb))
    assert stats.fisher_greater(fc, nc, fb, nb) == pytest.approx(brute_fisher(fc, nc, fb, nb))


def test_fisher_and_the_most_extreme_case() -> None:
    assert stats.fisher_greater(0, 20, 0, 20) == 1.0
    assert stats.fisher_greater(1, 20, 0, 20) == pytest.approx(0.5)
    assert stats.fisher_greater(20, 20, 0, 20) < 1e-10
    assert stats.most_extreme(1, 1, 0) and not stats.most_extreme(1, 2, 0)
    assert not stats.most_extreme(1, 1, 1)
    with pytest.raises(ValueError):
        stats.fisher_greater(3, 2, 0, 2)
