"""Delivery of queued notifications: per target, with a hard time limit, backoff and a deadline.

Every target URL of every receiver is delivered on its own: in the background each has its own
worker thread, and a synchronous `drain` sends to all targets in parallel. So a receiver that
fails or hangs never delays the others. A send that takes longer than `send_timeout_s` is
abandoned (apprise runs in a helper thread that is left to finish on its own) and counted as
a retryable failure. Retryable failures are tried again after an exponentially growing wait
with jitter, until the message's deadline; final failures (e.g. a 4xx) are not.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .metrics import DeliveryMetrics
from .notify import Notifier, SendResult
from .outbox import Outbox, QueuedMessage, RecordSent, record_sent_stage
from .state import AlertStateStore

logger = logging.getLogger(__name__)


def target_key(receiver: str, notifier_name: str) -> str:
    """How a target is named in the queue: receiver and masked URL (never a secret)."""
    return f"{receiver}|{notifier_name}"


def send_with_limit(notifier: Notifier, title: str, body: str, limit_s: float) -> SendResult:
    """`notifier.send` cut off after `limit_s` seconds; never raises."""
    box: list[SendResult] = []

    def run() -> None:
        try:
            box.append(notifier.send(title, body))
        except Exception as exc:  # a notifier bug must not stop delivery
            logger.exception("notifier %s raised", notifier.name)
            box.append(SendResult(ok=False, retryable=False, detail=f"raised {exc!r}"))

    worker = threading.Thread(target=run, name=f"send-{notifier.name}", daemon=True)
    worker.start()
    worker.join(limit_s)
    if not box:
        return SendResult(ok=False, retryable=True, detail=f"timed out after {limit_s:g}s")
    return box[0]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Waits of about `base_s`, twice that, ... up to `max_s`, each with ±50% jitter."""

    base_s: float = 1.0
    max_s: float = 300.0

    def wait(self, attempts: int, rng: random.Random) -> float:
        raw = min(self.max_s, self.base_s * 2 ** max(0, attempts - 1))
        return float(raw * rng.uniform(0.5, 1.5))


class Deliverer:
    """Sends what the outbox holds to `targets` (target key → notifier) and records outcomes
    through the pipeline's `record_sent` stage (default: `record_sent_stage(outbox, log)`)."""

    def __init__(
        self,
        outbox: Outbox,
        log: AlertStateStore,
        targets: Mapping[str, Notifier],
        *,
        send_timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        metrics: DeliveryMetrics | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        record_sent: RecordSent | None = None,
    ) -> None:
        self.outbox = outbox
        self.targets = dict(targets)
        self.send_timeout_s = send_timeout_s
        self.retry = retry or RetryPolicy()
        self.metrics = metrics
        self.clock = clock
        self._log = log
        self._record_sent = record_sent or record_sent_stage(outbox, log)
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._wake: dict[str, threading.Event] = {k: threading.Event() for k in self.targets}
        self._workers: list[threading.Thread] = []

    def __repr__(self) -> str:
        return f"Deliverer(targets={sorted(self.targets)!r})"

    def drain(self, max_attempts: int = 3) -> None:
        """Deliver every due message now, all targets in parallel; wait for them to finish.

        Each message gets up to `max_attempts` attempts here, with backoff sleeps between
        them; one still failing stays queued for a later drain or the background workers.
        """
        threads = [
            threading.Thread(target=self._drain_target, args=(key, max_attempts), daemon=True)
            for key in sorted(self.outbox.queued_targets() & set(self.targets))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def start(self) -> None:
        """One background worker per target, until `stop`."""
        for key in sorted(self.targets):
            worker = threading.Thread(
                target=self._work, args=(key,), name=f"deliver-{key}", daemon=True
            )
            worker.start()
            self._workers.append(worker)

    def wake(self) -> None:
        """Tell the workers new messages were queued."""
        for event in self._wake.values():
            event.set()

    def stop(self, timeout_s: float = 15.0) -> None:
        self._stop.set()
        self.wake()
        for worker in self._workers:
            worker.join(timeout_s)
        self._workers = []

    def _work(self, key: str) -> None:
        wake = self._wake[key]
        while not self._stop.is_set():
            try:
                for queued in self.outbox.due(key, self.clock()):
                    if self._stop.is_set():
                        return
                    self._deliver(queued, key, max_attempts=1)
                next_due = self.outbox.next_due(key)
            except Exception:  # the state file may be busy; keep the worker alive
                logger.exception("delivery worker for %s failed; retrying", key)
                next_due = self.clock() + 1.0
            wait = 1.0 if next_due is None else min(1.0, max(0.0, next_due - self.clock()))
            wake.wait(wait)
            wake.clear()

    def _drain_target(self, key: str, max_attempts: int) -> None:
        for queued in self.outbox.due(key, self.clock(), limit=10_000):
            self._deliver(queued, key, max_attempts)

    def _deliver(self, queued: QueuedMessage, key: str, max_attempts: int) -> None:
        notifier = self.targets[key]
        message = queued.message
        attempts = queued.attempts
        tries = 0
        while True:
            now = self.clock()
            if now > queued.deadline:
                self._finish(queued, notifier, "failed", "deadline passed before delivery", now)
                if self.metrics:
                    self.metrics.failed(message.receiver, "deadline")
                return
            if not self.outbox.claim(queued.id, now, now + self.send_timeout_s + 1.0):
                return  # sent or being sent by another sender
            attempts += 1
            tries += 1
            started = time.monotonic()
            result = send_with_limit(notifier, message.title, message.body, self.send_timeout_s)
            if self.metrics:
                self.metrics.latency(message.receiver, time.monotonic() - started)
            now = self.clock()
            detail = result.detail if tries == 1 else f"{result.detail} ({tries} attempts)"
            if result.ok:
                self._finish(queued, notifier, "sent", detail, now)
                if self.metrics:
                    self.metrics.sent(message.receiver)
                return
            if self.metrics:
                reason = (
                    "timeout"
                    if result.detail.startswith("timed out")
                    else ("retryable" if result.retryable else "final")
                )
                self.metrics.failed(message.receiver, reason)
            logger.warning(
                "alert %s (%s) not delivered to %s: %s",
                message.title,
                message.dedup_key,
                notifier.name,
                detail,
            )
            if not result.retryable:
                self._finish(queued, notifier, "failed", detail, now)
                return
            wait = self.retry.wait(attempts, self._rng)
            if tries >= max_attempts or self._stop.is_set():
                self._log.record_notification(
                    message.fingerprints[0] if message.fingerprints else "",
                    message.state,
                    notifier.name,
                    False,
                    detail,
                    now,
                )
                self.outbox.mark(queued.id, "queued", detail, now, next_attempt_at=now + wait)
                self._update_depth()
                return
            self.outbox.mark(queued.id, "queued", detail, now, next_attempt_at=now + wait)
            self._stop.wait(wait)

    def _finish(
        self, queued: QueuedMessage, notifier: Notifier, status: str, detail: str, now: float
    ) -> None:
        """The pipeline's record-sent stage, then the queue-depth metric."""
        self._record_sent(queued, notifier.name, status, detail, now)
        self._update_depth()

    def _update_depth(self) -> None:
        if self.metrics:
            self.metrics.queue_depth(self.outbox.depth())
