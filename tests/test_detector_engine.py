"""The detector on seeded streams in a real SQLite store: it finds known changes at pinned
windows, stays quiet on streams without change, and resumes without duplicates."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from watchkeeper.config import Config, config_from_dict
from watchkeeper.detector import Detector
from watchkeeper.tsdb import Finding, Prediction, SQLiteStore

T0 = 1_699_999_200.0  # a multiple of one hour, so windows line up with the stream's start
MINUTE = 60.0
HOUR = 3600.0


def make_config(window: str = "10m", every: str = "5m", **checks: Any) -> Config:
    """One model "m" (any other model gets the same settings through the defaults)."""
    model = {"window": window, "every": every, "checks": checks}
    return config_from_dict({"models": {"m": model}, "detector": {"defaults": model}})


def stream(
    model: str,
    start: float,
    end: float,
    *,
    step: float = 2.0,
    features: int = 5,
    seed: int = 0,
    shift: tuple[float, int, float] | None = None,
    error_rate: Callable[[float], float] = lambda t: 0.01,
) -> list[Prediction]:
    """Standard-normal features `f0..`, one prediction every `step` seconds in [start, end).

    `shift=(time, feature, amount)` adds `amount` to one feature from `time` on.
    """
    rng = np.random.default_rng(seed)
    times = np.arange(start, end, step)
    values = rng.normal(size=(len(times), features))
    draws = rng.random(len(times))
    if shift is not None:
        at, feature, amount = shift
        values[times >= at, feature] += amount
    return [
        Prediction(
            model=model,
            prediction_id=f"{model}-{i}",
            timestamp=float(t),
            features={f"f{j}": float(values[i, j]) for j in range(features)},
            output=0.0,
            error=bool(draws[i] < error_rate(float(t))),
        )
        for i, t in enumerate(times)
    ]


def store_with(path: Path, *streams: list[Prediction]) -> SQLiteStore:
    store = SQLiteStore(path)
    for predictions in streams:
        store.write(predictions=predictions)
    return store


def breached(findings: list[Finding], check: str) -> list[Finding]:
    return [f for f in findings if f.check == check and f.breached]


def test_mean_shift_is_found_in_that_feature_only(tmp_path: Path) -> None:
    change = T0 + 2 * HOUR
    store = store_with(
        tmp_path / "w.db", stream("m", T0, T0 + 3 * HOUR, shift=(change, 2, 1.0), seed=1)
    )
    # At the default p_value of 1 % a stable feature still alarms in about 1 window in 100
    # (the no-change test below pins that rate); this test is about *which* feature, so it
    # asks for 0.1 %, which a 1-sigma shift (p ~ 1e-20) passes easily.
    config = make_config(drift={"reference": "1h", "p_value": 0.001})
    findings = Detector(store, config).run_once(T0 + 3 * HOUR)

    drift = [f for f in findings if f.check == "drift"]
    # drift is judged only once a whole window lies after the one-hour reference
    assert min(f.window_end for f in drift) == T0 + HOUR + 10 * MINUTE
    assert {f.reference_id for f in drift} == {f"m@{int(T0)}-{int(T0 + HOUR)}"}
    assert {f.subject for f in drift} == {"f0", "f1", "f2", "f3", "f4"}

    hits = breached(findings, "drift")
    assert {f.subject for f in hits} == {"f2"}
    ends = sorted(f.window_end for f in hits)
    # the half-shifted window ending 5m after the change is already caught; every window
    # lying fully after the change is breached, none before the change is
    assert ends[0] == change + 5 * MINUTE
    after = sorted(
        f.window_end for f in drift if f.subject == "f2" and f.window_end >= change + 10 * MINUTE
    )
    assert ends == [change + 5 * MINUTE, *after]
    assert all(f.value >= 0.1 for f in hits)
    assert breached(findings, "error_rate") == []
    assert breached(findings, "up") == []


def test_error_burst_breaches_exactly_the_windows_it_covers(tmp_path: Path) -> None:
    burst = T0 + 90 * MINUTE

    def rate(t: float) -> float:
        return 0.30 if burst <= t < burst + 30 * MINUTE else 0.01

    store = store_with(tmp_path / "w.db", stream("m", T0, T0 + 3 * HOUR, error_rate=rate, seed=2))
    findings = Detector(store, make_config()).run_once(T0 + 3 * HOUR)

    errors = [f for f in findings if f.check == "error_rate"]
    assert len(errors) == 36  # every 5 minutes for 3 hours
    ends = [f.window_end for f in breached(findings, "error_rate")]
    # the 10-minute windows that overlap the burst by at least half of their length
    assert ends == [burst + k * 5 * MINUTE for k in range(1, 8)]
    assert all(f.severity == "critical" for f in breached(findings, "error_rate"))


def test_model_that_stops_sending_is_reported_down(tmp_path: Path) -> None:
    stopped = T0 + HOUR + MINUTE
    store = store_with(tmp_path / "w.db", stream("m", T0, stopped, seed=3))
    findings = Detector(store, make_config(drift={"enabled": False})).run_once(T0 + 2 * HOUR)

    up = [f for f in findings if f.check == "up"]
    ends = [f.window_end for f in breached(findings, "up")]
    # last data at stopped - 2s: 242 s of silence at T0+1h05m (fine), 542 s at T0+1h10m
    first = T0 + HOUR + 10 * MINUTE
    assert ends == [f.window_end for f in up if f.window_end >= first]
    assert ends[0] == first
    assert next(f for f in up if f.window_end == first).value == pytest.approx(542.0)
    assert next(f for f in up if f.window_end == first).summary == (
        "no data for 9m (staleness bound 5m)"
    )


def test_no_change_stream_gives_no_false_alarms(tmp_path: Path) -> None:
    days = 2
    store = store_with(
        tmp_path / "w.db",
        stream("m", T0, T0 + days * 24 * HOUR, step=12.0, features=20, seed=4),
    )
    detector = Detector(store, make_config(window="1h", every="1h"))  # default checks
    findings = detector.run_once(T0 + days * 24 * HOUR)

    drift = [f for f in findings if f.check == "drift"]
    windows = {f.window_end for f in drift}
    alarmed = {f.window_end for f in breached(findings, "drift")}
    assert len(windows) == days * 24 - 1  # all hourly windows after the first hour
    print(
        f"\nno-change stream: {len(alarmed)}/{len(windows)} windows with a drift alarm "
        f"({len(alarmed) / len(windows):.2%} per window; Holm bound 1%), "
        f"{len(breached(findings, 'error_rate'))} error-rate alarms"
    )
    assert alarmed == set()
    assert breached(findings, "error_rate") == []
    assert breached(findings, "up") == []


def test_evaluate_reads_and_computes_but_writes_nothing(tmp_path: Path) -> None:
    store = store_with(tmp_path / "w.db", stream("m", T0, T0 + 2 * HOUR))
    detector = Detector(store, make_config(drift={"reference": "1h"}))
    findings = detector.evaluate("m", T0 + 90 * MINUTE)
    # health first (throughput waits for a day of history), then per check every feature:
    # drift, missing values, out of range, schema (the constant output 0.0 has no
    # distribution to drift from)
    health = [("up", ""), ("error_rate", "")]
    assert [(f.check, f.subject) for f in findings] == health + [
        (check, f"f{j}")
        for check in ("drift", "missing", "out_of_range", "schema")
        for j in range(5)
    ]
    assert {(f.window_start, f.window_end) for f in findings if f.check != "up"} == {
        (T0 + 80 * MINUTE, T0 + 90 * MINUTE)
    }
    assert store.findings() == []
    assert store.last_evaluated("m") is None


def test_run_once_twice_writes_nothing_new(tmp_path: Path) -> None:
    store = store_with(
        tmp_path / "w.db",
        stream("m", T0, T0 + 2 * HOUR, seed=5),
        stream("other", T0 + 7 * MINUTE, T0 + 2 * HOUR, seed=6),
    )
    detector = Detector(store, make_config(drift={"reference": "1h"}))
    first = detector.run_once(T0 + 2 * HOUR)
    assert first == sorted(first, key=lambda f: (f.window_end, f.model, f.check, f.subject))
    assert {f.model for f in first} == {"m", "other"}
    # "other" started at T0+7m: its first window ends on the grid at least `every` later
    assert min(f.window_end for f in first if f.model == "other") == T0 + 15 * MINUTE
    assert detector.run_once(T0 + 2 * HOUR) == []
    assert detector.run_once(T0 + 2 * HOUR + 299) == []
    stored = store.findings()
    assert sorted(stored, key=lambda f: f.key) == sorted(first, key=lambda f: f.key)


def test_a_new_detector_resumes_where_the_last_stopped(tmp_path: Path) -> None:
    data = stream("m", T0, T0 + 3 * HOUR, shift=(T0 + 2 * HOUR, 0, 1.0), seed=7)
    config = make_config(drift={"reference": "1h"})
    straight = store_with(tmp_path / "straight.db", data)
    expected = Detector(straight, config).run_once(T0 + 3 * HOUR)

    resumed = store_with(tmp_path / "resumed.db", data)
    before = Detector(resumed, config).run_once(T0 + 100 * MINUTE)
    capped = Detector(resumed, config, max_catch_up=4)  # a restart, catching up in steps
    after: list[Finding] = []
    while batch := capped.run_once(T0 + 3 * HOUR):
        assert len({f.window_end for f in batch}) <= 4
        after.extend(batch)
    assert min(f.window_end for f in after) == T0 + 105 * MINUTE
    assert before + after == expected
    assert resumed.findings() == straight.findings()


def test_windows_without_findings_are_not_evaluated_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = store_with(tmp_path / "w.db", stream("m", T0, T0 + 30 * MINUTE))
    config = make_config(up={"enabled": False}, error_rate={"enabled": False})
    detector = Detector(store, config)  # only drift, which waits for its one-hour reference
    with caplog.at_level(logging.DEBUG, logger="watchkeeper.detector.engine"):
        assert detector.run_once(T0 + 30 * MINUTE) == []
        assert "caught up 6 windows of model 'm'" in caplog.text
        caplog.clear()
        assert detector.run_once(T0 + 30 * MINUTE) == []
        assert detector.run_once(T0 + 35 * MINUTE) == []
    assert [r.getMessage() for r in caplog.records] == ["detector: evaluated 1 window of model 'm'"]
    assert store.last_evaluated("m") is None


def test_run_forever_survives_errors_and_reports_findings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = store_with(tmp_path / "w.db", stream("m", T0, T0 + 30 * MINUTE))
    config = config_from_dict(
        {"detector": {"interval": 0.01, "defaults": {"window": "10m", "every": "5m"}}}
    )
    stop = threading.Event()
    calls = 0

    def clock() -> float:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("clock went away")
        if calls == 3:
            stop.set()  # the third run finds nothing new and the loop ends
        return T0 + 30 * MINUTE

    received: list[list[Finding]] = []
    with caplog.at_level(logging.ERROR, logger="watchkeeper.detector.engine"):
        Detector(store, config).run_forever(stop, received.append, clock)
    assert "clock went away" in caplog.text
    assert calls == 3
    assert len(received) == 1  # the empty third result is not passed on
    assert {f.window_end for f in received[0]} == {T0 + k * 5 * MINUTE for k in range(1, 7)}


def test_live_detection_matches_judging_afterwards(tmp_path: Path) -> None:
    """A detector running while data arrives judges as one run over the finished data."""
    data = stream("m", T0, T0 + 2 * HOUR, shift=(T0 + 90 * MINUTE, 1, 1.0), seed=8)
    config = make_config(drift={"reference": "1h"})
    batch = Detector(store_with(tmp_path / "batch.db", data), config).run_once(T0 + 2 * HOUR)

    live_store = SQLiteStore(tmp_path / "live.db")
    live = Detector(live_store, config)
    live_findings: list[Finding] = []
    for minute in range(0, 120, 5):  # data lands every 5 minutes; the detector runs after it
        now = T0 + (minute + 5) * MINUTE
        live_store.write(predictions=[p for p in data if now - 5 * MINUTE <= p.timestamp < now])
        live_findings.extend(live.run_once(now))
    assert live_findings == batch
    assert breached(batch, "drift")  # the reference was complete when first used


def test_one_models_bad_data_does_not_stop_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = store_with(
        tmp_path / "w.db", stream("bad", T0, T0 + HOUR), stream("good", T0, T0 + HOUR)
    )
    with sqlite3.connect(tmp_path / "w.db") as conn:  # a row no reader can parse
        conn.execute("UPDATE predictions SET features = 'not json' WHERE prediction_id = 'bad-9'")
    with caplog.at_level(logging.ERROR, logger="watchkeeper.detector.engine"):
        findings = Detector(store, make_config()).run_once(T0 + HOUR)
    assert {f.model for f in findings} == {"good"}
    assert len({f.window_end for f in findings}) == 12
    assert "evaluating model 'bad' failed" in caplog.text
