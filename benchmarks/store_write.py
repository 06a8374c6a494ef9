"""Write throughput of SQLiteStore.write against a bare sqlite3 executemany of the same rows.

The baseline gets the rows already as the tuples the store would insert (feature JSON text
included) and runs `executemany` into a file with the same schema, WAL and synchronous=NORMAL,
one transaction per batch. Ours gets the records and does everything the store does:
validation, serialisation, the insert, model bookkeeping. A second baseline adds the time
to build those tuples from the records (`json.dumps` of the features): what any caller pays
to store the same data as text. Each is run `--repeat` times on a fresh file, alternating,
and the best run counts.

    python benchmarks/store_write.py --samples 200000 --predictions 50000 --features 20
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from watchkeeper.tsdb import Prediction, Sample, SQLiteStore
from watchkeeper.tsdb.migrations import migrate

T0 = 1_699_999_200.0


def make_samples(n: int) -> list[Sample]:
    return [Sample(f"m{i % 10}", "requests", T0 + i * 0.01, float(i % 97)) for i in range(n)]


def make_predictions(n: int, features: int) -> list[Prediction]:
    return [
        Prediction(
            model=f"m{i % 10}",
            prediction_id=f"p{i}",
            timestamp=T0 + i * 0.01,
            features={f"f{k}": (i * 7 + k) % 1000 / 7.0 for k in range(features)},
            output=(i % 100) / 100.0,
            version="v1",
            latency_s=0.001 * (i % 50),
            error=i % 20 == 0,
        )
        for i in range(n)
    ]


def sample_rows(samples: Sequence[Sample]) -> list[tuple[object, ...]]:
    return [(s.model, s.name, "[]", s.timestamp, s.version, s.value) for s in samples]


def prediction_rows(predictions: Sequence[Prediction]) -> list[tuple[object, ...]]:
    return [
        (
            p.model,
            p.prediction_id,
            p.timestamp,
            p.version,
            json.dumps(p.features),
            json.dumps(p.output),
            p.latency_s,
            int(p.error),
            p.sample_rate,
        )
        for p in predictions
    ]


def bare(path: Path, table: str, rows: list[tuple[object, ...]], batch: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    migrate(conn)
    marks = ", ".join("?" * len(rows[0]))
    sql = f"INSERT OR IGNORE INTO {table} VALUES ({marks})"
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows[i : i + batch])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def ours(path: Path, kind: str, records: Sequence[object], batch: int) -> float:
    store = SQLiteStore(path)
    write: Callable[..., object] = store.write
    started = time.perf_counter()
    for i in range(0, len(records), batch):
        write(**{kind: records[i : i + batch]})
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--predictions", type=int, default=50_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    samples = make_samples(args.samples)
    predictions = make_predictions(args.predictions, args.features)
    cases = [
        ("samples", "samples", samples, sample_rows),
        (f"predictions, {args.features} features", "predictions", predictions, prediction_rows),
    ]  # fmt: skip
    print(
        "| records | n | bare executemany rows/s | Store.write rows/s | ratio "
        "| bare incl. building the rows rows/s | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, kind, records, to_rows in cases:
            started = time.perf_counter()
            rows = to_rows(records)  # type: ignore[arg-type]
            building = time.perf_counter() - started
            best_bare = best_ours = float("inf")
            for r in range(args.repeat):
                best_bare = min(
                    best_bare, bare(Path(tmp, f"b{kind}{r}.db"), kind, rows, args.batch)
                )
                best_ours = min(
                    best_ours, ours(Path(tmp, f"o{kind}{r}.db"), kind, records, args.batch)
                )
            n = len(records)
            print(
                f"| {label} | {n} | {n / best_bare:,.0f} | {n / best_ours:,.0f} | "
                f"{best_bare / best_ours:.0%} | {n / (best_bare + building):,.0f} | "
                f"{(best_bare + building) / best_ours:.0%} |"
            )


if __name__ == "__main__":
    main()
