"""The statistics the checks rely on, as pure functions plus one explicit table of drift tests.

Nothing here knows about models, windows or stores: each function takes numbers and returns
numbers, so it can be checked against a textbook or scipy on its own. Drift tests are looked
up by name in `DRIFT_TESTS`, a plain dict visible in this file; nothing registers itself on
import.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special as _special

# The Boost routines behind scipy.stats.binom's cdf and sf (bit for bit what `binom.cdf` and
# `binom.sf` return); scipy.special's public `bdtr`/`bdtrc` are Cephes and differ in the last
# digits, which would change stored p-values.
from scipy.special._ufuncs import _binom_cdf, _binom_sf


def _scipy_stats() -> Any:
    """scipy.stats, imported on first use: it takes half a second to import and is needed
    only for exact KS p-values and large KS statistics; the p-values every window needs call
    the routines scipy.stats wraps directly (`_special` and the two above)."""
    from scipy import stats

    return stats


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
        result = _scipy_stats().ks_2samp(ref, cur, method="exact")
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
    p_value = float(np.clip(_scipy_stats().kstwo.sf(statistic, effective_n), 0.0, 1.0))
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
    z = _normal_quantile(0.5 + confidence / 2.0)
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    center = (p + z2 / (2.0 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return (low, high)


@functools.lru_cache(maxsize=16)
def _normal_quantile(q: float) -> float:
    """scipy's `norm.ppf(q)` (which is `ndtri(q)` for `0 < q < 1`), once per `q` (a check
    asks for the same few every window)."""
    if not 0.0 < q < 1.0:
        return float(_scipy_stats().norm.ppf(q))
    return float(_special.ndtri(q))


def binomial_sf(k: float, n: int, p: float) -> float:
    """P(X > k) for X ~ Binomial(n, p): scipy's `binom.sf(k, n, p)`, value for value.

    The p-value of every missing-value, out-of-range and latency test of every window; scipy's
    distribution wrapper costs ~100 us per call in argument checks and array set-up, the
    routine it wraps ~1 us.

    >>> from scipy import stats
    >>> binomial_sf(3, 10, 0.2) == float(stats.binom.sf(3, 10, 0.2))
    True
    """
    if not (n >= 0 and 0.0 <= p <= 1.0) or math.isnan(k):
        return math.nan
    k = math.floor(k)
    if k < 0:
        return 1.0
    if k >= n:
        return 0.0
    return min(1.0, max(0.0, float(_binom_sf(k, n, p))))


def binomial_cdf(k: float, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p): scipy's `binom.cdf(k, n, p)`, value for value."""
    if not (n >= 0 and 0.0 <= p <= 1.0) or math.isnan(k):
        return math.nan
    k = math.floor(k)
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return min(1.0, max(0.0, float(_binom_cdf(k, n, p))))


def poisson_cdf(k: float, mu: float) -> float:
    """P(X <= k) for X ~ Poisson(mu): scipy's `poisson.cdf(k, mu)`, value for value."""
    if not mu >= 0.0 or math.isnan(k):
        return math.nan
    if k < 0:
        return 0.0
    if math.isinf(k):
        return 1.0
    return min(1.0, max(0.0, float(_special.pdtr(math.floor(k), mu))))


def poisson_sf(k: float, mu: float) -> float:
    """P(X > k) for X ~ Poisson(mu): scipy's `poisson.sf(k, mu)`, value for value."""
    if not mu >= 0.0 or math.isnan(k):
        return math.nan
    if k < 0:
        return 1.0
    if math.isinf(k):
        return 0.0
    return min(1.0, max(0.0, float(_special.pdtrc(math.floor(k), mu))))


def chi2_sf(x: float, df: float) -> float:
    """P(X > x) for X ~ chi-square with `df` degrees of freedom: scipy's `chi2.sf(x, df)`."""
    if not df > 0 or math.isnan(x):
        return math.nan
    if x <= 0:
        return 1.0
    return float(_special.chdtrc(df, x))


