"""Read latency of the SQLite store's server-side aggregates over 30 days.

1. One sample series at 1-minute resolution for 30 days (43,200 points), aggregated to 500
   buckets (mean, max and p95), through `aggregate_samples`; the baseline is fetching the raw
   rows with a plain `SELECT` (what a caller would do without server-side aggregation).
2. The dashboard-style query: 10 models x 20 numeric features, one prediction per model per
   minute for 30 days (432,000 predictions), the mean of every feature plus throughput, error
   rate and mean latency per 4-hour bucket (the dashboard's step for 30 days), 230 calls. Run
   after `rollup()` (the runtime's housekeeping) and, for comparison, with no roll-ups (raw).

    python benchmarks/store_read.py --days 30
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from watchkeeper.tsdb import Prediction, Sample, SQLiteStore

T0 = 1_699_999_200.0  # a whole hour
MODELS = 10
FEATURES = 20


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of `repeat` calls, in milliseconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def seed(store: SQLiteStore, days: int) -> None:
    minutes = days * 1440
    store.write(
        samples=[Sample("m0", "queue", T0 + 60.0 * i, float(i % 113)) for i in range(minutes)]
    )
    for start in range(0, minutes, 2000):
        batch = []
        for i in range(start, min(start + 2000, minutes)):
            for m in range(MODELS):
                batch.append(
                    Prediction(
                        f"m{m}",
                        f"p{i}",
                        T0 + 60.0 * i + m,
                        {f"f{k}": ((i * 7 + k * 13 + m) % 1000) / 10.0 for k in range(FEATURES)},
                        output=(i % 10) / 10.0,
                        latency_s=0.001 * (i % 50),
                        error=i % 25 == 0,
                    )
                )
        store.write(predictions=batch)


def dashboard(store: SQLiteStore, end: float) -> int:
    step = 14400.0
    points = 0
    for m in range(MODELS):
        for k in range(FEATURES):
            points += len(
                store.aggregate_prediction_field(f"m{m}", f"features.f{k}", "mean", T0, end, step)
            )
        for metric in ("count", "error_rate", "latency_mean"):
            points += len(store.aggregate_predictions(f"m{m}", metric, T0, end, step))  # type: ignore[arg-type]
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    end = T0 + args.days * 86400.0
    step = (end - T0) / 500
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp, "read.db"))
        started = time.perf_counter()
        seed(store, args.days)
        seeded = time.perf_counter() - started
        conn = store._conn()
        rows = [
            ("one series, raw rows (baseline: SELECT ts, value)",
             lambda: conn.execute("SELECT ts, value FROM samples WHERE model = 'm0' AND name = "
                                  "'queue' AND ts >= ? AND ts < ?", (T0, end)).fetchall()),
            ("one series, 500 buckets, mean",
             lambda: store.aggregate_samples("m0", "queue", "mean", T0, end, step)),
            ("one series, 500 buckets, max",
             lambda: store.aggregate_samples("m0", "queue", "max", T0, end, step)),
            ("one series, 500 buckets, p95",
             lambda: store.aggregate_samples("m0", "queue", "p95", T0, end, step)),
            ("dashboard 10 models x (20 features + 3 metrics), raw",
             lambda: dashboard(store, end)),
        ]  # fmt: skip
        print(f"seeded {args.days} days in {seeded:.0f} s\n")
        print("| query | median ms |")
        print("|---|---:|")
        for label, fn in rows:
            repeat = 1 if "raw" in label and "dashboard" in label else args.repeat
            print(f"| {label} | {timed(fn, repeat):.1f} |", flush=True)
        started = time.perf_counter()
        store.rollup(until=end)
        took = (time.perf_counter() - started) * 1000
        print(f"| (rollup() of all {args.days} days, once) | {took:.0f} |")
        label = "dashboard 10 models x (20 features + 3 metrics), roll-ups"
        print(f"| {label} | {timed(lambda: dashboard(store, end), args.repeat):.1f} |")
        store.close()


if __name__ == "__main__":
    main()
