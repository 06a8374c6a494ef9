"""InfluxDB backend, write path: what `InfluxStore.write` sends arrives with every tag, field and
timestamp, bad batches send nothing, and a dead or failing server never hangs the writer.

The server is Debian's `victoria-metrics`, which accepts InfluxDB's `/api/v2/write` and exports
what it stored (measurement `m` + field `f` become metric `m_f`, tags become labels,
timestamps in ms; string fields are not kept, so their escaping is checked on the line
protocol itself). The Flux read path needs a real InfluxDB 2: tests/influx2/.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from watchkeeper.config import ConfigError, config_from_dict
from watchkeeper.tsdb import Finding, InvalidRecord, Label, Prediction, Sample, SQLiteStore, Store
from watchkeeper.tsdb.factory import open_store
from watchkeeper.tsdb.influx import InfluxStore, InfluxWriteError
from watchkeeper.tsdb.influx_schema import decode_text, encode_text, from_ns, to_lines, to_ns

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Victoria:
    """A real victoria-metrics on loopback, in its own data directory."""

    def __init__(self, data_dir: Path) -> None:
        binary = shutil.which("victoria-metrics")
        if binary is None:
            pytest.skip("victoria-metrics is not installed (Debian package victoria-metrics)")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(data_dir / "vm.log", "wb")  # noqa: SIM115 (closed in stop)
        self._process = subprocess.Popen(
            [
                binary,
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={data_dir / 'data'}",
                "-retentionPeriod=100y",
                "-search.latencyOffset=0s",
                "-search.disableCache",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"victoria-metrics did not start; see {data_dir / 'vm.log'}")
            time.sleep(0.1)

    def export(self, selector: str, expect: int) -> list[dict[str, Any]]:
        """Series matching `selector`, waiting (bounded) until `expect` of them are searchable."""
        query = urllib.parse.urlencode({"match[]": selector})
        deadline = time.monotonic() + 10
        while True:
            urllib.request.urlopen(self.url + "/internal/force_flush", timeout=5).close()
            with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=5) as r:
                series = [json.loads(line) for line in r.read().decode().splitlines() if line]
            if len(series) >= expect or time.monotonic() > deadline:
                return sorted(series, key=lambda s: json.dumps(s["metric"], sort_keys=True))
            time.sleep(0.1)

    def by_metric(self, selector: str, expect: int) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for s in self.export(selector, expect):
            found.setdefault(s["metric"].pop("__name__"), []).append(s)
        return found

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Victoria]:
    server = Victoria(tmp_path_factory.mktemp("victoria"))
    try:
        yield server
    finally:
        server.stop()


def _store(url: str, registry: CollectorRegistry | None = None, **bounds: Any) -> InfluxStore:
    settings: dict[str, Any] = {
        "timeout_s": 2.0,
        "max_retries": 2,
        "max_retry_time_s": 5.0,
        "retry_interval_s": 0.05,
    }
    settings.update(bounds)
    return InfluxStore(url, "token", "org", "bucket", registry=registry, **settings)


def _ms(seconds: float) -> int:
    """What a millisecond reader shows of a nanosecond write: victoria-metrics truncates."""
    return to_ns(seconds) // 1_000_000


pytestmark = pytest.mark.real_server


# --- the write path against a real line-protocol server --------------------------------------


def test_samples_arrive_with_tags_values_and_timestamps(victoria: Victoria) -> None:
    model = "m a,b=c"  # space, comma and equals sign must survive as one tag value
    samples = [
        Sample(model, "latency_bucket", T0 + 0.25, 3.0, "v1", (("le", "0.5"),)),
        Sample(model, "latency_bucket", T0 + 1.5, 7.0, "v1", (("le", "0.5"),)),
        Sample(model, "latency_bucket", T0 + 1.5, 9.0, "v1", (("le", "+Inf"),)),
        Sample(model, "up", T0 + 2.0, 1.0),
    ]
    with _store(victoria.url) as store:
        result = store.write(samples=samples)
    assert result.samples == 4
    series = victoria.by_metric('{model="m a,b=c"}', expect=3)
    assert list(series) == ["samples_value"]
    got = {json.dumps(s["metric"], sort_keys=True): s for s in series["samples_value"]}
    bucket_05 = got[
        json.dumps(
            {"label_le": "0.5", "model": model, "name": "latency_bucket", "version": "v1"},
            sort_keys=True,
        )
    ]
    assert bucket_05["values"] == [3.0, 7.0]
    assert bucket_05["timestamps"] == [_ms(T0 + 0.25), _ms(T0 + 1.5)]
    inf = got[
        json.dumps(
            {"label_le": "+Inf", "model": model, "name": "latency_bucket", "version": "v1"},
            sort_keys=True,
        )
    ]
    assert (inf["values"], inf["timestamps"]) == ([9.0], [_ms(T0 + 1.5)])
    up = got[json.dumps({"model": model, "name": "up"}, sort_keys=True)]  # no empty version tag
    assert (up["values"], up["timestamps"]) == ([1.0], [_ms(T0 + 2.0)])


def test_predictions_and_features_arrive_and_ids_are_never_tags(victoria: Victoria) -> None:
    predictions = [
        Prediction(
            model="fraud",
            prediction_id="id-1",
            timestamp=T0 + 10.125,
            features={"amount": 12.5, "country": "FR", "is_new": True, "count": 3},
            output=0.25,
            version="2",
            latency_s=0.125,
            error=False,
            sample_rate=0.5,
        ),
        Prediction(
            model="fraud",
            prediction_id="id-2",
            timestamp=T0 + 11.375,
            features={"amount": -1.0, "country": None, "is_new": False, "count": 0},
            output=True,
            version="2",
            latency_s=None,
            error=True,
        ),
    ]
    with _store(victoria.url) as store:
        result = store.write(predictions=predictions)
    assert result.predictions == 2
    series = victoria.by_metric('{model="fraud"}', expect=10)
    for all_series in series.values():
        for s in all_series:
            assert "id-1" not in json.dumps(s["metric"]) and "id-2" not in json.dumps(s["metric"])
            assert set(s["metric"]) <= {"model", "version", "feature"}
            assert s["metric"]["version"] == "2"

    def one(name: str, **tags: str) -> tuple[list[float], list[int]]:
        [s] = [s for s in series[name] if all(s["metric"].get(k) == v for k, v in tags.items())]
        return s["values"], s["timestamps"]

    t1, t2 = _ms(T0 + 10.125), _ms(T0 + 11.375)
    assert one("predictions_sample_rate") == ([0.5, 1.0], [t1, t2])
    assert one("predictions_error") == ([0.0, 1.0], [t1, t2])
    assert one("predictions_latency_s") == ([0.125], [t1])  # absent where None
    assert one("predictions_output") == ([0.25], [t1])
    assert one("predictions_output_bool") == ([1.0], [t2])
    assert one("features_value", feature="amount") == ([12.5, -1.0], [t1, t2])
    assert one("features_value", feature="count") == ([3.0, 0.0], [t1, t2])
    assert one("features_value_bool", feature="is_new") == ([1.0, 0.0], [t1, t2])
    # one point per feature value, carrying the prediction id as a (string) field
    assert len(series["features_prediction_id"]) == 4
    assert {s["metric"]["feature"] for s in series["features_prediction_id"]} == {
        "amount",
        "country",
        "is_new",
        "count",
    }


def test_labels_and_findings_arrive(victoria: Victoria) -> None:
    finding = Finding(
        model="churn",
        check="drift",
        subject="age",
        statistic="ks",
        value=0.42,
        threshold=0.1,
        breached=True,
        severity="warning",
        window_start=T0 - 3600.0,
        window_end=T0 + 0.5,
        p_value=0.001,
        interval=(0.3, 0.5),
        reference_id="ref-9",
        rule_hash="abc123",
        summary='age drifted: KS 0.42 > 0.1, "strong"',
        n=512,
        version="v3",
    )
    labels = [Label("churn", "p-7", 1.0, T0 + 20.0), Label("churn", "p-8", True, T0 + 21.0)]
    with _store(victoria.url) as store:
        result = store.write(findings=[finding], labels=labels)
    assert (result.findings, result.labels) == (1, 2)
    series = victoria.by_metric('{model="churn"}', expect=11)
    end = _ms(T0 + 0.5)
    findings = {name: s for name, [s] in series.items() if name.startswith("findings_")}
    for s in findings.values():
        assert s["metric"] == {
            "model": "churn",
            "check": "drift",
            "subject": "age",
            "version": "v3",  # a tag
        }
        assert s["timestamps"] == [end]
    values = {name: s["values"] for name, s in findings.items()}
    assert values["findings_value"] == [0.42]
    assert values["findings_threshold"] == [0.1]
    assert values["findings_breached"] == [1.0]
    assert values["findings_window_start"] == [T0 - 3600.0]
    assert values["findings_p_value"] == [0.001]
    assert values["findings_interval_low"] == [0.3]
    assert values["findings_interval_high"] == [0.5]
    assert values["findings_n"] == [512.0]
    [number] = series["labels_label"]
    assert number["metric"] == {"model": "churn"}
    assert (number["values"], number["timestamps"]) == ([1.0], [_ms(T0 + 20.0)])
    [flag] = series["labels_label_bool"]
    assert (flag["values"], flag["timestamps"]) == ([1.0], [_ms(T0 + 21.0)])


def test_a_batch_with_one_bad_row_sends_nothing(victoria: Victoria) -> None:
    good = Sample("atomic", "up", T0, 1.0)
    registry = CollectorRegistry()
    with _store(victoria.url, registry) as store:
        with pytest.raises(InvalidRecord, match=r"^samples\[1\]\.value: .*nan"):
            store.write(samples=[good, Sample("atomic", "up", T0 + 1, float("nan"))])
        with pytest.raises(InvalidRecord, match=r"^predictions\[0\]\.features\['x'\]: .*inf"):
            store.write(
                samples=[good],
                predictions=[Prediction("atomic", "p", T0, {"x": float("inf")})],
            )
        with pytest.raises(InvalidRecord, match=r"^findings\[0\]\.threshold: .*infinite"):
            store.write(
                samples=[good],
                findings=[
                    Finding("atomic", "c", "s", "st", 1.0, float("inf"), False, "info", T0, T0)
                ],
            )
        with pytest.raises(InvalidRecord, match=r"^samples\[0\]\.labels\['k'\]: .*newline"):
            store.write(samples=[Sample("atomic", "up", T0, 1.0, labels=(("k", "a\nb"),))])
        with pytest.raises(InvalidRecord, match=r"^predictions\[0\]\.version: .*backslash"):
            store.write(predictions=[Prediction("atomic", "p", T0, version="v\\")])
        store.write(samples=[Sample("marker", "up", T0, 1.0)])  # a good batch afterwards
    assert victoria.export('{model="marker"}', expect=1)
    assert victoria.export('{model="atomic"}', expect=0) == []
    assert registry.get_sample_value("watchkeeper_influx_points_written_total") == 1.0


# --- line protocol: what victoria-metrics does not keep (strings) is checked on the wire text ---


def test_line_protocol_escapes_tags_and_string_fields() -> None:
    summary = 'KS "0.4" > 0.1\\n, = \\ and\na real newline'
    finding = Finding(
        "m 1", "drift,x", "a=b", "ks", 0.5, 0.1, True, "critical", T0, T0 + 1, summary=summary
    )
    [line] = to_lines(findings=[finding])
    assert line.startswith("findings,check=drift\\,x,model=m\\ 1,subject=a\\=b ")
    assert "\n" not in line
    encoded = encode_text(summary)
    assert decode_text(encoded) == summary
    escaped = encoded.replace("\\", "\\\\").replace('"', '\\"')
    assert f'summary="{escaped}"' in line
    assert 'severity="critical"' in line and "breached=true" in line and "n=0i" in line
    assert line.endswith(f" {to_ns(T0 + 1)}")
    [prediction, feature] = to_lines(
        predictions=[Prediction("m", 'id "7"', T0, {"f": "x\ny"}, output="out")]
    )
    assert 'prediction_id="id \\"7\\""' in prediction and 'output_str="out"' in prediction
    assert feature.startswith("features,feature=f,model=m ")
    assert 'value_str="x\\\\ny"' in feature  # the newline, escaped by us, then by Point


def test_predictions_sharing_a_timestamp_are_kept_apart_and_read_back_exactly() -> None:
    same = T0 + 0.123456
    lines = to_lines(
        predictions=[
            Prediction("m", "a", same, version="1"),
            Prediction("m", "b", same, version="1"),
            Prediction("m", "a", same, version="1"),  # a repeated id is kept once
            Prediction("m", "c", same, version="2"),  # another series may share the time
        ]
    )
    times = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert times == [to_ns(same), to_ns(same) + 1, to_ns(same)]
    assert {from_ns(t) for t in times} == {same}  # 1 ns is below a float second's resolution
    for t in (0.0, 1.5, T0, T0 + 0.001, 1234567890.123456, 4102444800.999999):
        assert from_ns(to_ns(t)) == t


# --- failures: bounded, reported, never hanging ----------------------------------------------


class Failing:
    """A loopback HTTP server answering every write with `status` (and counting them)."""

    def __init__(self, statuses: list[int]) -> None:
        self.requests = 0
        self.bodies: list[bytes] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = statuses[min(server.requests, len(statuses) - 1)]
                server.requests += 1
                server.bodies.append(body)
                payload = b'{"code":"internal error","message":"boom"}' if status >= 300 else b""
                self.send_response(status)
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

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def failing(request: pytest.FixtureRequest) -> Iterator[Failing]:
    server = Failing(request.param)
    yield server
    server.close()


def _failures(registry: CollectorRegistry, reason: str) -> float:
    return (
        registry.get_sample_value("watchkeeper_influx_write_failures_total", {"reason": reason})
        or 0.0
    )


HANG_GUARD_S = 15.0  # far above the configured bounds: only catches a hang, measures nothing


def test_a_dead_server_fails_within_the_bounds_and_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    store = _store(f"http://127.0.0.1:{_free_port()}", registry)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING), pytest.raises(InfluxWriteError) as raised:
        store.write(samples=[Sample("m", "up", T0, 1.0)])
    store.close()
    assert time.monotonic() - started < HANG_GUARD_S
    assert raised.value.reason == "connection" and not raised.value.final
    assert "after 3 attempts" in str(raised.value)
    assert _failures(registry, "connection") == 1.0
    assert registry.get_sample_value("watchkeeper_influx_write_retries_total") == 2.0
    assert any("gave up writing 1 points" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("failing", [[500]], indirect=True)
def test_a_server_answering_500_is_retried_then_given_up(failing: Failing) -> None:
    registry = CollectorRegistry()
    store = _store(failing.url, registry)
    with pytest.raises(InfluxWriteError, match=r"HTTP 500: .*boom") as raised:
        store.write(samples=[Sample("m", "up", T0, 1.0)])
    started = time.monotonic()
    store.close()
    assert time.monotonic() - started < HANG_GUARD_S
    assert failing.requests == 3  # 1 + max_retries
    assert raised.value.reason == "http_500"
    assert _failures(registry, "http_500") == 1.0


@pytest.mark.parametrize("failing", [[401]], indirect=True)
def test_a_client_error_is_final_and_not_retried(failing: Failing) -> None:
    registry = CollectorRegistry()
    with _store(failing.url, registry) as store, pytest.raises(InfluxWriteError) as raised:
        store.write(samples=[Sample("m", "up", T0, 1.0)])
    assert failing.requests == 1
    assert raised.value.final and raised.value.reason == "http_401"


@pytest.mark.parametrize("failing", [[503, 503, 204]], indirect=True)
def test_a_transient_failure_is_retried_and_the_batch_arrives_once(failing: Failing) -> None:
    registry = CollectorRegistry()
    with _store(failing.url, registry) as store:
        store.write(samples=[Sample("m", "up", T0, 1.0)])
    assert failing.requests == 3
    assert (
        failing.bodies[0]
        == failing.bodies[2]
        == f"samples,model=m,name=up value=1 {to_ns(T0)}".encode()
    )
    assert registry.get_sample_value("watchkeeper_influx_write_retries_total") == 2.0
    assert _failures(registry, "http_503") == 0.0


def test_a_server_that_never_answers_times_out_per_attempt() -> None:
    with socket.socket() as silent:  # accepts connections (kernel backlog) and never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        registry = CollectorRegistry()
        store = _store(
            f"http://127.0.0.1:{silent.getsockname()[1]}", registry, timeout_s=0.5, max_retries=1
        )
        started = time.monotonic()
        with pytest.raises(InfluxWriteError) as raised:
            store.write(samples=[Sample("m", "up", T0, 1.0)])
        store.close()
        assert time.monotonic() - started < HANG_GUARD_S
    assert raised.value.reason == "timeout"
    assert _failures(registry, "timeout") == 1.0


def test_close_interrupts_a_write_waiting_to_retry() -> None:
    registry = CollectorRegistry()
    store = _store(
        f"http://127.0.0.1:{_free_port()}",
        registry,
        max_retries=100,
        max_retry_time_s=600.0,
        retry_interval_s=300.0,
        max_retry_delay_s=300.0,
    )
    errors: list[BaseException] = []

    def write() -> None:
        try:
            store.write(samples=[Sample("m", "up", T0, 1.0)])
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    deadline = time.monotonic() + HANG_GUARD_S
    while not registry.get_sample_value("watchkeeper_influx_write_retries_total"):
        assert time.monotonic() < deadline, "the first attempt never failed"
        time.sleep(0.01)
    store.close()
    writer.join(HANG_GUARD_S)
    assert not writer.is_alive()
    [error] = errors
    assert isinstance(error, InfluxWriteError) and error.reason == "closed"
    with pytest.raises(InfluxWriteError, match="closed"):
        store.write(samples=[Sample("m", "up", T0, 1.0)])


# --- configuration and construction -----------------------------------------------------------


def test_influx_store_satisfies_the_store_protocol_and_hides_its_token() -> None:
    with _store("http://127.0.0.1:9") as store:
        assert isinstance(store, Store)
        assert "token" not in repr(store).replace("token=***", "")


def test_storage_config_selects_and_builds_the_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WK_TEST_INFLUX_TOKEN", "s3cret")
    config = config_from_dict(
        {
            "storage": {
                "backend": "influxdb",
                "influxdb": {
                    "url": "http://127.0.0.1:8086/",
                    "org": "ml",
                    "bucket": "watchkeeper",
                    "token": "${WK_TEST_INFLUX_TOKEN}",
                    "timeout": "2s",
                    "max_retries": 1,
                    "max_retry_time": "5s",
                },
            }
        }
    )
    influx = config.storage.influxdb
    assert influx is not None
    assert influx.token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)
    registry = CollectorRegistry()
    store = open_store(config.storage, registry=registry)
    try:
        assert isinstance(store, InfluxStore)
        assert (store.url, store.org, store.bucket) == (
            "http://127.0.0.1:8086",
            "ml",
            "watchkeeper",
        )
        assert (store.timeout_s, store.max_retries, store.max_retry_time_s) == (2.0, 1, 5.0)
        assert store.registry is registry
    finally:
        store.close()
    sqlite = open_store(config_from_dict({"storage": {"path": str(tmp_path)}}).storage)
    try:
        assert isinstance(sqlite, SQLiteStore)
    finally:
        sqlite.close()


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ({"backend": "influxdb"}, r"storage: .*storage\.influxdb section"),
        (
            {"backend": "influxdb", "influxdb": {"url": "http://x", "org": "o"}},
            r"storage\.influxdb\.bucket: Field required",
        ),
        (
            {"influxdb": {"url": "localhost:8086", "org": "o", "bucket": "b"}},
            r"storage\.influxdb\.url: .*http:// or https://",
        ),
        (
            {"influxdb": {"url": "http://x", "org": "o", "bucket": "b", "token": "${WK_UNSET_1}"}},
            r"storage\.influxdb\.token: .*WK_UNSET_1 is not set",
        ),
        (
            {"influxdb": {"url": "http://x", "org": "o", "bucket": "b", "max_retries": -1}},
            r"storage\.influxdb\.max_retries: ",
        ),
        ({"backend": "mongodb"}, r"storage\.backend: "),
    ],
)
def test_bad_storage_config_names_the_key(storage: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"storage": storage}, "w.yaml")