def normal_cdf(x: float) -> float:
    """The standard normal CDF: scipy's `norm.cdf(x)`."""
    return float(_special.ndtr(x))


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


def ks_sorted(
    reference_sorted: np.ndarray, current: np.ndarray, exact_p_from: float = 0.0
) -> TestResult:
    """`ks_two_sample` against a reference that is already sorted and free of NaNs.

    The statistic is exact and equal to scipy's: between two consecutive current values the
    current ECDF is flat and the reference ECDF only rises, so the largest gap is found at a
    current value or just before one. That costs `O(m log n)` for `m` current and `n`
    reference values instead of sorting all `n + m` values on every call, which is what makes
    judging thousands of windows against a large reference cheap. The p-value is scipy's
    exact one for small samples and the asymptotic one above `EXACT_KS_LIMIT`, as in
    `ks_two_sample`, except for a statistic below `exact_p_from`: there it is the Kolmogorov
    limit `kstwobign.sf(D * sqrt(n_eff))` (scipy's finite-n `kstwo.sf` takes milliseconds for
    small D at thousands of values, and a statistic below the effect floor cannot page
    whatever its p-value).

    >>> ks_sorted(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])).statistic
    0.0
    """
    cur = np.asarray(current, dtype=float)
    cur = np.sort(cur[~np.isnan(cur)])
    n, m = reference_sorted.size, cur.size
    if n == 0 or m == 0:
        raise ValueError(
            f"ks_sorted needs values on both sides, got {n} reference and {m} current values"
        )
    if n * m <= EXACT_KS_LIMIT:
        return ks_two_sample(reference_sorted, cur)
    ref_right = np.searchsorted(reference_sorted, cur, side="right")
    ref_at = ref_right / n
    # F_ref just before c differs from F_ref at c only where the reference holds c itself:
    # at index ref_right - 1 (where ref_right is 0, index -1 holds the largest reference
    # value, which is above c)
    tied = reference_sorted[ref_right - 1] == cur
    ref_before = ref_at
    if np.any(tied):
        ref_left = ref_right.copy()
        ref_left[tied] = np.searchsorted(reference_sorted, cur[tied], side="left")
        ref_before = ref_left / n
    if m < 2 or bool(np.all(cur[1:] != cur[:-1])):
        # no ties among the current values: its ECDF is i/m at the i-th value, (i-1)/m before
        steps = np.arange(m + 1, dtype=np.int64) / m
        cur_at, cur_before = steps[1:], steps[:-1]
    else:
        cur_at = np.searchsorted(cur, cur, side="right") / m
        cur_before = np.searchsorted(cur, cur, side="left") / m
    at = ref_at - cur_at
    before = ref_before - cur_before
    statistic = float(max(np.max(np.abs(at, out=at)), np.max(np.abs(before, out=before))))
    larger, smaller = max(n, m), min(n, m)
    effective_n = round(larger * smaller / (larger + smaller))
    if statistic < exact_p_from:
        # scipy's kstwobign.sf is this function (for a positive argument; 1 at 0)
        limit = _special.kolmogorov(statistic * math.sqrt(effective_n))
        return TestResult(statistic=statistic, p_value=float(np.clip(limit, 0.0, 1.0)))
    p_value = float(np.clip(_scipy_stats().kstwo.sf(statistic, effective_n), 0.0, 1.0))
    return TestResult(statistic=statistic, p_value=p_value)


def _proportions(counts: np.ndarray, eps: float) -> np.ndarray:
    total = float(np.sum(counts))
    if total <= 0:
        raise ValueError("need at least one count")
    p = np.asarray(counts, dtype=float) / total
    if eps > 0:
        p = np.maximum(p, eps)
        p = p / np.sum(p)
    return p


