"""What `Monitor.log_prediction` costs the service's request thread, next to bare prometheus-client.

Issue 4 targets: `log_prediction` with 20 features costs at most 3x a bare prometheus-client
`Counter.inc()` + `Histogram.observe()` pair measured in the same run (median per call), and its
p99 stays under 50 us while the ingest server is down.

Every case is timed call by call with the same harness (two `perf_counter_ns` reads around the
call, included in every figure), in interleaved rounds so that a busy machine hurts all cases
alike. Cases:

- bare pair: `Counter.inc()` + `Histogram.observe(latency)`, the baseline;
- metrics only: `Monitor(...)` without endpoint;
- server up: a real ingest server (IngestServer + SQLiteStore) in a child process;
- server down: the endpoint's port refuses connections (the queue fills, oldest records drop);
- server down, privacy on (an extra row, not part of the targets): 2 of the features
  `sensitive`, 1 in `drop_fields`, 2 in `hash_fields` (the caller's thread only copies the
  features and pops 3 of them; counting and hashing happen in the sender thread).

    python benchmarks/client_overhead.py [--calls 100000] [--rounds 3] [--features 20]
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram

from watchkeeper import Monitor
from watchkeeper.collectors.metrics import LATENCY_BUCKETS

PRIVACY_CASE = "server down, privacy on"


def _serve(path: str, port_queue: multiprocessing.Queue[int]) -> None:  # pragma: no cover
    from watchkeeper.collectors.ingest import IngestServer, create_app
    from watchkeeper.config import IngestConfig
    from watchkeeper.tsdb import SQLiteStore

    server = IngestServer(create_app(SQLiteStore(path), IngestConfig()), "127.0.0.1", 0).start()
    port_queue.put(server.port)
    while True:
        time.sleep(3600)


def _timed(call: Callable[[], object], n: int) -> list[int]:
    pc = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        started = pc()
        call()
        out[i] = pc() - started
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100_000, help="calls per case per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--features", type=int, default=20, help="features per prediction")
    args = parser.parse_args()

    features = {f"f{i}": i * 0.37 for i in range(args.features)}
    latency = 0.012

    registry = CollectorRegistry()
    counter = Counter("bare_total", "bare", ["model", "version"], registry=registry)
    histogram = Histogram(
        "bare_seconds", "bare", ["model", "version"], buckets=LATENCY_BUCKETS, registry=registry
    )
    c, h = counter.labels("m", "v1"), histogram.labels("m", "v1")

    def bare() -> None:
        c.inc()
        h.observe(latency)

    ctx = multiprocessing.get_context("spawn")
    ports: multiprocessing.Queue[int] = ctx.Queue()
    tmp = tempfile.TemporaryDirectory()
    server = ctx.Process(target=_serve, args=(str(Path(tmp.name) / "w.db"), ports), daemon=True)
    server.start()
    up_port = ports.get(timeout=60)

    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    dead_port = dead.getsockname()[1]

    monitors = {
        "metrics only (no endpoint)": Monitor("m", "v1", registry=CollectorRegistry()),
        # a buffer that holds the whole run: the cost of queueing while the sender works
        "server up": Monitor(
            "m",
            "v1",
            endpoint=f"http://127.0.0.1:{up_port}",
            registry=CollectorRegistry(),
            max_buffer=args.calls * args.rounds + 10_000,
        ),
        # the default buffer of 10,000 fills and drops its oldest records: the worst case
        "server down": Monitor(
            "m", "v1", endpoint=f"http://127.0.0.1:{dead_port}", registry=CollectorRegistry()
        ),
        PRIVACY_CASE: Monitor(
            "m",
            "v1",
            endpoint=f"http://127.0.0.1:{dead_port}",
            registry=CollectorRegistry(),
            sensitive=("f0", "f1"),
            drop_fields=("f2",),
            hash_fields=("f3", "f4"),
            hash_key="benchmark-key-of-32-bytes-------",
        ),
    }
    cases: dict[str, Callable[[], object]] = {"bare Counter.inc + Histogram.observe": bare}
    for name, monitor in monitors.items():
        log = monitor.log_prediction
        cases[f"log_prediction, {args.features} features, {name}"] = lambda log=log: log(
            features, 0.7, latency_s=latency
        )

    for call in cases.values():  # warm-up
        _timed(call, 2_000)
    times: dict[str, list[int]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, call in cases.items():
            times[name] += _timed(call, args.calls)

    empty = _timed(lambda: None, args.calls)
    stats = {}
    for name, values in times.items():
        values.sort()
        stats[name] = (statistics.median(values), values[int(len(values) * 0.99)], values[-1])
    base = stats["bare Counter.inc + Histogram.observe"][0]

    print(f"Python {sys.version.split()[0]}, {args.rounds} rounds x {args.calls:,} calls per case")
    print(
        "harness overhead (empty lambda, included below): "
        f"median {statistics.median(empty):.0f} ns\n"
    )
    print("| case | median per call | x bare pair (median) | p99 | max |")
    print("|---|---:|---:|---:|---:|")
    for name, (median, p99, worst) in stats.items():
        print(
            f"| {name} | {median / 1000:.2f} µs | {median / base:.2f}x | {p99 / 1000:.2f} µs "
            f"| {worst / 1000:.0f} µs |"
        )
    down = stats[f"log_prediction, {args.features} features, server down"]
    worst_ratio = max(
        s[0] / base
        for n, s in stats.items()
        if n.startswith("log_prediction") and not n.endswith(PRIVACY_CASE)
    )
    print(
        f"\ntarget median <= 3x bare pair: {'met' if worst_ratio <= 3 else 'MISSED'} "
        f"(worst {worst_ratio:.2f}x, privacy off); target p99 < 50 µs with the server down: "
        f"{'met' if down[1] < 50_000 else 'MISSED'} ({down[1] / 1000:.2f} µs)"
    )
    for name, monitor in monitors.items():
        s = monitor.stats
        print(f"{name}: sent {s.sent:,}, dropped {dict(s.dropped)}, queued {s.queued:,}")
        monitor.close(timeout=0.5)
    server.terminate()
    server.join(5)
    dead.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()
