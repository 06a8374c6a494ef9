"""The tables and series the dashboard shows, computed from the Store and the alert list.

Pure functions with no Streamlit in sight, so that what the page shows is tested directly
against a real store, and the Streamlit script stays a thin layer of layout. Every function
only reads: the dashboard never writes to the store.

>>> choose_step(0.0, 6 * 3600.0)  # six hours in 180 two-minute buckets
120.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import pandas as pd

from watchkeeper.alerting.records import Alert
from watchkeeper.config import Config
from watchkeeper.tsdb import PREDICTION_METRICS, Finding, PredictionMetric, Store

from . import evaluations

Status = Literal["critical", "warning", "stale", "ok"]
STATUSES: tuple[Status, ...] = ("critical", "warning", "stale", "ok")
"""Fleet statuses, worst first."""

FILTER_LABELS = ("team", "environment")
"""Model labels (from each model's `labels` in the configuration) the fleet can be filtered by."""

FLEET_COLUMNS = (
    "model",
    "status",
    "firing",
    "pending",
    "last_seen",
    "throughput_per_min",
    "error_rate",
    "fallback_rate",
    "p95_latency_ms",
    "drift_score",
    "drift_feature",
    "versions",
    *FILTER_LABELS,
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


def _by_model(alerts: Sequence[Alert], state: str) -> dict[str, list[Alert]]:
    found: dict[str, list[Alert]] = {}
    for alert in alerts:
        if alert.state == state:
            found.setdefault(_alert_model(alert), []).append(alert)
    return found


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
    `ok`. Throughput (per minute), error rate, fallback rate and p95 latency cover the model's
    configured `window` up to `now`; they are NaN when that window holds no predictions (the
    fallback rate also when the model never reported a fallback). `drift_score` is
    the largest KS statistic among the model's latest drift findings (`latest_drift`), with
    the feature it belongs to; the label columns come from the model's configured `labels`.
    """
    firing = _by_model(alerts, "firing")
    pending = _by_model(alerts, "pending")
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
        drift_score, drift_feature = latest_drift(store, info.name, now, model_config.window)
        rows.append(
            {
                "model": info.name,
                "status": status,
                "firing": len(model_alerts),
                "pending": len(pending.get(info.name, [])),
                "last_seen": utc(info.last_seen),
                "throughput_per_min": count * 60.0 / window,
                "error_rate": _window_value(store, info.name, "error_rate", start, now),
                "fallback_rate": _window_fallback_rate(store, info.name, start, now),
                "p95_latency_ms": p95 * 1000.0,
                "drift_score": drift_score,
                "drift_feature": drift_feature,
                "versions": ", ".join(info.versions),
                **{key: model_config.labels.get(key, "") for key in FILTER_LABELS},
            }
        )
    frame = pd.DataFrame(rows, columns=list(FLEET_COLUMNS))
    for column in ("firing", "pending"):
        frame[column] = frame[column].astype("int64")
    for column in (
        "throughput_per_min",
        "error_rate",
        "fallback_rate",
        "p95_latency_ms",
        "drift_score",
    ):
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


FALLBACK_SERIES = "fallbacks"
"""The sample series the client library reports fallbacks in (one sample per fallback)."""


def fallback_series(
    store: Store, model: str, start: float, end: float, step: float
) -> pd.DataFrame:
    """Fallbacks per prediction per `step`-long bucket (`time`, `value`), as the detector's
    `fallback_rate` check counts them: fallback samples over stored predictions. Only buckets
    with predictions have rows; empty when the model never reported a fallback."""
    rows: list[tuple[float, float]] = []
    if FALLBACK_SERIES in store.series(model):
        fallbacks = dict(store.aggregate_samples(model, FALLBACK_SERIES, "sum", start, end, step))
        counts = store.aggregate_prediction_field(model, "weight", "count", start, end, step)
        rows = [(t, fallbacks.get(t, 0.0) / n) for t, n in counts if n > 0]
    return pd.DataFrame(
        {
            "time": pd.to_datetime([t for t, _ in rows], unit="s", utc=True),
            "value": pd.Series([v for _, v in rows], dtype="float64"),
        }
    )


def _window_fallback_rate(store: Store, model: str, start: float, end: float) -> float:
    """Fallbacks per prediction over the whole window (one bucket); NaN without predictions
    or when the model never reported a fallback."""
    values = fallback_series(store, model, start, end, end - start)["value"]
    return float(values.iloc[0]) if len(values) else math.nan


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


def findings_frame(found: Sequence[Finding]) -> pd.DataFrame:
    """Findings as a table (`FINDING_COLUMNS`), in the order given."""
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


def breached_findings(
    store: Store, model: str, start: float, end: float, limit: int = 50
) -> pd.DataFrame:
    """The model's breached findings whose window ended in `[start, end)`, newest first."""
    return findings_frame(store.findings(model, start, end, breached_only=True)[::-1][:limit])


def latest_drift(store: Store, model: str, now: float, lookback: float) -> tuple[float, str]:
    """The worst KS statistic among the model's newest drift findings, and its feature.

    "Newest" is the latest window end with drift findings in `[now - lookback, now]`: one
    verdict per feature from the same evaluation. `(nan, "")` when there is none (drift not
    checked yet, or the model has no numeric features).
    """
    drift = [f for f in store.findings(model, now - lookback, None) if f.check == "drift"]
    if not drift:
        return math.nan, ""
    newest = max(f.window_end for f in drift)
    worst = max((f for f in drift if f.window_end == newest), key=lambda f: f.value)
    return worst.value, worst.subject


DRIFT_COLUMNS = evaluations.DRIFT_COLUMNS


def drift_matrix(
    store: Store, model: str, start: float, end: float, step: float, every: float
) -> pd.DataFrame:
    """The drift verdict standing at each `step`-long bucket of `[start, end)`, per feature.

    For each bucket, the newest drift evaluation among the findings of the last
    `min(step, every)` seconds before the bucket's end (`evaluations.sample_evaluations`): one
    row per feature with its KS statistic. Reading one evaluation per bucket (not every
    finding of a long range) keeps a month of five-minute evaluations as cheap as an hour;
    with overlapping windows the KS statistic moves smoothly, so a sampled verdict per bucket
    is what a heat map can show anyway. Buckets without an evaluation have no rows.
    """
    return evaluations.drift_frame(
        evaluations.sample_evaluations(store, model, start, end, step, every)
    )


TREND_COLUMNS = (
    "throughput_trend",
    "error_rate_trend",
    "fallback_trend",
    "p95_trend",
    "drift_trend",
)


def fleet_trends(
    store: Store, model: str, start: float, end: float, every: float, points: int = 24
) -> dict[str, list[float]]:
    """Small trends for one fleet row: `points` values each of throughput (per minute), error
    rate, fallback rate, p95 latency (ms) and worst drift score over `[start, end)`.

    Buckets without predictions are a throughput of zero and are left out of the rates (a
    rate of nothing is unknown); buckets without a drift evaluation are left out of the drift
    trend. The fallback trend is empty when the model never reported a fallback.
    """
    step = (end - start) / points
    counts = dict(store.aggregate_predictions(model, "count", start, end, step))
    errors = store.aggregate_predictions(model, "error_rate", start, end, step)
    p95 = store.aggregate_predictions(model, "latency_p95", start, end, step)
    drift = drift_matrix(store, model, start, end, step, every)
    worst = drift.groupby("time")["ks"].max() if not drift.empty else pd.Series(dtype="float64")
    return {
        "throughput_trend": [
            counts.get(start + i * step, 0.0) * 60.0 / step for i in range(points)
        ],
        "error_rate_trend": [v for _, v in errors],
        "fallback_trend": fallback_series(store, model, start, end, step)["value"].tolist(),
        "p95_trend": [v * 1000.0 for _, v in p95],
        "drift_trend": [float(v) for v in worst.tolist()],
    }


VERSION_COLUMNS = ("version", "first", "last", "predictions")


def version_spans(store: Store, model: str, start: float, end: float) -> pd.DataFrame:
    """When each version of the model served predictions in `[start, end)`: first and last
    prediction time and how many (sample rates applied), in order of first appearance.

    A new version's `first` is where a deployment shows on the time axis.
    """
    spans: dict[str, list[float]] = {}
    for p in store.predictions(model, start, end):
        span = spans.get(p.version)
        weight = 1.0 / p.sample_rate if 0.0 < p.sample_rate <= 1.0 else 1.0
        if span is None:
            spans[p.version] = [p.timestamp, p.timestamp, weight]
        else:
            span[1] = p.timestamp
            span[2] += weight
    frame = pd.DataFrame(
        [
            {"version": version or "(none)", "first": first, "last": last, "predictions": n}
            for version, (first, last, n) in spans.items()
        ],
        columns=list(VERSION_COLUMNS),
    )
    for column in ("first", "last"):
        frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
    return frame


EPISODE_COLUMNS = (
    "incident",
    "model",
    "check",
    "subject",
    "lane",
    "severity",
    "start",
    "end",
    "findings",
    "peak",
    "threshold",
    "statistic",
    "summary",
)
INCIDENT_COLUMNS = ("incident", "model", "start", "end", "severity", "checks", "findings")


def _worst(severities: Sequence[str]) -> str:
    return min(severities, key=lambda s: _SEVERITY_RANK.get(s, 3), default="")


@dataclass
class _Episode:
    model: str
    check: str
    subject: str
    run: list[Finding]
    incident: str = ""

    @property
    def start(self) -> float:
        return self.run[0].window_end

    @property
    def end(self) -> float:
        return self.run[-1].window_end

    @property
    def lane(self) -> str:
        return f"{self.check} ({self.subject})" if self.subject else self.check

    @property
    def severity(self) -> str:
        return _worst([f.severity for f in self.run])

    def row(self) -> dict[str, object]:
        peak = max(self.run, key=lambda f: abs(f.value - f.threshold))
        return {
            "incident": self.incident,
            "model": self.model,
            "check": self.check,
            "subject": self.subject,
            "lane": self.lane,
            "severity": self.severity,
            "start": self.start,
            "end": self.end,
            "findings": len(self.run),
            "peak": peak.value,
            "threshold": peak.threshold,
            "statistic": peak.statistic,
            "summary": peak.summary,
        }


def incidents(
    breached: Sequence[Finding], gaps: Mapping[str, float], default_gap: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Breached findings grouped into episodes, and episodes of one model into incidents.

    An episode is a run of breached findings of one check and subject whose window ends are at
    most the model's gap apart (`gaps[model]`, else `default_gap`; about two evaluation
    intervals, so one healthy window in between does not split it). Episodes of one model that
    overlap or touch within the gap form one incident, so a latency spike and a drift onset at
    the same time read as one incident. Returns `(incidents, episodes)`, newest incident first;
    each episode names its incident (`#1` is the oldest). Episode times are window ends.
    """
    runs: dict[tuple[str, str, str], list[_Episode]] = {}
    for f in sorted(breached, key=lambda f: f.window_end):
        series = runs.setdefault((f.model, f.check, f.subject), [])
        if series and f.window_end - series[-1].end <= gaps.get(f.model, default_gap):
            series[-1].run.append(f)
        else:
            series.append(_Episode(f.model, f.check, f.subject, [f]))
    episodes = sorted(
        (e for series in runs.values() for e in series), key=lambda e: (e.model, e.start)
    )
    groups: list[list[_Episode]] = []
    end = -math.inf
    for episode in episodes:
        gap = gaps.get(episode.model, default_gap)
        if not groups or groups[-1][0].model != episode.model or episode.start > end + gap:
            groups.append([])
            end = -math.inf
        groups[-1].append(episode)
        end = max(end, episode.end)
    groups.sort(key=lambda g: g[0].start)
    rows: list[dict[str, object]] = []
    for number, group in enumerate(groups, start=1):
        for episode in group:
            episode.incident = f"#{number}"
        rows.append(
            {
                "incident": f"#{number}",
                "model": group[0].model,
                "start": group[0].start,
                "end": max(e.end for e in group),
                "severity": _worst([e.severity for e in group]),
                "checks": ", ".join(sorted({e.lane for e in group})),
                "findings": sum(len(e.run) for e in group),
            }
        )
    incident_frame = pd.DataFrame(rows[::-1], columns=list(INCIDENT_COLUMNS))
    episode_frame = pd.DataFrame([e.row() for e in episodes], columns=list(EPISODE_COLUMNS))
    for frame in (incident_frame, episode_frame):
        for column in ("start", "end"):
            frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
    return incident_frame, episode_frame


SPAN_COLUMNS = ("model", "rule", "severity", "state", "start", "end", "summary")


def alert_spans(alerts: Sequence[Alert], now: float) -> pd.DataFrame:
    """Each alert as a span for a timeline: from when its condition began to when it resolved
    (or `now` while it is still pending or firing)."""
    rows = []
    for alert in alerts:
        labels = alert.label_map
        check = labels.get("check", labels.get("alertname", ""))
        subject = labels.get("subject", "")
        end = alert.resolved_at if alert.state == "resolved" and alert.resolved_at else now
        rows.append(
            {
                "model": labels.get("model", ""),
                "rule": f"{check} ({subject})" if subject else check,
                "severity": labels.get("severity", ""),
                "state": alert.state,
                "start": alert.active_since,
                "end": max(end, alert.active_since),
                "summary": alert.summary,
            }
        )
    frame = pd.DataFrame(rows, columns=list(SPAN_COLUMNS))
    for column in ("start", "end"):
        frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
    return frame
