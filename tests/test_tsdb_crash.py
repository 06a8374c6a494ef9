"""A writer killed with SIGKILL in the middle of a batch leaves every batch whole or absent.

A child process writes large batches in a loop; each batch's prediction ids start with its
batch id and its samples carry the batch id as their value. The parent kills it at moments
spread over its writing, several times, restarting it on the same file, then checks that every
batch is either fully present (all predictions and all samples) or absent, and that SQLite's
own integrity check passes.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from watchkeeper.tsdb import SQLiteStore

BATCH = 2000

WRITER = f"""
import itertools, sys
from watchkeeper.tsdb import Prediction, Sample, SQLiteStore

store = SQLiteStore(sys.argv[1])
run = sys.argv[2]
print("ready", flush=True)
for n in itertools.count():
    batch = f"{{run}}-{{n}}"
    t = 1_700_000_000.0 + n
    store.write(
        predictions=[
            Prediction("m", f"{{batch}}/{{i}}", t, {{"x": float(i), "y": "abc"}}, latency_s=0.01)
            for i in range({BATCH})
        ],
        samples=[Sample("m", batch, t + i * 1e-3, float(i)) for i in range({BATCH})],
    )
"""


def wait_for_a_batch(path: Path, run: str, timeout_s: float = 30.0) -> None:
    conn = sqlite3.connect(path, timeout=10)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT 1 FROM predictions WHERE model = 'm' AND prediction_id >= ? "
                "AND prediction_id < ? LIMIT 1",
                (f"{run}-", f"{run}."),
            ).fetchone()
            if row is not None:
                return
            time.sleep(0.01)
        raise AssertionError(f"writer {run} committed nothing within {timeout_s} s")
    finally:
        conn.close()


def test_sigkill_mid_batch_leaves_batches_whole_or_absent(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    SQLiteStore(path).close()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    for run in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"r{run}"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd="/",
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            # once the child has committed a batch, kill it at a varying moment of a later one
            wait_for_a_batch(path, f"r{run}")
            time.sleep(0.013 * run)
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=10)
        assert child.returncode == -signal.SIGKILL

    store = SQLiteStore(path)
    conn = store._conn()
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    per_batch = Counter(
        pid.split("/")[0] for (pid,) in conn.execute("SELECT prediction_id FROM predictions")
    )
    samples_per_batch = Counter(name for (name,) in conn.execute("SELECT name FROM samples"))
    assert set(per_batch.values()) == {BATCH}
    assert samples_per_batch == per_batch  # predictions and samples of a batch went together
    runs = {batch.split("-")[0] for batch in per_batch}
    assert runs == {f"r{run}" for run in range(6)}  # the file stayed writable after each kill
    for batch in per_batch:  # within a run, batches committed in order without gaps
        run, n = batch.split("-")
        assert all(f"{run}-{k}" in per_batch for k in range(int(n)))
    store.close()
