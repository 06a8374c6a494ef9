"""Data-quality and drift candidates of one window against a reference profile.

`missing`: a feature's missing rate rose over the reference's; `out_of_range`: numeric values
outside the reference range widened by a margin; `schema`: wrong types, unseen categories,
features that vanished or appeared; `drift`: each column's distribution against the
reference's (KS/PSI/JS/Wasserstein for numeric columns, chi-square/PSI/JS for categorical
ones). Each returns `Candidate`s; the judge corrects their p-values together.
"""

from __future__ import annotations

import numpy as np

from watchkeeper.config import DriftCheck, MissingCheck, OutOfRangeCheck, SchemaCheck

from .candidate import Candidate, Context
from .profile import CategoricalProfile, ColumnProfile, NumericProfile
from .stats import (
    binomial_sf,
    chi_square,
    js_distance,
    ks_sorted,
    psi,
    total_variation,
    wasserstein_sorted,
)

MIN_BAD = 5
"""Fewer bad values than this never breach schema or out_of_range, whatever the fraction."""


def _binomial_greater(k: int, n: int, p0: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p0): how surprising `k` events are at rate `p0`."""
    if k <= 0:
        return 1.0
    return binomial_sf(k - 1, n, min(max(p0, 1e-12), 1.0))


def missing_candidate(
    name: str, profile: ColumnProfile, n: int, k: int, ctx: Context, cfg: MissingCheck
) -> Candidate | None:
    """`k` of the window's `n` values of feature `name` are missing."""
    if n < cfg.min_samples:
        return None
    rate = k / n
    ref_rate = profile.missing_rate
    p0 = (ref_rate * profile.n + 0.5) / (profile.n + 1)
    effect = rate - ref_rate >= cfg.min_increase
    summary = f"feature {name!r} missing in {rate:.1%} of {n} (reference {ref_rate:.1%})"
    return ctx.candidate(
        "missing",
        name,
        "missing_rate",
        rate,
        ref_rate + cfg.min_increase,
        effect,
        summary,
        n=n,
        p_value=_binomial_greater(k, n, p0),
    )


def out_of_range_candidate(
    name: str, profile: NumericProfile, values: np.ndarray, ctx: Context, cfg: OutOfRangeCheck
) -> Candidate | None:
    present = values[~np.isnan(values)]
    m = int(present.size)
    if m < cfg.min_samples:
        return None
    width = profile.high - profile.low
    low, high = profile.low - cfg.margin * width, profile.high + cfg.margin * width
    k = int(np.count_nonzero((present < low) | (present > high)))
    fraction = k / m
    # A new draw from the reference's own distribution falls outside its sample's range
    # with probability 2 / (n + 1), whatever the distribution.
    p0 = 2.0 / (profile.n * (1 - profile.missing_rate) + 1)
    summary = (
        f"feature {name!r}: {fraction:.1%} of {m} values outside "
        f"[{low:.4g}, {high:.4g}] (reference range widened by {cfg.margin:.0%})"
    )
    return ctx.candidate(
        "out_of_range",
        name,
        "out_of_range_fraction",
        fraction,
        cfg.min_fraction,
        fraction >= cfg.min_fraction and k >= MIN_BAD,
        summary,
        n=m,
        p_value=_binomial_greater(k, m, p0),
    )


def schema_absent(name: str, ctx: Context, cfg: SchemaCheck) -> Candidate:
    """A feature of the reference that the window does not have at all."""
    return ctx.candidate(
        "schema",
        name,
        "bad_value_rate",
        1.0,
        cfg.min_fraction,
        True,
        f"feature {name!r} of the reference is absent",
    )


def schema_unexpected(
    name: str, n: int, present: int, ctx: Context, cfg: SchemaCheck
) -> Candidate | None:
    """A feature the reference does not have, present in `present` of `n` predictions."""
    if n < cfg.min_samples:
        return None
    fraction = present / n
    return ctx.candidate(
        "schema",
        name,
        "unexpected_feature_rate",
        fraction,
        cfg.min_fraction,
        fraction >= cfg.min_fraction and present >= MIN_BAD,
        f"feature {name!r} is not in the reference; present in {fraction:.1%} of {n}",
        n=n,
    )


