"""InfluxDB 2.x backend (also Cloud, and 1.8+/3.x through their v2 API) of the `Store` protocol.

Writes are synchronous and bounded, never a background batching writer: each `write` validates
the whole batch, turns it into line protocol and POSTs it in one request, retrying connection
errors, timeouts, 429 and 5xx answers at most `max_retries` times and never past
`max_retry_time_s` (each attempt's timeout is cut to what is left). When it gives up it logs,
counts the failure in `watchkeeper_influx_write_failures_total{reason}` and raises
`InfluxWriteError`, so the caller (the ingest API answers 503) decides; nothing is buffered,
so `close()` has nothing to flush and returns at once. A default `WriteOptions` batching
writer pointed at a dead server was seen to block `close()` for over 200 s; this one cannot.

Reads are Flux queries (see `flux.py`); the point layout is in `influx_schema.py`.

A retried batch is idempotent: the same points (same tags and nanosecond time) overwrite
themselves. InfluxDB cannot tell a new point from a repeat without a read, so the counts in
`WriteResult` are of records sent, not of records new.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient as _InfluxDBClient
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService as _WriteService
from prometheus_client import CollectorRegistry, Counter

from . import flux
from .aggregate import check_window
from .influx_schema import (
    FEATURES,
    FINDINGS,
    LABELS,
    NS,
    PREDICTIONS,
    SAMPLES,
    check_for_line_protocol,
    decode_text,
    encode_text,
    features_by_id,
    finding_from_row,
    from_ns,
    label_from_row,
    prediction_from_row,
    row_seconds,
    sample_from_row,
    to_lines,
    to_ns,
)
from .records import Finding, Label, ModelInfo, Prediction, Sample
from .sqlite import FRAME_COLUMNS
from .store import RETENTION_KINDS, PredictionMetric, RetentionKind, Stat, WriteResult
from .validation import DEFAULT_LIMITS, Limits, validate_batch

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

_LABEL_IDS_PER_QUERY = 200

_METRICS: dict[str, tuple[str, Stat]] = {
    "count": ("weight", "sum"),
    "error_rate": ("error", "mean"),
    "latency_mean": ("latency_s", "mean"),
    "latency_p95": ("latency_s", "p95"),
}

# measurements a retention kind covers, each with a field every one of its points has
_RETENTION: dict[str, tuple[tuple[str, str], ...]] = {
    "samples": ((SAMPLES, "value"),),
    "predictions": ((PREDICTIONS, "prediction_id"), (FEATURES, "prediction_id")),
    "labels": ((LABELS, "prediction_id"),),
    "findings": ((FINDINGS, "value"),),
    "rollups": (),
}

# influxdb-client ships `py.typed` but leaves most of its functions unannotated; going through
# `Any` keeps mypy strict for this module without an ignore at every call.
InfluxDBClient: Any = _InfluxDBClient
WriteService: Any = _WriteService


class InfluxWriteError(RuntimeError):
    """A batch InfluxDB did not take; `reason` is the counter label, `final` if not retryable."""

    def __init__(self, message: str, *, reason: str, final: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.final = final


class InfluxMetrics:
    """The write counters of one store, on the registry given (a private one by default)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.failures = Counter(
            "watchkeeper_influx_write_failures",
            "Batches InfluxDB did not take after all retries, by reason",
            ["reason"],
            registry=registry,
        )
        self.retries = Counter(
            "watchkeeper_influx_write_retries",
            "Write attempts that failed and were retried",
            registry=registry,
        )
        self.points = Counter(
            "watchkeeper_influx_points_written",
            "Points InfluxDB acknowledged",
            registry=registry,
        )


