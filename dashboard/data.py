"""The tables and series the dashboard shows, computed from the Store and the alert list.

Pure functions with no Streamlit in sight, so that what the page shows is tested directly
against a real store, and the Streamlit script stays a thin layer of layout. Every function
only reads: the dashboard never writes to the store.

>>> choose_step(0.0, 6 * 3600.0)  # six hours in 180 two-minute buckets
120.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

import pandas as pd

from watchkeeper.alerting.records import Alert
from watchkeeper.config import Config
from watchkeeper.tsdb import PREDICTION_METRICS, PredictionMetric, Store

Status = Literal["critical", "warning", "stale", "ok"]
STATUSES: tuple[Status, ...] = ("critical", "warning", "stale", "ok")
"""Fleet statuses, worst first."""

FLEET_COLUMNS = (
    "model",
    "status",
    "firing",
    "last_seen",
    "throughput_per_min",
    "error_rate",
    "p95_latency_ms",
    "versions",
)
ALERT_COLUMNS = ("model", "check", "subject", "severity", "state", "since", "summary")
RESOLVED_COLUMNS = (*ALERT_COLUMNS, "resolved")
FINDING_COLUMNS = (
    "time",
    "check",
    "subject",
    "statistic",
    "value",
    "threshold",
    "severity",
    "summary",
)

# Bucket sizes a person reads easily; consecutive ones differ by at most 2.5x, so the smallest
# one at least span/300 always gives between 120 and 300 points.
_NICE_STEPS = (
    1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
    7200.0, 14400.0, 21600.0, 43200.0, 86400.0,
)  # fmt: skip
_MAX_POINTS = 300
_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
_STATE_RANK = {"firing": 0, "pending": 1, "resolved": 2}


def utc(ts: float | None) -> pd.Timestamp | None:
    """A Unix time as a time-zone aware UTC timestamp (None stays None)."""
    if ts is None:
        return None
    return pd.Timestamp(datetime.fromtimestamp(ts, tz=UTC))


def choose_step(start: float, end: float) -> float:
    """A readable bucket size that splits `[start, end)` into about 100–300 points."""
    span = max(end - start, 0.0)
    target = span / _MAX_POINTS
    for step in _NICE_STEPS:
        if step >= target:
            return step
    return math.ceil(target / 86400.0) * 86400.0


def _alert_model(alert: Alert) -> str:
    return alert.label_map.get("model", "")


def _firing_by_model(alerts: Sequence[Alert]) -> dict[str, list[Alert]]:
    firing: dict[str, list[Alert]] = {}
    for alert in alerts:
        if alert.state == "firing":
            firing.setdefault(_alert_model(alert), []).append(alert)
    return firing


def _window_value(
    store: Store, model: str, metric: PredictionMetric, start: float, end: float
) -> float:
    """The metric over the whole window as one bucket; NaN when the window has no data."""
    points = store.aggregate_predictions(model, metric, start, end, end - start)
    return points[0][1] if points else math.nan


def fleet_overview(
    store: Store, alerts: Sequence[Alert], config: Config, now: float
) -> pd.DataFrame:
    """One row per model the store knows: status, firing alerts, and its recent traffic.

    Status is `critical` when a critical alert fires for the model, else `warning` when any
    alert fires, else `stale` when it has been silent longer than its up-check staleness, else
    `ok`. Throughput (per minute), error rate and p95 latency cover the model's configured
    `window` up to `now`; they are NaN when that window holds no predictions.
    """
    firing = _firing_by_model(alerts)
    rows: list[dict[str, object]] = []
    for info in store.models():
        model_config = config.model(info.name)
        model_alerts = firing.get(info.name, [])
        status: Status
        if any(a.label_map.get("severity") == "critical" for a in model_alerts):
            status = "critical"
        elif model_alerts:
            status = "warning"
        elif now - info.last_seen > model_config.checks.up.staleness:
            status = "stale"
        else:
            status = "ok"
        window = model_config.window
        start = now - window
        count = _window_value(store, info.name, "count", start, now)
        p95 = _window_value(store, info.name, "latency_p95", start, now)
        rows.append(
            {
                "model": info.name,
                "status": status,
                "firing": len(model_alerts),
                "last_seen": utc(info.last_seen),
                "throughput_per_min": count * 60.0 / window,
                "error_rate": _window_value(store, info.name, "error_rate", start, now),
                "p95_latency_ms": p95 * 1000.0,
                "versions": ", ".join(info.versions),
            }
        )
    frame = pd.DataFrame(rows, columns=list(FLEET_COLUMNS))
    frame["firing"] = frame["firing"].astype("int64")
    for column in ("throughput_per_min", "error_rate", "p95_latency_ms"):
        frame[column] = frame[column].astype("float64")
    frame["last_seen"] = pd.to_datetime(frame["last_seen"], utc=True)
    return frame


def metric_series(
    store: Store, model: str, metric: PredictionMetric, start: float, end: float, step: float
) -> pd.DataFrame:
    """One model's metric over time, one row per `step`-long bucket: columns `time`, `value`.

    `count` becomes throughput per minute (over the part of the last bucket before `end` when
    `end` cuts it short), and a bucket without predictions is a throughput of zero, so every
    bucket of `[start, end)` has a row. The other metrics (`error_rate`,
    `latency_mean`, `latency_p95`) have rows only for buckets that hold predictions: a rate of
    nothing is unknown, not zero.
    """
    if metric not in PREDICTION_METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {PREDICTION_METRICS}")
    points = store.aggregate_predictions(model, metric, start, end, step)
    if metric == "count":
        per_bucket = {round((t - start) / step): v for t, v in points}
        buckets = math.ceil((end - start) / step)
        points = []
        for i in range(buckets):
            bucket_start = start + i * step
            # The last bucket may be cut short by `end` (typically "now"): dividing by its
            # real length keeps a steady stream from looking like a drop at the right edge.
            length = min(step, end - bucket_start)
            points.append((bucket_start, per_bucket.get(i, 0.0) * 60.0 / length))
    return pd.DataFrame(
        {
            "time": pd.to_datetime([t for t, _ in points], unit="s", utc=True),
            "value": pd.Series([v for _, v in points], dtype="float64"),
        }
    )


def _alert_row(alert: Alert) -> dict[str, object]:
    labels = alert.label_map
    since = alert.fired_at if alert.state != "pending" and alert.fired_at else alert.active_since
    return {
        "model": labels.get("model", ""),
        "check": labels.get("check", labels.get("alertname", "")),
        "subject": labels.get("subject", ""),
        "severity": labels.get("severity", ""),
        "state": alert.state,
        "since": utc(since),
        "summary": alert.summary,
        "resolved": utc(alert.resolved_at),
    }


def _alert_frame(rows: list[dict[str, object]], columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[*ALERT_COLUMNS, "resolved"])[list(columns)]
    for column in ("since", "resolved"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame.reset_index(drop=True)


def active_alerts(alerts: Sequence[Alert]) -> pd.DataFrame:
    """Firing then pending alerts, most severe first, then longest-standing first.

    `since` is when a firing alert fired, or when a pending alert's condition began.
    """
    live = [a for a in alerts if a.state in ("firing", "pending")]
    live.sort(
        key=lambda a: (
            _STATE_RANK[a.state],
            _SEVERITY_RANK.get(a.label_map.get("severity", ""), 3),
            a.fired_at if a.state == "firing" and a.fired_at else a.active_since,
        )
    )
    return _alert_frame([_alert_row(a) for a in live], ALERT_COLUMNS)


def resolved_alerts(alerts: Sequence[Alert], limit: int = 20) -> pd.DataFrame:
    """The `limit` most recently resolved alerts, newest first, with when they resolved."""
    done = [a for a in alerts if a.state == "resolved"]
    done.sort(key=lambda a: a.resolved_at or a.updated_at, reverse=True)
    return _alert_frame([_alert_row(a) for a in done[:limit]], RESOLVED_COLUMNS)


def breached_findings(
    store: Store, model: str, start: float, end: float, limit: int = 50
) -> pd.DataFrame:
    """The model's breached findings whose window ended in `[start, end)`, newest first."""
    found = store.findings(model, start, end, breached_only=True)[::-1][:limit]
    frame = pd.DataFrame(
        [
            {
                "time": utc(f.window_end),
                "check": f.check,
                "subject": f.subject,
                "statistic": f.statistic,
                "value": f.value,
                "threshold": f.threshold,
                "severity": f.severity,
                "summary": f.summary,
            }
            for f in found
        ],
        columns=list(FINDING_COLUMNS),
    )
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame
