"""The client's privacy option: sensitive features leave the process only as counts, dropped
fields never leave it, hashed fields leave it hashed (and still join).

Every request goes through a recording proxy on loopback in front of a real ingest server over
a real SQLite store, so the tests check both what went over the wire and what was stored.
"""

from __future__ import annotations

import doctest
import gzip
import hashlib
import hmac
import http.client
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fixtures_collectors import (  # noqa: F401
    Ingest,
    ingest_fixture,
    registry_fixture,
)
from prometheus_client import CollectorRegistry

import watchkeeper.collectors.privacy
from watchkeeper import Monitor
from watchkeeper.tsdb import Sample, SQLiteStore

KEY = "a-secret-key-of-32-characters..."


class RecordingProxy:
    """Forwards POSTs to the ingest server and keeps every (decompressed) request body."""

    def __init__(self, target: str) -> None:
        self.bodies: list[bytes] = []
        bodies = self.bodies
        parts = urlsplit(target)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                bodies.append(gzip.decompress(data))
                conn = http.client.HTTPConnection(host, port, timeout=10)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    conn.request("POST", self.path, body=data, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                finally:
                    conn.close()
                self.send_response(response.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wire(self) -> str:
        return "\n".join(body.decode() for body in self.bodies)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def proxy(ingest: Ingest) -> Iterator[RecordingProxy]:
    running = RecordingProxy(ingest.url)
    yield running
    running.close()


def histogram(store: SQLiteStore, model: str = "churn") -> list[Sample]:
    return store.samples(model, "feature_histogram", 0, math.inf)


def counts(samples: list[Sample], feature: str) -> dict[str, float]:
    """Counts of one feature summed over intervals, by `le` or `category` label value."""
    out: dict[str, float] = {}
    for s in samples:
        labels = dict(s.labels)
        if labels["feature"] == feature:
            key = labels.get("le", labels.get("category", "?"))
            out[key] = out.get(key, 0.0) + s.value
    return out


def expected_hash(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()[:16]


def test_sensitive_features_are_sent_only_as_counts_per_interval(
    proxy: RecordingProxy, ingest: Ingest, registry: CollectorRegistry
) -> None:
    m = Monitor(
        "churn",
        "v1",
        endpoint=proxy.url,
        registry=registry,
        batch_size=50,
        sensitive=("income", "plan"),
        sensitive_buckets={"income": [0, 20_000, 60_000]},
        sensitive_max_categories=2,
    )
    incomes = [12_345.678 + 997.13 * i for i in range(100)] + [math.nan, None]
    plans = ["gold", "silver", "bronze", "tin"]
    try:
        for i, income in enumerate(incomes[:60]):
            m.log_prediction({"income": income, "plan": plans[i % 4], "age": i}, 0.5)
        assert m.flush(timeout=10) is True
        first_interval = {s.timestamp for s in histogram(ingest.store)}
        for i, income in enumerate(incomes[60:], start=60):
            if i % 2:
                m.log_prediction({"income": income, "plan": plans[i % 4], "age": i}, 0.5)
            else:
                with m.track():  # a tracked prediction is split the same way
                    m.log_prediction({"income": income, "plan": plans[i % 4], "age": i}, 0.5)
        m.log_prediction({"age": -1}, 0.5)  # no sensitive value: nothing counted
        assert m.flush(timeout=10) is True
    finally:
        m.close(timeout=1)

    n = len(incomes)
    wire = proxy.wire()
    for income in incomes[:100]:
        assert repr(income) not in wire
    assert '"income":' not in wire and '"plan":' not in wire  # no feature of that name

    stored = ingest.store.predictions("churn", 0, math.inf)
    assert len(stored) == n + 1
    assert all(set(p.features) == {"age"} for p in stored)

    samples = histogram(ingest.store)
    assert {s.name for s in samples} == {"feature_histogram"}
    income = counts(samples, "income")
    assert sum(income.values()) == n  # one count per prediction that had the feature
    below = sum(1 for x in incomes[:100] if isinstance(x, float) and x <= 20_000)
    middle = sum(1 for x in incomes[:100] if isinstance(x, float) and 20_000 < x <= 60_000)
    assert income == {
        "20000.0": below,
        "60000.0": middle,
        "+Inf": 100 - below - middle,
        "__missing__": 2,  # NaN and None
    }
    # two categories get their own count, the others are folded into __other__
    assert counts(samples, "plan") == {"gold": 26, "silver": 26, "__other__": 50}

    # one timestamp per interval (each flush ended one), the second after the first
    assert len(first_interval) == 1
    times = sorted({s.timestamp for s in samples})
    assert len(times) == 2 and times[0] == next(iter(first_interval))
    in_first = [s for s in samples if s.timestamp == times[0]]
    assert sum(counts(in_first, "income").values()) == 60


def test_dropped_fields_never_leave_and_hashed_fields_arrive_hashed_and_join(
    proxy: RecordingProxy, ingest: Ingest, registry: CollectorRegistry
) -> None:
    m = Monitor(
        "churn",
        "v1",
        endpoint=proxy.url,
        registry=registry,
        drop_fields=("email",),
        hash_fields=("user", "prediction_id", "zip"),
        hash_key=KEY,
    )
    users = ["alice", "bob", "alice", "carol"]
    try:
        ids = []
        for i, user in enumerate(users):
            features = {"user": user, "email": f"{user}@example.org", "zip": 75_001, "x": i}
            ids.append(m.log_prediction(features, 0.5, prediction_id=f"request-{i}"))
        for i, pid in enumerate(ids):
            m.log_label(pid, i % 2 == 0)  # the service labels with its own (raw) id
        m.log_prediction({"user": None, "x": 9}, 0.5, prediction_id="request-9")
        assert m.flush(timeout=10) is True
    finally:
        m.close(timeout=1)

    assert ids == [f"request-{i}" for i in range(4)]  # the caller keeps its raw ids
    wire = proxy.wire()
    for secret in ("example.org", "email", "alice", "bob", "carol", "request-", "75001"):
        assert secret not in wire

    frame = ingest.store.prediction_frame("churn", 0, math.inf).set_index("prediction_id")
    hashed = [expected_hash(f"request-{i}") for i in range(4)]
    assert set(frame.index) == {*hashed, expected_hash("request-9")}
    assert "email" not in frame.columns
    rows = frame.loc[hashed]
    assert list(rows["user"]) == [expected_hash(u) for u in users]
    assert rows["user"].iloc[0] == rows["user"].iloc[2]  # equal inputs, equal hashes
    assert set(rows["zip"]) == {expected_hash("75001")}
    assert list(rows["label"]) == [True, False, True, False]  # labels joined their predictions
    (last,) = [p for p in ingest.store.predictions("churn", 0, math.inf) if p.features["x"] == 9]
    assert last.features == {"user": None, "x": 9}  # a missing value stays missing


def test_privacy_is_off_by_default_and_shown_without_the_key(registry: CollectorRegistry) -> None:
    assert Monitor("churn", registry=registry).privacy is None
    m = Monitor("churn", registry=registry, hash_fields=("user",), hash_key=KEY)
    assert "hash_fields=('user',)" in repr(m)
    assert KEY not in repr(m)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sensitive": "income"}, r"sensitive must be a tuple or list.*\('income',\)"),
        ({"sensitive": ("income", "")}, "sensitive must hold non-empty strings"),
        ({"sensitive": ("a", "a")}, "sensitive lists a name twice"),
        ({"drop_fields": [1]}, "drop_fields must hold non-empty strings"),
        ({"sensitive": ("a",), "drop_fields": ("a",)}, "'a' is in both sensitive and drop_fields"),
        ({"drop_fields": ("prediction_id",)}, "drop_fields cannot hold 'prediction_id'"),
        ({"sensitive_buckets": {"a": [1, 2]}}, "names 'a', which is not in sensitive"),
        ({"sensitive": ("a",), "sensitive_buckets": {"a": []}}, "must hold 1 to 1000 edges"),
        ({"sensitive": ("a",), "sensitive_buckets": {"a": [2, 1]}}, "strictly increasing"),
        ({"sensitive": ("a",), "sensitive_buckets": {"a": [0, math.inf]}}, "finite numbers"),
        ({"sensitive": ("a",), "sensitive_buckets": {"a": "0,1"}}, "must be a list of numbers"),
        ({"sensitive": ("a",), "sensitive_max_categories": 0}, "max_categories must be a pos"),
        ({"hash_fields": ("user",)}, "hash_fields needs a hash_key"),
        ({"hash_key": KEY}, "hash_key is given but hash_fields is empty"),
        ({"hash_fields": ("user",), "hash_key": "short"}, "at least 16 bytes"),
        ({"hash_fields": ("user",), "hash_key": 1234}, "at least 16 bytes"),
    ],
)
def test_wrong_privacy_arguments_fail_at_construction(
    kwargs: dict[str, Any], message: str, registry: CollectorRegistry
) -> None:
    with pytest.raises(ValueError, match=message):
        Monitor("churn", registry=registry, **kwargs)


def test_privacy_docstring_examples_run() -> None:
    result = doctest.testmod(watchkeeper.collectors.privacy)
    assert result.attempted > 0 and result.failed == 0


def test_the_documented_example_runs_and_sends_what_the_docs_say(ingest: Ingest) -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "client.md").read_text()
    code = docs.split("## Privacy", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    exec(compile(code.replace("http://127.0.0.1:8765", ingest.url), "client.md", "exec"), {})

    (stored,) = ingest.store.predictions("credit", 0, math.inf)
    assert set(stored.features) == {"customer_id", "age"}
    assert len(stored.prediction_id) == 16 and len(str(stored.features["customer_id"])) == 16
    assert list(ingest.store.labels("credit", [stored.prediction_id])) == [stored.prediction_id]
    samples = histogram(ingest.store, "credit")
    assert sorted((s.labels, s.value) for s in samples) == [
        ((("category", "north"), ("feature", "region")), 1.0),
        ((("feature", "income"), ("le", "60000.0")), 1.0),
    ]
