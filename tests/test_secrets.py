"""Secrets never leak: not into logs (at DEBUG), error messages, answers, the notification log,
`/metrics`, `check-config` output or the dashboard.

The secrets are an ingest token, the password and a header token in apprise receiver URLs, and
an InfluxDB token, all given through `${ENV}` as the docs advise. Everything runs for real on
loopback: a receiver that answers 500, one nobody listens on, an InfluxDB URL nobody listens
on, the ingest API with token checks, and the Streamlit dashboard through AppTest.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from watchkeeper.alerting import AlertManager
from watchkeeper.cli import main
from watchkeeper.config import Config, load_config
from watchkeeper.dashboard import app_path
from watchkeeper.runtime import Stack
from watchkeeper.tsdb import Finding, Prediction, open_store

pytestmark = pytest.mark.real_server

SECRETS = {
    "WK_TEST_INGEST_TOKEN": "ingest-tok-9f8e7d6c5b4a3210",
    "WK_TEST_HOOK_PASSWORD": "hookpw-5a4b3c2d1e0f",
    "WK_TEST_HOOK_HEADER": "hookhdr-0a9b8c7d6e5f",
    "WK_TEST_INFLUX_TOKEN": "influx-tok-1a2b3c4d5e6f",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_clean(where: str, text: str) -> None:
    for name, secret in SECRETS.items():
        assert secret not in text, f"{name} leaked into {where}: ...{_around(text, secret)}..."
        # A secret cut short (a prefix long enough to guess the rest) counts too.
        assert secret[:12] not in text, f"part of {name} leaked into {where}"


def _around(text: str, secret: str) -> str:
    i = text.find(secret)
    return text[max(0, i - 80) : i + len(secret) + 40]


class Failing:
    """A loopback webhook that answers every POST with 500."""

    def __init__(self) -> None:
        self.posts = 0
        failing = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                failing.posts += 1
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    yield


@pytest.fixture
def failing() -> Iterator[Failing]:
    receiver = Failing()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def _write_config(path: Path, data: Path, failing_port: int, *, influx: bool) -> Path:
    dead = _free_port()
    storage = f"storage: {{path: {data}}}\n"
    if influx:
        storage = (
            f"storage:\n  path: {data}\n  backend: influxdb\n  influxdb:\n"
            f"    url: http://127.0.0.1:{dead}\n    org: o\n    bucket: b\n"
            "    token: ${WK_TEST_INFLUX_TOKEN}\n    timeout: 1s\n    max_retries: 1\n"
            "    max_retry_time: 2s\n    retry_interval: 0.1s\n"
        )
    path.write_text(
        storage
        + "ingest:\n  port: 0\n  tokens:\n"
        + "    - {name: svc, models: ['*'], env: WK_TEST_INGEST_TOKEN}\n"
        + "detector: {interval: 1h, defaults: {checks: {error_rate: {for: 0s}}}}\n"
        + "alerting:\n  console: true\n  retry_backoff: 0.05s\n  send_timeout: 3s\n"
        + "  route: {group_wait: 0s}\n"
        + "  receivers:\n"
        + f"    - 'json://alice:${{WK_TEST_HOOK_PASSWORD}}@127.0.0.1:{failing_port}/hook"
        + "?+X-Token=${WK_TEST_HOOK_HEADER}'\n"
        + f"    - 'json://bob:${{WK_TEST_HOOK_PASSWORD}}@127.0.0.1:{_free_port()}/hook'\n"
    )
    return path


def _breach(model: str = "m") -> Finding:
    now = time.time()
    return Finding(
        model, "error_rate", "", "wilson_low", 0.5, 0.05, True, "critical", now - 60, now
    )


def _sqlite_text(path: Path) -> str:
    """Every text value of every table of a SQLite file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(
            " ".join(str(v) for v in row)
            for table in tables
            for row in conn.execute(f'SELECT * FROM "{table}"')
        )
    finally:
        conn.close()


