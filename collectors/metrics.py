"""The Prometheus metrics a `Monitor` keeps, labelled by model and version.

Families: `watchkeeper_predictions_total`, `watchkeeper_prediction_errors_total`,
`watchkeeper_prediction_latency_seconds` (histogram), `watchkeeper_prediction_value`
(histogram), `watchkeeper_fallbacks_total{reason}`, `watchkeeper_client_dropped_total{reason}`
and `watchkeeper_client_sent_total`. One set exists per `CollectorRegistry`, so several Monitors
(models, versions) can share the service's registry without registering a name twice.

The four per-prediction families are updated on the service's hot path, so they are kept by
one small custom collector (`PredictionCollector`): one lock and a few integer increments per
prediction instead of three prometheus-client metric objects with a lock each, which made
`log_prediction` cost 2-3x a bare `Counter.inc()` + `Histogram.observe()` pair on its own.
In prometheus-client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR` set when the first
Monitor of a registry is made, e.g. under gunicorn) they are plain prometheus-client metrics
instead, whose values the library shares between worker processes through its own files.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

__all__ = [
    "LATENCY_BUCKETS",
    "VALUE_BUCKETS",
    "ClientMetrics",
    "PredictionCollector",
    "PredictionSeries",
    "metrics_for",
]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Model serving latencies: 1 ms to 10 s."""

VALUE_BUCKETS = (*(i / 10 for i in range(11)), 2.0, 5.0, 10.0, 100.0, 1000.0)
"""Numeric outputs: fine steps over [0, 1] for scores and probabilities, coarse ones beyond.
No negative bound: Prometheus histograms with a negative bucket have no `_sum` (the mean
output, the most useful series); negative outputs still count in `le="0.0"`."""

_MV = ("model", "version")
PREDICTIONS = ("watchkeeper_predictions", "Predictions made (all, before sampling).")
ERRORS = ("watchkeeper_prediction_errors", "Predictions that failed.")
LATENCY = ("watchkeeper_prediction_latency_seconds", "Time to make one prediction.")
VALUES = ("watchkeeper_prediction_value", "Numeric model outputs.")


class PredictionSeries(Protocol):
    """The per-prediction metrics of one model version."""

    def record(self, failed: bool, latency: float | None, value: float | None) -> None:
        """Count one prediction, its latency (if known) and its numeric output (if any)."""

    def observe_value(self, value: float) -> None:
        """Observe a numeric output alone (the prediction is counted later, by `track()`)."""


class _FastSeries:
    """Counts of one model version under one lock; read by `PredictionCollector.collect`."""

    __slots__ = (
        "created",
        "errors",
        "latency_counts",
        "latency_sum",
        "lock",
        "predictions",
        "value_counts",
        "value_sum",
    )

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.created = time.time()
        self.predictions = 0
        self.errors = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.value_counts = [0] * (len(VALUE_BUCKETS) + 1)
        self.value_sum = 0.0

    def record(self, failed: bool, latency: float | None, value: float | None) -> None:
        with self.lock:
            self.predictions += 1
            if failed:
                self.errors += 1
            if latency is not None:
                self.latency_counts[bisect_left(LATENCY_BUCKETS, latency)] += 1
                self.latency_sum += latency
            if value is not None:
                self.value_counts[bisect_left(VALUE_BUCKETS, value)] += 1
                self.value_sum += value

    def observe_value(self, value: float) -> None:
        with self.lock:
            self.value_counts[bisect_left(VALUE_BUCKETS, value)] += 1
            self.value_sum += value


def _histogram(
    family: HistogramMetricFamily,
    labels: list[str],
    bounds: tuple[float, ...],
    counts: list[int],
    total: float,
    created: float,
) -> None:
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        cumulative += count
        buckets.append((floatToGoString(bound), float(cumulative)))  # type: ignore[no-untyped-call]
    family.add_metric(labels, buckets, total)
    family.samples.append(
        Sample(family.name + "_created", dict(zip(_MV, labels, strict=True)), created)
    )


