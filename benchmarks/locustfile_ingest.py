"""Locust users that POST prediction batches to `/v1/ingest`, as model services do.

Each request is one gzip JSON batch (plain JSON with `WK_GZIP=0`): `WK_BATCH_SIZE`
predictions of `WK_FEATURES` random features each (500 and 20 by default), with prediction ids
never sent before, so every row is new to the store. A user sends at most `WK_USER_RATE`
requests per second (locust's `constant_throughput`). A request fails unless the answer is 200
and accepts the whole batch.

The JSON of a user is built once; each request writes a fresh 16-character id prefix and the
current time into it (timestamps rise as a live service's do, which decides where in the
store's time index the rows land) and compresses it at gzip level 1 (about 2 ms per batch of
500; the client library's level 6 takes 8 ms, which would spend the shared CPU on the load
generator rather than on the server).

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
GZIP = os.environ.get("WK_GZIP", "1") != "0"
HEADERS = {"Content-Type": "application/json"} | ({"Content-Encoding": "gzip"} if GZIP else {})


def template(seed: int, size: int = BATCH_SIZE, features: int = FEATURES) -> bytes:
    """One batch's JSON with `MARK` where the request's id prefix goes and `%.6f` where each
    prediction's timestamp goes (the JSON holds no other `%`)."""
    rng = random.Random(seed)
    predictions = [
        {
            "model": MODEL,
            "prediction_id": f"{MARK}-{i}",
            "timestamp": "TIMESTAMP",
            "features": {f"f{k}": round(rng.gauss(0, 1), 6) for k in range(features)},
            "output": round(rng.random(), 6),
            "version": "v1",
            "latency_s": round(rng.random() / 100, 6),
        }
        for i in range(size)
    ]
    text = json.dumps({"batch_id": MARK, "predictions": predictions}, separators=(",", ":"))
    return text.replace('"TIMESTAMP"', "%.6f").encode()


def body(template: bytes, prefix: bytes, now: float, size: int = BATCH_SIZE) -> bytes:
    """A batch of new predictions made over the last 0.1 s (as a service's client sends
    them: ids never seen, times rising), gzip level 1 unless `WK_GZIP=0`."""
    stamps = tuple(now - 0.1 + 0.1 * i / size for i in range(size))
    data = (template % stamps).replace(MARK.encode(), prefix)
    return gzip.compress(data, 1, mtime=0) if GZIP else data


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
        data = body(self._body, f"{self._prefix}{self._sent:08x}".encode(), time.time())
        response: Any
        with self.client.post(
            "/v1/ingest", data=data, headers=HEADERS, catch_response=True, name="/v1/ingest"
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            elif response.json()["accepted"]["predictions"] != BATCH_SIZE:
                response.failure(f"batch not accepted whole: {response.text[:200]}")
