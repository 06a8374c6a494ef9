"""How many models one detector process (one shard) keeps up with, and alerting's rate.

Fills a SQLite store with `--models` models sending `--rate` predictions per second each
(`--features` numeric features, labels for efficacy, fallbacks), over `--hours` of history,
then times the detector judging every window (all checks at their defaults: window 1 h,
every 5 min) the way `watchkeeper detect` does, and alerting processing the findings. From
the seconds per model-window it derives how many models one detector process judges within
one `every` while staying under half busy.

    python benchmarks/detector_capacity.py --models 10 --rate 5 --hours 3
"""

from __future__ import annotations

import argparse
import math
import random
import resource
import tempfile
import time
from pathlib import Path

from watchkeeper.alerting.manager import AlertManager
from watchkeeper.config import config_from_dict
from watchkeeper.detector.engine import Detector
from watchkeeper.tsdb import Label, Prediction, SQLiteStore


def fill(
    store: SQLiteStore, models: int, rate: float, start: float, end: float, features: int
) -> int:
    """Predictions of every model over `[start, end)`, and labels for half of them."""
    rng = random.Random(int(start))
    step = 1.0 / rate
    total = 0
    for m in range(models):
        model = f"model-{m:03d}"
        predictions: list[Prediction] = []
        labels: list[Label] = []
        t = start
        k = 0
        while t < end:
            pid = f"{model}-{t:.3f}"
            score = rng.random()
            predictions.append(
                Prediction(
                    model,
                    pid,
                    t,
                    {f"f{j}": rng.gauss(j, 1.0) for j in range(features)},
                    score,
                    "1",
                    latency_s=rng.lognormvariate(-3.5, 0.3),
                    error=rng.random() < 0.01,
                )
            )
            if k % 2 == 0:
                labels.append(Label(model, pid, int(rng.random() < score), t + 600))
            t += step
            k += 1
            if len(predictions) >= 5000:
                store.write(predictions=predictions, labels=labels)
                total += len(predictions)
                predictions, labels = [], []
        store.write(predictions=predictions, labels=labels)
        total += len(predictions)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--rate", type=float, default=5.0, help="predictions/s per model")
    parser.add_argument("--hours", type=float, default=3.0, help="history to judge")
    parser.add_argument("--features", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        config = config_from_dict(
            {
                "storage": {"path": tmp},
                "detector": {"defaults": {"window": "1h", "every": "5m"}},
                "alerting": {"console": False},
            }
        )
        store = SQLiteStore(Path(tmp) / "watchkeeper.db")
        end = math.floor(time.time() / 300) * 300
        began = time.perf_counter()
        rows = fill(
            store, args.models, args.rate, end - args.hours * 3600, end - 300, args.features
        )
        fill_s = time.perf_counter() - began

        # Catch-up: a fresh detector judges all history (windows share reads).
        detector = Detector(store, config)
        began = time.perf_counter()
        findings = detector.run_once(end - 300)
        catch_up_s = time.perf_counter() - began
        windows = round(args.hours * 3600 / 300) - 2
        # Live: five more minutes of traffic arrive; one window per model becomes due.
        fill(store, args.models, args.rate, end - 300, end, args.features)
        began = time.perf_counter()
        live = detector.run_once(end)
        detect_s = time.perf_counter() - began

        alerts = AlertManager(config, Path(tmp) / "alerts.db")
        began = time.perf_counter()
        transitions = alerts.process(findings + live)
        alert_s = time.perf_counter() - began
        alerts.close()
        store.close()
        findings += live

    per_model_window = detect_s / args.models
    per_window_rows = args.rate * 3600
    print(f"store filled with {rows:,} predictions in {fill_s:.1f} s")
    print()
    print("| what | figure |")
    print("|---|---|")
    print(
        f"| catch-up: {args.models} models × {windows} windows of history | {catch_up_s:.1f} s "
        f"({catch_up_s / (args.models * windows) * 1000:.0f} ms per model-window) |"
    )
    print(
        f"| predictions per 1 h window | {per_window_rows:,.0f} "
        f"({args.rate:g}/s, {args.features} features, half labelled) |"
    )
    print(
        f"| live: one new window of every model, all checks | {detect_s:.2f} s "
        f"({len(live):,} findings; {per_model_window * 1000:.0f} ms per model) |"
    )
    print(
        f"| one detector process, every 5 min, ≤ 50 % busy | "
        f"{150 / per_model_window:,.0f} models at this rate |"
    )
    print(
        f"| alerting: findings processed | {len(findings) / alert_s:,.0f}/s "
        f"({len(transitions)} transitions) |"
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"| peak RSS (store fill included) | {peak_mb:,.0f} MB |")


if __name__ == "__main__":
    main()
