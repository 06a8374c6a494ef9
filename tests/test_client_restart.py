"""The ingest server is killed (SIGKILL) and restarted while a client logs 100,000 predictions."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures_collectors import free_port, wait_for
from prometheus_client import CollectorRegistry

from watchkeeper import Monitor
from watchkeeper.tsdb import SQLiteStore

SERVER = """
import sys, time
from watchkeeper.collectors.ingest import IngestServer, create_app
from watchkeeper.config import IngestConfig
from watchkeeper.tsdb import SQLiteStore

server = IngestServer(create_app(SQLiteStore(sys.argv[1]), IngestConfig()), "127.0.0.1",
                      int(sys.argv[2]))
server.start()
while True:
    time.sleep(3600)
"""


class ServerProcess:
    """An ingest server in its own process, so that it can be killed for real."""

    def __init__(self, db: Path, port: int) -> None:
        self.db, self.port = db, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(self.db), str(self.port)], cwd=self.db.parent
        )

        def healthy() -> bool | None:
            assert self.proc is not None and self.proc.poll() is None, "server exited"
            url = f"http://127.0.0.1:{self.port}/healthz"
            return True if httpx.get(url, timeout=2).status_code == 200 else None

        wait_for(healthy, 30, "the ingest server")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    running = ServerProcess(tmp_path / "w.db", free_port())
    running.start()
    yield running
    running.kill()


def test_kill_and_restart_every_buffered_prediction_arrives_once_drops_counted_exactly(
    server: ServerProcess,
) -> None:
    registry = CollectorRegistry()
    n, bound = 100_000, 10_000
    monitor = Monitor(
        "churn",
        "v1",
        endpoint=f"http://127.0.0.1:{server.port}",
        registry=registry,
        max_buffer=bound,
        flush_interval_s=0.2,
    )
    try:
        for i in range(n):
            if i == 30_000:
                server.kill()
            elif i == 70_000:
                server.start()
            monitor.log_prediction({"x": i, "y": i % 7}, 0.5, prediction_id=f"p{i}")
        assert monitor.flush(timeout=120) is False  # False: some records were dropped
        assert monitor.flush(timeout=120) is True  # and nothing since
        stats = monitor.stats
    finally:
        monitor.close(timeout=1)

    dropped = stats.dropped.get("buffer_full", 0)
    assert set(stats.dropped) == {"buffer_full"}
    assert dropped >= 40_000 - bound  # the server was away for 40,000 predictions
    assert stats.queued == 0
    assert stats.sent + dropped == n  # every prediction is sent or counted as dropped
    assert (
        registry.get_sample_value(
            "watchkeeper_client_dropped_total",
            {"model": "churn", "version": "v1", "reason": "buffer_full"},
        )
        == dropped
    )
    store = SQLiteStore(server.db)
    try:
        stored = [p.prediction_id for p in store.predictions("churn", 0, math.inf)]
    finally:
        store.close()
    assert len(stored) == len(set(stored)) == stats.sent  # each arrived exactly once
    assert set(stored) <= {f"p{i}" for i in range(n)}
