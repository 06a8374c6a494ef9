"""The detector's verdicts on one model over a range, shaped for the Model page's panels.

A month of evaluations every few minutes is far more than a chart can show, so the page reads
one evaluation per time bucket (`sample_evaluations`: the newest verdict of each check in the
bucket) and derives every panel from that one sweep: the drift heat map, efficacy over time
with its interval and label coverage, and the data-quality lanes. Only the Store protocol is
used, so both backends serve it. Pure functions, no Streamlit.

>>> EFFICACY_COLUMNS[:4]
('time', 'metric', 'value', 'low')
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

import pandas as pd

from watchkeeper.config import EfficacyCheck
from watchkeeper.tsdb import Finding, Store

QUALITY_CHECKS = ("missing", "out_of_range", "schema")
"""The data-quality checks of the detector, in the order the page lists them."""

Sampled = list[tuple[float, Finding]]
"""`(bucket_start, finding)` pairs: the newest evaluation of each check per bucket."""


def sample_evaluations(
    store: Store, model: str, start: float, end: float, step: float, every: float
) -> Sampled:
    """The verdicts standing at each `step`-long bucket of `[start, end)`, per check.

    For each bucket it reads the findings of the last `min(step, every)` seconds before the
    bucket's end and keeps, per check, those of the newest window end among them (one
    evaluation: a verdict per subject). Reading one evaluation per bucket rather than every
    finding of the range keeps a month as cheap as an hour. Buckets without an evaluation
    have no pairs.
    """
    out: Sampled = []
    lookback = min(step, every) if every > 0 else step
    for i in range(math.ceil((end - start) / step)):
        bucket_start = start + i * step
        bucket_end = min(bucket_start + step, end)
        found = store.findings(model, max(bucket_end - lookback, bucket_start), bucket_end)
        newest: dict[str, float] = {}
        for f in found:
            newest[f.check] = max(newest.get(f.check, -math.inf), f.window_end)
        out.extend((bucket_start, f) for f in found if f.window_end == newest[f.check])
    return out


DRIFT_COLUMNS = ("time", "feature", "ks", "breached", "p_value", "window_end")


def drift_frame(sampled: Sampled) -> pd.DataFrame:
    """The drift verdicts of `sampled`: one row per bucket and feature with its statistic
    (`ks` is the drift statistic's value, KS by default), for the heat map."""
    rows = [
        {
            "time": bucket,
            "feature": f.subject,
            "ks": f.value,
            "breached": f.breached,
            "p_value": f.p_value,
            "window_end": f.window_end,
        }
        for bucket, f in sampled
        if f.check == "drift"
    ]
    frame = pd.DataFrame(rows, columns=list(DRIFT_COLUMNS))
    frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
    frame["window_end"] = pd.to_datetime(frame["window_end"], unit="s", utc=True)
    frame["ks"] = frame["ks"].astype("float64")
    frame["breached"] = frame["breached"].astype("bool")
    return frame


EFFICACY_COLUMNS = (
    "time",
    "metric",
    "value",
    "low",
    "high",
    "reference",
    "breached",
    "labels",
    "predictions",
    "coverage",
    "judged",
    "summary",
)


def _window_counts(
    store: Store, model: str, windows: set[tuple[float, float]]
) -> dict[tuple[float, float], float]:
    """How many predictions (stored rows, as the efficacy check counts them) each window has."""
    counts: dict[tuple[float, float], float] = {}
    for window in sorted(windows):
        start, end = window
        points = (
            store.aggregate_prediction_field(model, "weight", "count", start, end, end - start)
            if end > start
            else []
        )
        counts[window] = points[0][1] if points else 0.0
    return counts


def efficacy_frame(store: Store, model: str, sampled: Sampled, cfg: EfficacyCheck) -> pd.DataFrame:
    """Efficacy over time: per sampled evaluation and metric (accuracy, precision, recall, F1,
    ROC AUC, MAE, RMSE) its value, interval (`low`, `high`; NaN where the metric has none),
    the reference value it is compared with, and label coverage.

    `coverage` is the share of the window's predictions that had a label when the window was
    judged (the finding's label count over the window's predictions); `judged` says whether
    that was enough for a verdict (`min_coverage` and `min_labels` of the check). `time` is
    the judged window's end, which trails the evaluation by the label delay.
    """
    efficacy = [(b, f) for b, f in sampled if f.check == "efficacy"]
    counts = _window_counts(store, model, {(f.window_start, f.window_end) for _, f in efficacy})
    rows = []
    seen: set[tuple[str, float]] = set()
    for _, f in efficacy:
        if (f.subject, f.window_end) in seen:  # one window sampled by two buckets
            continue
        seen.add((f.subject, f.window_end))
        total = counts[(f.window_start, f.window_end)]
        coverage = f.n / total if total else 0.0
        low, high = f.interval if f.interval is not None else (math.nan, math.nan)
        rows.append(
            {
                "time": f.window_end,
                "metric": f.subject,
                "value": f.value,
                "low": low,
                "high": high,
                "reference": f.threshold,
                "breached": f.breached,
                "labels": f.n,
                "predictions": int(total),
                "coverage": coverage,
                "judged": total > 0 and coverage >= cfg.min_coverage and f.n >= cfg.min_labels,
                "summary": f.summary,
            }
        )
    frame = pd.DataFrame(rows, columns=list(EFFICACY_COLUMNS))
    frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
    for column in ("value", "low", "high", "reference", "coverage"):
        frame[column] = frame[column].astype("float64")
    for column in ("breached", "judged"):
        frame[column] = frame[column].astype("bool")
    return frame.sort_values(["metric", "time"]).reset_index(drop=True)


QUALITY_COLUMNS = ("time", "check", "subject", "lane", "value", "threshold", "breached", "summary")


def quality_frame(sampled: Sampled) -> pd.DataFrame:
    """The data-quality verdicts (`missing`, `out_of_range`, `schema`) of `sampled`, one row
    per evaluation and feature; `lane` names the check and feature for a timeline."""
    rows = [
        {
            "time": f.window_end,
            "check": f.check,
            "subject": f.subject,
            "lane": f"{f.check} ({f.subject})" if f.subject else f.check,
            "value": f.value,
            "threshold": f.threshold,
            "breached": f.breached,
            "summary": f.summary,
        }
        for _, f in sampled
        if f.check in QUALITY_CHECKS
    ]
    frame = pd.DataFrame(rows, columns=list(QUALITY_COLUMNS)).drop_duplicates(
        ["check", "subject", "time"]
    )
    frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
    frame["value"] = frame["value"].astype("float64")
    frame["breached"] = frame["breached"].astype("bool")
    return frame.reset_index(drop=True)


QUALITY_SUMMARY_COLUMNS = (
    "check",
    "subject",
    "breached_windows",
    "last_breached",
    "latest_value",
    "threshold",
    "latest",
)


def quality_summary(sampled: pd.DataFrame, breached: Sequence[Finding]) -> pd.DataFrame:
    """One row per data-quality check and feature: how many windows of the range breached
    (counted from every breached finding, not the sample), when last, and the latest verdict.

    `sampled` is `quality_frame`'s frame; features only seen breached still get a row.
    Breaching rows come first, most breaches first.
    """
    tally: dict[tuple[str, str], list[float]] = {}
    for f in breached:
        if f.check in QUALITY_CHECKS:
            tally.setdefault((f.check, f.subject), []).append(f.window_end)
    latest: dict[tuple[str, str], dict[Hashable, Any]] = {
        (str(row["check"]), str(row["subject"])): row
        for row in sampled.sort_values("time").to_dict("records")
    }
    rows = []
    for check, subject in sorted(set(tally) | set(latest)):
        ends = tally.get((check, subject), [])
        last = latest.get((check, subject))
        rows.append(
            {
                "check": check,
                "subject": subject,
                "breached_windows": len(ends),
                "last_breached": max(ends) if ends else None,
                "latest_value": last["value"] if last is not None else math.nan,
                "threshold": last["threshold"] if last is not None else math.nan,
                "latest": last["summary"] if last is not None else "",
            }
        )
    frame = pd.DataFrame(rows, columns=list(QUALITY_SUMMARY_COLUMNS))
    frame["last_breached"] = pd.to_datetime(frame["last_breached"], unit="s", utc=True)
    frame["latest_value"] = frame["latest_value"].astype("float64")
    frame["threshold"] = frame["threshold"].astype("float64")
    frame["breached_windows"] = frame["breached_windows"].astype("int64")
    order = QUALITY_CHECKS.index
    frame = frame.assign(_order=frame["check"].map(order))
    return (
        frame.sort_values(["breached_windows", "_order", "subject"], ascending=[False, True, True])
        .drop(columns="_order")
        .reset_index(drop=True)
    )
