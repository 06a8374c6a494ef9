"""`watchkeeper replay` against a plain pandas + scipy drift script, on the same files.

The data: 1.5 million predictions over 10 days (hourly windows), 16 features (12 numeric, 4
categorical), latency, error and fallback columns, a labels file (1-4 h late) and a labelled
reference of 100,000 rows. Ours runs every check (health, efficacy with late labels, drift of
every feature and of the prediction, missing values, out-of-range, schema) through the CLI.
The baseline reads the same CSV files with pandas and, per window and per feature, runs
scipy's `ks_2samp` (numeric) or `chi2_contingency` (categorical) against the raw reference:
drift only. With `--evidently-python PATH` (an interpreter with Evidently installed, kept out of
watchkeeper's environment), `evidently_drift.py` runs Evidently's data-drift preset over the
same hourly windows against the same reference; over `--evidently-windows K` evenly spaced
windows (default 24), its time for all windows extrapolated linearly from them (0: all windows).
Each runs in its own process; the table gives wall time and peak memory (max RSS).

    python benchmarks/replay_speed.py [--rows 1500000] [--reference-rows 100000] [--keep DIR]
        [--evidently-python /work/venv-evidently/bin/python] [--evidently-windows 24]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE = r"""
import sys
import numpy as np
import pandas as pd
from scipy import stats

predictions, reference = sys.argv[1], sys.argv[2]
frame = pd.read_csv(predictions)
ref = pd.read_csv(reference)
frame["t"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
features = [c for c in ref.columns if c not in ("prediction", "label")]
hour = frame["t"].dt.floor("h")
flagged = 0
windows = 0
for _, window in frame.groupby(hour):
    windows += 1
    p_values = []
    for f in features:
        if ref[f].dtype.kind in "fi":
            p_values.append(stats.ks_2samp(ref[f].dropna(), window[f].dropna()).pvalue)
        else:
            table = pd.concat(
                [ref[f].value_counts(), window[f].value_counts()], axis=1
            ).fillna(0)
            p_values.append(stats.chi2_contingency(table.T.to_numpy())[1])
    flagged += sum(p < 0.05 for p in p_values)
print(f"baseline: {windows} windows, {flagged} feature-windows with p < 0.05")
"""


def run(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB, and output of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({process.returncode}):\n{output}")
    return seconds, usage.ru_maxrss / 1024.0, output


def generate_files(where: Path, rows: int, reference_rows: int) -> int:
    from watchkeeper.detector.streams import StreamSpec, generate

    days = 10
    spec = StreamSpec(
        days=days,
        per_hour=rows / (days * 24),
        numeric=12,
        categorical=4,
        seed=7,
        reference_rows=reference_rows,
    )
    predictions, labels, reference = generate(spec)
    predictions.to_csv(where / "predictions.csv", index=False)
    labels.to_csv(where / "labels.csv", index=False)
    reference.to_csv(where / "reference.csv", index=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_500_000)
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument(
        "--keep",
        type=Path,
        help="write the files here and keep them (and reuse them if they are there)",
    )
    parser.add_argument(
        "--evidently-python", type=Path, help="a Python interpreter with Evidently installed"
    )
    parser.add_argument(
        "--evidently-windows",
        type=int,
        default=24,
        help="run Evidently on this many evenly spaced windows and extrapolate (0: all)",
    )
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate is not None:
        return generate_files(args.generate, args.rows, args.reference_rows)

    where = args.keep or Path(tempfile.mkdtemp(prefix="wk-replay-"))
    where.mkdir(parents=True, exist_ok=True)
    days = 10
    paths = {name: where / f"{name}.csv" for name in ("predictions", "labels", "reference")}
    try:
        if not all(p.exists() for p in paths.values()):
            # in a child process, so that its memory does not count in the runs' peak RSS
            started = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--generate",
                    str(where),
                    "--rows",
                    str(args.rows),
                    "--reference-rows",
                    str(args.reference_rows),
                ],
                check=True,
            )
            print(f"generated the files in {time.perf_counter() - started:.0f}s", file=sys.stderr)
        rows = sum(1 for _ in open(paths["predictions"], "rb")) - 1  # noqa: SIM115
        script = where / "baseline.py"
        script.write_text(BASELINE)
        watchkeeper = str(Path(sys.executable).with_name("watchkeeper"))
        ours_cmd = [
            watchkeeper,
            "replay",
            "--predictions",
            str(paths["predictions"]),
            "--labels",
            str(paths["labels"]),
            "--reference",
            str(paths["reference"]),
            "--out",
            str(where / "alerts.jsonl"),
            "--findings-out",
            str(where / "findings.jsonl"),
        ]
        base_cmd = [sys.executable, str(script), str(paths["predictions"]), str(paths["reference"])]
        ours = run(ours_cmd)
        base = run(base_cmd)
        evidently = None
        if args.evidently_python is not None:
            evidently_cmd = [
                str(args.evidently_python),
                str(Path(__file__).with_name("evidently_drift.py")),
                str(paths["predictions"]),
                str(paths["reference"]),
                "--windows",
                str(args.evidently_windows),
            ]
            evidently = run(evidently_cmd)
        with open(where / "findings.jsonl", encoding="utf-8") as lines:
            findings = sum(1 for _ in lines)
    finally:
        if args.keep is None:
            shutil.rmtree(where, ignore_errors=True)

    print(
        f"\n{rows} predictions, 16 features, {days} days, hourly windows, "
        f"reference {args.reference_rows} rows\n"
    )
    print("| run | what it computes | wall (s) | peak RSS (MB) |")
    print("|---|---|---|---|")
    print(
        f"| watchkeeper replay | all checks, {findings} findings, alert lifecycle | "
        f"{ours[0]:.1f} | {ours[1]:.0f} |"
    )
    print(
        f"| pandas + scipy script | ks_2samp / chi2_contingency per feature per window | "
        f"{base[0]:.1f} | {base[1]:.0f} |"
    )
    if evidently is None:
        print("| Evidently data-drift preset | not run (no --evidently-python) | - | - |")
    else:
        figures = json.loads(evidently[2].strip().splitlines()[-1])
        run_k, total = figures["windows_run"], figures["windows_total"]
        estimate = figures["extrapolated_seconds"] + evidently[0] - figures["measured_seconds"]
        how = (
            f"all {total} windows"
            if run_k == total
            else f"measured on {run_k} of {total} windows ({evidently[0]:.1f} s), "
            f"all windows extrapolated linearly"
        )
        print(
            f"| Evidently {figures['evidently']} DataDriftPreset | per-column drift, {how} | "
            f"{estimate:.1f} | {evidently[1]:.0f} |"
        )
    print(f"\nspeed-up vs the pandas + scipy script: {base[0] / ours[0]:.1f}x (target 5x)")
    if evidently is not None:
        print(f"speed-up vs Evidently: {estimate / ours[0]:.1f}x (target 30x)")
    print("\nreplay summary:\n")
    print(
        "\n".join(
            "    " + line for line in ours[2].splitlines() if not line.startswith("replay: model")
        )
    )
    print("    " + base[2].strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
