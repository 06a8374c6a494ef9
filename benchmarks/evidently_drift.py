"""Evidently's data-drift preset over hourly windows of a predictions file, against a reference.

Run by `replay_speed.py --evidently-python PATH` in an interpreter that has Evidently
installed (kept out of watchkeeper's own environment: it pulls in a large dependency tree).
Reads the same CSV files with pandas, builds Evidently's reference `Dataset` once, then runs
`Report([DataDriftPreset()])` on every hourly window (or on `--windows K` of them, evenly
spaced, when a full run would take too long) over the reference's feature columns (the
columns the pandas + scipy baseline tests too). Prints one JSON line with the timings.

    python benchmarks/evidently_drift.py PREDICTIONS.csv REFERENCE.csv [--windows K]
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("predictions")
    parser.add_argument("reference")
    parser.add_argument(
        "--windows", type=int, default=0, help="run only this many windows, evenly spaced"
    )
    args = parser.parse_args(argv)

    import evidently
    import numpy as np
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    imported = time.perf_counter()
    frame = pd.read_csv(args.predictions)
    ref = pd.read_csv(args.reference)
    features = [c for c in ref.columns if c not in ("prediction", "label")]
    numeric = [c for c in features if ref[c].dtype.kind in "fi"]
    categorical = [c for c in features if c not in numeric]
    hour = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601").dt.floor("h")
    read = time.perf_counter() - imported

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    reference = Dataset.from_pandas(ref[features], data_definition=definition)
    groups = [window for _, window in frame[features].groupby(hour)]
    total = len(groups)
    chosen = list(range(total))
    if 0 < args.windows < total:
        chosen = sorted({int(i) for i in np.linspace(0, total - 1, args.windows).round()})
    report = Report([DataDriftPreset()])
    drifted = 0
    window_started = time.perf_counter()
    for done, i in enumerate(chosen, 1):
        current = Dataset.from_pandas(groups[i], data_definition=definition)
        snapshot = report.run(current_data=current, reference_data=reference)
        for metric in snapshot.dict()["metrics"]:
            if "DriftedColumnsCount" in str(metric.get("metric_name", "")):
                drifted += int(metric["value"]["count"])
        print(f"evidently: {done}/{len(chosen)} windows", file=sys.stderr, flush=True)
    window_seconds = time.perf_counter() - window_started
    per_window = window_seconds / max(1, len(chosen))
    measured = time.perf_counter() - started
    print(
        json.dumps(
            {
                "evidently": evidently.__version__,
                "windows_total": total,
                "windows_run": len(chosen),
                "drifted_columns": drifted,
                "read_seconds": read,
                "window_seconds": window_seconds,
                "per_window_seconds": per_window,
                "measured_seconds": measured,
                # the windows not run, at the measured per-window cost
                "extrapolated_seconds": measured + per_window * (total - len(chosen)),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
