"""Clock trouble: timestamps far ahead or far behind, and a wall clock that steps back.

The defined handling (docs/reliability.md): the store refuses a timestamp more than a day
ahead of its own clock (a unit mistake such as milliseconds, not clock skew) with a 422 that
names the field, never a retryable 503; anything from 1970 up to a day ahead is stored as
sent, in any order. The client drops such a record alone (counted as invalid) rather than
letting it sink its batch, and measures every wait and timeout on the monotonic clock, so a
step of the wall clock changes timestamps, never delivery.
"""

from __future__ import annotations

import math
import time
import types
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fixtures_collectors import Ingest, ingest_fixture  # noqa: F401
from prometheus_client import CollectorRegistry

import watchkeeper.collectors.client as client_module
from watchkeeper import Monitor
from watchkeeper.tsdb import Prediction

DAY = 86400.0


def item(kind: str, ts: float, key: str = "p") -> dict[str, Any]:
    if kind == "predictions":
        return {"model": "m", "prediction_id": key, "timestamp": ts, "features": {"x": 1}}
    if kind == "labels":
        return {"model": "m", "prediction_id": key, "label": 1, "timestamp": ts}
    return {"model": "m", "name": key, "timestamp": ts, "value": 1.0}


def post(ingest: Ingest, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{ingest.url}/v1/ingest", json=body, timeout=10)


def nothing_stored(ingest: Ingest) -> bool:
    store = ingest.store
    return (
        store.predictions("m", 0, math.inf) == []
        and store.labels("m", ["p"]) == {}
        and store.series("m") == []
    )


@pytest.mark.parametrize("kind", ["predictions", "labels", "samples"])
@pytest.mark.parametrize("ahead", [DAY + 3600, 1000 * time.time()], ids=["2-days", "millis"])
def test_a_timestamp_over_a_day_ahead_is_a_422_naming_the_field(
    ingest: Ingest, kind: str, ahead: float
) -> None:
    now = time.time()
    ts = ahead if ahead > now else now + ahead
    response = post(ingest, {kind: [item(kind, now, "ok"), item(kind, ts)]})
    assert response.status_code == 422, response.text
    assert "Retry-After" not in response.headers  # the sender's mistake, not an outage
    payload = response.json()
    assert [d["loc"] for d in payload["details"]] == [f"{kind}.1.timestamp"]
    assert "in the future" in payload["details"][0]["msg"]
    assert nothing_stored(ingest)  # not even the good item of the batch


def test_clock_skew_of_less_than_a_day_is_accepted(ingest: Ingest) -> None:
    ts = time.time() + DAY - 3600
    response = post(ingest, {"predictions": [item("predictions", ts)]})
    assert response.status_code == 200, response.text
    assert [p.timestamp for p in ingest.store.predictions("m", 0, math.inf)] == [ts]


@pytest.mark.parametrize("ts", [0.0, 946684800.0, 1.5, 123456789.123456])
def test_the_far_past_is_stored_as_sent(ingest: Ingest, ts: float) -> None:
    response = post(
        ingest,
        {k: [item(k, ts)] for k in ("predictions", "labels", "samples")},
    )
    assert response.status_code == 200, response.text
    assert [p.timestamp for p in ingest.store.predictions("m", 0, math.inf)] == [ts]
    assert ingest.store.labels("m", ["p"])["p"].timestamp == ts
    assert [s.timestamp for s in ingest.store.samples("m", "p", 0, math.inf)] == [ts]


def test_before_1970_is_a_422_naming_the_field(ingest: Ingest) -> None:
    response = post(ingest, {"labels": [item("labels", -1.0)]})
    assert response.status_code == 422
    assert [d["loc"] for d in response.json()["details"]] == ["labels.0.timestamp"]


def test_data_arriving_out_of_order_after_a_step_back_is_kept_and_counted(
    ingest: Ingest,
) -> None:
    """A sender whose clock stepped back an hour sends older timestamps after newer ones;
    they are stored, read back in time order, and counted in periods already rolled up."""
    store = ingest.store
    hour = 3600.0
    start = math.floor(time.time() / hour) * hour - 3 * hour
    first = [item("predictions", start + 2 * hour + i, f"a{i}") for i in range(5)]
    assert post(ingest, {"predictions": first}).status_code == 200
    store.rollup(until=start + 3 * hour)
    stepped_back = [item("predictions", start + 30 + i, f"b{i}") for i in range(3)]
    assert post(ingest, {"predictions": stepped_back}).status_code == 200

    stored = store.predictions("m", 0, math.inf)
    assert [p.prediction_id for p in stored] == ["b0", "b1", "b2", "a0", "a1", "a2", "a3", "a4"]
    counts = store.aggregate_predictions("m", "count", start, start + 3 * hour, hour)
    assert counts == [(start, 3.0), (start + 2 * hour, 5.0)]


# --------------------------------------------------------------------------------------------
# The client


@pytest.fixture
def monitor(ingest: Ingest) -> Iterator[Monitor]:
    m = Monitor("m", "v1", endpoint=ingest.url, registry=CollectorRegistry())
    yield m
    m.close(timeout=1)


def test_the_client_drops_a_future_record_alone(monitor: Monitor, ingest: Ingest) -> None:
    now = time.time()
    good = [monitor.log_prediction({"x": i}, i, timestamp=now) for i in range(5)]
    monitor.log_prediction({"x": 99}, 99, timestamp=now * 1000)  # milliseconds by mistake
    monitor.log_label(good[0], 1, timestamp=now + 3 * DAY)
    monitor.log_label(good[1], 1)
    assert monitor.flush(timeout=10) is False  # False: records were dropped
    stats = monitor.stats
    assert (stats.sent, stats.dropped) == (6, {"invalid": 2})
    assert sorted(p.prediction_id for p in ingest.store.predictions("m", 0, math.inf)) == sorted(
        good
    )
    assert set(ingest.store.labels("m", good)) == {good[1]}


class SteppingClock:
    """A wall clock for the client module only; `monotonic` stays the real one."""

    def __init__(self, start: float) -> None:
        self.now = start

    def time(self) -> float:
        return self.now


def test_a_wall_clock_stepping_back_changes_timestamps_not_delivery(
    monitor: Monitor, ingest: Ingest, monkeypatch: pytest.MonkeyPatch
) -> None:
    t0 = math.floor(time.time()) - 100.0
    clock = SteppingClock(t0)
    fake_time = types.SimpleNamespace(
        time=clock.time, monotonic=time.monotonic, perf_counter=time.perf_counter
    )
    monkeypatch.setattr(client_module, "time", fake_time)

    monitor.log_fallback("timeout")
    monitor.log_fallback("timeout")  # same instant: kept as a distinct event
    before = monitor.log_prediction({"x": 1}, 1)
    clock.now = t0 - 3600.0  # NTP steps the clock back an hour
    monitor.log_fallback("timeout")
    after = monitor.log_prediction({"x": 2}, 2)
    assert monitor.flush(timeout=10) is True

    stamps = [s.timestamp for s in ingest.store.samples("m", "fallbacks", 0, math.inf)]
    assert len(stamps) == 3
    assert stamps[0] == t0 - 3600.0  # the stepped-back clock as it is, not piled on t0
    assert stamps[1] == t0 and t0 < stamps[2] < t0 + 1e-3
    by_id = {p.prediction_id: p for p in ingest.store.predictions("m", 0, math.inf)}
    assert by_id[before].timestamp == t0
    assert by_id[after].timestamp == t0 - 3600.0
    assert isinstance(by_id[after], Prediction)
