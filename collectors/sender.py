"""The background sender: a bounded queue, batching by size and time, delivery with retries.

`Sender.put` is all the service's thread pays: one lock, one append. A daemon thread takes
batches of up to `batch_size` records (or whatever is queued after `flush_interval_s`), encodes
them (`encode.encode`, where the value checks run), gzips one JSON body and POSTs it, retrying
with exponential backoff and jitter and honouring `Retry-After`. A batch the server refuses as
invalid (4xx other than 408/429) is dropped and counted; one that still fails after
`GIVE_UP_AFTER_S` is dropped and counted too. When the queue is full the oldest record is
dropped and counted. Every record put is eventually exactly one of sent, dropped or queued.
Batches carry an id and records carry ids the store keeps once, so a retry never stores twice.

With a `Privacy` whose `sensitive` features were taken out of the predictions by the caller, the
thread counts their values as it encodes each batch (`privacy.FeatureHistograms`) and sends the
counts as `feature_histogram` samples in a batch of their own once per `flush_interval_s` (and
whenever a flush waits), timestamped with the end of the interval. Those samples are not
records the caller queued, so they are not in `stats`; counts whose delivery fails are kept
(bounded: buckets and categories) and sent with the next interval.
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import math
import random
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from .encode import Record, encode
from .privacy import HISTOGRAM_SERIES, FeatureHistograms, HistogramCount, Privacy, PrivateFeatures
from .ratelog import LimitedLog
from .sanitize import Invalid
from .transport import Endpoint, Transport, retry_after, server_message

__all__ = ["GIVE_UP_AFTER_S", "ClientStats", "Sender"]

log = logging.getLogger("watchkeeper.collectors.client")

BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 4.0
RETRY_AFTER_CAP_S = 30.0
GIVE_UP_AFTER_S = 60.0

_Item = tuple[int, Record]


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


class Sender:
    """Queue and deliver the records of one model version to one ingest endpoint.

    With `endpoint=None` it only accounts for records dropped before queueing (nothing is
    ever put on its queue).
    """

    def __init__(
        self,
        endpoint: Endpoint | None,
        token: str | None,
        *,
        model: str,
        version: str,
        sample_rate: float,
        batch_size: int,
        flush_interval_s: float,
        max_buffer: int,
        timeout_s: float,
        sent: Counter,
        dropped: Counter,
        limited_log: LimitedLog,
        ssl_context: ssl.SSLContext | None = None,
        privacy: Privacy | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.privacy = privacy
        self._ssl_context = ssl_context
        self.model = model
        self.version = version
        self.sample_rate = sample_rate
        self.batch_size = min(batch_size, max_buffer)
        self.flush_interval_s = flush_interval_s
        self.max_buffer = max_buffer
        self.timeout_s = timeout_s
        self._token = token
        self._m_sent = sent
        self._m_dropped = dropped
        self._m_dropped_by_reason: dict[str, Counter] = {}
        self._log = limited_log
        self._random = random.Random()
        self.reset()

    def reset(self) -> None:
        """Fresh, empty state; also what a forked child starts from (the parent keeps its own)."""
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
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
        self._transport = (
            Transport(self.endpoint, self._token, self.timeout_s, ssl_context=self._ssl_context)
            if self.endpoint
            else None
        )
        privacy = self.privacy
        self._histograms: FeatureHistograms | None = (
            privacy.histograms() if privacy is not None and privacy.sensitive else None
        )
        self._hist_oldest: int | None = None  # oldest record seq whose counts are unsent
        self._interval_start = time.monotonic()
        self._last_hist_ts = 0.0

    # ------------------------------------------------------------------------ caller side

    def put(self, record: Record) -> None:
        """Queue one record; drops the oldest queued one when the buffer is full."""
        with self._lock:
            if self._closed:
                self._count_drop("closed", 1, queued=False)
                return
            if self._thread is None:
                self._start()
            self._seq += 1
            buffer = self._buffer
            if len(buffer) + len(self._in_flight) >= self.max_buffer:
                self._count_drop("buffer_full", 1, queued=True)
                self._log(
                    "buffer_full",
                    logging.WARNING,
                    "watchkeeper: send buffer of %d records full, dropping records",
                    self.max_buffer,
                )
                if not buffer:  # everything held is in flight: drop the newcomer
                    return
                buffer.popleft()
            buffer.append((self._seq, record))
            if len(buffer) == self.batch_size:
                self._cv.notify()

    def reject(self, reason: str) -> None:
        """Count one record refused before it was queued."""
        with self._lock:
            self._count_drop(reason, 1, queued=False)

    def flush(self, timeout: float) -> bool:
        """True when all queued now was delivered within `timeout` s and nothing was dropped
        from the queue since the previous flush."""
        if self.endpoint is None:
            return True
        deadline = time.monotonic() + max(0.0, timeout)
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

    def close(self, timeout: float) -> bool:
        """Flush (at most `timeout` s), then stop the thread. Later records are dropped."""
        if self.endpoint is None:
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
        return ok

    @property
    def stats(self) -> ClientStats:
        with self._lock:
            return ClientStats(
                queued=len(self._buffer) + len(self._in_flight),
                sent=self._sent,
                dropped=dict(self._dropped),
            )

    # ------------------------------------------------------------------------ internals

    def _start(self) -> None:
        """Start the sender thread. Holds the lock."""
        self._thread = threading.Thread(
            target=self._run, name=f"watchkeeper-sender-{self.model}", daemon=True
        )
        self._thread.start()

    def _count_drop(self, reason: str, n: int, queued: bool) -> None:
        """Count `n` dropped records; `queued` ones count against the next flush. Holds the lock."""
        self._dropped[reason] = self._dropped.get(reason, 0) + n
        if queued:
            self._queue_drops += n
        child = self._m_dropped_by_reason.get(reason)
        if child is None:
            child = self._m_dropped_by_reason[reason] = self._m_dropped.labels(
                self.model, self.version, reason
            )
        child.inc(n)

    def _settled(self, target: int) -> bool:
        """Whether every record up to sequence number `target` was sent or dropped."""
        waiting = bool(self._buffer) and self._buffer[0][0] <= target
        sending = bool(self._in_flight) and self._in_flight[0][0] <= target
        counting = self._hist_oldest is not None and self._hist_oldest <= target
        return not waiting and not sending and not counting

    def _run(self) -> None:
        """The thread: take batches by size or time, encode, deliver, account for them."""
        while True:
            with self._cv:
                deadline = time.monotonic() + self.flush_interval_s
                while (
                    not self._closed
                    and len(self._buffer) < self.batch_size
                    and not (
                        self._flush_waiters and (self._buffer or self._hist_oldest is not None)
                    )
                ):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cv.wait(remaining)
                if self._closed:
                    return
                if not self._buffer and self._hist_oldest is None:
                    continue
                n = min(self.batch_size, len(self._buffer))
                batch = self._in_flight = [self._buffer.popleft() for _ in range(n)]
            try:
                outcome = "sent"
                if batch:
                    batch, payloads = self._encode(batch)
                    outcome = self._deliver(payloads) if payloads else "sent"
                    if outcome == "sent" and self._histograms is not None:
                        self._count_sensitive(batch)
                if outcome != "stopped" and self._histograms_due():
                    self._send_histograms()
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

    def _encode(self, batch: list[_Item]) -> tuple[list[_Item], list[tuple[str, dict[str, Any]]]]:
        """The records that encode, and (kind, wire dict) for each; the others are dropped."""
        kept: list[_Item] = []
        payloads: list[tuple[str, dict[str, Any]]] = []
        problems: list[str] = []
        for item in batch:
            record = item[1]
            try:
                wire = encode(record, self.model, self.version, self.sample_rate, self.privacy)
            except Invalid as exc:
                problems.append(f"{record[0]}: {exc}")
            except Exception as exc:
                problems.append(f"{record[0]}: internal error: {exc!r}")
            else:
                kept.append(item)
                payloads.append((record[0], wire))
        if problems:
            with self._lock:
                self._in_flight = kept
                self._count_drop("invalid", len(problems), queued=True)
            self._log(
                "invalid",
                logging.WARNING,
                "watchkeeper: %d record(s) for model %r not recorded, e.g. %s",
                len(problems),
                self.model,
                problems[0],
            )
        return kept, payloads

    def _count_sensitive(self, batch: list[_Item]) -> None:
        """Count the sensitive values of the predictions of a delivered batch."""
        assert self._histograms is not None
        first: int | None = None
        for seq, record in batch:
            features = record[3] if record[0] == "predictions" else None
            if type(features) is PrivateFeatures:
                self._histograms.observe(features.sensitive)
                first = seq if first is None else first
        if first is not None:
            with self._lock:
                if self._hist_oldest is None:
                    self._hist_oldest = first

    def _histograms_due(self) -> bool:
        """Whether to send the counts now: the interval ended, or a flush waits for them
        (once the queue is empty, so that one flush ends one interval)."""
        histograms = self._histograms
        return (
            histograms is not None
            and histograms.pending
            and (
                bool(self._flush_waiters and not self._buffer)
                or time.monotonic() - self._interval_start >= self.flush_interval_s
            )
        )

    def _send_histograms(self) -> None:
        """Send the sensitive features' counts since the last interval as samples."""
        assert self._histograms is not None
        self._interval_start = time.monotonic()
        ts = time.time()
        if ts <= self._last_hist_ts:  # each interval its own timestamp, as the store keys on it
            ts = math.nextafter(self._last_hist_ts, math.inf)
        counts = self._histograms.take()
        for start in range(0, len(counts), self.batch_size):
            chunk = counts[start : start + self.batch_size]
            payloads = [("samples", _histogram_sample(self, ts, c)) for c in chunk]
            outcome = self._deliver(payloads)
            if outcome == "rejected":
                continue  # logged by _deliver; these counts cannot be sent
            if outcome != "sent":  # keep them for the next interval (bounded memory)
                self._histograms.restore(counts[start:])
                return
        self._last_hist_ts = ts
        with self._lock:
            self._hist_oldest = None

    def _deliver(self, payloads: list[tuple[str, dict[str, Any]]]) -> str:
        """Send one batch until it is accepted, refused, given up on, or the sender stops."""
        assert self._transport is not None
        body: dict[str, Any] = {"batch_id": uuid.uuid4().hex}
        for kind, payload in payloads:
            body.setdefault(kind, []).append(payload)
        data = gzip.compress(
            json.dumps(body, allow_nan=False, separators=(",", ":")).encode(), 6, mtime=0
        )
        first = time.monotonic()
        attempt = 0
        while not self._stop.is_set():
            delay_at_least: float | None = None
            try:
                status, headers, text = self._transport.post(data)
            except (OSError, http.client.HTTPException) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= status < 300:
                    return "sent"
                message = server_message(text)
                if 400 <= status < 500 and status not in (408, 429):
                    self._log(
                        f"rejected:{status}",
                        logging.WARNING,
                        "watchkeeper: ingest refused a batch of %d records (HTTP %d): %s",
                        len(payloads),
                        status,
                        message,
                    )
                    return "rejected"
                problem = f"HTTP {status}: {message}"
                delay_at_least = retry_after(headers.get("Retry-After"))
            attempt += 1
            if time.monotonic() - first > GIVE_UP_AFTER_S:
                self._log(
                    "send_failed",
                    logging.WARNING,
                    "watchkeeper: dropping a batch of %d records after %d attempts: %s",
                    len(payloads),
                    attempt,
                    problem,
                )
                return "send_failed"
            self._log("retry", logging.INFO, "watchkeeper: sending failed (%s), retrying", problem)
            delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
            delay *= 0.5 + self._random.random() / 2  # jitter: spread clients' retries
            if delay_at_least is not None:
                delay = max(delay, min(delay_at_least, RETRY_AFTER_CAP_S))
            self._stop.wait(delay)
        self._transport.close()
        return "stopped"


def _histogram_sample(sender: Sender, ts: float, count: HistogramCount) -> dict[str, Any]:
    feature, kind, key, n = count
    record = ("samples", HISTOGRAM_SERIES, ts, float(n), {"feature": feature, kind: key})
    return encode(record, sender.model, sender.version, sender.sample_rate)
