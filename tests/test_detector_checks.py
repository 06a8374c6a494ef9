"""Each check turns one window of data into findings that say what was judged and why."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchkeeper.config import DriftCheck, ErrorRateCheck, UpCheck
from watchkeeper.detector import (
    DriftReference,
    check_drift,
    check_error_rate,
    check_up,
    holm,
    ks_two_sample,
    rule_hash,
    wilson_interval,
)
from watchkeeper.detector.checks import feature_values
from watchkeeper.tsdb import FeatureValue, Prediction

T = 1_700_000_000.0


def prediction(i: int, features: dict[str, FeatureValue], **kwargs: Any) -> Prediction:
    return Prediction(
        model="m", prediction_id=f"p{i}", timestamp=T + i, features=features, **kwargs
    )


def test_rule_hash_pins_the_configuration() -> None:
    cfg = UpCheck(staleness=60)
    settings = cfg.model_dump_json(exclude={"runbook_url"})
    expected = hashlib.sha256(("up" + settings).encode()).hexdigest()[:12]
    assert rule_hash("up", cfg) == expected
    # where to read about an alert is not how it is judged: old findings keep their hash
    assert rule_hash("up", UpCheck(staleness=60, runbook_url="https://wiki/{check}")) == expected
    assert len(expected) == 12
    assert rule_hash("up", UpCheck(staleness=60)) == expected
    assert rule_hash("up", UpCheck(staleness=61)) != expected
    assert rule_hash("error_rate", cfg) != expected


@pytest.mark.parametrize(
    ("last", "value", "breached", "summary"),
    [
        (T - 420, 420.0, True, "no data for 7m (staleness bound 5m)"),
        (T - 30, 30.0, False, "last data 30s ago (staleness bound 5m)"),
        (T - 300, 300.0, False, "last data 5m ago (staleness bound 5m)"),
        (None, 900.0, True, "no data for 15m or longer (staleness bound 5m)"),
    ],
)
def test_up(last: float | None, value: float, breached: bool, summary: str) -> None:
    cfg = UpCheck(staleness="5m", severity="warning")
    finding = check_up("m", T, last, T - 900, cfg)
    assert (finding.check, finding.subject, finding.statistic) == (
        "up",
        "",
        "seconds_since_last_data",
    )
    assert finding.value == value
    assert finding.threshold == 300.0
    assert finding.breached is breached
    assert finding.summary == summary
    assert finding.severity == "warning"
    assert (finding.window_start, finding.window_end) == (T - 900, T)
    assert finding.rule_hash == rule_hash("up", cfg)


def test_error_rate_counts_true_traffic_but_judges_raw_counts() -> None:
    # 10 errors logged at rate 1.0 and 90 successes logged at rate 0.5 (= 180 true ones).
    predictions = [prediction(i, {}, error=True) for i in range(10)] + [
        prediction(10 + i, {}, sample_rate=0.5) for i in range(90)
    ]
    cfg = ErrorRateCheck(threshold=0.02, confidence=0.9, min_count=20)
    finding = check_error_rate("m", predictions, T, T + 600, cfg)
    assert finding.value == pytest.approx(10 / 190)
    assert finding.interval == wilson_interval(10, 100, 0.9)
    assert finding.n == 100
    assert finding.breached  # the lower bound of 10/100 at 90 % is about 0.06 > 0.02
    assert finding.statistic == "error_rate"
    assert finding.severity == "critical"
    assert finding.threshold == 0.02
    assert "above 2.0%" in finding.summary


def test_error_rate_needs_confidence_not_just_a_high_rate() -> None:
    predictions = [prediction(i, {}, error=i < 3) for i in range(25)]  # 12 %, lower bound ~4 %
    finding = check_error_rate("m", predictions, T, T + 600, ErrorRateCheck(threshold=0.05))
    assert finding.value == pytest.approx(0.12)
    assert finding.interval is not None and finding.interval[0] < 0.05
    assert not finding.breached


def test_error_rate_is_quiet_with_little_data() -> None:
    predictions = [prediction(i, {}, error=True) for i in range(19)]
    finding = check_error_rate("m", predictions, T, T + 600, ErrorRateCheck(min_count=20))
    assert finding.value == 1.0
    assert not finding.breached
    assert "not enough data" in finding.summary
    empty = check_error_rate("m", [], T, T + 600, ErrorRateCheck())
    assert (empty.value, empty.n, empty.breached, empty.interval) == (0.0, 0, False, (0.0, 1.0))


def window_values(predictions: list[Prediction]) -> dict[str, np.ndarray]:
    """What the engine hands `check_drift` for a window: each feature's numeric values."""
    names = {name for p in predictions for name in p.features}
    return {name: feature_values(predictions, name) for name in names}


