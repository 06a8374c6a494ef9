"""The client library: metrics, delivery to a real ingest server, and never hurting the service."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_collectors import (  # noqa: F401
    Ingest,
    dead_endpoint_fixture,
    ingest_fixture,
    registry_fixture,
    start_ingest,
)
from prometheus_client import CollectorRegistry

import watchkeeper
import watchkeeper.collectors
from watchkeeper import Monitor
from watchkeeper.tsdb import SQLiteStore

MV = {"model": "churn", "version": "v1"}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, {**MV, **labels}) or 0.0


@pytest.fixture
def monitor(ingest: Ingest, registry: CollectorRegistry) -> Iterator[Monitor]:
    m = Monitor("churn", "v1", endpoint=ingest.url, registry=registry, batch_size=50)
    yield m
    m.close(timeout=1)


def stored_ids(store: SQLiteStore, model: str = "churn") -> list[str]:
    return [p.prediction_id for p in store.predictions(model, 0, math.inf)]


def test_public_names() -> None:
    assert watchkeeper.Monitor is Monitor
    assert watchkeeper.collectors.__all__ == ["ClientStats", "Monitor"]


def test_importing_the_client_stays_light(tmp_path: Path) -> None:
    heavy = ["pandas", "scipy", "streamlit", "pydantic", "fastapi", "numpy"]
    code = (
        "import sys, watchkeeper, watchkeeper.collectors\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_predictions_labels_and_fallbacks_reach_the_store_exactly_once(
    monitor: Monitor, ingest: Ingest, registry: CollectorRegistry
) -> None:
    ids = [
        monitor.log_prediction(
            {"age": i, "plan": "pro", "nan": math.nan, "bad": "caf\udce9"}, i % 2, latency_s=0.02
        )
        for i in range(230)
    ]
    for i, pid in enumerate(ids):
        monitor.log_label(pid, i % 3 == 0)
    monitor.log_fallback("timeout")

    assert monitor.flush(timeout=10) is True
    stats = monitor.stats
    assert (stats.sent, stats.queued, stats.dropped_total) == (461, 0, 0)

    stored = ingest.store.predictions("churn", 0, math.inf)
    assert sorted(p.prediction_id for p in stored) == sorted(ids)
    first = next(p for p in stored if p.prediction_id == ids[7])
    # NaN is sent as missing; a string that is not valid Unicode is repaired, not refused
    assert first.features == {"age": 7, "plan": "pro", "nan": None, "bad": "caf?"}
    assert (first.output, first.version, first.latency_s, first.error) == (1, "v1", 0.02, False)
    labels = ingest.store.labels("churn", ids)
    assert len(labels) == 230
    assert labels[ids[3]].label is True
    fallbacks = ingest.store.samples("churn", "fallbacks", 0, math.inf)
    assert [(s.value, s.labels) for s in fallbacks] == [(1.0, (("reason", "timeout"),))]

    assert value(registry, "watchkeeper_client_sent_total") == 461
    assert value(registry, "watchkeeper_predictions_total") == 230
    assert value(registry, "watchkeeper_fallbacks_total", reason="timeout") == 1


def test_a_batch_retried_after_a_locked_store_is_stored_once(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    import sqlite3

    store = SQLiteStore(tmp_path / "w.db", busy_timeout_s=0.05)
    running = start_ingest(store)
    blocker = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
    m = Monitor("churn", "v1", endpoint=running.url, registry=registry)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # the store answers "database is locked": 503
        ids = [m.log_prediction({"x": i}, 0.1) for i in range(20)]
        for _ in range(1000):  # until the server has answered 503 at least once
            if running.rejected("store_unavailable"):
                break
            time.sleep(0.01)
        assert running.rejected("store_unavailable") >= 1
        assert m.flush(timeout=0) is False
        blocker.execute("ROLLBACK")
        assert m.flush(timeout=10) is True  # the same batch, retried after Retry-After
        assert sorted(stored_ids(store)) == sorted(ids)
        assert m.stats.sent == 20
        assert m.stats.dropped_total == 0
    finally:
        m.close(timeout=1)
        blocker.close()
        running.server.stop()
        store.close()


def test_a_dead_endpoint_never_blocks_or_raises_and_drops_exactly_the_overflow(
    dead_endpoint: str, registry: CollectorRegistry
) -> None:
    m = Monitor(
        "churn", "v1", endpoint=dead_endpoint, registry=registry, max_buffer=300, batch_size=50
    )
    n = 5_000
    ids = [m.log_prediction({"x": i}, 0.5) for i in range(n)]
    assert len(set(ids)) == n

    stats = m.stats
    assert stats.sent == 0
    assert stats.queued <= 300
    assert set(stats.dropped) == {"buffer_full"}
    assert stats.queued + stats.dropped["buffer_full"] == n  # every record accounted for
    assert stats.dropped["buffer_full"] >= n - 300
    assert (
        value(registry, "watchkeeper_client_dropped_total", reason="buffer_full")
        == (stats.dropped["buffer_full"])
    )
    assert value(registry, "watchkeeper_predictions_total") == n  # metrics count everything

    assert m.flush(timeout=0.5) is False
    m.close(timeout=0.5)
    m.log_prediction({"x": 1}, 0.5)  # after close: counted, not queued, no error
    assert m.stats.dropped["closed"] == 1


def test_a_batch_the_server_refuses_is_dropped_and_counted(
    store: SQLiteStore, registry: CollectorRegistry
) -> None:
    running = start_ingest(store, max_batch_items=10)
    m = Monitor("churn", "v1", endpoint=running.url, registry=registry, batch_size=40)
    try:
        for i in range(40):
            m.log_prediction({"x": i}, 0.5)
        assert m.flush(timeout=10) is False  # delivered nothing: the server said 413
        assert m.stats.dropped == {"rejected": 40}
        assert m.stats.queued == 0
        assert stored_ids(store) == []
        assert value(registry, "watchkeeper_client_dropped_total", reason="rejected") == 40
        m.log_prediction({"x": 1}, 0.5)  # a later, acceptable batch goes through
        assert m.flush(timeout=10) is True
        assert len(stored_ids(store)) == 1
    finally:
        m.close(timeout=1)
        running.server.stop()


def test_sampling_sends_a_fraction_but_counts_every_prediction(
    ingest: Ingest, registry: CollectorRegistry
) -> None:
    sampled = Monitor(
        "fraud", endpoint=ingest.url, registry=registry, sample_rate=0.25, batch_size=100
    )
    for i in range(400):
        pid = sampled.log_prediction({"x": i}, 0.5, prediction_id=f"t{i}")
        sampled.log_label(pid, 1)
    assert sampled.flush(timeout=10) is True
    sampled.close(timeout=1)

    stored = ingest.store.predictions("fraud", 0, math.inf)
    assert 40 < len(stored) < 160
    assert {p.sample_rate for p in stored} == {0.25}
    labels = ingest.store.labels("fraud", [f"t{i}" for i in range(400)])
    assert set(labels) == {p.prediction_id for p in stored}  # a label follows its prediction
    assert (
        registry.get_sample_value(
            "watchkeeper_predictions_total", {"model": "fraud", "version": ""}
        )
        == 400
    )


def test_child_process_after_fork_sends_through_its_own_sender(
    monitor: Monitor, ingest: Ingest
) -> None:
    monitor.log_prediction({"x": 0}, 0.5, prediction_id="parent-0")
    pid = os.fork()
    if pid == 0:  # the child: log and flush, then leave without running pytest's teardown
        ok = False
        try:
            for i in range(10):
                monitor.log_prediction({"x": i}, 0.5, prediction_id=f"child-{i}")
            ok = monitor.flush(timeout=10)
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert monitor.flush(timeout=10) is True
    assert sorted(stored_ids(ingest.store)) == sorted(
        ["parent-0", *(f"child-{i}" for i in range(10))]
    )


def test_bad_data_never_raises_and_is_dropped_alone_and_counted(
    monitor: Monitor, ingest: Ingest, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    bad: list[tuple[Any, Any]] = [
        ("not a mapping", 1),
        ({"x": object()}, 1),
        ({1: 2}, 1),
        ({"x": 1}, [1, 2]),
    ]
    for features, output in bad:
        assert isinstance(monitor.log_prediction(features, output), str)
    monitor.log_prediction({"x": 1}, 1, timestamp="yesterday")  # type: ignore[arg-type]
    monitor.log_label("p1", {"not": "a scalar"})
    monitor.log_label("", 1)
    good = monitor.log_prediction({"x": 2}, 0.5)  # in the same batch as the bad ones
    # values are checked in the sender thread: flush reports the drops
    assert monitor.flush(timeout=10) is False
    assert monitor.stats.dropped == {"invalid": 7}
    assert monitor.stats.sent == 1
    assert stored_ids(ingest.store) == [good]
    assert value(registry, "watchkeeper_client_dropped_total", reason="invalid") == 7
    assert "not recorded" in caplog.text
    assert monitor.flush(timeout=10) is True  # nothing new went wrong since


def test_features_are_copied_when_logged(monitor: Monitor, ingest: Ingest) -> None:
    features = {"x": 1}
    pid = monitor.log_prediction(features, 0.5)
    features["x"] = 2  # a service reusing its dict must not change what was logged
    assert monitor.flush(timeout=10) is True
    (stored,) = ingest.store.predictions("churn", 0, math.inf)
    assert (stored.prediction_id, stored.features) == (pid, {"x": 1})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": ""}, "model must be a non-empty string"),
        ({"sample_rate": 0}, r"sample_rate must be in \(0, 1\]"),
        ({"sample_rate": 1.5}, r"sample_rate must be in \(0, 1\]"),
        ({"endpoint": "ftp://host"}, "must start with http:// or https://"),
        ({"endpoint": "localhost:8765"}, "must start with http:// or https://"),
        ({"endpoint": "http://"}, "has no host"),
        ({"endpoint": "http://host:99999"}, "not a valid URL"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"max_buffer": -1}, "max_buffer must be a positive integer"),
        ({"flush_interval_s": 0}, "flush_interval_s must be a positive number"),
        ({"timeout_s": math.inf}, "timeout_s must be a positive number"),
        ({"token": ""}, "token must be a non-empty string"),
    ],
)
def test_wrong_constructor_arguments_raise_precise_errors(
    kwargs: dict[str, Any], message: str, registry: CollectorRegistry
) -> None:
    args: dict[str, Any] = {"model": "churn", "registry": registry, **kwargs}
    with pytest.raises(ValueError, match=message):
        Monitor(**args)


def test_track_as_decorator_counts_calls_errors_and_reraises(registry: CollectorRegistry) -> None:
    m = Monitor("churn", "v1", registry=registry)

    @m.track()
    def predict(x: float) -> float:
        if x < 0:
            raise ValueError("negative")
        return x * 2

    assert predict(2) == 4
    with pytest.raises(ValueError, match="negative"):
        predict(-1)
    assert predict.__name__ == "predict"
    assert value(registry, "watchkeeper_predictions_total") == 2
    assert value(registry, "watchkeeper_prediction_errors_total") == 1
    assert value(registry, "watchkeeper_prediction_latency_seconds_count") == 2


def test_track_as_context_manager_counts_once_with_a_logged_prediction(
    monitor: Monitor, ingest: Ingest, registry: CollectorRegistry
) -> None:
    with monitor.track():
        monitor.log_prediction({"x": 1}, 0.9, prediction_id="ok-1")
    with pytest.raises(KeyError), monitor.track():
        raise KeyError("feature missing")

    assert value(registry, "watchkeeper_predictions_total") == 2
    assert value(registry, "watchkeeper_prediction_errors_total") == 1
    assert value(registry, "watchkeeper_prediction_latency_seconds_count") == 2
    assert value(registry, "watchkeeper_prediction_value_count") == 1

    assert monitor.flush(timeout=10) is True
    stored = {p.prediction_id: p for p in ingest.store.predictions("churn", 0, math.inf)}
    assert len(stored) == 2
    logged = stored.pop("ok-1")
    assert (logged.features, logged.error) == ({"x": 1}, False)
    assert logged.latency_s is not None  # filled in with the block's own timing
    (failed,) = stored.values()
    assert (failed.features, failed.output, failed.error) == ({}, None, True)


def test_metrics_only_monitor_and_shared_registry(registry: CollectorRegistry) -> None:
    a = Monitor("churn", "v1", registry=registry)
    b = Monitor("churn", "v2", registry=registry)  # same registry: no duplicate registration
    a.log_prediction({"x": 1}, 0.3, latency_s=0.004, error=True)
    b.log_prediction({"x": 1}, "yes")
    b.log_fallback("circuit_open")
    assert a.flush() is True
    assert a.stats.queued == 0
    assert value(registry, "watchkeeper_predictions_total") == 1
    assert value(registry, "watchkeeper_prediction_errors_total") == 1
    assert value(registry, "watchkeeper_prediction_latency_seconds_bucket", le="0.005") == 1
    assert value(registry, "watchkeeper_prediction_value_sum") == pytest.approx(0.3)
    assert (
        registry.get_sample_value(
            "watchkeeper_fallbacks_total",
            {"model": "churn", "version": "v2", "reason": "circuit_open"},
        )
        == 1
    )


MULTIPROCESS_SCRIPT = """
import os
from prometheus_client import CollectorRegistry, multiprocess
from watchkeeper import Monitor

