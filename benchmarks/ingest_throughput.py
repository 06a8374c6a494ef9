"""How many predictions per second one ingest process stores into SQLite.

Issue 4 target: one `watchkeeper serve` process on this 2-core machine accepts at least 50,000
predictions per second (20 features each, batches of 500, several client processes) with zero
errors; report p50/p99 request latency.

The server is what `watchkeeper serve` runs for ingest: `IngestServer(create_app(SQLiteStore))`
(uvicorn, one process), here without the detector. Clients and server share the machine's
cores; the report gives the load average and the server's CPU time per batch. The load
generator is this script: several client processes (multiprocessing), each POSTing gzip JSON
batches over one kept-alive `http.client` connection, back to back, as the client library does.
Bodies are built before the clock starts (unique prediction ids, random feature values, gzip
level 6 like the client), so that the clients spend the shared CPU on sending, not on building.

    python benchmarks/ingest_throughput.py [--clients 4] [--batches 150] [--batch-size 500]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import multiprocessing
import os
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

T0 = 1_700_000_000.0


def _serve(path: str, ports: Any, max_items: int) -> None:  # the server process
    from watchkeeper.collectors.ingest import IngestServer, create_app
    from watchkeeper.config import IngestConfig
    from watchkeeper.tsdb import SQLiteStore

    config = IngestConfig(max_batch_items=max_items, max_body_bytes=50_000_000)
    server = IngestServer(create_app(SQLiteStore(path), config), "127.0.0.1", 0).start()
    ports.put(server.port)
    while True:
        time.sleep(3600)


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _bodies(client: int, batches: int, size: int, features: int) -> list[bytes]:
    rng = random.Random(client)
    out = []
    for b in range(batches):
        predictions = [
            {
                "model": "bench",
                "prediction_id": f"c{client}-b{b}-{i}",
                "timestamp": T0 + b + i / size,
                "features": {f"f{k}": round(rng.gauss(0, 1), 6) for k in range(features)},
                "output": round(rng.random(), 6),
                "version": "v1",
                "latency_s": round(rng.random() / 100, 6),
                "error": False,
                "sample_rate": 1.0,
            }
            for i in range(size)
        ]
        body = {"batch_id": f"c{client}-b{b}", "predictions": predictions}
        data = json.dumps(body, separators=(",", ":")).encode()
        out.append(gzip.compress(data, 6, mtime=0))
    return out


def _client(client: int, port: int, args: Any, ready: Any, start: Any, results: Any) -> None:
    bodies = _bodies(client, args.batches, args.batch_size, args.features)
    ready.put(client)
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    start.wait()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    accepted = 0
    for data in bodies:
        sent = time.perf_counter()
        try:
            conn.request("POST", "/v1/ingest", body=data, headers=headers)
            response = conn.getresponse()
            text = response.read()
        except (OSError, http.client.HTTPException) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        latencies.append(time.perf_counter() - sent)
        if response.status == 200:
            accepted += json.loads(text)["accepted"]["predictions"]
        else:
            errors[f"HTTP {response.status}"] = errors.get(f"HTTP {response.status}", 0) + 1
    results.put((accepted, errors, latencies, time.perf_counter()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--batches", type=int, default=150, help="batches per client")
    parser.add_argument("--batch-size", type=int, default=500, help="predictions per batch")
    parser.add_argument("--features", type=int, default=20, help="features per prediction")
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "w.db")
        ports = ctx.Queue()
        server = ctx.Process(target=_serve, args=(path, ports, args.batch_size), daemon=True)
        server.start()
        port = ports.get(timeout=60)
        ready, start, results = ctx.Queue(), ctx.Event(), ctx.Queue()
        clients = [
            ctx.Process(target=_client, args=(c, port, args, ready, start, results))
            for c in range(args.clients)
        ]
        for p in clients:
            p.start()
        for _ in clients:  # every client has built its bodies: start the clock
            ready.get(timeout=900)
        cpu_before = _cpu_seconds(server.pid)
        began = time.perf_counter()
        start.set()
        outcomes = [results.get(timeout=1800) for _ in clients]
        ended = max(o[3] for o in outcomes)
        server_cpu = _cpu_seconds(server.pid) - cpu_before
        for p in clients:
            p.join(30)
        stored = sqlite3.connect(path).execute("SELECT count(*) FROM predictions").fetchone()[0]
        server.terminate()
        server.join(10)

    accepted = sum(o[0] for o in outcomes)
    errors: dict[str, int] = {}
    for o in outcomes:
        for k, v in o[1].items():
            errors[k] = errors.get(k, 0) + v
    latencies = sorted(x for o in outcomes for x in o[2])
    elapsed = ended - began
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else float("nan")
    print(
        f"{args.clients} client processes x {args.batches} batches x {args.batch_size} "
        f"predictions ({args.features} features), one ingest process, SQLite store\n"
    )
    print("| predictions sent | accepted | stored | errors | seconds | predictions/s "
          "| batch p50 | batch p99 |")  # fmt: skip
    print("|---:|---:|---:|---|---:|---:|---:|---:|")
    total = args.clients * args.batches * args.batch_size
    print(
        f"| {total:,} | {accepted:,} | {stored:,} | {errors or 0} | {elapsed:.1f} "
        f"| {accepted / elapsed:,.0f} | {statistics.median(latencies) * 1000:.0f} ms "
        f"| {p99 * 1000:.0f} ms |"
    )
    batches = args.clients * args.batches
    load = os.getloadavg()
    print(
        f"\nserver CPU {server_cpu / batches * 1000:.1f} ms per batch "
        f"({server_cpu / elapsed:.2f} cores); load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f} (2 cores, shared with the clients and anything else running)"
    )
    target = accepted / elapsed >= 50_000 and not errors
    print(f"\ntarget 50,000 predictions/s with zero errors: {'met' if target else 'MISSED'}")


if __name__ == "__main__":
    main()