class PredictionCollector:
    """A prometheus-client collector of the per-prediction families of every Monitor."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _FastSeries] = {}

    def series(self, model: str, version: str) -> _FastSeries:
        with self._lock:
            found = self._series.get((model, version))
            if found is None:
                found = self._series[(model, version)] = _FastSeries()
            return found

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(*PREDICTIONS, labels=_MV)
        yield CounterMetricFamily(*ERRORS, labels=_MV)
        yield HistogramMetricFamily(*LATENCY, labels=_MV)
        yield HistogramMetricFamily(*VALUES, labels=_MV)

    def collect(self) -> Iterator[Metric]:
        predictions = CounterMetricFamily(*PREDICTIONS, labels=_MV)
        errors = CounterMetricFamily(*ERRORS, labels=_MV)
        latency = HistogramMetricFamily(*LATENCY, labels=_MV)
        values = HistogramMetricFamily(*VALUES, labels=_MV)
        with self._lock:
            series = sorted(self._series.items())
        for (model, version), s in series:
            with s.lock:
                n, n_errors = s.predictions, s.errors
                lat, lat_sum = list(s.latency_counts), s.latency_sum
                val, val_sum = list(s.value_counts), s.value_sum
            labels = [model, version]
            predictions.add_metric(labels, float(n), created=s.created)
            errors.add_metric(labels, float(n_errors), created=s.created)
            _histogram(latency, labels, LATENCY_BUCKETS, lat, lat_sum, s.created)
            _histogram(values, labels, VALUE_BUCKETS, val, val_sum, s.created)
        yield from (predictions, errors, latency, values)


class _StandardSeries:
    """The same metrics as prometheus-client objects (for multiprocess mode)."""

    def __init__(self, metrics: _StandardFamilies, model: str, version: str) -> None:
        self._predictions = metrics.predictions.labels(model, version)
        self._errors = metrics.errors.labels(model, version)
        self._latency = metrics.latency.labels(model, version)
        self._values = metrics.values.labels(model, version)

    def record(self, failed: bool, latency: float | None, value: float | None) -> None:
        self._predictions.inc()
        if failed:
            self._errors.inc()
        if latency is not None:
            self._latency.observe(latency)
        if value is not None:
            self._values.observe(value)

    def observe_value(self, value: float) -> None:
        self._values.observe(value)


class _StandardFamilies:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.predictions = Counter(*PREDICTIONS, _MV, registry=registry)
        self.errors = Counter(*ERRORS, _MV, registry=registry)
        self.latency = Histogram(*LATENCY, _MV, buckets=LATENCY_BUCKETS, registry=registry)
        self.values = Histogram(*VALUES, _MV, buckets=VALUE_BUCKETS, registry=registry)


class ClientMetrics:
    """The metric families of the client library on one registry."""

    def __init__(self, registry: CollectorRegistry, *, multiprocess: bool = False) -> None:
        mvr = (*_MV, "reason")
        self.fallbacks = Counter(
            "watchkeeper_fallbacks_total",
            "Times the service answered without the model.",
            mvr,
            registry=registry,
        )
        self.dropped = Counter(
            "watchkeeper_client_dropped_total",
            "Records not delivered to ingest, by reason.",
            mvr,
            registry=registry,
        )
        self.sent = Counter(
            "watchkeeper_client_sent_total", "Records delivered to ingest.", _MV, registry=registry
        )
        self._standard: _StandardFamilies | None = None
        self._collector: PredictionCollector | None = None
        if multiprocess:
            self._standard = _StandardFamilies(registry)
        else:
            self._collector = PredictionCollector()
            registry.register(self._collector)

    def series(self, model: str, version: str) -> PredictionSeries:
        """The per-prediction metrics of one model version."""
        if self._collector is not None:
            return self._collector.series(model, version)
        assert self._standard is not None
        return _StandardSeries(self._standard, model, version)


_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, ClientMetrics] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _multiprocess_mode() -> bool:
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ


def metrics_for(registry: CollectorRegistry) -> ClientMetrics:
    """The one `ClientMetrics` of `registry`, created on first use."""
    with _LOCK:
        metrics = _METRICS.get(registry)
        if metrics is None:
            metrics = _METRICS[registry] = ClientMetrics(
                registry, multiprocess=_multiprocess_mode()
            )
        return metrics
