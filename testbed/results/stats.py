"""Statistics for the baseline gate: pure functions, no I/O.

The gate asks, per move and metric, "did the current batch get slower than the baseline by
more than the tolerance?", with the baseline's own spread taken into account. It uses the
shift between the two samples (current minus baseline):

* ``estimate``: the Hodges-Lehmann estimate, the median of all pairwise differences
  ``c_j - b_i``;
* ``lower`` / ``upper``: its distribution-free one-sided confidence bounds (Moses), the
  k-th smallest / largest pairwise difference, with k from the Mann-Whitney U distribution
  (exact for small samples, normal approximation beyond ``EXACT_LIMIT`` pairs).

``lower > threshold`` is the same verdict as a one-sided Mann-Whitney U test of "the shift is
at most ``threshold``" (the current sample moved back by ``threshold`` against the baseline)
at level ``1 - confidence``: the gate flags a move only when it is confident that it got
slower by more than the tolerance, however wide either sample is. When the samples are too
small for the confidence level (1 vs 1, 3 vs 3 at 99 %), k is 1: every pair must differ by
more than the threshold.

Failures (a stream that never recovered, a phase that no longer happens) are counted apart:
``fisher_greater`` is the one-sided p of Fisher's exact test that the current batch fails
more often than the baseline.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

EXACT_LIMIT = 10_000  # n * m up to which the U distribution is computed exactly
SORT_LIMIT = 250_000  # n * m up to which the pairwise differences are listed and sorted


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Linear interpolation between order statistics (as numpy's default); None if empty."""
    data = sorted(values)
    if not data:
        return None
    rank = (len(data) - 1) * pct / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return data[low] + (data[high] - data[low]) * (rank - low)


def spread(values: Sequence[float]) -> float | None:
    """The interquartile range (p75 - p25): robust to the odd slow repetition."""
    if not values:
        return None
    return percentile(values, 75) - percentile(values, 25)  # type: ignore[operator]


@lru_cache(maxsize=256)
def u_counts(n: int, m: int) -> tuple[int, ...]:
    """Number of arrangements giving each value 0..n*m of the Mann-Whitney U statistic for
    samples of n and m without ties: the coefficients of the Gaussian binomial
    ``[n+m choose n]_q = prod_{i=1..n} (1 - q^(m+i)) / (1 - q^i)``."""
    if n > m:
        return u_counts(m, n)  # symmetric in n and m
    size = n * m + 1
    poly = [0] * size
    poly[0] = 1
    for i in range(1, n + 1):
        step = m + i
        for u in range(size - 1, step - 1, -1):  # times (1 - q^(m+i))
            poly[u] -= poly[u - step]
        for u in range(i, size):  # divided by (1 - q^i): exact, a running sum with stride i
            poly[u] += poly[u - i]
    return tuple(poly)


def u_lower_tail(n: int, m: int, a: int) -> float:
    """P(U <= a) under the null hypothesis (no shift), for samples of n and m."""
    if a < 0:
        return 0.0
    if a >= n * m:
        return 1.0
    if n * m <= EXACT_LIMIT:
        counts = u_counts(n, m)
        return sum(counts[: a + 1]) / math.comb(n + m, n)
    mean, sd = n * m / 2.0, math.sqrt(n * m * (n + m + 1) / 12.0)
    return NormalDist(mean, sd).cdf(a + 0.5)


@lru_cache(maxsize=1024)
def bound_rank(n: int, m: int, alpha: float) -> int:
    """k (1-based) such that the k-th smallest of the n*m pairwise differences is a lower
    confidence bound of the shift at level 1 - alpha: the largest a with P(U <= a) <= alpha,
    plus one. 1 (the smallest difference) when no a is that unlikely (samples too small)."""
    if n * m <= EXACT_LIMIT:
        counts, total = u_counts(n, m), math.comb(n + m, n)
        cumulative, a = 0, -1
        for u, count in enumerate(counts):
            cumulative += count
            if cumulative > alpha * total:
                break
            a = u
        return max(a + 1, 1)
    mean, sd = n * m / 2.0, math.sqrt(n * m * (n + m + 1) / 12.0)
    a = math.floor(NormalDist(mean, sd).inv_cdf(alpha) - 0.5)
    while a >= 0 and u_lower_tail(n, m, a) > alpha:
        a -= 1
    return max(a + 1, 1)