def psi(reference_counts: np.ndarray, current_counts: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index `sum((q - p) * ln(q / p))` over shared bins.

    `p` and `q` are the reference and current proportions; a bin empty on one side gets
    `eps` (then proportions are renormalised) so the index stays finite. 0 = identical;
    above 0.25 is the usual "shifted" mark.

    >>> round(psi(np.array([50, 50]), np.array([25, 75])), 6)
    0.274653
    """
    p = _proportions(reference_counts, eps)
    q = _proportions(current_counts, eps)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (square root of the divergence, base 2) between two count
    vectors over the same bins: 0 = identical, 1 = no overlap; symmetric, always finite.

    >>> js_distance(np.array([1, 0]), np.array([0, 1]))
    1.0
    """
    p = _proportions(reference_counts, 0.0)
    q = _proportions(current_counts, 0.0)
    mid = (p + q) / 2.0

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / mid[mask])))

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2.0))


def total_variation(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Half the L1 distance between the two proportion vectors: the largest difference in
    the probability of any set of categories (the categorical twin of the KS statistic)."""
    p = _proportions(reference_counts, 0.0)
    q = _proportions(current_counts, 0.0)
    return float(np.sum(np.abs(p - q)) / 2.0)


def chi_square(reference_counts: np.ndarray, current_counts: np.ndarray) -> TestResult:
    """Pearson chi-square test of homogeneity on the 2 x k table of the two count vectors
    (scipy's `chi2_contingency(..., correction=False)`); categories empty on both sides are
    dropped. With fewer than two categories left there is nothing to compare: p = 1.

    >>> chi_square(np.array([10, 10]), np.array([10, 10]))
    TestResult(statistic=0.0, p_value=1.0)
    """
    table = np.vstack([np.asarray(reference_counts, float), np.asarray(current_counts, float)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or np.any(table.sum(axis=1) == 0):
        return TestResult(statistic=0.0, p_value=1.0)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return TestResult(statistic=statistic, p_value=chi2_sf(statistic, dof))


def wasserstein_sorted(reference_sorted: np.ndarray, current: np.ndarray) -> float:
    """First Wasserstein distance between the samples (scipy's `wasserstein_distance`)."""
    cur = np.sort(np.asarray(current, dtype=float))
    pooled = np.sort(np.concatenate([reference_sorted, cur]))
    widths = np.diff(pooled)
    ref_cdf = np.searchsorted(reference_sorted, pooled[:-1], side="right") / reference_sorted.size
    cur_cdf = np.searchsorted(cur, pooled[:-1], side="right") / cur.size
    return float(np.sum(np.abs(ref_cdf - cur_cdf) * widths))


def adjust_p_values(p_values: Sequence[float], method: str) -> list[float]:
    """Holm (`holm`) or Benjamini-Hochberg (`bh`) adjusted p-values, in input order.

    Rejecting where the adjusted p-value is at most `alpha` is Holm's step-down procedure
    (family-wise error rate `alpha`) or BH's step-up one (false discovery rate `alpha`).
    NaN stays NaN.

    >>> adjust_p_values([0.01, 0.04, 0.03], "holm")
    [0.03, 0.06, 0.06]
    >>> [round(p, 6) for p in adjust_p_values([0.01, 0.04, 0.03], "bh")]
    [0.03, 0.04, 0.04]
    """
    if method not in ("holm", "bh"):
        raise ValueError(f"unknown correction {method!r}; valid names: bh, holm")
    indexed = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    adjusted = [math.nan] * len(p_values)
    m = len(indexed)
    indexed.sort()
    if method == "holm":
        running = 0.0
        for rank, (p, i) in enumerate(indexed):
            running = max(running, min(1.0, (m - rank) * p))
            adjusted[i] = running
    else:
        running = 1.0
        for rank in range(m - 1, -1, -1):
            p, i = indexed[rank]
            running = min(running, min(1.0, m * p / (rank + 1)))
            adjusted[i] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Benjamini-Hochberg step-up: which hypotheses to reject at false discovery rate `alpha`.

    >>> benjamini_hochberg([0.01, 0.04, 0.03], alpha=0.05)
    [True, True, True]
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha}")
    return [not math.isnan(p) and p <= alpha for p in adjust_p_values(p_values, "bh")]
