"""InfluxStore's Flux read path against a real InfluxDB 2.x (see docs/influxdb.md).

Every test writes under a fresh model name, so runs never see each other's data in the shared
bucket; the bucket must keep data forever (retention 0), since the retention test writes 1971.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest

from watchkeeper.tsdb import Finding, Label, Prediction, Sample
from watchkeeper.tsdb.influx import InfluxStore

pytestmark = pytest.mark.influx2


@pytest.fixture
def influx() -> Iterator[InfluxStore]:
    store = InfluxStore(
        os.environ["WATCHKEEPER_TEST_INFLUX_URL"],
        os.environ.get("WATCHKEEPER_TEST_INFLUX_TOKEN", ""),
        os.environ.get("WATCHKEEPER_TEST_INFLUX_ORG", ""),
        os.environ.get("WATCHKEEPER_TEST_INFLUX_BUCKET", "watchkeeper-test"),
        timeout_s=10.0,
    )
    yield store
    store.close()


@pytest.fixture
def model() -> str:
    return f'test "{uuid.uuid4().hex[:8]}" ${{x}}'  # quotes and ${ exercise Flux escaping


def _now() -> float:
    return float(int(time.time()) - 3600)  # an hour ago, on a whole second


def test_predictions_labels_and_models_round_trip(influx: InfluxStore, model: str) -> None:
    t = _now()
    predictions = [
        Prediction(
            model,
            "a",
            t + 0.5,
            {"x": 1.5, "s": 'q\n"z\\', "b": True, "n": None},
            0.9,
            "v1",
            0.01,
            False,
            0.5,
        ),
        Prediction(model, 'id "b"', t + 1.25, {"x": -2.0}, "yes", "v2", None, True, 1.0),
        Prediction(model, "c", t + 2.0, {}, False, "v1"),
    ]
    labels = [Label(model, "a", 1.0, t + 100.0), Label(model, 'id "b"', "spam\nham", t + 101.0)]
    influx.write(predictions=predictions, labels=labels)
    assert influx.predictions(model, t, t + 3) == predictions
    assert influx.predictions(model, t + 0.5, t + 2.0) == predictions[:2]  # half-open
    assert influx.labels(model, ["a", 'id "b"', "missing"]) == {
        "a": labels[0],
        'id "b"': labels[1],
    }
    [info] = [m for m in influx.models() if m.name == model]
    assert info.versions == ("v1", "v2")
    assert (info.first_seen, info.last_seen) == (t + 0.5, t + 2.0)
    assert influx.last_seen(model) == t + 2.0
    assert influx.last_seen(model + "-none") is None
    frame = influx.prediction_frame(model, t, t + 3)
    assert list(frame["prediction_id"]) == ["a", 'id "b"', "c"]
    assert list(frame["label"][:2]) == [1.0, "spam\nham"]
    assert frame["x"].iloc[0] == 1.5


def test_samples_series_and_aggregates(influx: InfluxStore, model: str) -> None:
    t = _now() - _now() % 60
    samples = [
        Sample(model, "latency", t + i * 10.0, float(i), "v1", (("le", "0.5"),)) for i in range(12)
    ]
    samples.append(Sample(model, "up", t, 1.0))
    influx.write(samples=samples)
    assert influx.samples(model, "latency", t, t + 60) == samples[:6]
    assert influx.series(model) == ["latency", "up"]
    assert influx.aggregate_samples(model, "latency", "sum", t, t + 120, 60) == [
        (t, 15.0),
        (t + 60, 51.0),
    ]
    assert influx.aggregate_samples(model, "latency", "max", t + 30, t + 120, 60) == [
        (t + 30, 8.0),
        (t + 90, 11.0),
    ]
    assert influx.aggregate_samples(model, "latency", "p50", t, t + 60, 60) == [(t, 2.5)]


def test_prediction_aggregates_are_computed_per_window(influx: InfluxStore, model: str) -> None:
    t = _now() - _now() % 60
    predictions = [
        Prediction(
            model,
            f"p{i}",
            t + i * 10.0,
            {"x": float(i), "flag": i % 2 == 0},
            latency_s=0.1 * (i + 1),
            error=i < 2,
            sample_rate=0.5,
        )
        for i in range(12)
    ]
    influx.write(predictions=predictions)
    count = influx.aggregate_predictions(model, "count", t, t + 120, 60)
    assert count == [(t, 12.0), (t + 60, 12.0)]
    rate = influx.aggregate_predictions(model, "error_rate", t, t + 120, 60)
    assert rate == [(t, pytest.approx(2 / 6)), (t + 60, 0.0)]
    mean = influx.aggregate_prediction_field(model, "features.x", "mean", t, t + 120, 60)
    assert mean == [(t, 2.5), (t + 60, 8.5)]
    flags = influx.aggregate_prediction_field(model, "features.flag", "sum", t, t + 120, 60)
    assert flags == [(t, 3.0), (t + 60, 3.0)]
    assert influx.aggregate_prediction_field(model, "latency_s", "count", t, t + 60, 60) == [
        (t, 6.0)
    ]


def test_findings_round_trip_and_filter(influx: InfluxStore, model: str) -> None:
    t = _now()
    findings = [
        Finding(
            model,
            "drift",
            "x",
            "ks",
            0.4,
            0.1,
            True,
            "warning",
            t - 60,
            t,
            p_value=0.001,
            interval=(0.3, 0.5),
            reference_id="r",
            rule_hash="h",
            summary='x drifted\n"a lot"',
            n=100,
        ),
        Finding(
            model, "error_rate", "errors", "wilson", 0.01, 0.05, False, "critical", t - 60, t + 60
        ),
    ]
    influx.write(findings=findings)
    assert influx.findings(model) == findings
    assert influx.findings(model, breached_only=True) == findings[:1]
    assert influx.findings(model, t + 1, t + 61) == findings[1:]
    assert influx.last_evaluated(model) == t + 60


def test_retention_deletes_old_points(influx: InfluxStore, model: str) -> None:
    old = 365 * 86400.0  # 1971
    influx.write(samples=[Sample(model, "up", old, 1.0)], findings=[])
    assert influx.samples(model, "up", 0, old + 1)
    assert influx.retention("samples", old + 1) >= 1
    assert influx.samples(model, "up", 0, old + 1) == []
