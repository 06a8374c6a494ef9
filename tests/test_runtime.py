"""`watchkeeper serve`'s process: the parts it starts work together on one store."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server

from watchkeeper import Monitor
from watchkeeper.config import config_from_dict
from watchkeeper.runtime import Stack


def test_serve_scrapes_its_targets_into_the_store(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    monitor = Monitor("scored", "1", registry=registry)
    for _ in range(3):
        monitor.log_prediction({"x": 1.0}, 0.5)
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    port = server.server_address[1]
    config = config_from_dict(
        {
            "storage": {"path": str(tmp_path)},
            "ingest": {"port": 0},
            "scrape": [
                {"url": f"http://127.0.0.1:{port}/metrics", "model": "scored", "interval": "1s"}
            ],
        }
    )
    try:
        with Stack(config) as stack:
            stack.start()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                ups = stack.store.samples("scored", "up", 0, time.time() + 60)
                if ups and "watchkeeper_predictions_total" in stack.store.series("scored"):
                    break
                time.sleep(0.2)
            assert ups and ups[-1].value == 1.0
            [total] = [
                s.value
                for s in stack.store.samples(
                    "scored", "watchkeeper_predictions_total", 0, time.time() + 60
                )
            ][-1:]
            assert total == 3.0
    finally:
        server.shutdown()
        monitor.close()
