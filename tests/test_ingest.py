"""The ingest API over real HTTP on loopback, writing to a real SQLite store."""

from __future__ import annotations

import gzip
import json
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures_collectors import Ingest, ingest_fixture, start_ingest  # noqa: F401

from watchkeeper.collectors.wire import IngestBatch
from watchkeeper.tsdb import Label, Prediction, Sample, SQLiteStore

T0 = 1_700_000_000.0


def prediction(i: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "churn",
        "prediction_id": f"p{i}",
        "timestamp": T0 + i,
        "features": {"age": 30 + i, "plan": "pro", "active": True, "score": None},
        "output": 0.5,
        "version": "v1",
        "latency_s": 0.01,
    }
    body.update(overrides)
    return body


def batch(n: int, start: int = 0) -> dict[str, Any]:
    return {
        "batch_id": f"b{start}",
        "predictions": [prediction(i) for i in range(start, start + n)],
        "labels": [
            {"model": "churn", "prediction_id": f"p{i}", "label": 1, "timestamp": T0 + 100}
            for i in range(start, start + n)
        ],
        "samples": [
            {
                "model": "churn",
                "name": "fallbacks",
                "timestamp": T0,
                "value": 1.0,
                "labels": {"reason": "timeout"},
            }
        ],
    }


def post(ingest: Ingest, content: bytes | Iterator[bytes], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{ingest.url}/v1/ingest",
        content=content,
        headers={"Content-Type": "application/json", **headers},
        timeout=10,
    )


def post_json(ingest: Ingest, body: object) -> httpx.Response:
    return post(ingest, json.dumps(body).encode())


def stored_ids(store: SQLiteStore) -> list[str]:
    return [p.prediction_id for p in store.predictions("churn", 0, math.inf)]


@pytest.fixture
def seeded(ingest: Ingest) -> Ingest:
    """An ingest server whose store already holds 5 predictions, their labels, one sample."""
    response = post_json(ingest, batch(5))
    assert response.status_code == 200, response.text
    return ingest


def assert_intact(ingest: Ingest) -> None:
    """The server still answers and the seeded data is exactly as it was."""
    assert httpx.get(f"{ingest.url}/healthz").json() == {"status": "ok"}
    assert stored_ids(ingest.store) == [f"p{i}" for i in range(5)]


def test_valid_batch_is_stored_whole_and_a_repeat_is_not_stored_twice(ingest: Ingest) -> None:
    first = post_json(ingest, batch(5))
    assert first.status_code == 200
    assert first.json() == {
        "accepted": {"predictions": 5, "labels": 5, "samples": 1},
        "stored": {"predictions": 5, "labels": 5, "samples": 1},
    }
    again = post_json(ingest, batch(5))  # a client retry: same batch id, same ids
    assert again.json()["stored"] == {"predictions": 0, "labels": 0, "samples": 0}

    stored = ingest.store.predictions("churn", 0, math.inf)
    assert len(stored) == 5
    assert stored[0] == Prediction(
        model="churn",
        prediction_id="p0",
        timestamp=T0,
        features={"age": 30, "plan": "pro", "active": True, "score": None},
        output=0.5,
        version="v1",
        latency_s=0.01,
    )
    labels = ingest.store.labels("churn", ["p0", "p4"])
    assert labels["p4"] == Label("churn", "p4", 1, T0 + 100)
    assert ingest.store.samples("churn", "fallbacks", 0, math.inf) == [
        Sample("churn", "fallbacks", T0, 1.0, "", (("reason", "timeout"),))
    ]


def test_empty_body_object_is_an_empty_batch(ingest: Ingest) -> None:
    response = post_json(ingest, {})
    assert response.status_code == 200
    assert response.json()["accepted"] == {"predictions": 0, "labels": 0, "samples": 0}


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"predictions": [',
        b"\xff\xfe",
        b'{"predictions": [{"timestamp": NaN}]}',
        b"[" * 100_000,
        b'{"batch_id": "\\ud800"}',
    ],
)
def test_malformed_json_is_400(seeded: Ingest, content: bytes) -> None:
    response = post(seeded, content)
    assert response.status_code == 400
    assert response.json()["error"]
    assert seeded.rejected("invalid_json") == 1
    assert_intact(seeded)


