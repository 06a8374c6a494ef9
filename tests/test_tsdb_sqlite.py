"""The embedded SQLite store: what is written comes back, batches are atomic, repeats ignored."""

from __future__ import annotations

import math
import multiprocessing
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from watchkeeper.tsdb import (
    SCHEMA_VERSION,
    Finding,
    Label,
    Limits,
    Prediction,
    Sample,
    SchemaError,
    SQLiteStore,
    Store,
)
from watchkeeper.tsdb.migrations import MIGRATIONS


def _prediction(i: int, t: float, *, error: bool = False, latency: float = 0.01) -> Prediction:
    return Prediction(
        model="m",
        prediction_id=f"p{i}",
        timestamp=t,
        features={"x": float(i), "c": "a"},
        output=0.5,
        version="1",
        latency_s=latency,
        error=error,
    )


def test_sqlite_store_satisfies_the_store_protocol(store: SQLiteStore) -> None:
    assert isinstance(store, Store)


def test_records_round_trip(store: SQLiteStore) -> None:
    predictions = [_prediction(i, 1000.0 + i) for i in range(5)]
    finding = Finding(
        model="m",
        check="drift",
        subject="x",
        statistic="ks",
        value=0.4,
        threshold=0.1,
        breached=True,
        severity="warning",
        window_start=900.0,
        window_end=1000.0,
        p_value=1e-6,
        interval=(0.3, 0.5),
        reference_id="ref",
        rule_hash="abc",
        n=5,
    )
    result = store.write(
        samples=[Sample("m", "up", 1000.0, 1.0, "1", (("target", "a"),))],
        predictions=predictions,
        labels=[Label("m", "p1", 1, 1500.0)],
        findings=[finding],
    )
    assert (result.samples, result.predictions, result.labels, result.findings) == (1, 5, 1, 1)
    assert store.predictions("m", 1000.0, 1005.0) == predictions
    assert store.predictions("m", 1001.0, 1003.0) == predictions[1:3]  # half-open window
    assert store.labels("m", ["p1", "p2"]) == {"p1": Label("m", "p1", 1, 1500.0)}
    assert store.samples("m", "up", 0, 2000) == [
        Sample("m", "up", 1000.0, 1.0, "1", (("target", "a"),))
    ]
    assert store.findings("m") == [finding]
    assert store.last_evaluated("m") == 1000.0
    [info] = store.models()
    assert (info.name, info.versions, info.first_seen, info.last_seen) == (
        "m",
        ("1",),
        1000.0,
        1004.0,
    )
    assert store.last_seen("m") == 1004.0
    assert store.last_seen("other") is None


def test_repeated_ids_are_not_stored_twice(store: SQLiteStore) -> None:
    batch = [_prediction(i, 1000.0 + i) for i in range(3)]
    assert store.write(predictions=batch).predictions == 3
    assert store.write(predictions=batch).predictions == 0
    assert len(store.predictions("m", 0, 5000)) == 3


@pytest.mark.parametrize("variable_limit", [None, 999])
def test_big_batches_are_stored_whole_with_repeats_counted_once(
    store: SQLiteStore, variable_limit: int | None
) -> None:
    """Many rows go into each INSERT statement; an SQLite built to allow fewer bound values
    per statement (999 before 3.32) takes smaller statements, never loses rows."""
    if variable_limit is not None:
        store._conn().setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, variable_limit)
    first = [_prediction(i, 1000.0 + i) for i in range(1537)]
    assert store.write(predictions=first).predictions == 1537
    # Half old ids, half new, one new id twice in the batch, across chunk boundaries.
    second = [_prediction(i, 1000.0 + i) for i in range(768, 2305)] + [_prediction(2000, 3500.0)]
    labels = [Label("m", f"p{i}", i % 2, 4000.0) for i in range(1100)]
    result = store.write(predictions=second, labels=labels)
    assert (result.predictions, result.labels) == (2305 - 1537, 1100)
    stored = store.predictions("m", 0, 5000)
    assert sorted(int(p.prediction_id[1:]) for p in stored) == list(range(2305))
    assert {p.prediction_id: p.timestamp for p in stored}["p2000"] == 3000.0  # the first kept
    assert len(store.labels("m", [f"p{i}" for i in range(2305)])) == 1100


