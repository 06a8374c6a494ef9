"""Debian's Prometheus scrapes a Monitor's metrics, served by prometheus-client's own server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures_collectors import prometheus, wait_for
from prometheus_client import CollectorRegistry, start_http_server

from watchkeeper import Monitor

pytestmark = pytest.mark.real_server

MODEL = '{model="churn",version="v1"}'


@pytest.fixture
def exposed() -> Iterator[tuple[Monitor, CollectorRegistry, int]]:
    registry = CollectorRegistry()
    monitor = Monitor("churn", "v1", registry=registry)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    yield monitor, registry, int(server.server_port)
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_prometheus_scrapes_what_the_monitor_logged(
    exposed: tuple[Monitor, CollectorRegistry, int], tmp_path: Path
) -> None:
    monitor, registry, port = exposed
    latencies = [0.004, 0.02, 0.02, 0.3, 1.5, 0.0007, 0.05]
    outputs = [0.1, 0.9, 0.9, 0.35, 0.7, 1.0, 0.0]
    for i, (latency, output) in enumerate(zip(latencies, outputs, strict=True)):
        monitor.log_prediction({"x": i}, output, latency_s=latency, error=i in (2, 5))
    for _ in range(3):
        monitor.log_fallback("timeout")

    with prometheus(tmp_path, [f"127.0.0.1:{port}"]) as url:

        def target_health() -> str | None:
            targets = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]
            (target,) = targets["activeTargets"]
            return "up" if target["health"] == "up" else None

        assert wait_for(target_health, 30, "the target to be up") == "up"

        def query(expr: str) -> float:
            def value() -> float | None:
                body = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
                result = body["data"]["result"]
                return float(result[0]["value"][1]) if result else None

            return wait_for(value, 30, f"Prometheus to have {expr}")

        assert query(f"watchkeeper_predictions_total{MODEL}") == 7
        assert query(f"watchkeeper_prediction_errors_total{MODEL}") == 2
        assert query('watchkeeper_fallbacks_total{model="churn",reason="timeout"}') == 3
        assert query(f"watchkeeper_prediction_latency_seconds_count{MODEL}") == 7
        assert query(f"watchkeeper_prediction_latency_seconds_sum{MODEL}") == pytest.approx(
            sum(latencies)
        )
        le = '{model="churn",version="v1",le="0.025"}'
        assert query(f"watchkeeper_prediction_latency_seconds_bucket{le}") == 4
        assert query(f"watchkeeper_prediction_value_sum{MODEL}") == pytest.approx(sum(outputs))
        # Prometheus saw exactly what the service's own registry holds
        assert (
            registry.get_sample_value(
                "watchkeeper_prediction_latency_seconds_bucket",
                {"model": "churn", "version": "v1", "le": "0.025"},
            )
            == 4
        )
