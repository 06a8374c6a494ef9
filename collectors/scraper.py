"""The Prometheus scraper: reads `/metrics` of model servers that already expose them.

Teams whose model servers (KServe, Triton, TorchServe, BentoML, MLServer, ...) expose Prometheus
metrics get health monitoring by listing them under `scrape:` in `watchkeeper.yaml`. Every
`interval` each target's exposition is fetched (Prometheus text format or OpenMetrics, parsed
with `prometheus_client`'s own parsers), and each sample is stored as a `Sample` of the
target's model: its name as exposed (`requests_total`, `latency_bucket`, ...), its labels plus
the target's `labels` and an `instance` label (host:port), at the scrape time (or the
sample's own timestamp). Counters are stored as the cumulative values they are; turning them
into rates is the detector's job.

Like Prometheus, each scrape also records `up` (1 when the target answered with parseable
metrics, else 0), `scrape_duration_seconds` and `scrape_samples_scraped`, so that "the model
server is down" is a series like any other. Samples whose value is NaN or infinite (no store
can hold them) are skipped and counted in `ScrapeResult.skipped`.

    scraper = Scraper(config.scrape, store)
    stop = threading.Event()
    threading.Thread(target=scraper.run_forever, args=(stop,)).start()
    ...
    stop.set()
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from watchkeeper.config import ScrapeTarget
from watchkeeper.tsdb import Sample, Store

__all__ = ["ACCEPT", "MAX_BODY_BYTES", "ScrapeResult", "Scraper", "parse_exposition"]

log = logging.getLogger(__name__)

ACCEPT = "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
MAX_BODY_BYTES = 64_000_000
"""A larger exposition is refused (up=0): a scrape must not exhaust the server's memory."""


@dataclass(frozen=True, slots=True)
class ScrapeResult:
    """What one scrape of one target gave: whether it was up, samples stored and skipped."""

    target: ScrapeTarget
    up: bool
    samples: int
    skipped: int
    duration_s: float
    error: str = ""


def parse_exposition(text: str, content_type: str) -> Iterable[Metric]:
    """Metric families from exposition text; OpenMetrics when the content type says so."""
    if content_type.split(";", 1)[0].strip().lower() == "application/openmetrics-text":
        families: Iterable[Metric] = parse_openmetrics(text)  # type: ignore[no-untyped-call]
        return families
    return parse_text(text)


class Scraper:
    """Scrape `targets` into `store`, each target on its own schedule (see the module doc)."""

    def __init__(
        self,
        targets: Sequence[ScrapeTarget],
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.targets = list(targets)
        self.store = store
        self.clock = clock

    def __repr__(self) -> str:
        return f"Scraper(targets={[t.url for t in self.targets]!r})"

    def scrape(self, target: ScrapeTarget) -> ScrapeResult:
        """Scrape one target once and store what it gave; never raises for target problems."""
        now = self.clock()
        started = time.monotonic()
        base = dict(target.labels)
        base["instance"] = urlsplit(target.url).netloc
        samples: list[Sample] = []
        skipped = 0
        error = ""
        try:
            text, content_type = self._fetch(target)
            for family in parse_exposition(text, content_type):
                for s in family.samples:
                    value = float(s.value)
                    if not math.isfinite(value):
                        skipped += 1
                        continue
                    labels = {**s.labels, **base}
                    ts = now if s.timestamp is None else float(s.timestamp)
                    samples.append(_sample(target.model, s.name, ts, value, labels))
        except Exception as exc:  # any failure is "down", like Prometheus
            error = f"{type(exc).__name__}: {exc}"
            samples, skipped = [], 0
        up = not error
        duration = time.monotonic() - started
        health = [
            ("up", 1.0 if up else 0.0),
            ("scrape_duration_seconds", duration),
            ("scrape_samples_scraped", float(len(samples) + skipped)),
        ]
        samples.extend(_sample(target.model, name, now, v, base) for name, v in health)
        try:
            self.store.write(samples=samples)
        except Exception as exc:
            log.warning("scrape of %s not stored: %s", target.url, exc)
            error = error or f"store: {exc}"
        if not up:
            log.warning("scrape of %s failed: %s", target.url, error)
        return ScrapeResult(target, up, len(samples) - len(health), skipped, duration, error)

    def run_forever(self, stop: threading.Event) -> None:
        """Scrape every target every `interval` until `stop` is set; one thread per target."""
        threads = [
            threading.Thread(
                target=self._loop, args=(target, stop), name=f"scrape-{target.url}", daemon=True
            )
            for target in self.targets
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _loop(self, target: ScrapeTarget, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.scrape(target)
            except Exception:  # a bug must not stop the other scrapes
                log.exception("scraping %s failed unexpectedly", target.url)
            stop.wait(max(0.0, target.interval - (time.monotonic() - started)))

    def _fetch(self, target: ScrapeTarget) -> tuple[str, str]:
        headers = {"Accept": ACCEPT, "User-Agent": "watchkeeper-scraper/0.1"}
        if target.bearer_token_env:
            token = os.environ.get(target.bearer_token_env)
            if not token:
                raise RuntimeError(f"environment variable {target.bearer_token_env} is not set")
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(target.url, headers=headers)
        with urllib.request.urlopen(request, timeout=target.timeout) as response:
            body = response.read(MAX_BODY_BYTES + 1)
            content_type = response.headers.get("Content-Type", "text/plain")
        if len(body) > MAX_BODY_BYTES:
            raise ValueError(f"exposition is over {MAX_BODY_BYTES} bytes")
        return body.decode("utf-8"), content_type


def _sample(model: str, name: str, ts: float, value: float, labels: dict[str, str]) -> Sample:
    return Sample(model, name, ts, value, "", tuple(sorted(labels.items())))