def test_a_failing_batch_leaves_nothing_behind(store: SQLiteStore) -> None:
    good = Sample("m", "up", 1.0, 1.0)
    bad = Prediction("m", "p", 2.0, features={"x": object()})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"predictions\[0\]\.features\['x'\]"):
        store.write(samples=[good], predictions=[bad])
    assert store.samples("m", "up", 0, 10) == []
    assert store.models() == []


def test_aggregates_match_hand_computation(store: SQLiteStore) -> None:
    rng = np.random.default_rng(3)
    times = np.sort(rng.uniform(0, 600, 400))
    errors = rng.random(400) < 0.2
    latencies = rng.lognormal(-3, 0.5, 400)
    store.write(
        predictions=[
            _prediction(i, float(t), error=bool(e), latency=float(lat))
            for i, (t, e, lat) in enumerate(zip(times, errors, latencies, strict=True))
        ]
    )
    step = 60.0
    buckets = (times // step).astype(int)
    for metric, expected in {
        "count": lambda b: float(np.sum(buckets == b)),
        "error_rate": lambda b: float(np.mean(errors[buckets == b])),
        "latency_mean": lambda b: float(np.mean(latencies[buckets == b])),
        "latency_p95": lambda b: float(np.quantile(latencies[buckets == b], 0.95)),
    }.items():
        series = store.aggregate_predictions("m", metric, 0.0, 600.0, step)  # type: ignore[arg-type]
        assert [t for t, _ in series] == [b * step for b in range(10)]
        for t, value in series:
            assert math.isclose(value, expected(int(t // step)), rel_tol=1e-9), metric


def _write_batches(path: str, worker: int) -> None:
    store = SQLiteStore(path)
    for batch in range(20):
        store.write(
            predictions=[
                Prediction("m", f"w{worker}-{batch}-{i}", float(batch * 100 + i)) for i in range(50)
            ]
        )
    store.close()


def test_several_processes_write_one_file_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    SQLiteStore(path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_batches, args=(path, w)) for w in range(3)]
    for w in workers:
        w.start()
    reader = SQLiteStore(path)
    while any(w.is_alive() for w in workers):
        reader.models()  # reads proceed while others write
    for w in workers:
        w.join()
        assert w.exitcode == 0
    assert len(reader.predictions("m", 0, 1e9)) == 3 * 20 * 50
    reader.close()


def test_rollups_give_the_same_answers_as_raw_rows_including_late_data(tmp_path: Path) -> None:
    t0 = 1_699_999_200.0  # a whole hour
    rng = np.random.default_rng(5)
    times = t0 + np.sort(rng.uniform(0, 6 * 3600, 3000))
    predictions = [
        Prediction("m", f"p{i}", float(t), {"x": float(rng.normal()), "flag": bool(i % 3 == 0)},
                   output=float(i % 2), latency_s=float(rng.uniform(0, 1)), error=i % 4 == 0,
                   sample_rate=0.5)
        for i, t in enumerate(times)
    ]  # fmt: skip
    raw = SQLiteStore(tmp_path / "raw.db")
    rolled = SQLiteStore(tmp_path / "rolled.db")
    for s in (raw, rolled):
        s.write(predictions=predictions[:2000])
    assert rolled.rollup(until=t0 + 4 * 3600) == t0 + 4 * 3600
    late = [
        *predictions[2000:],
        Prediction("m", "late", t0 + 30.0, {"x": 100.0}, latency_s=5.0),  # into a rolled hour
    ]
    for s in (raw, rolled):
        s.write(predictions=late)
        s.write(predictions=late)  # a retried batch must not count twice
    queries = [
        ("features.x", "mean", 3600.0),
        ("features.x", "max", 7200.0),
        ("features.flag", "sum", 1800.0),
        ("weight", "sum", 600.0),
        ("error", "mean", 3600.0),
        ("output", "count", 60.0),
        ("latency_s", "min", 120.0),
    ]
    for field, stat, step in queries:
        expected = raw.aggregate_prediction_field("m", field, stat, t0, t0 + 6 * 3600, step)
        got = rolled.aggregate_prediction_field("m", field, stat, t0, t0 + 6 * 3600, step)
        assert [t for t, _ in got] == [t for t, _ in expected], (field, stat)
        for (_, a), (_, b) in zip(got, expected, strict=True):
            assert math.isclose(a, b, rel_tol=1e-9), (field, stat)
    # raw predictions may go; long-range counts stay answerable from roll-ups
    assert rolled.retention("predictions", t0 + 4 * 3600) > 0
    assert rolled.aggregate_predictions("m", "count", t0, t0 + 4 * 3600, 3600.0) == (
        raw.aggregate_predictions("m", "count", t0, t0 + 4 * 3600, 3600.0)
    )
    raw.close()
    rolled.close()


def test_an_old_version_1_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute(
        "INSERT INTO predictions VALUES ('m', 'p0', 60.0, '', '{\"x\": 1.5}', '1', 0.1, 0, 1.0)"
    )
    conn.execute("INSERT INTO models VALUES ('m', 60.0, 60.0)")
    conn.close()
    store = SQLiteStore(path)
    assert store.schema_version == SCHEMA_VERSION > 1
    assert store.predictions("m", 0, 100)[0].features == {"x": 1.5}
    assert store.aggregate_prediction_field("m", "features.x", "mean", 0, 120, 60) == [(60.0, 1.5)]
    store.close()
    assert SQLiteStore(path).schema_version == SCHEMA_VERSION  # reopening is a no-op


def test_a_version_2_data_dir_upgrades_in_place_and_keeps_its_findings(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in (*MIGRATIONS[0], *MIGRATIONS[1]):
        conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    conn.execute(
        "INSERT INTO findings VALUES ('m', 'error_rate', '', 0.0, 60.0, 'wilson_low', 0.3, "
        "0.05, 1, 'critical', NULL, 0.2, 0.4, '', 'abc', 'too many errors', 40)"
    )
    conn.close()
    store = SQLiteStore(path)
    assert store.schema_version == SCHEMA_VERSION >= 3
    [old] = store.findings("m")
    assert (old.check, old.value, old.interval, old.n, old.version) == (
        "error_rate",
        0.3,
        (0.2, 0.4),
        40,
        None,
    )
    new = Finding("m", "drift", "x", "ks", 0.4, 0.1, True, "warning", 60.0, 120.0, version="v2")
    assert store.write(findings=[new]).findings == 1
    assert store.findings("m") == [old, new]
    store.close()
    reopened = SQLiteStore(path)
    assert reopened.findings("m", 100.0)[0].version == "v2"
    reopened.close()


def test_a_file_from_a_newer_watchkeeper_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    SQLiteStore(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(SchemaError, match="999"):
        SQLiteStore(path)


def test_limits_can_close_the_set_of_models(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "w.db", limits=Limits(models=frozenset({"fraud"})))
    with pytest.raises(ValueError, match=r"predictions\[1\]\.model: unknown model 'churn'"):
        store.write(predictions=[Prediction("fraud", "a", 1.0), Prediction("churn", "b", 1.0)])
    assert store.models() == []
    store.close()


def test_connections_of_ended_threads_are_closed_so_thread_pools_leak_no_files(
    tmp_path: Path,
) -> None:
    import os
    import threading

    store = SQLiteStore(tmp_path / "w.db")
    store.models()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):  # a thread pool replacing idle workers, each reading once
        worker = threading.Thread(target=store.models)
        worker.start()
        worker.join()
    store.models()
    after = len(os.listdir("/proc/self/fd"))
    assert after - before <= 6, f"{after - before} file descriptors left open"
    store.close()
