"""The detector's statistics agree with scipy and textbooks, and keep their promises."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from watchkeeper import detector
from watchkeeper.detector import stats
from watchkeeper.detector.stats import (
    DRIFT_TESTS,
    drift_test,
    holm,
    ks_two_sample,
    wilson_interval,
)


def test_public_names_are_pinned() -> None:
    assert sorted(detector.__all__) == [
        "DRIFT_TESTS",
        "Detector",
        "DriftReference",
        "TestResult",
        "check_drift",
        "check_error_rate",
        "check_up",
        "drift_test",
        "holm",
        "ks_two_sample",
        "rule_hash",
        "wilson_interval",
    ]


def test_docstring_examples_run() -> None:
    result = doctest.testmod(stats)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize(
    ("n_ref", "n_cur", "shift", "method"),
    [(20, 30, 0.0, "exact"), (300, 250, 0.4, "exact"), (3600, 600, 0.1, "asymp")],
)
def test_ks_matches_scipy(n_ref: int, n_cur: int, shift: float, method: str) -> None:
    rng = np.random.default_rng(7)
    ref = rng.normal(size=n_ref)
    cur = rng.normal(loc=shift, size=n_cur)
    expected = scipy_stats.ks_2samp(ref, cur, method=method)
    got = ks_two_sample(ref.tolist(), cur.tolist())
    assert got.statistic == pytest.approx(expected.statistic, abs=1e-9)
    assert got.p_value == pytest.approx(expected.pvalue, abs=1e-9)


def test_ks_drops_nans() -> None:
    ref = [1.0, 2.0, float("nan"), 3.0, 4.0]
    cur = [2.5, float("nan"), 3.5, 4.5]
    expected = scipy_stats.ks_2samp([1.0, 2.0, 3.0, 4.0], [2.5, 3.5, 4.5])
    got = ks_two_sample(ref, cur)
    assert got.statistic == pytest.approx(expected.statistic, abs=1e-9)
    assert got.p_value == pytest.approx(expected.pvalue, abs=1e-9)


def test_ks_without_values_says_so() -> None:
    with pytest.raises(ValueError, match="values on both sides"):
        ks_two_sample([1.0, 2.0], [float("nan")])


@pytest.mark.parametrize(
    ("k", "n", "confidence"),
    [(0, 10, 0.95), (8, 10, 0.95), (10, 10, 0.9), (3, 250, 0.99), (137, 400, 0.5), (1, 1, 0.95)],
)
def test_wilson_matches_scipy(k: int, n: int, confidence: float) -> None:
    expected = scipy_stats.binomtest(k, n).proportion_ci(
        confidence_level=confidence, method="wilson"
    )
    low, high = wilson_interval(k, n, confidence)
    assert low == pytest.approx(expected.low, abs=1e-9)
    assert high == pytest.approx(expected.high, abs=1e-9)


def test_wilson_hand_computed() -> None:
    # 8 of 10 at 95 %: z = 1.959964; centre (0.8 + z²/20) / (1 + z²/10), half-width
    # z / (1 + z²/10) * sqrt(0.8 * 0.2 / 10 + z² / 400), worked out by hand.
    z = 1.959963984540054
    centre = (0.8 + z * z / 20) / (1 + z * z / 10)
    half = z / (1 + z * z / 10) * math.sqrt(0.016 + z * z / 400)
    low, high = wilson_interval(8, 10, 0.95)
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-9)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)


def test_wilson_without_trials_knows_nothing() -> None:
    assert wilson_interval(0, 0, 0.95) == (0.0, 1.0)


@pytest.mark.parametrize(("k", "n", "confidence"), [(5, 4, 0.9), (-1, 4, 0.9), (1, 4, 1.0)])
def test_wilson_rejects_nonsense(k: int, n: int, confidence: float) -> None:
    with pytest.raises(ValueError):
        wilson_interval(k, n, confidence)


@pytest.mark.parametrize(
    ("p_values", "alpha", "expected"),
    [
        ([], 0.05, []),
        ([0.01, 0.04, 0.03], 0.05, [True, False, False]),
        ([0.01, 0.02, 0.03], 0.05, [True, True, True]),  # all rejected
        ([0.5, 0.2, 0.9], 0.05, [False, False, False]),  # none rejected
        ([0.02, 0.02], 0.05, [True, True]),  # tie, both under alpha / 2
        ([0.03, 0.03], 0.05, [False, False]),  # tie, the first already fails alpha / 2
        ([0.04, 0.001, 0.012, 0.3], 0.05, [False, True, True, False]),
        ([0.001, float("nan"), 0.02], 0.05, [True, False, True]),
    ],
)
def test_holm_hand_cases(p_values: list[float], alpha: float, expected: list[bool]) -> None:
    assert holm(p_values, alpha) == expected


def test_drift_test_table_is_explicit() -> None:
    assert list(DRIFT_TESTS.items()) == [("ks", ks_two_sample)]
    assert drift_test("ks") is ks_two_sample
    with pytest.raises(ValueError, match=r"unknown drift test 'psi'; valid names: ks"):
        drift_test("psi")


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
samples = st.lists(finite, min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(samples)
def test_identical_samples_show_no_drift(values: list[float]) -> None:
    result = ks_two_sample(values, list(values))
    assert result.statistic == 0.0
    assert result.p_value == pytest.approx(1.0)
    assert holm([result.p_value], 0.01) == [False]


@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning")
@settings(max_examples=60, deadline=None)
@given(samples, samples)
def test_ks_is_symmetric(a: list[float], b: list[float]) -> None:
    ab, ba = ks_two_sample(a, b), ks_two_sample(b, a)
    assert ab.statistic == pytest.approx(ba.statistic, abs=1e-12)
    assert ab.p_value == pytest.approx(ba.p_value, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=100_000).flatmap(
        lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
    ),
    st.floats(min_value=0.01, max_value=0.999),
)
def test_wilson_contains_the_estimate(kn: tuple[int, int], confidence: float) -> None:
    k, n = kn
    low, high = wilson_interval(k, n, confidence)
    assert 0.0 <= low <= k / n <= high <= 1.0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=30),
    st.floats(min_value=0.001, max_value=0.5),
)
def test_holm_between_bonferroni_and_unadjusted(p_values: list[float], alpha: float) -> None:
    m = len(p_values)
    rejected = holm(p_values, alpha)
    unadjusted = [p <= alpha for p in p_values]
    bonferroni = [p <= alpha / m for p in p_values]
    for holm_says, raw_says, bonf_says in zip(rejected, unadjusted, bonferroni, strict=True):
        assert not holm_says or raw_says  # never rejects what plain testing keeps
        assert not bonf_says or holm_says  # never keeps what Bonferroni rejects
