"""The client library model services use: `Monitor`, which never slows or breaks the service.

A `Monitor` does two things for one model (and version):

- keeps Prometheus metrics on a `prometheus_client` registry (predictions, errors, fallbacks,
  latency, output values), so the service's own `/metrics` shows its health at once;
- when given an `endpoint`, sends each prediction, label and fallback to the watchkeeper ingest
  API in gzip JSON batches from a background thread.

Calls on the hot path (`log_prediction`, `log_label`, `log_fallback`, `track`) never raise for
bad data and never block on the network: records go into a bounded in-memory queue (when it is
full the oldest record is dropped and counted), and a daemon thread sends them in batches by
size and time, retrying with exponential backoff and jitter, honouring `Retry-After`, and
dropping (counting, logging) a batch the server refuses as invalid. Batches are idempotent (the
store ignores ids it already has), so a retry never stores a record twice.

    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> monitor = Monitor("churn", version="v3", registry=registry)   # no endpoint: metrics only
    >>> pid = monitor.log_prediction({"age": 41, "plan": "pro"}, 0.83, latency_s=0.012)
    >>> registry.get_sample_value(
    ...     "watchkeeper_predictions_total", {"model": "churn", "version": "v3"})
    1.0
    >>> with monitor.track():
    ...     pass
    >>> registry.get_sample_value(
    ...     "watchkeeper_prediction_latency_seconds_count", {"model": "churn", "version": "v3"})
    2.0

Only the standard library and `prometheus_client` are imported here, so a service pays almost
nothing for `import watchkeeper`.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import functools
import gzip
import http.client
import inspect
import json
import logging
import math
import numbers
import os
import random
import threading
import time
import uuid
import weakref
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

__all__ = ["ClientStats", "Monitor"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
Scalar = float | int | str | bool | None
Kind = Literal["predictions", "labels", "samples"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Model serving latencies: 1 ms to 10 s."""

VALUE_BUCKETS = (*(i / 10 for i in range(11)), 2.0, 5.0, 10.0, 100.0, 1000.0)
"""Numeric outputs: fine steps over [0, 1] for scores and probabilities, coarse ones beyond.
No negative bound: prometheus_client drops a histogram's `_sum` (the mean output, the most
useful series) when a bucket is negative; negative outputs still count in `le="0.0"`."""

FALLBACK_SERIES = "fallbacks"
"""Name of the sample series a fallback is sent as (value 1.0, label `reason`)."""

INGEST_PATH = "/v1/ingest"
_BACKOFF_BASE_S = 0.1
_BACKOFF_CAP_S = 4.0
_RETRY_AFTER_CAP_S = 30.0
_GIVE_UP_AFTER_S = 60.0
_ATEXIT_TIMEOUT_S = 2.0
_LOG_EVERY_S = 60.0
_MAX_INT = 2**1023  # the ingest API refuses integers with no float value


# --------------------------------------------------------------------------------------------
# Metrics, shared by every Monitor on one registry


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        mv = ("model", "version")
        mvr = (*mv, "reason")

        def counter(name: str, doc: str, labels: tuple[str, ...] = mv) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.predictions = counter(
            "watchkeeper_predictions_total", "Predictions made (all, before sampling)."
        )
        self.errors = counter("watchkeeper_prediction_errors_total", "Predictions that failed.")
        self.fallbacks = counter(
            "watchkeeper_fallbacks_total", "Times the service answered without the model.", mvr
        )
        self.dropped = counter(
            "watchkeeper_client_dropped_total", "Records not delivered to ingest, by reason.", mvr
        )
        self.sent = counter("watchkeeper_client_sent_total", "Records delivered to ingest.")
        self.latency = Histogram(
            "watchkeeper_prediction_latency_seconds", "Time to make one prediction.", mv,
            buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.values = Histogram(
            "watchkeeper_prediction_value", "Numeric model outputs.", mv,
            buckets=VALUE_BUCKETS, registry=registry,
        )  # fmt: skip


_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, _Metrics] = weakref.WeakKeyDictionary()
_METRICS_LOCK = threading.Lock()


def _metrics_for(registry: CollectorRegistry) -> _Metrics:
    """One set of metric objects per registry, so several Monitors can share a registry."""
    with _METRICS_LOCK:
        metrics = _METRICS.get(registry)
        if metrics is None:
            metrics = _METRICS[registry] = _Metrics(registry)
        return metrics


