"""A store that cannot be used (issue 7): ingest answers 503 instead of accepting what it
cannot keep, the detector stops judging and alerting raises the outage as its own alert,
and `/healthz` names the part that is degraded."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import WebhookReceiver
from fixtures_collectors import free_port, wait_for

from watchkeeper.collectors.ingest import IngestServer, create_app
from watchkeeper.config import config_from_dict
from watchkeeper.runtime import Stack
from watchkeeper.tsdb import Prediction, SQLiteStore, open_store

MODEL = "fraud-scorer"


def batch_body(n: int = 3) -> bytes:
    now = time.time()
    return gzip.compress(
        json.dumps(
            {
                "predictions": [
                    {
                        "model": MODEL,
                        "prediction_id": f"p{i}",
                        "timestamp": now,
                        "features": {"x": 1.0},
                        "output": 0.5,
                    }
                    for i in range(n)
                ]
            }
        ).encode()
    )


class Answering500:
    """A loopback HTTP server that answers every request 500, as a sick InfluxDB would."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _fail(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests += 1
                body = b'{"code":"internal error","message":"boom"}'
                self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET = _fail

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def answering_500() -> Iterator[Answering500]:
    server = Answering500()
    yield server
    server.close()


@pytest.mark.parametrize("influx", ["dead", "500"])
def test_ingest_answers_503_with_retry_after_when_influxdb_is_down_or_failing(
    tmp_path: Path, influx: str, answering_500: Answering500
) -> None:
    url = f"http://127.0.0.1:{free_port()}" if influx == "dead" else answering_500.url
    config = config_from_dict(
        {
            "storage": {
                "backend": "influxdb",
                "path": str(tmp_path),
                "influxdb": {
                    "url": url,
                    "org": "o",
                    "bucket": "b",
                    "token": "secret-token",
                    "timeout": "1s",
                    "max_retries": 1,
                    "max_retry_time": "2s",
                    "retry_interval": "0.1s",
                },
            }
        }
    )
    store = open_store(config.storage)
    server = IngestServer(create_app(store, config.ingest), "127.0.0.1", 0)
    server.start()
    try:
        response = httpx.post(
            f"{server.url}/v1/ingest",
            content=batch_body(),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            timeout=30,
        )
        assert response.status_code == 503
        assert response.headers["Retry-After"].isdigit()
        assert "store unavailable" in response.json()["error"]
        assert "secret-token" not in response.text
        if influx == "500":
            assert answering_500.requests >= 2  # retried before giving up
        health = httpx.get(f"{server.url}/healthz", timeout=30)
        assert health.status_code == 503
        assert "store cannot be read" in health.json()["error"]
    finally:
        server.stop()
        store.close()


def hold_write_lock(db: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holds the SQLite write lock for `seconds` (reads still work: WAL)."""
    code = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "time.sleep(float(sys.argv[2]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_store_outage_raises_its_own_alert_pauses_judging_and_shows_in_healthz(
    tmp_path: Path, webhook: WebhookReceiver
) -> None:
    config = config_from_dict(
        {
            "storage": {"path": str(tmp_path), "busy_timeout": "0.3s"},
            "detector": {
                "interval": "0.3s",
                "defaults": {"window": "10m", "every": "10m"},
            },
            "alerting": {
                "console": False,
                "receivers": [webhook.url],
                "route": {"group_wait": "0s", "group_interval": "1s"},
            },
        }
    )
    now = time.time()
    seeded = SQLiteStore(config.storage.store_file)
    seeded.write(
        predictions=[
            Prediction(MODEL, f"p{i}", now - 3600 + i * 10, {"x": float(i % 5)}, 0.5, "1")
            for i in range(360)
        ]
    )
    seeded.close()

    with Stack(
        config, roles=["detector", "alerting"], status_port=0, store_alert_after_s=1.0
    ) as stack:
        stack.start()
        healthz = f"{stack.ingest_url}/healthz"

        def healthy() -> dict[str, object] | None:
            body = httpx.get(healthz, timeout=5).json()
            return body if body["status"] == "ok" and "detector" in body["components"] else None

        wait_for(healthy, 30, "a healthy detector and alerting")
        judged_before = len(stack.store.findings(MODEL))
        assert judged_before > 0

        holder = hold_write_lock(config.storage.store_file, 4.0)
        try:
            body = wait_for(
                lambda: (
                    ((b := httpx.get(healthz, timeout=5).json())["status"] == "degraded" and b)
                    or None
                ),
                20,
                "/healthz to report the store",
            )
            assert "store" in body["degraded"] and "detector" in body["degraded"]
            assert "locked" in body["components"]["store"]["detail"]
            wait_for(
                lambda: [t for t in webhook.titles() if "[FIRING" in t and "store" in t] or None,
                20,
                "the store outage alert",
            )
        finally:
            holder.wait(timeout=30)

        wait_for(
            lambda: [t for t in webhook.titles() if "[RESOLVED" in t and "store" in t] or None,
            30,
            "the store outage alert to resolve",
        )
        body = wait_for(healthy, 30, "/healthz ok again")
        components = body["components"]
        assert isinstance(components, dict)
        assert "buffered data" in components["detector"]["detail"]  # waits before judging
        assert len(stack.store.findings(MODEL)) == judged_before  # nothing judged on a gap
    # Only the outage was alerted on: no model alert (no "up", no no-data) came of it.
    assert all("watchkeeper store" in t for t in webhook.titles()), webhook.titles()