def test_serving_ingest_metrics_and_failing_deliveries_leak_nothing(
    tmp_path: Path,
    secrets_env: None,
    failing: Failing,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    config = load_config(
        _write_config(tmp_path / "wk.yaml", tmp_path / "data", failing.port, influx=False)
    )
    token = SECRETS["WK_TEST_INGEST_TOKEN"]
    body = {"predictions": [{"model": "m", "prediction_id": "p1", "timestamp": time.time()}]}
    answers: list[str] = []
    with Stack(config) as stack:
        stack.start()
        with httpx.Client(base_url=stack.ingest_url, timeout=10) as client:
            for headers in (
                {},
                {"Authorization": "Bearer " + token[:-1]},  # nearly right
                {"Authorization": "Bearer " + token + "x"},
                {"Authorization": "Basic " + token},
                {"Authorization": "Bearer " + token},
            ):
                r = client.post("/v1/ingest", json=body, headers=headers)
                answers.append(f"{r.status_code} {dict(r.headers)} {r.text}")
            assert [a[:3] for a in answers] == ["401", "401", "401", "401", "200"], answers
            metrics = client.get("/metrics").text
            health = client.get("/healthz").text
    assert "watchkeeper_ingest" in metrics
    assert_clean("ingest answers", "\n".join(answers))
    assert_clean("/metrics", metrics)
    assert_clean("/healthz", health)

    # Failing deliveries: one receiver answers 500, the other does not listen.
    manager = AlertManager(config, tmp_path / "alerts.db", max_attempts=2, retry_base_s=0.01)
    try:
        [transition] = manager.process([_breach()])
        assert transition.alert.state == "firing"
        names = [n.name for n in manager.notifiers] + [repr(manager)]
        records = manager.notifications()
    finally:
        manager.close()
    assert failing.posts >= 1
    assert records and not any(r.ok for r in records)
    assert_clean("receiver names and repr", "\n".join(names))
    assert_clean("the notification log", "\n".join(f"{r.receiver} {r.detail}" for r in records))
    assert_clean("alerting's state file", _sqlite_text(tmp_path / "alerts.db"))
    out = capsys.readouterr()
    assert_clean("standard output and error", out.out + out.err)
    assert "not delivered" in caplog.text, "the failures were meant to be logged"
    assert_clean("the log (DEBUG)", caplog.text)


def test_influxdb_down_check_config_and_store_errors_leak_nothing(
    tmp_path: Path,
    secrets_env: None,
    failing: Failing,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    path = _write_config(tmp_path / "wk.yaml", tmp_path / "data", failing.port, influx=True)
    assert main(["--log-level", "DEBUG", "check-config", str(path)]) == 1
    out = capsys.readouterr()
    assert "not reachable" in out.err
    assert_clean("check-config output", out.out + out.err)

    config: Config = load_config(path)
    assert_clean("the configuration's repr", repr(config.storage))
    store = open_store(config.storage)
    try:
        assert_clean("the store's repr", repr(store))
        with pytest.raises(Exception) as raised:
            store.write(predictions=[Prediction("m", "p1", time.time())])
        assert_clean("a failed write's error", f"{raised.value!r} {raised.value}")
        with pytest.raises(Exception) as raised:
            store.findings("m")
        assert_clean("a failed read's error", f"{raised.value!r} {raised.value}")
    finally:
        store.close()

    # The ingest API in front of the dead InfluxDB answers 503, naming no secret.
    with Stack(config) as stack:
        stack.start_ingest()
        r = httpx.post(
            f"{stack.ingest_url}/v1/ingest",
            json={"predictions": [{"model": "m", "prediction_id": "p", "timestamp": time.time()}]},
            headers={"Authorization": "Bearer " + SECRETS["WK_TEST_INGEST_TOKEN"]},
            timeout=30,
        )
        metrics = httpx.get(f"{stack.ingest_url}/metrics", timeout=10).text
    assert r.status_code == 503, r.text
    assert_clean("the 503 answer", f"{dict(r.headers)} {r.text}")
    assert_clean("/metrics", metrics)
    assert_clean("the log (DEBUG)", caplog.text)


def test_the_dashboard_shows_no_secret(
    tmp_path: Path,
    secrets_env: None,
    failing: Failing,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    for influx in (False, True):
        data = tmp_path / f"data-{influx}"
        path = _write_config(tmp_path / f"wk-{influx}.yaml", data, failing.port, influx=influx)
        if not influx:
            store = open_store(load_config(path).storage)
            now = time.time()
            store.write(
                predictions=[
                    Prediction("m", f"p{i}", now - 600 + i, {"x": float(i)}, 0.5) for i in range(50)
                ],
                findings=[_breach()],
            )
            store.close()
        monkeypatch.setattr(sys, "argv", [str(app_path()), "--config", str(path)])
        at = AppTest.from_file(str(app_path()), default_timeout=60).run()
        parts = [str(e.value) for e in (*at.markdown, *at.caption, *at.info, *at.warning)]
        parts += [str(e.value) for e in (*at.error, *at.success, *at.title, *at.header)]
        parts += [str(e.value) for e in at.exception]
        parts += [json.dumps(str(e.proto)) for e in at.get("arrow_data_frame")]
        shown.append("\n".join(parts))
    assert "InfluxDB" in shown[1], "the dead InfluxDB was meant to be reported"
    assert_clean("the dashboard", "\n".join(shown))
    assert_clean("the log (DEBUG)", caplog.text)


def test_a_printed_or_logged_configuration_shows_no_secret(
    tmp_path: Path, secrets_env: None
) -> None:
    """A config object that ends up in a log line, a traceback or a debugger shows no secret:
    receiver URLs and the InfluxDB token are left out of its repr."""
    path = _write_config(tmp_path / "wk.yaml", tmp_path / "data", _free_port(), influx=True)
    config = load_config(path)
    assert config.alerting.receivers, "the receivers were meant to be loaded"
    assert SECRETS["WK_TEST_HOOK_PASSWORD"] in config.alerting.receivers[0]
    for shown in (repr(config), str(config), f"{config!r}", repr(config.alerting)):
        assert_clean("repr(config)", shown)


def test_redaction_examples_run() -> None:
    import doctest

    import watchkeeper.alerting.redact

    result = doctest.testmod(watchkeeper.alerting.redact)
    assert result.attempted and not result.failed
