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
        "Batch",
        "DRIFT_TESTS",
        "Detector",
        "DriftReference",
        "ModelJudge",
        "ReferenceProfile",
        "ReplaySummary",
        "TestResult",
        "adjust_p_values",
        "batch_from_frame",
        "batch_from_predictions",
        "benjamini_hochberg",
        "check_drift",
        "check_error_rate",
        "check_up",
        "chi_square",
        "drift_test",
        "holm",
        "js_distance",
        "ks_sorted",
        "ks_two_sample",
        "profile_batch",
        "psi",
        "replay_frames",
        "rule_hash",
        "wilson_interval",
    ]
    for name in detector.__all__:
        assert getattr(detector, name) is not None


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


# --- statistics on reference profiles: exact against scipy and hand computations ---------


@pytest.mark.parametrize(
    ("n_ref", "n_cur", "shift", "rounding"),
    [(20, 30, 0.0, None), (5000, 600, 0.1, None), (20000, 6000, 0.3, None), (3000, 900, 0.2, 1)],
)
def test_ks_sorted_matches_scipy(
    n_ref: int, n_cur: int, shift: float, rounding: int | None
) -> None:
    rng = np.random.default_rng(11)
    ref = rng.normal(size=n_ref)
    cur = rng.normal(loc=shift, size=n_cur)
    if rounding is not None:  # many ties between and within the samples
        ref, cur = np.round(ref, rounding), np.round(cur, rounding)
    method = "exact" if n_ref * n_cur <= stats.EXACT_KS_LIMIT else "asymp"
    expected = scipy_stats.ks_2samp(ref, cur, method=method)
    got = stats.ks_sorted(np.sort(ref), cur)
    assert got.statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert got.p_value == pytest.approx(expected.pvalue, abs=1e-9)


def test_chi_square_matches_scipy() -> None:
    ref = np.array([400, 300, 200, 100])
    cur = np.array([30, 35, 20, 15])
    expected = scipy_stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    got = stats.chi_square(ref, cur)
    assert got.statistic == pytest.approx(expected.statistic, abs=1e-9)
    assert got.p_value == pytest.approx(expected.pvalue, abs=1e-9)
    # a category empty on both sides is dropped, as scipy would refuse it
    with_empty = stats.chi_square(np.append(ref, 0), np.append(cur, 0))
    assert with_empty == got


def test_psi_hand_computed() -> None:
    # p = (0.5, 0.3, 0.2), q = (0.3, 0.3, 0.4):
    # (0.3 - 0.5) ln(0.3/0.5) + 0 + (0.4 - 0.2) ln(0.4/0.2)
    expected = -0.2 * math.log(0.6) + 0.2 * math.log(2.0)
    assert stats.psi(np.array([50, 30, 20]), np.array([30, 30, 40])) == pytest.approx(
        expected, abs=1e-9
    )
    assert stats.psi(np.array([5, 5]), np.array([5, 5])) == 0.0


def test_js_matches_scipy_and_hand() -> None:
    from scipy.spatial import distance

    ref, cur = np.array([50, 30, 20]), np.array([30, 30, 40])
    expected = distance.jensenshannon(ref / 100, cur / 100, base=2)
    assert stats.js_distance(ref, cur) == pytest.approx(expected, abs=1e-9)
    # by hand: p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4):
    # KL(p||m) = log2(4/3), KL(q||m) = 1/2 log2(2/3) + 1/2 log2(2); JS = their mean
    divergence = (math.log2(4 / 3) + 0.5 * math.log2(2 / 3) + 0.5) / 2
    assert stats.js_distance(np.array([4, 0]), np.array([2, 2])) == pytest.approx(
        math.sqrt(divergence), abs=1e-9
    )


def test_wasserstein_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    ref, cur = rng.normal(size=3000), rng.normal(0.3, 1.2, size=400)
    assert stats.wasserstein_sorted(np.sort(ref), cur) == pytest.approx(
        scipy_stats.wasserstein_distance(ref, cur), abs=1e-9
    )


def test_adjusted_p_values_match_scipy_and_the_procedures() -> None:
    p = [0.001, 0.04, 0.03, 0.2, 0.012, float("nan")]
    bh = stats.adjust_p_values(p, "bh")
    expected = scipy_stats.false_discovery_control(p[:-1], method="bh")
    assert bh[:-1] == pytest.approx(list(expected), abs=1e-12)
    assert math.isnan(bh[-1])
    holm_adjusted = stats.adjust_p_values(p[:-1], "holm")
    for alpha in (0.01, 0.05, 0.1):
        assert [a <= alpha for a in holm_adjusted] == holm(p[:-1], alpha)
    with pytest.raises(ValueError, match="unknown correction 'bonf'; valid names: bh, holm"):
        stats.adjust_p_values(p, "bonf")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=50), min_size=2, max_size=8))
