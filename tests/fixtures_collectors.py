"""Fixtures for the collectors tests: a real ingest server on loopback over a real SQLite store.

Test modules import the fixture functions they use (`ingest_fixture`, ...); each is registered
under its short name (`ingest`, ...). tests/conftest.py belongs to the whole suite.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client import CollectorRegistry

from watchkeeper.collectors.ingest import IngestServer, create_app
from watchkeeper.config import IngestConfig
from watchkeeper.tsdb import SQLiteStore

T = TypeVar("T")


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


def start_ingest(
    store: SQLiteStore, environ: dict[str, str] | None = None, **config: Any
) -> Ingest:
    registry = CollectorRegistry()
    cfg = IngestConfig(**config)
    app = create_app(store, cfg, registry=registry, environ=environ or {})
    server = IngestServer(app, "127.0.0.1", 0).start()
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


# --------------------------------------------------------------------------------------------
# Real Debian servers (prometheus, prometheus-node-exporter) started by the tests


def free_port() -> int:
    """A loopback port free right now (for servers that cannot be given port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package; see /work/shared/TESTING.md)")
    return path


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `check` until it returns something other than None, or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (httpx.HTTPError, OSError, KeyError, IndexError, ValueError) as exc:
            last_error = exc
        else:
            if result is not None:
                return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last_error!r})")


@contextlib.contextmanager
def running(cmd: list[str], ready_url: str, log_path: Path, timeout: float = 30) -> Iterator[None]:
    """Run `cmd` until the block ends; wait until `ready_url` answers 200 first."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:

            def ready() -> bool | None:
                if proc.poll() is not None:
                    raise AssertionError(
                        f"{cmd[0]} exited with {proc.returncode}: {log_path.read_text()[-2000:]}"
                    )
                return True if httpx.get(ready_url, timeout=2).status_code == 200 else None

            wait_for(ready, timeout, f"{cmd[0]} to answer {ready_url}")
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@contextlib.contextmanager
def prometheus(tmp_path: Path, scrape_targets: list[str]) -> Iterator[str]:
    """Debian's Prometheus scraping `scrape_targets` (host:port) every second; yields its URL."""
    binary = require_binary("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    targets = ", ".join(f'"{t}"' for t in scrape_targets)
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"scrape_configs:\n  - job_name: watchkeeper\n    static_configs:\n"
        f"      - targets: [{targets}]\n"
    )
    url = f"http://127.0.0.1:{port}"
    cmd = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with running(cmd, f"{url}/-/ready", tmp_path / "prometheus.log"):
        yield url


@contextlib.contextmanager
def node_exporter(tmp_path: Path) -> Iterator[str]:
    """Debian's prometheus-node-exporter on loopback; yields its metrics URL."""
    binary = require_binary("prometheus-node-exporter")
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    cmd = [binary, f"--web.listen-address=127.0.0.1:{port}"]
    with running(cmd, url, tmp_path / "node-exporter.log"):
        yield url
