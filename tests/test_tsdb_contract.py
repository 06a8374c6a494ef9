"""The Store contract, written once and run against every backend in `BACKENDS`.

A backend joins by adding one factory to `BACKENDS`: a function taking pytest's `tmp_path`
and returning a context manager that yields a fresh, empty store and closes it afterwards
(skipping, through `pytest.skip`, when its server is not reachable).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import numpy as np
import pytest

from watchkeeper.tsdb import (
    FRAME_COLUMNS,
    Finding,
    Label,
    Prediction,
    Sample,
    SQLiteStore,
    Store,
)

HOUR = 3600.0
T0 = 1_699_999_200.0  # a whole hour


@contextmanager
def sqlite_backend(tmp_path: Path) -> Iterator[Store]:
    store = SQLiteStore(tmp_path / "contract.db")
    try:
        yield store
    finally:
        store.close()


@contextmanager
def influxdb_backend(tmp_path: Path) -> Iterator[Store]:
    """A fresh bucket on the InfluxDB 2.x named by WATCHKEEPER_TEST_INFLUX_* (docs/influxdb.md)."""
    import uuid

    from influxdb_client import InfluxDBClient

    from watchkeeper.tsdb.influx import InfluxStore

    url = os.environ["WATCHKEEPER_TEST_INFLUX_URL"]
    token = os.environ["WATCHKEEPER_TEST_INFLUX_TOKEN"]
    org = os.environ["WATCHKEEPER_TEST_INFLUX_ORG"]
    with InfluxDBClient(url=url, token=token, org=org) as client:
        bucket = client.buckets_api().create_bucket(bucket_name=f"wk-contract-{uuid.uuid4().hex}")
        store = InfluxStore(url, token, org, bucket.name)
        try:
            yield store
        finally:
            store.close()
            client.buckets_api().delete_bucket(bucket)


BACKENDS: dict[str, Callable[[Path], AbstractContextManager[Store]]] = {
    "sqlite": sqlite_backend,
}
# InfluxDB's read path needs a real InfluxDB 2.x; without one it is not collected (not skipped).
if os.environ.get("WATCHKEEPER_TEST_INFLUX_URL"):
    BACKENDS["influxdb"] = influxdb_backend


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with BACKENDS[request.param](tmp_path) as store:
        yield store


def prediction(i: int, t: float, **features: float | str | bool) -> Prediction:
    return Prediction(
        model="m",
        prediction_id=f"p{i}",
        timestamp=t,
        features=dict(features),
        output=0.25 * (i % 4),
        version="v1",
        latency_s=0.01 * (1 + i % 7),
        error=i % 5 == 0,
    )


def test_satisfies_the_protocol(backend: Store) -> None:
    assert isinstance(backend, Store)


def test_written_records_read_back(backend: Store) -> None:
    predictions = [prediction(i, T0 + i, x=float(i), c="a", b=i % 2 == 0) for i in range(5)]
    finding = Finding(
        model="m",
        check="drift",
        subject="x",
        statistic="ks",
        value=0.4,
        threshold=0.1,
        breached=True,
        severity="warning",
        window_start=T0,
        window_end=T0 + 60,
        p_value=1e-6,
        interval=(0.3, 0.5),
        n=5,
    )
    result = backend.write(
        samples=[Sample("m", "up", T0, 1.0, "v1", (("target", "a"),))],
        predictions=predictions,
        labels=[Label("m", "p1", 1, T0 + 100)],
        findings=[finding],
    )
    assert (result.samples, result.predictions, result.labels, result.findings) == (1, 5, 1, 1)
    assert backend.predictions("m", T0, T0 + 5) == predictions
    assert backend.predictions("m", T0 + 1, T0 + 3) == predictions[1:3]
    assert backend.labels("m", ["p1", "p2"]) == {"p1": Label("m", "p1", 1, T0 + 100)}
    assert backend.samples("m", "up", T0, T0 + 1) == [
        Sample("m", "up", T0, 1.0, "v1", (("target", "a"),))
    ]
    assert backend.findings("m") == [finding]
    assert backend.last_evaluated("m") == T0 + 60
    # a finding's version is stored and read back; None (no version) stays None
    versioned = Finding("m", "error_rate", "", "wilson_low", 0.3, 0.05, True, "critical",
                        T0 + 60, T0 + 120, version="v1")  # fmt: skip
    backend.write(findings=[versioned])
    assert backend.findings("m", T0 + 61) == [versioned]
    assert backend.findings("m")[0].version is None
    assert backend.last_seen("m") == T0 + 4
    [info] = backend.models()
    assert (info.name, info.versions) == ("m", ("v1",))


def test_series_lists_sample_names(backend: Store) -> None:
    backend.write(
        samples=[
            Sample("m", "up", T0, 1.0),
            Sample("m", "fallbacks", T0, 2.0),
            Sample("m", "up", T0 + 1, 1.0),
            Sample("other", "queue", T0, 3.0),
        ]
    )
    assert backend.series("m") == ["fallbacks", "up"]
    assert backend.series("nobody") == []


def test_out_of_order_timestamps_are_stored_and_read_in_order(backend: Store) -> None:
    times = [T0 + 5, T0 + 1, T0 + 3]
    backend.write(predictions=[prediction(i, t) for i, t in enumerate(times)])
    assert [p.timestamp for p in backend.predictions("m", T0, T0 + 10)] == sorted(times)


STATS = {
    "count": lambda v: float(len(v)),
    "sum": lambda v: float(np.sum(v)),
    "mean": lambda v: float(np.mean(v)),
    "min": lambda v: float(np.min(v)),
    "max": lambda v: float(np.max(v)),
    "p50": lambda v: float(np.quantile(v, 0.5)),
    "p99": lambda v: float(np.quantile(v, 0.99)),
}


def test_sample_aggregates_match_numpy(backend: Store) -> None:
    rng = np.random.default_rng(7)
    times = T0 + np.sort(rng.choice(3600, 500, replace=False)).astype(float)
    values = rng.normal(10, 3, 500)
    backend.write(
        samples=[
            Sample("m", "queue", float(t), float(v)) for t, v in zip(times, values, strict=True)
        ]
    )
    step = 600.0
    buckets = ((times - T0) // step).astype(int)
    for stat, expected in STATS.items():
        series = backend.aggregate_samples("m", "queue", stat, T0, T0 + HOUR, step)
        assert [t for t, _ in series] == [T0 + b * step for b in range(6)], stat
        for t, value in series:
            assert math.isclose(value, expected(values[buckets == int((t - T0) // step)])), stat


def test_prediction_field_aggregates_match_numpy(backend: Store) -> None:
    rng = np.random.default_rng(11)
    times = T0 + np.sort(rng.uniform(0, 2 * HOUR, 400))
    xs = rng.normal(0, 1, 400)
    backend.write(
        predictions=[
            prediction(i, float(t), x=float(x), c="text")
            for i, (t, x) in enumerate(zip(times, xs, strict=True))
        ]
    )
    step = 900.0
    buckets = ((times - T0) // step).astype(int)
    latencies = np.array([0.01 * (1 + i % 7) for i in range(400)])
    for field, values in {"features.x": xs, "latency_s": latencies}.items():
        for stat, expected in STATS.items():
            series = backend.aggregate_prediction_field("m", field, stat, T0, T0 + 2 * HOUR, step)
            assert len(series) == 8, (field, stat)
            for t, value in series:
                got = values[buckets == int((t - T0) // step)]
                assert math.isclose(value, expected(got), rel_tol=1e-9), (field, stat)
    # a text feature has no numeric value: no buckets
    assert backend.aggregate_prediction_field("m", "features.c", "count", T0, T0 + HOUR, 60) == []


def test_bad_aggregate_arguments_are_value_errors(backend: Store) -> None:
    with pytest.raises(ValueError, match="stat"):
        backend.aggregate_samples("m", "up", "median", T0, T0 + 60, 60)
    with pytest.raises(ValueError, match="field"):
        backend.aggregate_prediction_field("m", "colour", "mean", T0, T0 + 60, 60)
    with pytest.raises(ValueError, match="step"):
        backend.aggregate_samples("m", "up", "mean", T0, T0 + 60, 0)


def test_prediction_frame_joins_labels_by_id(backend: Store) -> None:
    backend.write(
        predictions=[
            prediction(0, T0, x=1.0, c="a"),
            prediction(1, T0 + 1, x=2.0),
            prediction(2, T0 + 2, x=3.0, label=7.0),  # a feature called like a fixed column
        ],
        labels=[Label("m", "p1", "spam", T0 + 50)],
    )
    frame = backend.prediction_frame("m", T0, T0 + 10)
    assert list(frame.columns[: len(FRAME_COLUMNS)]) == list(FRAME_COLUMNS)
    assert set(frame.columns[len(FRAME_COLUMNS) :]) == {"x", "c", "features.label"}
    assert frame["prediction_id"].tolist() == ["p0", "p1", "p2"]
    assert frame["x"].tolist() == [1.0, 2.0, 3.0]
    assert frame["label"].tolist()[1] == "spam"
    assert frame["label"].isna().tolist() == [True, False, True]
    assert frame["label_timestamp"].tolist()[1] == T0 + 50
    assert frame["error"].tolist() == [True, False, False]
    empty = backend.prediction_frame("m", 0, 1)
    assert len(empty) == 0
    assert list(empty.columns) == list(FRAME_COLUMNS)


def test_importing_the_store_does_not_import_pandas() -> None:
    import subprocess

    code = "import sys, watchkeeper.tsdb; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.stdout.strip() == "False", out.stderr


def test_retention_drops_old_records_per_kind(backend: Store) -> None:
    old, new = T0, T0 + 10 * 86400
    backend.write(
        samples=[Sample("m", "up", old, 1.0), Sample("m", "up", new, 1.0)],
        predictions=[prediction(0, old), prediction(1, new)],
        labels=[Label("m", "p0", 1, old), Label("m", "p1", 1, new)],
    )
    cutoff = T0 + 86400
    assert backend.retention("samples", cutoff) == 1
    assert [s.timestamp for s in backend.samples("m", "up", 0, math.inf)] == [new]
    assert backend.retention("predictions", cutoff) == 1
    assert [p.prediction_id for p in backend.predictions("m", 0, math.inf)] == ["p1"]
    assert backend.retention("labels", cutoff) == 1
    assert list(backend.labels("m", ["p0", "p1"])) == ["p1"]
    assert backend.retention("predictions", cutoff) == 0
    with pytest.raises(ValueError, match="kind"):
        backend.retention("everything", cutoff)  # type: ignore[arg-type]


BAD_BATCHES = {
    "nan sample": (
        {"samples": [Sample("m", "up", T0, 1.0), Sample("m", "up", T0 + 1, math.nan)]},
        r"samples\[1\]\.value",
    ),
    "infinite feature": (
        {"predictions": [prediction(0, T0, x=1.0), prediction(1, T0, x=math.inf)]},
        r"predictions\[1\]\.features\['x'\]",
    ),
    "nan latency": (
        {"predictions": [Prediction("m", "p", T0, latency_s=math.nan)]},
        r"predictions\[0\]\.latency_s",
    ),
    "empty model": (
        {"labels": [Label("m", "a", 1, T0), Label("", "b", 1, T0)]},
        r"labels\[1\]\.model",
    ),
    "oversized feature string": (
        {"predictions": [prediction(0, T0, c="x" * 100_000)]},
        r"predictions\[0\]\.features\['c'\]",
    ),
    "oversized id": (
        {"predictions": [Prediction("m", "p" * 1000, T0)]},
        r"predictions\[0\]\.prediction_id",
    ),
    "far future": (
        {"samples": [Sample("m", "up", 4e9, 1.0)]},
        r"samples\[0\]\.timestamp.*future",
    ),
    "negative time": (
        {"predictions": [Prediction("m", "p", -5.0)]},
        r"predictions\[0\]\.timestamp",
    ),
    "zero sample rate": (
        {"predictions": [Prediction("m", "p", T0, sample_rate=0.0)]},
        r"predictions\[0\]\.sample_rate",
    ),
    "nan finding": (
        {"findings": [Finding("m", "drift", "x", "ks", math.nan, 0.1, False, "info", T0, T0 + 60)]},
        r"findings\[0\]\.value",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BATCHES))
def test_a_bad_row_names_itself_and_nothing_is_written(backend: Store, case: str) -> None:
    batch, message = BAD_BATCHES[case]
    good = Sample("m", "ok", T0, 1.0)
    with pytest.raises(ValueError, match=message):
        backend.write(
            samples=[*batch.get("samples", []), good],
            **{k: v for k, v in batch.items() if k != "samples"},
        )
    assert backend.samples("m", "ok", 0, math.inf) == []
    assert backend.predictions("m", 0, math.inf) == []
    assert backend.models() == []
