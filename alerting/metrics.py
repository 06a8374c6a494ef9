"""Alerting's own metrics, on a prometheus-client registry the caller passes in.

`watchkeeper_notifications_sent_total{receiver}`,
`watchkeeper_notifications_failed_total{receiver,reason}` (reason: retryable, final, timeout,
deadline), `watchkeeper_notification_send_seconds{receiver}` and
`watchkeeper_notification_queue_depth`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class DeliveryMetrics:
    """The delivery counters, latency histogram and queue-depth gauge on `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._sent = Counter(
            "watchkeeper_notifications_sent",
            "Notifications delivered, by receiver.",
            ["receiver"],
            registry=registry,
        )
        self._failed = Counter(
            "watchkeeper_notifications_failed",
            "Failed notification attempts, by receiver and reason.",
            ["receiver", "reason"],
            registry=registry,
        )
        self._latency = Histogram(
            "watchkeeper_notification_send_seconds",
            "Time one send attempt took, by receiver.",
            ["receiver"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self._depth = Gauge(
            "watchkeeper_notification_queue_depth",
            "Notifications queued and not yet delivered.",
            registry=registry,
        )

    def __repr__(self) -> str:
        return f"DeliveryMetrics(registry={self.registry!r})"

    def sent(self, receiver: str) -> None:
        self._sent.labels(receiver).inc()

    def failed(self, receiver: str, reason: str) -> None:
        self._failed.labels(receiver, reason).inc()

    def latency(self, receiver: str, seconds: float) -> None:
        self._latency.labels(receiver).observe(seconds)

    def queue_depth(self, depth: int) -> None:
        self._depth.set(depth)
