"""Locust users that POST prediction batches to `/v1/ingest`, as model services do.

Each request is one gzip JSON batch (`WK_BATCH_SIZE` predictions of `WK_FEATURES` random
features each, 500 and 20 by default) with prediction ids never sent before, so every row is
new to the store. A user sends at most `WK_USER_RATE` requests per second (locust's
`constant_throughput`). A request fails unless the answer is 200 and accepts the whole batch.

The body of a user is built once; each request writes a fresh 16-character id prefix into it
and compresses it at gzip level 1 (about 2 ms per batch of 500; the client library uses
level 6, 8 ms, which would spend the shared CPU on the load generator, not on the server).

Run it through `benchmarks/load_test.py`, which starts the server, sets these variables and
reports the figures; or by hand:

    WK_USER_RATE=12.5 locust -f benchmarks/locustfile_ingest.py --headless -u 8 -r 8 \\
        -t 5m --processes 3 --host http://127.0.0.1:8765
"""

from __future__ import annotations

import gzip
import json
import os
import random
import time
import uuid
from typing import Any

from locust import FastHttpUser, constant_throughput, task

BATCH_SIZE = int(os.environ.get("WK_BATCH_SIZE", "500"))
FEATURES = int(os.environ.get("WK_FEATURES", "20"))
USER_RATE = float(os.environ.get("WK_USER_RATE", "12.5"))
MODEL = os.environ.get("WK_MODEL", "load")
MARK = "@" * 16  # replaced by each request's id prefix
HEADERS = {"Content-Type": "application/json", "Content-Encoding": "gzip"}


def template(seed: int, size: int = BATCH_SIZE, features: int = FEATURES) -> bytes:
    """One batch's JSON, with `MARK` where the request's id prefix goes."""
    rng = random.Random(seed)
    now = time.time()
    predictions = [
        {
            "model": MODEL,
            "prediction_id": f"{MARK}-{i}",
            "timestamp": round(now - 60 + i / size, 6),
            "features": {f"f{k}": round(rng.gauss(0, 1), 6) for k in range(features)},
            "output": round(rng.random(), 6),
            "version": "v1",
            "latency_s": round(rng.random() / 100, 6),
        }
        for i in range(size)
    ]
    return json.dumps(
        {"batch_id": MARK, "predictions": predictions}, separators=(",", ":")
    ).encode()


class IngestUser(FastHttpUser):
    """POSTs one new batch per task, at most `USER_RATE` per second."""

    wait_time = constant_throughput(USER_RATE)

    def on_start(self) -> None:
        self._body = template(random.randrange(2**32))
        self._prefix = uuid.uuid4().hex[:8]
        self._sent = 0

    @task
    def post_batch(self) -> None:
        self._sent += 1
        batch_id = f"{self._prefix}{self._sent:08x}".encode()
        data = gzip.compress(self._body.replace(MARK.encode(), batch_id), 1, mtime=0)
        response: Any
        with self.client.post(
            "/v1/ingest", data=data, headers=HEADERS, catch_response=True, name="/v1/ingest"
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            elif response.json()["accepted"]["predictions"] != BATCH_SIZE:
                response.failure(f"batch not accepted whole: {response.text[:200]}")