def schema_bad_values(
    name: str,
    present: int,
    bad: int,
    what: str,
    p0: float | None,
    ctx: Context,
    cfg: SchemaCheck,
) -> Candidate | None:
    """`bad` of `present` values are `what` (non-numeric values, unseen categories); `p0`
    is how often the reference itself would show them (None: never)."""
    if present < cfg.min_samples:
        return None
    fraction = bad / present
    return ctx.candidate(
        "schema",
        name,
        "bad_value_rate",
        fraction,
        cfg.min_fraction,
        fraction >= cfg.min_fraction and bad >= MIN_BAD,
        f"feature {name!r}: {fraction:.1%} of {present} values are {what}",
        n=present,
        p_value=None if p0 is None else _binomial_greater(bad, present, p0),
    )


_NAMES = {
    "ks": "KS",
    "chi2": "TV (chi-square)",
    "psi": "PSI",
    "js": "JS",
    "wasserstein": "Wasserstein/sd",
}


def _drift(
    name: str,
    test: str,
    value: float,
    threshold: float,
    p_value: float | None,
    n: int,
    ctx: Context,
) -> Candidate:
    label = "feature " + repr(name) if name not in ("prediction", "label") else name
    effect = value >= threshold
    statistic = test if test != "chi2" else "total_variation"
    summary = (
        f"{label} {'drifted' if effect else 'stable'}: {_NAMES[test]} {value:.3g} vs reference"
    )
    return ctx.candidate(
        "drift", name, statistic, float(value), threshold, effect, summary, n=n, p_value=p_value
    )


def numeric_drift(
    name: str, profile: NumericProfile, values: np.ndarray, ctx: Context, cfg: DriftCheck
) -> Candidate | None:
    """Drift of a numeric column, None with too few values or a constant reference (it has
    no distribution to drift from; `out_of_range` sees any change of it)."""
    values = values[~np.isnan(values)]
    if values.size < cfg.min_samples or profile.n * (1 - profile.missing_rate) < cfg.min_samples:
        return None
    if profile.high == profile.low:
        return None
    test = cfg.numeric_test
    p_value = None
    if test == "ks":
        result = ks_sorted(profile.sorted_values, values, exact_p_from=cfg.min_effect / 2)
        value, threshold, p_value = result.statistic, cfg.min_effect, result.p_value
    elif test == "wasserstein":
        spread = profile.std if profile.std > 0 else profile.high - profile.low
        value = wasserstein_sorted(profile.sorted_values, values) / spread
        threshold = cfg.wasserstein_threshold
    else:
        counts = profile.bin_counts(values)
        if test == "psi":
            value, threshold = psi(profile.counts, counts), cfg.psi_threshold
        else:
            value, threshold = js_distance(profile.counts, counts), cfg.js_threshold
    return _drift(name, test, value, threshold, p_value, int(values.size), ctx)


def categorical_drift(
    name: str, profile: CategoricalProfile, counts: np.ndarray, ctx: Context, cfg: DriftCheck
) -> Candidate | None:
    """Drift of a categorical column from its counts per reference category (unseen
    categories are left to `schema`)."""
    n = int(counts.sum())
    if n < cfg.min_samples or profile.n < cfg.min_samples:
        return None
    test = cfg.categorical_test
    p_value = None
    if test == "chi2":
        p_value = chi_square(profile.counts, counts).p_value
        value, threshold = total_variation(profile.counts, counts), cfg.min_effect
    elif test == "psi":
        value, threshold = psi(profile.counts, counts), cfg.psi_threshold
    else:
        value, threshold = js_distance(profile.counts, counts), cfg.js_threshold
    return _drift(name, test, value, threshold, p_value, n, ctx)