monitor = Monitor("churn", "v1", registry=CollectorRegistry())
workers = []
for _ in range(3):  # like gunicorn's pre-fork workers
    pid = os.fork()
    if pid == 0:
        for i in range(5):
            monitor.log_prediction({"x": i}, 0.5, latency_s=0.01, error=i == 0)
        os._exit(0)
    workers.append(pid)
for pid in workers:
    os.waitpid(pid, 0)
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
labels = {"model": "churn", "version": "v1"}
for name in ("watchkeeper_predictions_total", "watchkeeper_prediction_errors_total",
             "watchkeeper_prediction_latency_seconds_count"):
    print(registry.get_sample_value(name, labels))
"""


def test_prometheus_multiprocess_mode_adds_up_every_worker(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_SCRIPT],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == ["15.0", "3.0", "15.0"]


def test_numpy_outputs_count_in_the_value_histogram(registry: CollectorRegistry) -> None:
    import numpy as np

    m = Monitor("churn", "v1", registry=registry)
    m.log_prediction({"x": np.float32(1.5)}, np.float64(0.25))
    m.log_prediction({"x": 1}, np.int64(3))
    assert value(registry, "watchkeeper_prediction_value_count") == 2
    assert value(registry, "watchkeeper_prediction_value_sum") == pytest.approx(3.25)
