"""The checks: each turns one window of data into `Finding`s, and does nothing else.

A check never reads the store, writes or notifies; the engine hands it the data and stores
what it returns. Every finding carries the numbers behind its verdict (value, threshold,
p-value or interval, sample size) and the hash of the rule configuration that judged it, so a
later reader can tell why it fired and under which settings.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

from watchkeeper.config import DriftCheck, ErrorRateCheck, UpCheck, format_duration
from watchkeeper.tsdb import FeatureValue, Finding, Prediction

from .health import error_rate_finding
from .stats import holm, ks_two_sample


def rule_hash(check: str, cfg: BaseModel) -> str:
    """First 12 hex digits of sha256 over the check name and its configuration as JSON
    (without `runbook_url`, which says where to read, not how to judge)."""
    settings = cfg.model_dump_json(exclude={"runbook_url"})
    return hashlib.sha256((check + settings).encode("utf-8")).hexdigest()[:12]


def _roughly(seconds: float) -> str:
    """A gap for people: `42s`, `7m`, `3h`, `2d` (rounded down to the unit shown)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (seconds >= size and seconds % size == 0):
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:.0f}s"


def check_up(
    model: str,
    window_end: float,
    last_data_time: float | None,
    lookback_start: float,
    cfg: UpCheck,
) -> Finding:
    """Is the model still sending? Breached when its newest data is older than `staleness`.

    `last_data_time` is the newest data strictly before `window_end` and no older than
    `lookback_start` (None when there is none), so the value is the seconds of silence before
    `window_end`, capped at the lookback when nothing arrived at all.
    """
    silence = window_end - (lookback_start if last_data_time is None else last_data_time)
    breached = silence > cfg.staleness
    gap = _roughly(silence)
    bound = f"staleness bound {format_duration(cfg.staleness)}"
    if last_data_time is None:
        summary = f"no data for {gap} or longer ({bound})"
    elif breached:
        summary = f"no data for {gap} ({bound})"
    else:
        summary = f"last data {gap} ago ({bound})"
    return Finding(
        model=model,
        check="up",
        subject="",
        statistic="seconds_since_last_data",
        value=silence,
        threshold=cfg.staleness,
        breached=breached,
        severity=cfg.severity,
        window_start=lookback_start,
        window_end=window_end,
        rule_hash=rule_hash("up", cfg),
        summary=summary,
    )


def _weight(prediction: Prediction) -> float:
    """How many true predictions one logged prediction stands for (1 if its rate is bogus)."""
    rate = prediction.sample_rate
    return 1.0 / rate if 0.0 < rate <= 1.0 else 1.0


def check_error_rate(
    model: str,
    predictions: Sequence[Prediction],
    window_start: float,
    window_end: float,
    cfg: ErrorRateCheck,
) -> Finding:
    """Is the error rate above `threshold`, with `confidence`? Quiet when data is scarce.

    The value is the error fraction of true traffic (each logged prediction counts
    `1 / sample_rate` times); the Wilson interval uses the raw counts, because those are the
    observations the uncertainty comes from. Breached only with at least `min_count`
    predictions and the interval's lower bound above the threshold.
    """
    error = np.fromiter((1.0 if p.error else 0.0 for p in predictions), float, len(predictions))
    weight = np.fromiter((_weight(p) for p in predictions), float, len(predictions))
    return error_rate_finding(
        model, error, weight, window_start, window_end, cfg, rule_hash("error_rate", cfg)
    )


def _number(value: FeatureValue) -> float | None:
    """The value as a float if it is a real number (not bool, not NaN), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return None if math.isnan(number) else number


def numeric_features(predictions: Sequence[Prediction]) -> list[str]:
    """Features whose every present value is an int or float (not bool), sorted by name."""
    seen: dict[str, bool] = {}
    for p in predictions:
        for name, value in p.features.items():
            if value is None:
                continue
            seen[name] = seen.get(name, True) and (
                isinstance(value, int | float) and not isinstance(value, bool)
            )
    return sorted(name for name, numeric in seen.items() if numeric)


_EMPTY = np.empty(0)


def feature_column(predictions: Sequence[Prediction], feature: str) -> np.ndarray:
    """One value per prediction: the feature as a float, NaN where it is missing or not a
    real number."""
    numbers = (_number(p.features.get(feature)) for p in predictions)
    return np.fromiter((math.nan if x is None else x for x in numbers), dtype=float)


def feature_values(predictions: Sequence[Prediction], feature: str) -> np.ndarray:
    """The real-number values of one feature (missing, non-numeric and NaN values left out)."""
    column = feature_column(predictions, feature)
    present: np.ndarray = column[~np.isnan(column)]
    return present


@dataclass(frozen=True, slots=True)
class DriftReference:
    """A reference sample reduced once to the values drift tests need: one array per numeric
    feature. Built once per reference, not once per judged window."""

    reference_id: str
    values: Mapping[str, np.ndarray]

    @classmethod
    def from_predictions(
        cls, reference_id: str, predictions: Sequence[Prediction]
    ) -> DriftReference:
        return cls(
            reference_id,
            {f: feature_values(predictions, f) for f in numeric_features(predictions)},
        )


def check_drift(
    model: str,
    reference: DriftReference,
    current: Mapping[str, np.ndarray],
    window_start: float,
    window_end: float,
    cfg: DriftCheck,
) -> list[Finding]:
    """Has any numeric feature's distribution moved away from the reference?

    One KS test per feature that is numeric in the reference and has at least `min_samples`
    values on both sides (others are skipped: no finding). The decision controls the chance of
    any false alarm across the window's features with Holm at `p_value`, and also requires a
    KS statistic of at least `min_effect`, so a tiny shift in a huge sample stays quiet. The
    finding's `p_value` is the raw, unadjusted KS p-value; the verdict used Holm. `current`
    maps each feature to its values in the window (as `feature_values` gives them).
    """
    tested: list[tuple[str, int, float, float]] = []
    for feature, ref_values in reference.values.items():
        cur_values = current.get(feature, _EMPTY)
        if len(ref_values) < cfg.min_samples or len(cur_values) < cfg.min_samples:
            continue
        result = ks_two_sample(ref_values, cur_values)
        tested.append((feature, len(cur_values), result.statistic, result.p_value))
    rejected = holm([p for _, _, _, p in tested], cfg.p_value)
    hashed = rule_hash("drift", cfg)
    findings = []
    for (feature, n, statistic, p_value), reject in zip(tested, rejected, strict=True):
        breached = reject and statistic >= cfg.min_effect
        verdict = "drifted" if breached else "stable"
        summary = (
            f"feature {feature!r} {verdict}: KS {statistic:.2f} (p={p_value:.2g}) vs reference"
        )
        findings.append(
            Finding(
                model=model,
                check="drift",
                subject=feature,
                statistic="ks",
                value=statistic,
                threshold=cfg.min_effect,
                breached=breached,
                severity=cfg.severity,
                window_start=window_start,
                window_end=window_end,
                p_value=p_value,
                reference_id=reference.reference_id,
                rule_hash=hashed,
                summary=summary,
                n=n,
            )
        )
    return findings