def test_wrong_types_are_422_naming_item_index_and_field(seeded: Ingest) -> None:
    body = batch(3, start=10)
    body["predictions"][1]["features"]["age"] = [41]
    body["predictions"][2]["timestamp"] = "yesterday"
    body["labels"][0]["surprise"] = 1
    body["samples"][0]["model"] = ""
    response = post_json(seeded, body)
    assert response.status_code == 422
    payload = response.json()
    assert payload["error"].startswith("invalid batch (4 problems)")
    locs = {d["loc"]: d["msg"] for d in payload["details"]}
    assert set(locs) == {
        "predictions.1.features.age",
        "predictions.2.timestamp",
        "labels.0.surprise",
        "samples.0.model",
    }
    assert "list" in locs["predictions.1.features.age"]
    assert seeded.rejected("invalid_schema") == 1
    assert_intact(seeded)  # nothing of the refused batch was stored, not even its valid items


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ([1, 2], "body"),
        ({"predictions": {"model": "m"}}, "predictions"),
        ({"predictions": [prediction(0, sample_rate=0)]}, "predictions.0.sample_rate"),
        ({"predictions": [prediction(0, latency_s=-1)]}, "predictions.0.latency_s"),
        ({"predictions": [prediction(0, error=1)]}, "predictions.0.error"),
        (
            {"samples": [{"model": "m", "name": "x", "timestamp": 1, "value": "1"}]},
            "samples.0.value",
        ),
        ({"labels": [{"model": "m", "prediction_id": "p", "timestamp": 1}]}, "labels.0.label"),
        ({"predictions": [prediction(0, output=10**400)]}, "predictions.0.output"),
    ],
)
def test_schema_violations_name_the_field(ingest: Ingest, body: object, loc: str) -> None:
    response = post_json(ingest, body)
    assert response.status_code == 422
    assert [d["loc"] for d in response.json()["details"]] == [loc]