# --------------------------------------------------------------------------------------------
# Values


class _Invalid(ValueError):
    """A record the client cannot send; it is counted as dropped ('invalid') and logged."""


def _scalar(value: object, what: str) -> Scalar:
    """A JSON scalar for `value`; NaN and infinities become null (a missing value)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise _Invalid(f"{what} is an integer too large for a float")
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    item = getattr(value, "item", None)  # numpy scalars, without importing numpy
    if callable(item):
        try:
            inner = item()
        except Exception:
            inner = value
        if inner is not value and isinstance(inner, bool | int | float | str):
            return _scalar(inner, what)
    if isinstance(value, numbers.Real):
        as_float = float(value)
        return as_float if math.isfinite(as_float) else None
    raise _Invalid(f"{what} has unsupported type {type(value).__name__}")


def _text(text: str) -> str:
    """`text` made encodable as UTF-8 (lone surrogates replaced), so no batch is refused for it."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _features(features: object) -> dict[str, Scalar]:
    if not isinstance(features, Mapping):
        raise _Invalid(f"features must be a mapping, not {type(features).__name__}")
    out: dict[str, Scalar] = {}
    for key, value in features.items():
        if not isinstance(key, str):
            raise _Invalid(f"feature name {key!r} is not a string")
        out[_text(key)] = _scalar(value, f"feature {key!r}")
    return out


def _timestamp(timestamp: object) -> float:
    if timestamp is None:
        return time.time()
    if isinstance(timestamp, bool) or not isinstance(timestamp, numbers.Real):
        raise _Invalid(f"timestamp must be Unix seconds, not {type(timestamp).__name__}")
    ts = float(timestamp)
    if not math.isfinite(ts) or ts < 0:
        raise _Invalid(f"timestamp must be finite Unix seconds, not {ts}")
    return ts


def _latency(latency_s: object) -> float | None:
    if latency_s is None or isinstance(latency_s, bool) or not isinstance(latency_s, numbers.Real):
        return None
    value = float(latency_s)
    return value if math.isfinite(value) and value >= 0 else None


def _prediction_id(prediction_id: object) -> str:
    if prediction_id is None:
        return uuid.uuid4().hex
    return _text(prediction_id if isinstance(prediction_id, str) else str(prediction_id))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------------------------
# Endpoint


@dataclass(frozen=True, slots=True)
class _Endpoint:
    https: bool
    host: str
    port: int
    path: str


def _parse_endpoint(endpoint: str) -> _Endpoint:
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise ValueError(f"endpoint must be a URL like 'http://host:8765', got {endpoint!r}")
    try:
        parts = urlsplit(endpoint.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"endpoint {endpoint!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(
            f"endpoint {endpoint!r} must start with http:// or https://, not {parts.scheme!r}"
        )
    if not parts.hostname:
        raise ValueError(f"endpoint {endpoint!r} has no host")
    path = parts.path.rstrip("/")
    if not path.endswith(INGEST_PATH):
        path += INGEST_PATH
    https = parts.scheme == "https"
    return _Endpoint(https, parts.hostname, port or (443 if https else 80), path)


# --------------------------------------------------------------------------------------------
# Monitor


@dataclass(frozen=True, slots=True)
class ClientStats:
    """What became of the records a Monitor queued for sending.

    `queued` counts records still in memory (waiting or in the batch being sent); every
    record queued is eventually exactly one of sent, dropped or still queued.
    """

    queued: int
    sent: int
    dropped: Mapping[str, int] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


_Item = tuple[int, Kind, dict[str, Any]]

_MONITORS: weakref.WeakSet[Monitor] = weakref.WeakSet()
_ACTIVE: contextvars.ContextVar[_Tracking | None] = contextvars.ContextVar(
    "watchkeeper_tracking", default=None
)


