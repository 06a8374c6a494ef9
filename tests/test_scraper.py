"""The scraper reads real exposition text into a real SQLite store."""

from __future__ import annotations

import contextlib
import math
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fixtures_collectors import (
    dead_endpoint_fixture,  # noqa: F401
    node_exporter,
    prometheus,
    wait_for,
)
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OM_CONTENT_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as om_generate

from watchkeeper import Monitor
from watchkeeper.collectors.scraper import ACCEPT, Scraper, parse_exposition
from watchkeeper.config import ScrapeTarget
from watchkeeper.tsdb import SQLiteStore

HEALTH = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
Series = tuple[str, tuple[tuple[str, str], ...]]


def fetch(url: str) -> tuple[bytes, str]:
    request = urllib.request.Request(url, headers={"Accept": ACCEPT})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read(), response.headers.get("Content-Type", "")


@contextlib.contextmanager
def replaying(body: bytes, content_type: str) -> Iterator[str]:
    """A loopback server answering every GET with one fixed exposition; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def assert_every_sample_stored(live_url: str, model: str, store: SQLiteStore) -> None:
    """Scrape the live server (it is up), then exactly one real exposition of it: every sample
    of that text is stored with its value, except those no store can hold (NaN), counted."""
    live = ScrapeTarget(url=live_url, model=f"{model}-live")
    result = Scraper([live], store).scrape(live)
    assert result.up, result.error
    assert result.samples > 50

    body, content_type = fetch(live_url)
    with replaying(body, content_type) as url:
        target = ScrapeTarget(url=url, model=model, labels={"team": "ml"})
        result = Scraper([target], store).scrape(target)
    assert result.up, result.error
    base = {"team": "ml", "instance": url.split("/")[2]}
    expected: dict[Series, float] = {}
    skipped = 0
    for family in parse_exposition(body.decode(), content_type):
        for s in family.samples:
            if math.isfinite(s.value):
                expected[(s.name, tuple(sorted({**s.labels, **base}.items())))] = s.value
            else:
                skipped += 1
    assert len(expected) > 50  # real-world text: hundreds of series
    assert (result.samples, result.skipped) == (len(expected), skipped)
    stored = stored_series(store, model, {name for name, _ in expected} | HEALTH)
    health = {k: v for k, v in stored.items() if k[0] in HEALTH}
    assert {k: v for k, v in stored.items() if k[0] not in HEALTH} == expected
    target_labels = tuple(sorted(base.items()))
    assert health[("up", target_labels)] == 1.0
    assert health[("scrape_samples_scraped", target_labels)] == len(expected) + skipped


def stored_series(store: SQLiteStore, model: str, names: set[str]) -> dict[Series, float]:
    out: dict[Series, float] = {}
    for name in names:
        for s in store.samples(model, name, 0, math.inf):
            out[(s.name, s.labels)] = s.value
    return out


def test_every_node_exporter_sample_lands_in_the_store(tmp_path: Path, store: SQLiteStore) -> None:
    with node_exporter(tmp_path) as url:
        assert_every_sample_stored(url, "host", store)
    cpu = list(stored_series(store, "host", {"node_cpu_seconds_total"}).values())
    assert cpu and all(v >= 0 for v in cpu)  # counters stored as cumulative counters


def test_every_prometheus_sample_lands_in_the_store(tmp_path: Path, store: SQLiteStore) -> None:
    with prometheus(tmp_path, []) as base_url:
        assert_every_sample_stored(f"{base_url}/metrics", "prom", store)


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
def test_a_monitor_scraped_gives_back_what_was_logged(
    store: SQLiteStore, openmetrics: bool
) -> None:
    registry = CollectorRegistry()
    monitor = Monitor("churn", "v1", registry=registry)
    for i in range(5):
        monitor.log_prediction({"x": i}, 0.5, latency_s=0.01, error=i == 0)
    if openmetrics:
        body, content_type = om_generate(registry), OM_CONTENT_TYPE
    else:
        body, content_type = generate_latest(registry), CONTENT_TYPE_LATEST
    with replaying(body, content_type) as url:
        target = ScrapeTarget(url=url, model="churn", labels={"env": "prod"})
        assert Scraper([target], store).scrape(target).up
    (predictions,) = store.samples("churn", "watchkeeper_predictions_total", 0, math.inf)
    assert predictions.value == 5
    assert dict(predictions.labels) == {
        "model": "churn",
        "version": "v1",
        "env": "prod",
        "instance": url.split("/")[2],
    }
    (errors,) = store.samples("churn", "watchkeeper_prediction_errors_total", 0, math.inf)
    assert errors.value == 1
    buckets = store.samples("churn", "watchkeeper_prediction_latency_seconds_bucket", 0, math.inf)
    assert {dict(b.labels)["le"]: b.value for b in buckets}["0.01"] == 5


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_a_down_target_is_recorded_as_up_zero_on_every_scrape(
    dead_endpoint: str, store: SQLiteStore, stop: threading.Event
) -> None:
    target = ScrapeTarget(url=f"{dead_endpoint}/metrics", model="gone", interval=0.05)
    scraper = Scraper([target], store)
    runner = threading.Thread(target=scraper.run_forever, args=(stop,), daemon=True)
    runner.start()

    def ups() -> list[float] | None:
        values = [s.value for s in store.samples("gone", "up", 0, math.inf)]
        return values if len(values) >= 3 else None

    assert set(wait_for(ups, 20, "three scrapes")) == {0.0}
    stop.set()
    runner.join(10)
    assert not runner.is_alive()
