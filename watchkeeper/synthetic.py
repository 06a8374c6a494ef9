"""Synthetic model services for the demo: realistic traffic with incidents at known times.

Each service draws features from fixed distributions, scores them with a fixed formula and
reports through a real `Monitor`, exactly as a production service would. Incidents are given in
data time, so the same generator fills hours of history in seconds and then keeps going live.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from watchkeeper.collectors.client import Monitor


@dataclass(frozen=True, slots=True)
class Incident:
    """A change in a service's behaviour over `[start, end)` (Unix seconds; end may be inf)."""

    kind: str  # "errors", "drift", "outage", "slow"
    start: float
    end: float = math.inf
    strength: float = 1.0

    def active(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass
class SyntheticService:
    """A fake model service: `emit(t)` logs one prediction made at time `t`."""

    model: str
    version: str
    seed: int
    incidents: list[Incident] = field(default_factory=list)
    base_error_rate: float = 0.01

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _active(self, kind: str, t: float) -> Incident | None:
        for incident in self.incidents:
            if incident.kind == kind and incident.active(t):
                return incident
        return None

    def is_down(self, t: float) -> bool:
        return self._active("outage", t) is not None

    def features(self, t: float) -> dict[str, float]:
        rng = self._rng
        drift = self._active("drift", t)
        shift = drift.strength if drift else 0.0
        return {
            "amount": round(rng.lognormvariate(3.5 + 0.6 * shift, 0.8), 2),
            "customer_age": round(rng.gauss(41.0, 12.0), 1),
            "txn_last_24h": float(min(int(rng.expovariate(1 / 3.0)), 60)),
            "merchant_risk": round(rng.betavariate(2.0, 8.0), 4),
            "session_length_s": round(rng.gammavariate(2.0, 90.0), 1),
        }

    def emit(self, monitor: Monitor, t: float) -> bool:
        """Log the prediction made at `t`; False when the service is down then."""
        if self.is_down(t):
            return False
        rng = self._rng
        x = self.features(t)
        z = -4.0 + 0.015 * x["amount"] + 6.0 * x["merchant_risk"] + 0.1 * x["txn_last_24h"]
        score = 1.0 / (1.0 + math.exp(-z))
        errors = self._active("errors", t)
        error_rate = errors.strength if errors else self.base_error_rate
        failed = rng.random() < error_rate
        slow = self._active("slow", t)
        latency = rng.lognormvariate(math.log(0.025), 0.35) * (1.0 + (slow.strength if slow else 0))
        monitor.log_prediction(
            x,
            None if failed else round(score, 4),
            latency_s=latency,
            error=failed,
            timestamp=t,
        )
        return True


def demo_services(now: float, seed: int = 7) -> list[SyntheticService]:
    """The demo's two services and the incidents the demo is expected to catch.

    fraud-scorer: an error burst two and a half hours ago that lasted 30 minutes (fires, then
    resolves), and the `amount` feature drifting since 45 minutes ago (fires and stays firing).
    churn-model: healthy history, then live, 10 s after the demo starts, it goes silent for
    90 s (an outage the `up` check catches live), then recovers.
    """
    return [
        SyntheticService(
            model="fraud-scorer",
            version="2.3.0",
            seed=seed,
            incidents=[
                Incident("errors", now - 150 * 60, now - 120 * 60, strength=0.25),
                Incident("drift", now - 45 * 60, strength=1.0),
            ],
        ),
        SyntheticService(
            model="churn-model",
            version="1.4.1",
            seed=seed + 1,
            incidents=[Incident("outage", now + 10, now + 100)],
        ),
    ]


def backfill(
    services: list[SyntheticService],
    monitors: dict[str, Monitor],
    start: float,
    end: float,
    rate_per_min: float,
    progress: Callable[[float], None] | None = None,
) -> int:
    """Log predictions evenly spaced at `rate_per_min` for every service over `[start, end)`."""
    step = 60.0 / rate_per_min
    count = 0
    t = start
    total = max(end - start, 1.0)
    while t < end:
        for service in services:
            count += service.emit(monitors[service.model], t)
        t += step
        if progress is not None and count % 2000 == 0:
            progress((t - start) / total)
    return count


class LiveTraffic(threading.Thread):
    """Keeps services sending in real time, `rate_per_min` predictions a minute each."""

    def __init__(
        self,
        services: list[SyntheticService],
        monitors: dict[str, Monitor],
        rate_per_min: float,
    ) -> None:
        super().__init__(name="watchkeeper-demo-traffic", daemon=True)
        self.services = services
        self.monitors = monitors
        self.rate_per_min = rate_per_min
        self.sent = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        interval = 60.0 / self.rate_per_min
        next_tick = time.monotonic()
        while not self._stop_event.is_set():
            t = time.time()
            for service in self.services:
                self.sent += service.emit(self.monitors[service.model], t)
            next_tick += interval
            self._stop_event.wait(max(0.0, next_tick - time.monotonic()))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)