def test_identical_counts_show_no_drift(counts: list[int]) -> None:
    array = np.array(counts)
    if array.sum() == 0:
        return
    assert stats.psi(array, array) == pytest.approx(0.0, abs=1e-12)
    assert stats.js_distance(array, array) == pytest.approx(0.0, abs=1e-7)
    assert stats.chi_square(array, array).p_value == pytest.approx(1.0)
    assert stats.total_variation(array, array) == 0.0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=50), min_size=2, max_size=6),
    st.lists(st.integers(min_value=1, max_value=50), min_size=2, max_size=6),
)
def test_symmetric_divergences(a: list[int], b: list[int]) -> None:
    k = min(len(a), len(b))
    x, y = np.array(a[:k]), np.array(b[:k])
    assert stats.js_distance(x, y) == pytest.approx(stats.js_distance(y, x), abs=1e-12)
    assert stats.psi(x, y) == pytest.approx(stats.psi(y, x), abs=1e-9)
    assert stats.chi_square(x, y).statistic == pytest.approx(
        stats.chi_square(y, x).statistic, abs=1e-9
    )


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=10_000))
def test_statistics_grow_with_the_shift(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = np.sort(rng.normal(size=500))
    cur = ref[::3]  # a sample of the reference, then moved further and further
    edges = np.quantile(ref, np.linspace(0, 1, 11)[1:-1])
    ref_counts = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=10)
    previous_ks, previous_w = -1.0, -1.0
    for shift in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0):
        moved = cur + shift
        ks = stats.ks_sorted(ref, moved).statistic
        w = stats.wasserstein_sorted(ref, moved)
        assert ks >= previous_ks - 1e-12
        assert w >= previous_w - 1e-12
        previous_ks, previous_w = ks, w
    far = np.bincount(np.searchsorted(edges, cur + 4.0, side="right"), minlength=10)
    near = np.bincount(np.searchsorted(edges, cur + 0.25, side="right"), minlength=10)
    assert stats.psi(ref_counts, far) > stats.psi(ref_counts, near)


def test_direct_distribution_functions_equal_scipy_stats() -> None:
    """The p-values judged every window skip scipy.stats' wrappers; they must stay the
    values scipy.stats gives (exactly, so that stored findings do not change)."""
    rng = np.random.default_rng(4)
    n = rng.integers(0, 20_000, 400)
    k = np.concatenate([rng.integers(-2, 20_002, 396), [-1, 0, 7, 25]])
    k = np.minimum(k, n + 2)
    p = np.concatenate([rng.random(396) ** 3, [0.0, 1.0, 1e-12, 0.5]])
    mu = np.concatenate([rng.random(396) * 5000, [0.0, 1e-9, 1.0, 3.5]])
    x = np.concatenate([rng.random(396) * 300, [0.0, 1e-9, -1.0, 1e4]])
    for i in range(400):
        ki, ni, pi, mi, xi = float(k[i]), int(n[i]), float(p[i]), float(mu[i]), float(x[i])
        pairs = [
            (stats.binomial_sf(ki, ni, pi), scipy_stats.binom.sf(ki, ni, pi)),
            (stats.binomial_cdf(ki, ni, pi), scipy_stats.binom.cdf(ki, ni, pi)),
            (stats.poisson_cdf(ki, mi), scipy_stats.poisson.cdf(ki, mi)),
            (stats.poisson_sf(ki, mi), scipy_stats.poisson.sf(ki, mi)),
            (stats.chi2_sf(xi, 1 + i % 9), scipy_stats.chi2.sf(xi, 1 + i % 9)),
            (stats.normal_cdf(xi - 150.0), scipy_stats.norm.cdf(xi - 150.0)),
        ]
        for ours, theirs in pairs:
            assert math.isclose(ours, float(theirs), rel_tol=1e-12, abs_tol=1e-300)
            assert ours == float(theirs)
    for q in (0.5, 0.9, 0.975, 0.995, 1 - 1e-12):
        assert stats._normal_quantile(q) == float(scipy_stats.norm.ppf(q))