def _differences(baseline: Sequence[float], current: Sequence[float]) -> list[float]:
    return sorted(c - b for c in current for b in baseline)


def _count_at_most(base: Sequence[float], current: Sequence[float], x: float) -> int:
    """#{(i, j): c_j - b_i <= x}, ``base`` sorted."""
    n = len(base)
    return sum(n - bisect_left(base, c - x) for c in current)


def kth_difference(baseline: Sequence[float], current: Sequence[float], k: int) -> float:
    """The k-th smallest (1-based) of the pairwise differences ``c_j - b_i``."""
    n, m = len(baseline), len(current)
    if not 1 <= k <= n * m:
        raise ValueError(f"k must be between 1 and {n * m}, got {k}")
    if n * m <= SORT_LIMIT:
        return _differences(baseline, current)[k - 1]
    base = sorted(baseline)
    lo, hi = min(current) - base[-1], max(current) - base[0]
    for _ in range(100):  # the smallest x with at least k differences <= x
        mid = (lo + hi) / 2.0
        if _count_at_most(base, current, mid) >= k:
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-9 * max(1.0, abs(hi)):
            break
    return hi


def hodges_lehmann(baseline: Sequence[float], current: Sequence[float]) -> float:
    """The median of the pairwise differences ``c_j - b_i``: the shift's estimate."""
    total = len(baseline) * len(current)
    if total == 0:
        raise ValueError("both samples must have values")
    if total % 2:
        return kth_difference(baseline, current, total // 2 + 1)
    if total <= SORT_LIMIT:
        diffs = _differences(baseline, current)
        return (diffs[total // 2 - 1] + diffs[total // 2]) / 2.0
    return (
        kth_difference(baseline, current, total // 2)
        + kth_difference(baseline, current, total // 2 + 1)
    ) / 2.0


@dataclass(frozen=True)
class Shift:
    """How far ``current`` sits above ``baseline``, with one-sided confidence bounds."""

    estimate: float  # Hodges-Lehmann
    lower: float  # current - baseline >= lower, at the confidence level
    upper: float  # current - baseline <= upper, at the confidence level
    confidence: float
    exact_level: bool  # False: the samples are too small for the confidence asked

    def slower(self, threshold: float) -> bool:
        """Confidently slower by more than ``threshold``."""
        return self.lower > threshold

    def faster(self, threshold: float) -> bool:
        """Confidently faster by more than ``threshold``."""
        return self.upper < -threshold


def shift(baseline: Sequence[float], current: Sequence[float], confidence: float) -> Shift:
    """The location shift of ``current`` against ``baseline`` (both non-empty)."""
    if not 0.5 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0.5 and 1, got {confidence}")
    n, m = len(baseline), len(current)
    if not n or not m:
        raise ValueError("both samples must have values")
    k = bound_rank(n, m, 1.0 - confidence)
    exact = u_lower_tail(n, m, k - 1) <= 1.0 - confidence
    if n * m <= SORT_LIMIT:
        diffs = _differences(baseline, current)
        lower, upper = diffs[k - 1], diffs[-k]
    else:
        lower = kth_difference(baseline, current, k)
        upper = kth_difference(baseline, current, n * m - k + 1)
    return Shift(hodges_lehmann(baseline, current), lower, upper, confidence, exact)


def fisher_greater(fail_current: int, n_current: int, fail_baseline: int, n_baseline: int) -> float:
    """One-sided p of Fisher's exact test that the current batch fails more often: the
    probability, with the failures spread at random over both batches, that the current
    one gets ``fail_current`` or more of them."""
    if not (0 <= fail_current <= n_current and 0 <= fail_baseline <= n_baseline):
        raise ValueError("failures must be between 0 and the number of runs")
    total, failed = n_current + n_baseline, fail_current + fail_baseline
    ways = math.comb(total, n_current)
    top = min(failed, n_current)
    hits = sum(
        math.comb(failed, x) * math.comb(total - failed, n_current - x)
        for x in range(fail_current, top + 1)
    )
    return hits / ways


def most_extreme(fail_current: int, n_current: int, fail_baseline: int) -> bool:
    """Every current run failed and no baseline run did (what 1 vs 1 can say)."""
    return fail_baseline == 0 and fail_current == n_current > 0
