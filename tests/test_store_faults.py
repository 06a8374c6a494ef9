"""The store in trouble: locked by another process for seconds, and a disk that fills up.

Both over real HTTP to a real ingest server with a real client library sending to it: the
server answers 503 with `Retry-After` instead of accepting what it cannot keep, the client
keeps the records and delivers each exactly once when the store can write again, and the
store stays readable throughout.

The disk-full test mounts a 4 MB tmpfs (needs root, which this project's machines and CI
have; elsewhere it skips, which CI counts as a failure).
"""

from __future__ import annotations

import errno
import json
import math
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures_collectors import Ingest, start_ingest, wait_for
from prometheus_client import CollectorRegistry

from watchkeeper import Monitor
from watchkeeper.tsdb import SQLiteStore

LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
print("released", flush=True)
"""


def batch(prefix: str, n: int, ts: float, width: int = 20) -> dict[str, Any]:
    return {
        "predictions": [
            {
                "model": "m",
                "prediction_id": f"{prefix}-{i}",
                "timestamp": ts,
                "features": {f"f{j}": f"{prefix}-{i}-{j}" * 4 for j in range(width)},
            }
            for i in range(n)
        ]
    }


def stored_ids(store: SQLiteStore) -> list[str]:
    return [p.prediction_id for p in store.predictions("m", 0, math.inf)]


@pytest.fixture
def locked_ingest(tmp_path: Path) -> Iterator[Ingest]:
    store = SQLiteStore(tmp_path / "w.db", busy_timeout_s=0.2)
    running = start_ingest(store)
    try:
        yield running
    finally:
        running.server.stop()
        store.close()


def test_store_locked_by_another_process_503_then_the_client_delivers_everything_once(
    locked_ingest: Ingest,
) -> None:
    ingest = locked_ingest
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(ingest.store.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    monitor = Monitor("m", endpoint=ingest.url, registry=CollectorRegistry(), batch_size=50)
    try:
        assert locker.stdout is not None and locker.stdin is not None
        assert locker.stdout.readline().strip() == "locked"

        direct = httpx.post(f"{ingest.url}/v1/ingest", json=batch("direct", 3, time.time()))
        assert direct.status_code == 503
        assert direct.headers["Retry-After"] == "1"
        assert "locked" in direct.json()["error"]
        # Readers are not blocked by a writer (WAL): health and reads still answer.
        assert httpx.get(f"{ingest.url}/healthz").json() == {"status": "ok"}
        assert stored_ids(ingest.store) == []

        ids = [monitor.log_prediction({"x": i}, i) for i in range(120)]
        wait_for(
            lambda: True if ingest.rejected("store_unavailable") >= 2 else None,
            20,
            "the client to be refused while the store is locked",
        )
        assert monitor.stats.sent == 0 and monitor.stats.dropped_total == 0

        locker.stdin.write("\n")
        locker.stdin.flush()
        assert locker.stdout.readline().strip() == "released"
        assert monitor.flush(timeout=20) is True
    finally:
        monitor.close(timeout=1)
        locker.kill()
        locker.wait(10)
    assert sorted(stored_ids(ingest.store)) == sorted(ids)  # all, and none twice
    assert monitor.stats.dropped_total == 0


# --------------------------------------------------------------------------------------------
# Disk full


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs mounted at a fresh directory, unmounted afterwards."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(path: Path) -> int:
    """Write `path` until the file system is full; return how many bytes fitted."""
    written = 0
    chunk = b"\0" * 65536
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                if len(chunk) == 1:
                    return written
                chunk = chunk[: len(chunk) // 2]


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def test_disk_full_is_a_clear_503_the_store_stays_readable_and_recovers(
    small_disk: Path,
) -> None:
    store = SQLiteStore(small_disk / "w.db")
    ingest = start_ingest(store)
    monitor = Monitor("m", endpoint=ingest.url, registry=CollectorRegistry(), batch_size=100)
    filler = small_disk / "filler"
    try:
        now = time.time()
        before = httpx.post(f"{ingest.url}/v1/ingest", json=batch("before", 50, now))
        assert before.status_code == 200
        fill(filler)

        refused: httpx.Response | None = None
        accepted = 50
        for n in range(60):  # what still fits in free pages is accepted; then it is full
            response = httpx.post(f"{ingest.url}/v1/ingest", json=batch(f"full{n}", 100, now))
            if response.status_code == 200:
                accepted += response.json()["stored"]["predictions"]
                continue
            refused = response
            break
        assert refused is not None, "the disk never filled up"
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"]
        assert "full" in refused.json()["error"]  # "database or disk is full"

        # Still readable, whole batches only, and intact.
        assert len(stored_ids(store)) == accepted
        assert httpx.get(f"{ingest.url}/healthz").json() == {"status": "ok"}
        assert integrity(store.path) == "ok"

        # The client keeps what it cannot deliver while the disk is full ...
        ids = [monitor.log_prediction({"x": "y" * 200}, i) for i in range(300)]
        rejected = ingest.rejected("store_unavailable")
        wait_for(
            lambda: True if ingest.rejected("store_unavailable") > rejected else None,
            20,
            "the client to be refused while the disk is full",
        )
        assert monitor.stats.dropped_total == 0

        # ... and delivers it once there is space again; so does a plain retry.
        filler.unlink()
        assert monitor.flush(timeout=30) is True
        again = httpx.post(f"{ingest.url}/v1/ingest", content=json.dumps(batch("full-r", 100, now)))
        assert again.status_code == 200
        assert again.json()["stored"]["predictions"] == 100
        assert set(ids) <= set(stored_ids(store))
        assert len(stored_ids(store)) == accepted + 300 + 100
        assert integrity(store.path) == "ok"
    finally:
        monitor.close(timeout=1)
        ingest.server.stop()
        store.close()
