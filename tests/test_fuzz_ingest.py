"""Property-based fuzzing of the ingest API and the client library.

- schemathesis generates requests from the API's own OpenAPI document (`GET /openapi.json`),
  valid ones and ones that break the schema, and sends them over real HTTP to an `IngestServer`
  on loopback writing a real SQLite file. Whatever arrives: no 5xx, every answer conforms to the
  document, every refusal names the problem, a refused batch leaves the store exactly as it
  was, and an accepted one adds exactly what the answer says it stored.
- hypothesis throws arbitrary values at `Monitor.log_*` calls of a client whose endpoint is
  a real server: they never raise, never block, and every record ends up sent or counted as
  dropped.

Examples are bounded (see `EXAMPLES`) so the file runs in well under a minute.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fixtures_collectors import Ingest, dead_endpoint_fixture, start_ingest  # noqa: F401
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from watchkeeper import Monitor
from watchkeeper.collectors.openapi import ingest_openapi
from watchkeeper.tsdb import SQLiteStore

EXAMPLES = 150

TABLES = ("predictions", "labels", "samples", "models", "model_versions")


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingest]:
    """One ingest server for the whole module (a server per example would dominate the run)."""
    store = SQLiteStore(tmp_path_factory.mktemp("fuzz") / "w.db")
    running = start_ingest(store, max_body_bytes=200_000, max_batch_items=1_000)
    try:
        yield running
    finally:
        running.server.stop()
        store.close()


def snapshot(path: Path) -> dict[str, Any]:
    """Every row of every table a write touches, read through a separate connection."""
    conn = sqlite3.connect(path)
    try:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}
    finally:
        conn.close()


def fold_times(body: dict[str, Any]) -> None:
    """Fold generated timestamps (mostly centuries ahead, which the store refuses) into the
    past day, in place, so that most generated batches reach the store; a timestamp that is
    not a non-negative number is left as it is, so a batch invalid before stays invalid."""
    now = time.time()
    for kind in ("predictions", "labels", "samples"):
        items = body.get(kind)
        for item in items if isinstance(items, list) else ():
            ts = item.get("timestamp") if isinstance(item, dict) else None
            if type(ts) in (int, float) and ts >= 0 and math.isfinite(ts):
                item["timestamp"] = now - 86400 + ts % 86400


def counts(state: dict[str, Any]) -> dict[str, int]:
    return {k: len(state[k]) for k in ("predictions", "labels", "samples")}


# The document the server under test serves (`test_the_fuzzed_document_is_the_served_one`
# pins that): loaded here, at collection, because schemathesis' lazy fixture loader does not
# work with this pytest.
schema = schemathesis.openapi.from_dict(ingest_openapi(auth=False, rate_limited=False))
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES
)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_ingest_api_against_its_own_openapi_document(case: Any, fuzzed: Ingest) -> None:
    path = fuzzed.store.path
    if isinstance(case.body, dict) and zlib.crc32(repr(case.body).encode()) % 4:
        fold_times(case.body)
    before = snapshot(path)
    response = case.call(base_url=fuzzed.url, timeout=10)
    status = response.status_code
    assert status < 500, f"{status}: {response.text[:500]}"
    # Positive data may still be refused by the store (a timestamp a day ahead, a name over
    # 256 characters): that is a 422 naming the field, checked below, not a failure.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])
    if case.path != "/v1/ingest" or case.method != "POST":
        return
    after = snapshot(path)
    if status == 200:
        stored = response.json()["stored"]
        assert {k: counts(after)[k] - counts(before)[k] for k in stored} == stored
        return
    body = response.json()
    assert body["error"].strip(), "a refusal must say what is wrong"
    if status == 422:
        assert body["details"], "a 422 must name the fields"
        assert all(d["loc"] and d["msg"] for d in body["details"])
    assert after == before, "a refused batch changed the store"


# --------------------------------------------------------------------------------------------
# The client's log_* calls with arbitrary values

anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary(max_size=20)
    | st.complex_numbers()
    | st.just(object()),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=3)
    ),
    max_leaves=8,
)
timestamps = st.none() | st.floats() | st.integers() | st.text(max_size=5) | st.just(time.time())
features = (
    st.dictionaries(st.text(max_size=10), anything, max_size=5)
    | st.dictionaries(anything.filter(lambda k: k.__hash__ is not None), anything, max_size=3)
    | anything
)


@pytest.fixture(scope="module")
def client_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingest]:
    store = SQLiteStore(tmp_path_factory.mktemp("client-fuzz") / "w.db")
    running = start_ingest(store)
    try:
        yield running
    finally:
        running.server.stop()
        store.close()


@given(
    calls=st.lists(
        st.one_of(
            st.tuples(st.just("prediction"), features, anything, anything, anything, anything).map(
                lambda t: (*t, None)
            ),
            st.tuples(
                st.just("prediction_at"), features, anything, st.none(), st.none(), st.none()
            ).flatmap(lambda t: timestamps.map(lambda ts: (*t, ts))),
            st.tuples(st.just("label"), anything, anything, timestamps),
            st.tuples(st.just("fallback"), anything),
            st.tuples(st.just("track"), st.booleans()),
        ),
        min_size=1,
        max_size=12,
    )
)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
    database=None,
)
def test_client_log_calls_never_raise_or_block_and_account_for_every_record(
    client_target: Ingest, calls: list[tuple[Any, ...]]
) -> None:
    registry = CollectorRegistry()
    monitor = Monitor(
        "fuzz", "v1", endpoint=client_target.url, registry=registry, flush_interval_s=0.05
    )
    try:
        started = time.monotonic()
        for call in calls:
            kind = call[0]
            if kind == "prediction":
                _, feats, output, pid, latency, error, _ = call
                monitor.log_prediction(
                    feats,
                    output,
                    prediction_id=pid if pid is not None else None,
                    latency_s=latency,
                    error=error,
                )
            elif kind == "prediction_at":
                _, feats, output, _, _, _, ts = call
                monitor.log_prediction(feats, output, timestamp=ts)
            elif kind == "label":
                _, pid, label, ts = call
                monitor.log_label(pid, label, timestamp=ts)
            elif kind == "fallback":
                monitor.log_fallback(call[1])
            else:
                try:
                    with monitor.track():
                        monitor.log_prediction({"x": 1}, 0.5)
                        if call[1]:
                            raise KeyError("the service's own error")
                except KeyError:
                    pass
        # Never blocks: a dozen calls cost microseconds each; a second means something waited
        # on the network or a lock (generous, so a busy machine does not fail it).
        assert time.monotonic() - started < 1.0
        assert monitor.flush(timeout=10) or monitor.stats.dropped_total > 0
        stats = monitor.stats
        assert stats.queued == 0
        assert stats.dropped.keys() <= {"invalid", "rejected", "internal_error"}
        # Nothing is refused by the server for values the client accepted: a refusal would
        # drop whole batches of good records with the bad one.
        assert stats.dropped.get("rejected", 0) == 0, stats
        assert stats.dropped.get("internal_error", 0) == 0, stats
    finally:
        monitor.close(timeout=2)


def test_client_calls_with_a_dead_endpoint_do_not_block(dead_endpoint: str) -> None:
    """The network being down changes nothing for the caller: calls return at once."""
    monitor = Monitor("fuzz", endpoint=dead_endpoint, registry=CollectorRegistry())
    try:
        done = threading.Event()

        def service() -> None:
            for i in range(2_000):
                monitor.log_prediction({"i": i, "bad": math.nan}, i)
                monitor.log_label(str(i), i)
            done.set()

        thread = threading.Thread(target=service)
        thread.start()
        thread.join(10)
        assert done.is_set()
    finally:
        monitor.close(timeout=0.5)


def test_the_fuzzed_document_is_the_served_one(fuzzed: Ingest) -> None:
    doc = httpx.get(f"{fuzzed.url}/openapi.json").json()
    assert doc == schema.raw_schema
    post = doc["paths"]["/v1/ingest"]["post"]
    assert set(post["responses"]) == {"200", "400", "413", "415", "422", "503"}
    assert "Retry-After" in post["responses"]["503"]["headers"]
    prediction = doc["components"]["schemas"]["PredictionIn"]
    assert prediction["additionalProperties"] is False
    assert {"type": "string"} in prediction["properties"]["features"]["additionalProperties"][
        "anyOf"
    ]
