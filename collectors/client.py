"""The client library model services use: `Monitor`, which never slows or breaks the service.

A `Monitor` does two things for one model (and version):

- keeps Prometheus metrics on a `prometheus_client` registry (predictions, errors, fallbacks,
  latency, output values; see `metrics.py`), so the service's own `/metrics` shows its health;
- when given an `endpoint`, sends each prediction, label and fallback to the watchkeeper ingest
  API in gzip JSON batches from a background thread (see `sender.py`).

Calls on the hot path (`log_prediction`, `log_label`, `log_fallback`, `track`) never raise for
bad data and never block on the network: they update the metrics and put a small tuple on a
bounded queue. Checking and encoding the values happens in the sender thread; a record that
cannot be sent is dropped, counted in `watchkeeper_client_dropped_total` and logged (at most
once a minute per kind of problem).

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
import itertools
import logging
import math
import os
import re
import time
import weakref
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from . import sanitize
from .encode import ARTIFACT_SERIES, FALLBACK_SERIES
from .metrics import metrics_for
from .privacy import DEFAULT_MAX_CATEGORIES, Privacy
from .ratelog import LimitedLog
from .sender import ClientStats, Sender
from .tracking import ACTIVE, TrackedRecord, Tracking
from .transport import parse_endpoint, tls_context

__all__ = ["ClientStats", "Monitor"]

log = logging.getLogger(__name__)

ATEXIT_TIMEOUT_S = 2.0
CLOCK_STEP_S = 1.0  # a wall clock going back further than this stepped back
ARTIFACT_EVERY_S = 60.0  # how often (data time) the served artifact's SHA-256 is reported
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")

_MONITORS: weakref.WeakSet[Monitor] = weakref.WeakSet()


# Prediction ids: a random 64-bit prefix per process and a counter; unique like a uuid4 (same
# 32 hex digits) at a tenth of the cost. A forked child draws a new prefix.
def _new_prefix() -> str:
    return os.urandom(8).hex()


_id_prefix = _new_prefix()
_id_counter = itertools.count()


def new_prediction_id() -> str:
    """A new unique prediction id (32 hex digits)."""
    return f"{_id_prefix}{next(_id_counter):016x}"


class Monitor:
    """Metrics and (with `endpoint`) delivery of predictions, labels and fallbacks for a model.

    Arguments are checked at once (`ValueError` with the reason); after that, nothing the
    service logs can make a Monitor raise. `sample_rate` < 1 sends only that fraction of
    predictions (chosen by prediction id, so a label follows its prediction) while the
    Prometheus counters still count every one.

    An `https://` endpoint is verified against the system's trusted CAs, or only against the
    PEM certificates in `ca_file` (a private CA, or the server's self-signed certificate).

    Privacy (all off by default; see `privacy.py` and docs/client.md): `sensitive` features are
    never sent, only per-interval counts of their values (`sensitive_buckets` edges for numbers,
    at most `sensitive_max_categories` categories per feature for the rest); `drop_fields` are
    removed before anything leaves the process; `hash_fields` (features, and `"prediction_id"`)
    are sent as a keyed hash under the secret `hash_key`.

    `artifact_sha256`, the SHA-256 of the model file the service loaded, is reported along with
    the predictions (once a minute); a model whose `artifacts` are registered in
    `watchkeeper.yaml` then gets an `unexpected_model` alert when it serves any other file.
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
        ca_file: str | os.PathLike[str] | None = None,
        sensitive: Iterable[str] = (),
        sensitive_buckets: Mapping[str, Sequence[float]] | None = None,
        sensitive_max_categories: int = DEFAULT_MAX_CATEGORIES,
        drop_fields: Iterable[str] = (),
        hash_fields: Iterable[str] = (),
        hash_key: str | bytes | None = None,
        artifact_sha256: str | None = None,
    ) -> None:
        if artifact_sha256 is not None and (
            not isinstance(artifact_sha256, str) or not _SHA256.fullmatch(artifact_sha256)
        ):
            raise ValueError(
                "artifact_sha256 must be the 64 hex digits of the model file's SHA-256, got "
                f"{artifact_sha256!r}"
            )
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        if version is not None and not isinstance(version, str):
            raise ValueError(f"version must be a string or None, got {version!r}")
        for what, name in (("model", model), ("version", version or "")):
            if len(name) > sanitize.MAX_NAME_CHARS or name != sanitize.text(name):
                raise ValueError(
                    f"{what} must be valid Unicode of at most {sanitize.MAX_NAME_CHARS} "
                    f"characters, got {name[:60]!r}"
                )
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
        privacy = Privacy(
            sensitive=sensitive,
            sensitive_buckets=sensitive_buckets,
            max_categories=sensitive_max_categories,
            drop_fields=drop_fields,
            hash_fields=hash_fields,
            hash_key=hash_key,
        )
        self.privacy: Privacy | None = (
            privacy if privacy.removes_features or privacy.hash_fields else None
        )
        self._prepare = privacy.split if privacy.removes_features else _copy
        self.model = model
        self.version = version
        self.endpoint = endpoint
        self.sample_rate = float(sample_rate)
        self.batch_size = batch_size
        self.flush_interval_s = float(flush_interval_s)
        self.max_buffer = max_buffer
        self.timeout_s = float(timeout_s)
        self._version_label = version or ""
        self._sending = endpoint is not None
        self.artifact_sha256 = None if artifact_sha256 is None else artifact_sha256.lower()
        self._artifact_ts = -math.inf
        self._all_sampled = self.sample_rate >= 1.0

        parsed = parse_endpoint(endpoint) if endpoint is not None else None
        if ca_file is not None and parsed is None:
            raise ValueError("ca_file needs an https:// endpoint")
        context = (
            tls_context(parsed, None if ca_file is None else os.fspath(ca_file))
            if parsed is not None
            else None
        )
        metrics = metrics_for(registry if registry is not None else REGISTRY)
        self._series = metrics.series(model, self._version_label)
        self._m_fallbacks = metrics.fallbacks
        self._log = LimitedLog(log)
        self._last_fallback_ts: dict[str, float] = {}
        self._sender = Sender(
            parsed,
            token,
            model=model,
            version=self._version_label,
            sample_rate=self.sample_rate,
            batch_size=batch_size,
            flush_interval_s=self.flush_interval_s,
            max_buffer=max_buffer,
            timeout_s=self.timeout_s,
            sent=metrics.sent.labels(model, self._version_label),
            dropped=metrics.dropped,
            limited_log=self._log,
            ssl_context=context,
            privacy=self.privacy,
        )
        _MONITORS.add(self)

    def __repr__(self) -> str:
        return (
            f"Monitor(model={self.model!r}, version={self.version!r}, "
            f"endpoint={self.endpoint!r}, sample_rate={self.sample_rate}"
            + ("" if self.privacy is None else f", privacy={self.privacy!r}")
            + ")"
        )

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
        """Record one prediction; returns its id (a new unique id when none is given).

        Inside a `track()` block the record takes the block's latency and error, and is
        counted once, by the block.
        """
        if prediction_id is None:
            pid = f"{_id_prefix}{next(_id_counter):016x}"
        elif type(prediction_id) is str:
            pid = prediction_id
        else:
            pid = _as_text(prediction_id)
        try:
            failed = bool(error)
            latency = None if latency_s is None else sanitize.latency(latency_s)
            value = sanitize.number(prediction)
            tracking = ACTIVE.get()
            if tracking is not None and tracking.absorb(self):
                if value is not None:
                    self._series.observe_value(value)
                features = self._prepare(features)
                tracking.record = (pid, timestamp, features, prediction, latency, failed)
                return pid
            self._series.record(failed, latency, value)
            if self._sending and (self._all_sampled or self._sampled(pid)):
                ts = time.time() if timestamp is None else timestamp
                self._sender.put(
                    ("predictions", pid, ts, self._prepare(features), prediction, latency, failed)
                )
                if self.artifact_sha256 is not None:
                    self._report_artifact(ts)
        except Exception as exc:
            self._reject_record("prediction", exc)
        return pid

    def _report_artifact(self, ts: float) -> None:
        """Say which model file is serving, at most once a minute of data time (so every
        judged window has it, also when history is backfilled with old timestamps)."""
        if 0.0 <= ts - self._artifact_ts < ARTIFACT_EVERY_S:
            return
        self._artifact_ts = ts
        labels = {"sha256": self.artifact_sha256}
        self._sender.put(("samples", ARTIFACT_SERIES, ts, 1.0, labels))

    def log_label(self, prediction_id: str, label: Any, timestamp: float | None = None) -> None:
        """Record the ground truth for a prediction id, whenever it becomes known."""
        try:
            if not self._sending:
                return
            pid = prediction_id if type(prediction_id) is str else _as_text(prediction_id)
            if not self._all_sampled and not self._sampled(pid):
                return
            ts = time.time() if timestamp is None else timestamp
            self._sender.put(("labels", pid, label, ts))
        except Exception as exc:
            self._reject_record("label", exc)

    def log_fallback(self, reason: str) -> None:
        """Record that the service answered without the model (timeout, circuit open, ...)."""
        try:
            if not isinstance(reason, str) or not reason:
                reason = str(reason or "unknown")
            reason = sanitize.text(reason)
            self._m_fallbacks.labels(self.model, self._version_label, reason).inc()
            if not self._sending:
                return
            ts = time.time()
            last = self._last_fallback_ts.get(reason)
            # Keep each event a distinct sample (same series, same time would be stored once).
            # After the clock stepped back further than that, take the clock as it is, so
            # events stay spread over time instead of piling up on the last instant.
            if last is not None and last - CLOCK_STEP_S < ts <= last:
                ts = math.nextafter(last, math.inf)
            self._last_fallback_ts[reason] = ts
            self._sender.put(("samples", FALLBACK_SERIES, ts, 1.0, {"reason": reason}))
        except Exception as exc:
            self._reject_record("fallback", exc)

    def track(self) -> Tracking:
        """Time a prediction and count it, failed if it raises (the exception propagates).

        Use as `with monitor.track(): ...` or as a decorator `@monitor.track()`. A
        `log_prediction` inside the block is completed with the block's latency and error;
        without one, a bare prediction record (no features) is sent so stored counts and
        error rates stay right.
        """
        return Tracking(self)

    def flush(self, timeout: float = 5.0) -> bool:
        """Send what is queued now; True when all of it was delivered within `timeout` s.

        False when something is still queued after `timeout`, or when records were dropped
        from the queue since the previous flush.
        """
        return self._sender.flush(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Flush (at most `timeout` s), then stop the sender. Later records are not sent."""
        ok = self._sender.close(timeout)
        _MONITORS.discard(self)
        return ok

    @property
    def stats(self) -> ClientStats:
        """Queued, sent and dropped record counts (dropped by reason)."""
        return self._sender.stats

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------- internals

    def _sampled(self, prediction_id: str) -> bool:
        return zlib.crc32(prediction_id.encode("utf-8", "replace")) / 2**32 < self.sample_rate

    def _finish_tracked(
        self,
        elapsed: float,
        raised: bool,
        wall: float,
        record: TrackedRecord | None,
        absorbed: bool,
    ) -> None:
        """Count a tracked block and queue its prediction (see `tracking.Tracking`)."""
        failed = raised or bool(record and record[5])
        self._series.record(failed, elapsed, None)
        if not self._sending:
            return
        if record is None:
            if absorbed:  # the logged prediction failed and was already counted as dropped
                return
            pid: str = new_prediction_id()
            record = (pid, wall, {}, None, elapsed, failed)
        else:
            pid, ts, features, output, latency, _ = record
            record = (pid, wall if ts is None else ts, features, output, latency, failed)
            if latency is None:
                record = (*record[:4], elapsed, failed)
        if self._all_sampled or self._sampled(pid):
            self._sender.put(("predictions", *record))

    def _reject_record(self, what: str, exc: Exception) -> None:
        """Count and log (rate-limited) a record refused on the caller's side."""
        try:
            reason = "invalid" if isinstance(exc, sanitize.Invalid) else "internal_error"
            self._sender.reject(reason)
            self._log(
                f"{what}:{reason}",
                logging.WARNING,
                "watchkeeper: %s for model %r not recorded: %s",
                what,
                self.model,
                exc,
            )
        except Exception:  # never raise into the service
            pass


def _copy(features: Any) -> Any:
    """A shallow copy the service may not mutate under us; non-mappings go as they are (the
    sender refuses them)."""
    if type(features) is dict:
        return features.copy()
    if isinstance(features, Mapping):
        return dict(features)
    return features


def _as_text(value: object) -> str:
    return str(value)


# --------------------------------------------------------------------------------------------
# Process life cycle


def _after_fork_in_child() -> None:
    """A child starts with empty queues, no sender and its own ids; the parent keeps its own."""
    global _id_prefix, _id_counter
    _id_prefix = _new_prefix()
    _id_counter = itertools.count()
    for monitor in list(_MONITORS):
        monitor._sender.reset()


def _flush_at_exit() -> None:
    deadline = time.monotonic() + ATEXIT_TIMEOUT_S
    for monitor in list(_MONITORS):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        with contextlib.suppress(Exception):
            monitor.close(remaining)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_flush_at_exit)