def test_oversized_body_is_413_with_or_without_content_length(seeded: Ingest) -> None:
    limit = seeded.config.max_body_bytes
    declared = post(seeded, b" " * (limit + 1))
    assert declared.status_code == 413
    assert "limit" in declared.json()["error"]

    def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length to trust
        for _ in range(limit // 10_000 + 2):
            yield b" " * 10_000

    streamed = post(seeded, chunks())
    assert streamed.status_code == 413
    assert seeded.rejected("body_too_large") == 2
    assert_intact(seeded)


def test_too_many_items_is_413(seeded: Ingest) -> None:
    body = {
        "labels": [
            {"model": "churn", "prediction_id": f"x{i}", "label": 0, "timestamp": T0}
            for i in range(seeded.config.max_batch_items + 1)
        ]
    }
    response = post_json(seeded, body)
    assert response.status_code == 413
    assert str(seeded.config.max_batch_items) in response.json()["error"]
    assert seeded.rejected("too_many_items") == 1
    assert_intact(seeded)


def test_gzip_body_is_accepted(ingest: Ingest) -> None:
    content = gzip.compress(json.dumps(batch(20)).encode())
    response = post(ingest, content, **{"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert response.json()["stored"]["predictions"] == 20


def test_gzip_bomb_is_refused_without_inflating_it(seeded: Ingest) -> None:
    bomb = gzip.compress(b" " * 50_000_000, 9)  # 50 MB of spaces in ~50 kB
    assert len(bomb) < seeded.config.max_body_bytes
    response = post(seeded, bomb, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert "decompressed" in response.json()["error"]
    assert_intact(seeded)


@pytest.mark.parametrize(
    "content",
    [
        b"not gzip at all",
        gzip.compress(b'{"predictions": []}')[:-6],
        gzip.compress(b"{}") + b"trailing",
    ],
)
def test_bad_gzip_is_400(seeded: Ingest, content: bytes) -> None:
    response = post(seeded, content, **{"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert seeded.rejected("bad_encoding") == 1
    assert_intact(seeded)


def test_unknown_content_encoding_is_415(ingest: Ingest) -> None:
    response = post(ingest, b"{}", **{"Content-Encoding": "br"})
    assert response.status_code == 415
    assert "gzip" in response.json()["error"]


def test_unknown_path_and_method_answer_in_the_error_shape(ingest: Ingest) -> None:
    missing = httpx.get(f"{ingest.url}/nope")
    assert missing.status_code == 404
    assert set(missing.json()) == {"error", "details"}
    wrong = httpx.get(f"{ingest.url}/v1/ingest")
    assert wrong.status_code == 405


def test_locked_store_is_503_with_retry_after_then_recovers(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "w.db", busy_timeout_s=0.05)
    running = start_ingest(store)
    blocker = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        response = post_json(running, batch(3))
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert "locked" in response.json()["error"]
        assert running.rejected("store_unavailable") == 1
        blocker.execute("ROLLBACK")
        assert post_json(running, batch(3)).json()["stored"]["predictions"] == 3
    finally:
        blocker.close()
        running.server.stop()
        store.close()


def test_healthz(ingest: Ingest) -> None:
    response = httpx.get(f"{ingest.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_healthz_is_503_when_the_store_cannot_answer(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    store = SQLiteStore(path)
    running = start_ingest(store)
    try:
        store.close()
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        path.write_bytes(b"this is not a database" * 100)
        response = httpx.get(f"{running.url}/healthz")
        assert response.status_code == 503
        assert response.json()["status"] == "unavailable"
    finally:
        running.server.stop()


def test_metrics_count_items_and_rejections_by_reason(ingest: Ingest) -> None:
    post_json(ingest, batch(4))
    post(ingest, b"{oops")
    post(ingest, b"{oops")
    post_json(ingest, {"predictions": [{"model": ""}]})
    text = httpx.get(f"{ingest.url}/metrics").text
    assert 'watchkeeper_ingest_items_total{kind="predictions"} 4.0' in text
    assert 'watchkeeper_ingest_items_total{kind="labels"} 4.0' in text
    assert 'watchkeeper_ingest_rejected_total{reason="invalid_json"} 2.0' in text
    assert 'watchkeeper_ingest_rejected_total{reason="invalid_schema"} 1.0' in text
    assert "watchkeeper_ingest_request_duration_seconds_count 4.0" in text


def test_server_port_zero_gives_a_real_port_and_a_taken_port_fails_clearly(
    ingest: Ingest,
) -> None:
    assert ingest.server.port > 0
    assert ingest.url == f"http://127.0.0.1:{ingest.server.port}"
    from watchkeeper.collectors.ingest import IngestServer

    clash = IngestServer(ingest.server.app, "127.0.0.1", ingest.server.port)
    with pytest.raises(OSError, match=r"cannot listen on 127\.0\.0\.1"):
        clash.start()


def test_wire_round_trip_to_records() -> None:
    parsed = IngestBatch.model_validate_json(json.dumps(batch(2)))
    records = parsed.to_records()
    assert [p.prediction_id for p in records.predictions] == ["p0", "p1"]
    assert records.predictions[1].features["age"] == 31
    assert isinstance(records.predictions[0].features["active"], bool)
    assert records.samples[0].labels == (("reason", "timeout"),)
    assert (
        json.loads(parsed.model_dump_json())["predictions"][0]["features"]
        == batch(2)["predictions"][0]["features"]
    )


def test_a_record_the_store_refuses_is_422_not_a_retryable_503(seeded: Ingest) -> None:
    import time

    body = {"predictions": [prediction(10), prediction(11, timestamp=time.time() + 3 * 86400)]}
    response = post_json(seeded, body)
    assert response.status_code == 422, response.text
    assert "Retry-After" not in response.headers
    detail = response.json()["details"][0]
    assert detail["loc"] == "predictions.1.timestamp"
    assert_intact(seeded)