def stream(
    rng: np.random.Generator, n: int, shift: dict[str, float], start: int = 0
) -> list[Prediction]:
    return [
        prediction(
            start + i,
            {
                "a": float(rng.normal(shift.get("a", 0.0))),
                "b": float(rng.normal(shift.get("b", 0.0))),
                "count": int(rng.poisson(5 + shift.get("count", 0.0))),
                "flag": bool(rng.random() < 0.5),
                "country": "de",
                "sometimes": None if i % 2 else float(rng.normal()),
            },
        )
        for i in range(n)
    ]


def test_drift_flags_the_shifted_feature_with_holm_and_effect_size() -> None:
    rng = np.random.default_rng(1)
    reference = stream(rng, 400, {})
    current = stream(rng, 300, {"b": 1.0}, start=1000)
    cfg = DriftCheck()
    findings = check_drift(
        "m",
        DriftReference.from_predictions("m@1-2", reference),
        window_values(current),
        T,
        T + 600,
        cfg,
    )
    # bools and strings are not numeric features; ints are
    assert [f.subject for f in findings] == ["a", "b", "count", "sometimes"]
    by_feature = {f.subject: f for f in findings}
    assert [f.subject for f in findings if f.breached] == ["b"]
    shifted = by_feature["b"]
    ref_b = [p.features["b"] for p in reference]
    cur_b = [p.features["b"] for p in current]
    expected = ks_two_sample(ref_b, cur_b)  # type: ignore[arg-type]
    assert (shifted.value, shifted.p_value) == (expected.statistic, expected.p_value)
    assert shifted.statistic == "ks"
    assert shifted.threshold == cfg.min_effect
    assert shifted.severity == "warning"
    assert shifted.reference_id == "m@1-2"
    assert shifted.n == 300
    assert by_feature["sometimes"].n == 150
    assert shifted.summary.startswith("feature 'b' drifted: KS 0.")
    assert shifted.summary.endswith("vs reference")
    decisions = holm([f.p_value or 1.0 for f in findings], cfg.p_value)
    for finding, rejected in zip(findings, decisions, strict=True):
        assert finding.breached == (rejected and finding.value >= cfg.min_effect)


def test_drift_needs_an_effect_as_well_as_significance() -> None:
    rng = np.random.default_rng(2)
    reference = stream(rng, 4000, {})
    current = stream(rng, 4000, {"a": 0.15}, start=10_000)  # significant, but KS ~ 0.06
    findings = check_drift(
        "m",
        DriftReference.from_predictions("r", reference),
        window_values(current),
        T,
        T + 600,
        DriftCheck(),
    )
    a = next(f for f in findings if f.subject == "a")
    assert a.p_value is not None and a.p_value < 0.001
    assert a.value < 0.1
    assert not a.breached
    assert "stable" in a.summary


def test_drift_skips_features_with_too_few_values() -> None:
    rng = np.random.default_rng(3)
    reference = stream(rng, 200, {})
    current = stream(rng, 90, {"a": 3.0}, start=1000)  # "sometimes" has 45 values < 50
    subjects = [
        f.subject
        for f in check_drift(
            "m",
            DriftReference.from_predictions("r", reference),
            window_values(current),
            T,
            T + 1,
            DriftCheck(),
        )
    ]
    assert subjects == ["a", "b", "count"]
    assert (
        check_drift(
            "m",
            DriftReference.from_predictions("r", reference[:40]),
            window_values(current),
            T,
            T + 1,
            DriftCheck(),
        )
        == []
    )


def test_a_feature_with_mixed_types_in_the_reference_is_not_numeric() -> None:
    reference = [
        prediction(i, {"x": float(i), "y": "n/a" if i == 7 else float(i)}) for i in range(60)
    ]
    current = [prediction(100 + i, {"x": float(i), "y": float(i)}) for i in range(60)]
    findings = check_drift(
        "m",
        DriftReference.from_predictions("r", reference),
        window_values(current),
        T,
        T + 1,
        DriftCheck(),
    )
    assert [f.subject for f in findings] == ["x"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=50, max_size=120))
def test_identical_windows_never_drift(values: list[float]) -> None:
    window = [prediction(i, {"x": v}) for i, v in enumerate(values)]
    (finding,) = check_drift(
        "m",
        DriftReference.from_predictions("r", window),
        window_values(window),
        T,
        T + 1,
        DriftCheck(),
    )
    assert finding.value == 0.0
    assert not finding.breached


def test_error_rate_ignores_impossible_sample_rates() -> None:
    predictions = [
        prediction(i, {}, error=i < 5, sample_rate=0.0 if i == 0 else 1.0) for i in range(50)
    ]
    finding = check_error_rate("m", predictions, T, T + 600, ErrorRateCheck())
    assert finding.value == pytest.approx(0.1)