class InfluxStore:
    """A `Store` on an InfluxDB 2.x bucket.

    `timeout_s` bounds one HTTP attempt (writes and queries); `max_retries` and
    `max_retry_time_s` bound a write as a whole: it returns or raises within about
    `max_retry_time_s` plus one attempt's connect time, however the server behaves.
    Metrics go to `registry` (a private `CollectorRegistry` unless given); read them back
    through `store.registry`.
    """

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        *,
        timeout_s: float = 10.0,
        max_retries: int = 3,
        max_retry_time_s: float = 30.0,
        retry_interval_s: float = 0.5,
        max_retry_delay_s: float = 5.0,
        gzip: bool = False,
        limits: Limits = DEFAULT_LIMITS,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if max_retries < 0:
            raise ValueError(f"max_retries must not be negative, got {max_retries}")
        if max_retry_time_s < 0 or retry_interval_s < 0 or max_retry_delay_s < 0:
            raise ValueError("retry times must not be negative")
        self.url = url
        self.org = org
        self.bucket = bucket
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_retry_time_s = max_retry_time_s
        self.retry_interval_s = retry_interval_s
        self.max_retry_delay_s = max_retry_delay_s
        self.gzip = gzip
        self.limits = limits
        self.registry = registry if registry is not None else CollectorRegistry()
        self._metrics = InfluxMetrics(self.registry)
        self._closed = threading.Event()
        # retries=False: urllib3 never retries on its own, our loop does, within our bounds.
        self._client = InfluxDBClient(
            url=url,
            token=token,
            org=org,
            timeout=int(timeout_s * 1000),
            enable_gzip=gzip,
            retries=False,
        )
        self._write_service = WriteService(self._client.api_client)
        self._query_api = self._client.query_api()

    def __repr__(self) -> str:
        return f"InfluxStore(url={self.url!r}, org={self.org!r}, bucket={self.bucket!r}, token=***)"

    # --- writing ---------------------------------------------------------------------------

    def write(
        self,
        *,
        samples: Sequence[Sample] = (),
        predictions: Sequence[Prediction] = (),
        labels: Sequence[Label] = (),
        findings: Sequence[Finding] = (),
    ) -> WriteResult:
        """Validate the batch, then send it in one request; raise `InfluxWriteError` on failure.

        A bad record raises `InvalidRecord` (a `ValueError` naming `kind[row].field`) before
        anything is sent.
        """
        validate_batch(
            samples=samples,
            predictions=predictions,
            labels=labels,
            findings=findings,
            limits=self.limits,
        )
        check_for_line_protocol(
            samples=samples, predictions=predictions, labels=labels, findings=findings
        )
        lines = to_lines(samples=samples, predictions=predictions, labels=labels, findings=findings)
        if lines:
            self._send("\n".join(lines).encode("utf-8"), len(lines))
        unique_predictions = len({(p.model, p.prediction_id) for p in predictions})
        return WriteResult(len(samples), unique_predictions, len(labels), len(findings))

    def _send(self, body: bytes, n_points: int) -> None:
        if self._closed.is_set():
            raise InfluxWriteError("store is closed", reason="closed", final=True)
        deadline = time.monotonic() + self.max_retry_time_s
        delay = self.retry_interval_s
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            timeout_s = max(0.05, min(self.timeout_s, remaining))
            try:
                self._write_service.post_write(
                    org=self.org,
                    bucket=self.bucket,
                    body=body,
                    precision="ns",
                    content_type="text/plain; charset=utf-8",
                    _request_timeout=timeout_s * 1000,
                )
            except ApiException as exc:
                status = int(exc.status or 0)
                reason = f"http_{status}"
                retryable = status == 429 or status >= 500
                message = f"HTTP {status}: {_short(exc.body or exc.reason)}"
                wait = _retry_after(exc.headers) or delay
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                refused = isinstance(exc, urllib3.exceptions.NewConnectionError)  # a subclass
                timed_out = isinstance(exc, TimeoutError | urllib3.exceptions.TimeoutError)
                reason = "timeout" if timed_out and not refused else "connection"
                retryable = True
                message = f"{type(exc).__name__}: {exc}"
                wait = delay
            else:
                self._metrics.points.inc(n_points)
                return
            wait = min(wait, self.max_retry_delay_s)
            left = deadline - time.monotonic()
            if not retryable or attempt > self.max_retries or wait >= left:
                break
            logger.warning(
                "influx: write of %d points to %s failed (attempt %d), retrying in %.1f s: %s",
                n_points,
                self.url,
                attempt,
                wait,
                message,
            )
            self._metrics.retries.inc()
            if self._closed.wait(wait):
                reason, retryable = "closed", False
                break
            delay = min(delay * 2, self.max_retry_delay_s)
        self._metrics.failures.labels(reason).inc()
        logger.error(
            "influx: gave up writing %d points to %s after %d attempt%s: %s",
            n_points,
            self.url,
            attempt,
            "s" * (attempt != 1),
            message,
        )
        raise InfluxWriteError(
            f"InfluxDB at {self.url} did not take {n_points} points after {attempt} "
            f"attempt{'s' * (attempt != 1)}: {message}",
            reason=reason,
            final=not retryable,
        )

    # --- reading ---------------------------------------------------------------------------

    def _rows(self, query: str) -> list[dict[str, Any]]:
        tables = self._query_api.query(query, org=self.org)
        return [record.values for table in tables for record in table.records]

    def models(self) -> list[ModelInfo]:
        spans: dict[str, tuple[int, int]] = {}
        versions: dict[str, dict[str, int]] = {}
        for row in self._rows(flux.models(self.bucket)):
            model, ns = str(row["model"]), int(row["ns"])
            low, high = spans.get(model, (ns, ns))
            spans[model] = (min(low, ns), max(high, ns))
            version = row.get("version")
            if version:
                known = versions.setdefault(model, {})
                known[str(version)] = min(known.get(str(version), ns), ns)
        return [
            ModelInfo(
                name=model,
                versions=tuple(
                    v for v, _ in sorted(versions.get(model, {}).items(), key=lambda x: x[1])
                ),
                first_seen=from_ns(low),
                last_seen=from_ns(high),
            )
            for model, (low, high) in sorted(spans.items())
        ]

    def predictions(self, model: str, start: float, end: float) -> list[Prediction]:
        start_ns, stop_ns = to_ns(start), to_ns(end)
        if stop_ns <= start_ns:
            return []
        features = features_by_id(self._rows(flux.features(self.bucket, model, start_ns, stop_ns)))
        found: list[Prediction] = []
        seen: set[str] = set()
        for row in self._rows(flux.predictions(self.bucket, model, start_ns, stop_ns)):
            prediction_id = decode_text(str(row.get("prediction_id") or ""))
            if prediction_id in seen:  # a repeat written at another time: keep the oldest
                continue
            seen.add(prediction_id)
            found.append(prediction_from_row(model, row, features.get(prediction_id, {})))
        return found

    def labels(self, model: str, prediction_ids: Sequence[str]) -> dict[str, Label]:
        ids = list(dict.fromkeys(prediction_ids))
        found: dict[str, Label] = {}
        for i in range(0, len(ids), _LABEL_IDS_PER_QUERY):
            chunk = [encode_text(x) for x in ids[i : i + _LABEL_IDS_PER_QUERY]]
            for row in self._rows(flux.labels(self.bucket, model, chunk)):
                label = label_from_row(model, row)
                found.setdefault(label.prediction_id, label)  # oldest first: keep the first
        return found

    def samples(self, model: str, name: str, start: float, end: float) -> list[Sample]:
        start_ns, stop_ns = to_ns(start), to_ns(end)
        if stop_ns <= start_ns:
            return []
        rows = self._rows(flux.samples(self.bucket, model, name, start_ns, stop_ns))
        return [sample_from_row(model, name, row) for row in rows]

    def _aggregated(self, query: str, start: float, step: float) -> list[tuple[float, float]]:
        start_ns, step_ns = to_ns(start), to_ns(step)
        result: list[tuple[float, float]] = []
        for row in self._rows(query):
            bucket = round((int(row["ns"]) - start_ns) / step_ns)
            result.append((start + bucket * step, float(row["_value"])))
        return sorted(result)

    def aggregate_predictions(
        self, model: str, metric: PredictionMetric, start: float, end: float, step: float
    ) -> list[tuple[float, float]]:
        spec = _METRICS.get(metric)
        if spec is None:
            raise ValueError(f"unknown metric {metric!r}; expected one of {tuple(_METRICS)}")
        return self.aggregate_prediction_field(model, spec[0], spec[1], start, end, step)

    def aggregate_prediction_field(
        self, model: str, field: str, stat: Stat, start: float, end: float, step: float
    ) -> list[tuple[float, float]]:
        """Computed by the server (`aggregateWindow`); quantiles use Flux's `exact_mean`."""
        check_window(start, end, step)
        start_ns, stop_ns = to_ns(start), to_ns(end)
        query = flux.aggregate_prediction_field(
            self.bucket, model, field, stat, start_ns, stop_ns, to_ns(step)
        )
        return [] if stop_ns <= start_ns else self._aggregated(query, start, step)

    def aggregate_samples(
        self, model: str, name: str, stat: Stat, start: float, end: float, step: float
    ) -> list[tuple[float, float]]:
        check_window(start, end, step)
        start_ns, stop_ns = to_ns(start), to_ns(end)
        query = flux.aggregate_samples(
            self.bucket, model, name, stat, start_ns, stop_ns, to_ns(step)
        )
        return [] if stop_ns <= start_ns else self._aggregated(query, start, step)

    def prediction_frame(self, model: str, start: float, end: float) -> pd.DataFrame:
        """Predictions of `[start, end)` with their labels, the same columns as SQLite's."""
        import pandas as pd  # lazily, as in the SQLite store

        predictions = self.predictions(model, start, end)
        labels = self.labels(model, [p.prediction_id for p in predictions])
        rows = []
        for p in predictions:
            label = labels.get(p.prediction_id)
            rows.append(
                (
                    p.prediction_id,
                    p.timestamp,
                    p.version,
                    p.output,
                    p.latency_s,
                    p.error,
                    p.sample_rate,
                    None if label is None else label.label,
                    None if label is None else label.timestamp,
                )
            )
        base = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
        base["latency_s"] = base["latency_s"].astype("float64")
        base["label_timestamp"] = base["label_timestamp"].astype("float64")
        base["error"] = base["error"].astype("bool")
        features = pd.DataFrame.from_records([p.features for p in predictions], index=base.index)
        features.columns = [
            f"features.{c}" if c in FRAME_COLUMNS else str(c) for c in features.columns
        ]
        return pd.concat([base, features], axis=1)

    def series(self, model: str) -> list[str]:
        return sorted({str(row["_value"]) for row in self._rows(flux.series(self.bucket, model))})

    def retention(self, kind: RetentionKind, older_than: float) -> int:
        """Delete `kind` points before `older_than` through the delete API; return how many.

        Prefer a retention period on the bucket: InfluxDB drops whole shards cheaply, while
        deletes are slow tombstones. There are no roll-ups here (`rollups` deletes nothing).
        """
        if kind not in _RETENTION:
            raise ValueError(f"unknown kind {kind!r}; expected one of {RETENTION_KINDS}")
        stop_ns = min(to_ns(older_than), flux.ALL_STOP_NS)
        if stop_ns <= flux.ALL_START_NS:
            return 0
        deleted = 0
        delete_api = self._client.delete_api()
        for measurement, counted_field in _RETENTION[kind]:
            rows = self._rows(flux.count_before(self.bucket, measurement, counted_field, stop_ns))
            n = int(rows[0]["_value"]) if rows else 0
            if n:
                delete_api.delete(
                    _rfc3339(flux.ALL_START_NS),
                    _rfc3339(stop_ns - 1),  # the delete API's stop is inclusive
                    f'_measurement="{measurement}"',
                    bucket=self.bucket,
                    org=self.org,
                )
            if measurement != FEATURES:  # feature points belong to the predictions counted
                deleted += n
        return deleted

    def _newest(self, query: str) -> float | None:
        rows = self._rows(query)
        return row_seconds(rows[0]) if rows else None

    def last_seen(self, model: str) -> float | None:
        return self._newest(flux.last_seen(self.bucket, model))

    def findings(
        self,
        model: str | None = None,
        start: float | None = None,
        end: float | None = None,
        *,
        breached_only: bool = False,
    ) -> list[Finding]:
        start_ns = flux.ALL_START_NS if start is None else max(to_ns(start), flux.ALL_START_NS)
        stop_ns = flux.ALL_STOP_NS if end is None else min(to_ns(end), flux.ALL_STOP_NS)
        if stop_ns <= start_ns:
            return []
        query = flux.findings(self.bucket, model, start_ns, stop_ns, breached_only=breached_only)
        return [finding_from_row(row) for row in self._rows(query)]

    def last_evaluated(self, model: str) -> float | None:
        return self._newest(flux.last_evaluated(self.bucket, model))

    # --- lifecycle -------------------------------------------------------------------------

    def ping(self) -> bool:
        """True when the server answers its health endpoint (no write, no token needed)."""
        try:
            return bool(self._client.ping())
        except Exception:  # the client raises many kinds; any of them means "no"
            return False

    def probe(self) -> None:
        """Prove the bucket is writable with one point in measurement `watchkeeper_probe`.

        Raises `InfluxWriteError` (with the server's answer, e.g. 401 or 404 for a wrong
        token or bucket) when it is not; for `watchkeeper check-config`.
        """
        line = f"watchkeeper_probe ok=true {to_ns(time.time())}"
        self._send(line.encode("utf-8"), 1)

    def close(self) -> None:
        """Stop retries in progress and release connections; nothing is buffered to flush."""
        self._closed.set()
        self._client.close()

    def __enter__(self) -> InfluxStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rfc3339(ns: int) -> str:
    seconds, fraction = divmod(ns, NS)
    day = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return f"{day:%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


def _short(text: object, limit: int = 300) -> str:
    value = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    value = " ".join(value.split())
    return value if len(value) <= limit else value[:limit] + "…"


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date), if there is one."""
    if not headers:
        return None
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