class Monitor:
    """Metrics and (with `endpoint`) delivery of predictions, labels and fallbacks for a model.

    Arguments are checked at once (`ValueError` with the reason); after that, nothing the
    service logs can make a Monitor raise. `sample_rate` < 1 sends only that fraction of
    predictions (chosen by prediction id, so a label follows its prediction) while the
    Prometheus counters still count every one.
    """

    def __init__(
        self,
        model: str,
        version: str | None = None,
        endpoint: str | None = None,
        token: str | None = None,
        sample_rate: float = 1.0,
        registry: CollectorRegistry | None = None,
        *,
        batch_size: int = 500,
        flush_interval_s: float = 1.0,
        max_buffer: int = 10_000,
        timeout_s: float = 5.0,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        if version is not None and not isinstance(version, str):
            raise ValueError(f"version must be a string or None, got {version!r}")
        if token is not None and (not isinstance(token, str) or not token):
            raise ValueError("token must be a non-empty string or None")
        if (
            isinstance(sample_rate, bool)
            or not isinstance(sample_rate, int | float)
            or not 0 < sample_rate <= 1
        ):
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
        if registry is not None and not isinstance(registry, CollectorRegistry):
            raise ValueError(
                f"registry must be a prometheus_client CollectorRegistry, got "
                f"{type(registry).__name__}"
            )
        for name, value in (("batch_size", batch_size), ("max_buffer", max_buffer)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, number in (("flush_interval_s", flush_interval_s), ("timeout_s", timeout_s)):
            if (
                isinstance(number, bool)
                or not isinstance(number, int | float)
                or not (math.isfinite(number) and number > 0)
            ):
                raise ValueError(f"{name} must be a positive number of seconds, got {number!r}")
        self.model = model
        self.version = version
        self.endpoint = endpoint
        self.sample_rate = float(sample_rate)
        self.batch_size = batch_size
        self.flush_interval_s = float(flush_interval_s)
        self.max_buffer = max_buffer
        self.timeout_s = float(timeout_s)
        self._endpoint = _parse_endpoint(endpoint) if endpoint is not None else None
        self._token = token
        self._version_label = version or ""
        self._batch_limit = min(batch_size, max_buffer)

        metrics = _metrics_for(registry if registry is not None else REGISTRY)
        labels = (model, self._version_label)
        self._m_predictions = metrics.predictions.labels(*labels)
        self._m_errors = metrics.errors.labels(*labels)
        self._m_latency = metrics.latency.labels(*labels)
        self._m_values = metrics.values.labels(*labels)
        self._m_sent = metrics.sent.labels(*labels)
        self._m_fallbacks = metrics.fallbacks
        self._m_dropped = metrics.dropped
        self._random = random.Random()
        self._logged_at: dict[str, float] = {}
        self._last_fallback_ts: dict[str, float] = {}
        self._init_state()
        _MONITORS.add(self)

    def __repr__(self) -> str:
        return (
            f"Monitor(model={self.model!r}, version={self.version!r}, "
            f"endpoint={self.endpoint!r}, sample_rate={self.sample_rate})"
        )

    def _init_state(self) -> None:
        """Sender state; called again in a forked child, which starts with its own sender."""
        self._pid = os.getpid()
        self._cv = threading.Condition(threading.Lock())
        self._stop = threading.Event()
        self._buffer: deque[_Item] = deque()
        self._in_flight: list[_Item] = []
        self._seq = 0
        self._sent = 0
        self._dropped: dict[str, int] = {}
        self._queue_drops = 0
        self._drops_at_flush = 0
        self._flush_waiters = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._conn: http.client.HTTPConnection | None = None

    # ---------------------------------------------------------------------------- public API

    def log_prediction(
        self,
        features: Mapping[str, Any],
        prediction: Any,
        prediction_id: str | None = None,
        latency_s: float | None = None,
        error: bool | None = None,
        timestamp: float | None = None,
    ) -> str:
        """Record one prediction; returns its id (a new uuid4 hex when none is given).

        Inside a `track()` block the record takes the block's latency and error, and is
        counted once, by the block.
        """
        pid = _prediction_id(prediction_id)
        try:
            failed = bool(error)
            latency = _latency(latency_s)
            if _is_number(prediction):
                self._m_values.observe(float(prediction))
            tracking = _ACTIVE.get()
            absorbed = tracking is not None and tracking.absorb(self)
            if not absorbed:
                self._m_predictions.inc()
                if failed:
                    self._m_errors.inc()
                if latency is not None:
                    self._m_latency.observe(latency)
            if self._endpoint is None:
                return pid
            if not pid:
                raise _Invalid("prediction_id must not be empty")
            payload: dict[str, Any] = {
                "model": self.model,
                "prediction_id": pid,
                "timestamp": _timestamp(timestamp),
                "features": _features(features),
                "output": _scalar(prediction, "prediction"),
                "version": self._version_label,
                "latency_s": latency,
                "error": failed,
                "sample_rate": self.sample_rate,
            }
            if absorbed:
                assert tracking is not None
                tracking.payload = payload
            elif self._sampled(pid):
                self._enqueue("predictions", payload)
        except Exception as exc:
            self._reject_record("prediction", exc)
        return pid

    def log_label(self, prediction_id: str, label: Any, timestamp: float | None = None) -> None:
        """Record the ground truth for a prediction id, whenever it becomes known."""
        try:
            if self._endpoint is None:
                return
            pid = _prediction_id(prediction_id)
            if not pid:
                raise _Invalid("prediction_id must not be empty")
            if not self._sampled(pid):
                return
            self._enqueue(
                "labels",
                {
                    "model": self.model,
                    "prediction_id": pid,
                    "label": _scalar(label, "label"),
                    "timestamp": _timestamp(timestamp),
                },
            )
        except Exception as exc:
            self._reject_record("label", exc)

    def log_fallback(self, reason: str) -> None:
        """Record that the service answered without the model (timeout, circuit open, ...)."""
        try:
            if not isinstance(reason, str) or not reason:
                reason = str(reason or "unknown")
            reason = _text(reason)
            self._m_fallbacks.labels(self.model, self._version_label, reason).inc()
            if self._endpoint is None:
                return
            ts = time.time()
            last = self._last_fallback_ts.get(reason)
            if last is not None and ts <= last:  # keep each event a distinct sample
                ts = math.nextafter(last, math.inf)
            self._last_fallback_ts[reason] = ts
            self._enqueue(
                "samples",
                {
                    "model": self.model,
                    "name": FALLBACK_SERIES,
                    "timestamp": ts,
                    "value": 1.0,
                    "version": self._version_label,
                    "labels": {"reason": reason},
                },
            )
        except Exception as exc:
            self._reject_record("fallback", exc)

    def track(self) -> _Tracking:
        """Time a prediction and count it, failed if it raises (the exception propagates).

        Use as `with monitor.track(): ...` or as a decorator `@monitor.track()`. A
        `log_prediction` inside the block is completed with the block's latency and error;
        without one, a bare prediction record (no features) is sent so stored counts and
        error rates stay right.
        """
        return _Tracking(self)

    def flush(self, timeout: float = 5.0) -> bool:
        """Send what is queued now; True when all of it was delivered within `timeout` s.

        False when something is still queued after `timeout`, or when records were dropped
        since the previous flush.
        """
        if self._endpoint is None:
            return True
        deadline = time.monotonic() + max(0.0, timeout)
        self._check_fork()
        with self._cv:
            target = self._seq
            self._flush_waiters += 1
            self._cv.notify_all()
            try:
                while not self._settled(target):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                        break
                    self._cv.wait(remaining)
                settled = self._settled(target)
            finally:
                self._flush_waiters -= 1
            ok = settled and self._queue_drops == self._drops_at_flush
            self._drops_at_flush = self._queue_drops
            return ok

    def close(self, timeout: float = 5.0) -> bool:
        """Flush (at most `timeout` s), then stop the sender. Later records are not sent."""
        if self._endpoint is None:
            return True
        deadline = time.monotonic() + max(0.0, timeout)
        ok = self.flush(timeout)
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.05, deadline - time.monotonic()))
        _MONITORS.discard(self)
        return ok

    @property
    def stats(self) -> ClientStats:
        """Queued, sent and dropped record counts (dropped by reason)."""
        with self._cv:
            return ClientStats(
                queued=len(self._buffer) + len(self._in_flight),
                sent=self._sent,
                dropped=dict(self._dropped),
            )

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------- queueing

    def _sampled(self, prediction_id: str) -> bool:
        if self.sample_rate >= 1.0:
            return True
        return zlib.crc32(prediction_id.encode("utf-8", "replace")) / 2**32 < self.sample_rate

    def _log_limited(self, key: str, level: int, message: str, *args: object) -> None:
        """Log a message at most once a minute per key, so a bad stream does not flood logs."""
        now = time.monotonic()
        last = self._logged_at.get(key)
        if last is None or now - last >= _LOG_EVERY_S:
            self._logged_at[key] = now
            log.log(level, message, *args)

    def _count_drop(self, reason: str, n: int, queued: bool) -> None:
        """Count `n` dropped records; `queued` ones count against the next flush. Holds _cv."""
        self._dropped[reason] = self._dropped.get(reason, 0) + n
        if queued:
            self._queue_drops += n
        self._m_dropped.labels(self.model, self._version_label, reason).inc(n)

    def _reject_record(self, what: str, exc: Exception) -> None:
        try:
            reason = "invalid" if isinstance(exc, _Invalid) else "internal_error"
            with self._cv:
                self._count_drop(reason, 1, queued=False)
            self._log_limited(
                f"{what}:{reason}",
                logging.WARNING,
                "watchkeeper: %s for model %r not recorded: %s",
                what,
                self.model,
                exc,
            )
        except Exception:  # never raise into the service
            pass

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:
            self._init_state()

    def _enqueue(self, kind: Kind, payload: dict[str, Any]) -> None:
        self._check_fork()
        with self._cv:
            if self._closed:
                self._count_drop("closed", 1, queued=False)
                return
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name=f"watchkeeper-sender-{self.model}", daemon=True
                )
                self._thread.start()
            self._seq += 1
            if len(self._buffer) + len(self._in_flight) >= self.max_buffer:
                self._count_drop("buffer_full", 1, queued=True)
                if not self._buffer:  # everything held is in flight: drop the newcomer
                    self._log_limited(
                        "buffer_full",
                        logging.WARNING,
                        "watchkeeper: send buffer full, dropping records",
                    )
                    return
                self._buffer.popleft()
                self._log_limited(
                    "buffer_full",
                    logging.WARNING,
                    "watchkeeper: send buffer full (%d), dropping oldest records",
                    self.max_buffer,
                )
            self._buffer.append((self._seq, kind, payload))
            if len(self._buffer) >= self._batch_limit:
                self._cv.notify_all()

    def _settled(self, target: int) -> bool:
        """Whether every record up to sequence number `target` was sent or dropped. Holds _cv."""
        waiting = bool(self._buffer) and self._buffer[0][0] <= target
        sending = bool(self._in_flight) and self._in_flight[0][0] <= target
        return not waiting and not sending

    # ---------------------------------------------------------------------------- sender

    def _run(self) -> None:
        """The sender thread: take batches by size or time, deliver them, account for them."""
        while True:
            with self._cv:
                deadline = time.monotonic() + self.flush_interval_s
                while (
                    not self._closed
                    and len(self._buffer) < self._batch_limit
                    and not (self._flush_waiters and self._buffer)
                ):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cv.wait(remaining)
                if self._closed:
                    return
                if not self._buffer:
                    continue
                n = min(self._batch_limit, len(self._buffer))
                self._in_flight = [self._buffer.popleft() for _ in range(n)]
                batch = self._in_flight
            try:
                outcome = self._deliver(batch)
            except Exception as exc:  # a bug here must not kill delivery for good
                log.exception("watchkeeper: unexpected error sending a batch: %s", exc)
                outcome = "failed"
            with self._cv:
                self._in_flight = []
                if outcome == "sent":
                    self._sent += len(batch)
                    self._m_sent.inc(len(batch))
                elif outcome == "stopped":
                    self._buffer.extendleft(reversed(batch))
                else:
                    self._count_drop(outcome, len(batch), queued=True)
                self._cv.notify_all()

    def _deliver(self, batch: list[_Item]) -> str:
        """Send one batch until it is accepted, refused, given up on, or the Monitor closes."""
        body: dict[str, Any] = {"batch_id": uuid.uuid4().hex}
        for _, kind, payload in batch:
            body.setdefault(kind, []).append(payload)
        data = gzip.compress(
            json.dumps(body, allow_nan=False, separators=(",", ":")).encode(), 6, mtime=0
        )
        first = time.monotonic()
        attempt = 0
        while not self._stop.is_set():
            retry_after: float | None = None
            try:
                status, headers, text = self._post(data)
            except (OSError, http.client.HTTPException) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= status < 300:
                    return "sent"
                message = _server_message(text)
                if 400 <= status < 500 and status not in (408, 429):
                    self._log_limited(
                        f"rejected:{status}",
                        logging.WARNING,
                        "watchkeeper: ingest refused a batch of %d records (HTTP %d): %s",
                        len(batch),
                        status,
                        message,
                    )
                    return "rejected"
                problem = f"HTTP {status}: {message}"
                retry_after = _retry_after(headers.get("Retry-After"))
            attempt += 1
            if time.monotonic() - first > _GIVE_UP_AFTER_S:
                self._log_limited(
                    "send_failed",
                    logging.WARNING,
                    "watchkeeper: dropping a batch of %d records after %d attempts: %s",
                    len(batch),
                    attempt,
                    problem,
                )
                return "send_failed"
            self._log_limited(
                "retry", logging.INFO, "watchkeeper: sending failed (%s), retrying", problem
            )
            delay = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** (attempt - 1))
            delay *= 0.5 + self._random.random() / 2  # jitter: spread clients' retries
            if retry_after is not None:
                delay = max(delay, min(retry_after, _RETRY_AFTER_CAP_S))
            self._stop.wait(delay)
        return "stopped"

    def _connect(self) -> http.client.HTTPConnection:
        assert self._endpoint is not None
        ep = self._endpoint
        if ep.https:
            return http.client.HTTPSConnection(ep.host, ep.port, timeout=self.timeout_s)
        return http.client.HTTPConnection(ep.host, ep.port, timeout=self.timeout_s)

    def _post(self, data: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
        """POST a gzip body; reconnects once when a kept-alive connection had gone stale."""
        assert self._endpoint is not None
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": "watchkeeper-client/0.1",
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        for fresh in (self._conn is None, True):
            conn = self._conn = self._conn or self._connect()
            try:
                conn.request("POST", self._endpoint.path, body=data, headers=headers)
                response = conn.getresponse()
                text = response.read()
                if response.will_close:
                    conn.close()
                    self._conn = None
                return response.status, response.headers, text
            except (ConnectionError, http.client.RemoteDisconnected) as exc:
                conn.close()
                self._conn = None
                if fresh:
                    raise exc from None
            except BaseException:
                conn.close()
                self._conn = None
                raise
        raise AssertionError("unreachable")


def _server_message(text: bytes) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return text[:200].decode("utf-8", "replace")
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return cast(str, body["error"])
    return text[:200].decode("utf-8", "replace")


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# --------------------------------------------------------------------------------------------
# track()


class _Tracking:
    """Context manager and decorator returned by `Monitor.track()`."""

    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor
        self._start = 0.0
        self._wall = 0.0
        self._token: contextvars.Token[_Tracking | None] | None = None
        self._absorbed = False
        self.payload: dict[str, Any] | None = None

    def absorb(self, monitor: Monitor) -> bool:
        """Claim the first `log_prediction` of the same Monitor inside this block."""
        if monitor is not self._monitor or self._absorbed:
            return False
        self._absorbed = True
        return True

    def __enter__(self) -> _Tracking:
        self._absorbed = False
        self.payload = None
        self._wall = time.time()
        self._token = _ACTIVE.set(self)
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        elapsed = time.perf_counter() - self._start
        try:
            if self._token is not None:
                _ACTIVE.reset(self._token)
                self._token = None
            self._finish(elapsed, exc_type is not None)
        except Exception as err:
            self._monitor._reject_record("tracked prediction", err)
        return False

    def _finish(self, elapsed: float, raised: bool) -> None:
        m = self._monitor
        payload = self.payload
        failed = raised or bool(payload and payload["error"])
        m._m_predictions.inc()
        m._m_latency.observe(elapsed)
        if failed:
            m._m_errors.inc()
        if m._endpoint is None:
            return
        if payload is None:
            if self._absorbed:  # the logged prediction was invalid and already counted
                return
            payload = {
                "model": m.model,
                "prediction_id": uuid.uuid4().hex,
                "timestamp": self._wall,
                "features": {},
                "output": None,
                "version": m._version_label,
                "latency_s": elapsed,
                "error": failed,
                "sample_rate": m.sample_rate,
            }
        else:
            if payload["latency_s"] is None:
                payload["latency_s"] = elapsed
            payload["error"] = failed
        if m._sampled(payload["prediction_id"]):
            m._enqueue("predictions", payload)

    def __call__(self, fn: F) -> F:
        monitor = self._monitor
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with _Tracking(monitor):
                    return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _Tracking(monitor):
                return fn(*args, **kwargs)

        return cast(F, wrapper)


# --------------------------------------------------------------------------------------------
# Process life cycle


def _after_fork_in_child() -> None:
    """A child starts with empty queues and no sender; the parent still sends its own records."""
    for monitor in list(_MONITORS):
        monitor._init_state()


def _flush_at_exit() -> None:
    deadline = time.monotonic() + _ATEXIT_TIMEOUT_S
    for monitor in list(_MONITORS):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        with contextlib.suppress(Exception):
            monitor.close(remaining)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_flush_at_exit)
