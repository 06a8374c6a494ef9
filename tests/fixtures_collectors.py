"""Fixtures for the collectors tests: a real ingest server on loopback over a real SQLite store.

Test modules import the fixture functions they use (`ingest_fixture`, ...); each is registered
under its short name (`ingest`, ...). tests/conftest.py belongs to the whole suite.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from watchkeeper.collectors.ingest import IngestServer, create_app
from watchkeeper.config import IngestConfig
from watchkeeper.tsdb import SQLiteStore


@dataclass
class Ingest:
    """A running ingest server with the store it writes to and its own metrics registry."""

    server: IngestServer
    store: SQLiteStore
    registry: CollectorRegistry
    config: IngestConfig

    @property
    def url(self) -> str:
        return self.server.url

    def rejected(self, reason: str) -> float:
        value = self.registry.get_sample_value(
            "watchkeeper_ingest_rejected_total", {"reason": reason}
        )
        return value or 0.0


def start_ingest(store: SQLiteStore, **config: int) -> Ingest:
    registry = CollectorRegistry()
    cfg = IngestConfig(**config)
    server = IngestServer(create_app(store, cfg, registry=registry), "127.0.0.1", 0).start()
    return Ingest(server, store, registry, cfg)


@pytest.fixture(name="ingest")
def ingest_fixture(store: SQLiteStore) -> Iterator[Ingest]:
    """Ingest with small limits, so size limits are cheap to test."""
    running = start_ingest(store, max_body_bytes=200_000, max_batch_items=1_000)
    yield running
    running.server.stop()


@pytest.fixture(name="dead_endpoint")
def dead_endpoint_fixture() -> Iterator[str]:
    """A loopback URL whose port is bound but not listening: connections are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.fixture(name="registry")
def registry_fixture() -> CollectorRegistry:
    """A fresh Prometheus registry per test: no global state shared between tests."""
    return CollectorRegistry()
