"""The statistics the checks rely on, as pure functions plus one explicit table of drift tests.

Nothing here knows about models, windows or stores: each function takes numbers and returns
numbers, so it can be checked against a textbook or scipy on its own. Drift tests are looked
up by name in `DRIFT_TESTS`, a plain dict visible in this file; nothing registers itself on
import.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats


@dataclass(frozen=True, slots=True)
class TestResult:
    """What a two-sample test says: its statistic and the p-value of "same distribution"."""

    __test__ = False  # not a pytest test class, despite the name

    statistic: float
    p_value: float


EXACT_KS_LIMIT = 250_000
"""Largest product of the two sample sizes for which the KS p-value is computed exactly.

Above it scipy's asymptotic distribution is used: scipy's exact method costs milliseconds per
call at a few thousand values a side (too slow for a detector judging thousands of windows),
and at those sizes the asymptotic p-value is what decides anyway.
"""


def ks_two_sample(
    reference: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray
) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test (scipy's `ks_2samp`), NaNs dropped first.

    The p-value is scipy's exact one when `len(reference) * len(current) <= EXACT_KS_LIMIT`,
    its asymptotic one above that.

    The statistic is the largest gap between the two empirical CDFs (0 = identical samples,
    1 = no overlap); it doubles as an effect size that does not grow with the sample size.

    >>> ks_two_sample([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    TestResult(statistic=0.0, p_value=1.0)
    >>> round(ks_two_sample([1.0, 2.0, 3.0], [4.0, 5.0, float("nan"), 6.0]).statistic, 3)
    1.0
    """
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref = ref[~np.isnan(ref)]
    cur = cur[~np.isnan(cur)]
    if ref.size == 0 or cur.size == 0:
        raise ValueError(
            f"ks_two_sample needs values on both sides, got {ref.size} reference and "
            f"{cur.size} current values (after dropping NaNs)"
        )
    if ref.size * cur.size <= EXACT_KS_LIMIT:
        result = _scipy_stats.ks_2samp(ref, cur, method="exact")
        return TestResult(statistic=float(result.statistic), p_value=float(result.pvalue))
    # The same statistic and asymptotic p-value as scipy's ks_2samp(method="asymp"), without
    # its per-call overhead, which dominates a detector judging thousands of windows.
    ref = np.sort(ref)
    cur = np.sort(cur)
    pooled = np.concatenate([ref, cur])
    gap = np.abs(
        np.searchsorted(ref, pooled, side="right") / ref.size
        - np.searchsorted(cur, pooled, side="right") / cur.size
    )
    statistic = float(np.max(gap))
    larger, smaller = max(ref.size, cur.size), min(ref.size, cur.size)
    effective_n = round(larger * smaller / (larger + smaller))
    p_value = float(np.clip(_scipy_stats.kstwo.sf(statistic, effective_n), 0.0, 1.0))
    return TestResult(statistic=statistic, p_value=p_value)


def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion `successes / n`.

    Unlike the normal approximation it stays inside [0, 1] and behaves with few trials or a
    proportion near 0, which is where error rates live. With no trials it is `(0.0, 1.0)`.

    >>> low, high = wilson_interval(8, 10, 0.95)
    >>> round(low, 4), round(high, 4)
    (0.4902, 0.9433)
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    if n == 0:
        return (0.0, 1.0)
    z = float(_scipy_stats.norm.ppf(0.5 + confidence / 2.0))
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    center = (p + z2 / (2.0 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return (low, high)


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Holm-Bonferroni step-down: which hypotheses to reject, in input order.

    The smallest p-value is compared with `alpha / m`, the next with `alpha / (m - 1)`, and so
    on, stopping at the first that is not small enough. The chance of rejecting any true
    hypothesis among the `m` stays at most `alpha`, and it never rejects fewer than plain
    Bonferroni. NaN p-values are never rejected.

    >>> holm([0.01, 0.04, 0.03], alpha=0.05)
    [True, False, False]
    >>> holm([0.01, 0.02, 0.03], alpha=0.05)
    [True, True, True]
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha}")
    m = len(p_values)
    order = sorted(range(m), key=lambda i: math.inf if math.isnan(p_values[i]) else p_values[i])
    rejected = [False] * m
    for rank, index in enumerate(order):
        p = p_values[index]
        if math.isnan(p) or p > alpha / (m - rank):
            break
        rejected[index] = True
    return rejected


DriftTest = Callable[[Sequence[float], Sequence[float]], TestResult]

DRIFT_TESTS: dict[str, DriftTest] = {"ks": ks_two_sample}
"""Every drift test by the name configuration uses for it."""


def drift_test(name: str) -> DriftTest:
    """The drift test called `name`; an unknown name raises `ValueError` listing the valid ones.

    >>> drift_test("ks") is ks_two_sample
    True
    """
    try:
        return DRIFT_TESTS[name]
    except KeyError:
        valid = ", ".join(sorted(DRIFT_TESTS))
        raise ValueError(f"unknown drift test {name!r}; valid names: {valid}") from None
