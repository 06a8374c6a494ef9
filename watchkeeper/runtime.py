"""The serving process: ingest API, detector on a schedule, and alerting, wired together.

Data moves one way: the ingest API writes to the store, the detector reads the store and
writes findings, and alerting turns findings into alerts and notifications.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from prometheus_client import CollectorRegistry

from watchkeeper.alerting.manager import AlertManager
from watchkeeper.collectors.ingest import IngestServer, create_app
from watchkeeper.collectors.scraper import Scraper
from watchkeeper.config import Config
from watchkeeper.detector.engine import Detector
from watchkeeper.tsdb import Finding, SQLiteStore, Store, open_store

log = logging.getLogger(__name__)

ROLLUP_EVERY_S = 60.0


class Stack:
    """Runs ingest, detection and alerting in one process on one configuration.

    `start_ingest` and `start_detection` are separate so that the demo can fill history through
    the ingest API before the detector starts judging it.
    """

    def __init__(
        self,
        config: Config,
        *,
        console: TextIO | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.console = console
        self.clock = clock
        # One registry for the whole process, served by the ingest API's GET /metrics.
        self.registry = CollectorRegistry()
        self.store: Store = open_store(config.storage, registry=self.registry)
        self._ingest = IngestServer(
            create_app(self.store, config.ingest, registry=self.registry),
            config.ingest.host,
            config.ingest.port,
            ssl_certfile=config.ingest.tls_certfile,
            ssl_keyfile=config.ingest.tls_keyfile,
        )
        self._stop = threading.Event()
        self._detection: threading.Thread | None = None
        self._housekeeping: threading.Thread | None = None
        self._scraping: threading.Thread | None = None
        self._detection_ready = threading.Event()
        self._transitions = 0

    @property
    def ingest_url(self) -> str:
        return self._ingest.url

    @property
    def transitions(self) -> int:
        """How many alert transitions alerting has made since start."""
        return self._transitions

    def start_ingest(self) -> None:
        self._ingest.start()
        log.info("ingest API listening on %s", self._ingest.url)

    def start_detection(self) -> None:
        """Start the detector and alerting on their own thread, and wait until they run."""
        self._detection = threading.Thread(
            target=self._detect_and_alert, name="watchkeeper-detector", daemon=True
        )
        self._detection.start()
        if isinstance(self.store, SQLiteStore):
            self._housekeeping = threading.Thread(
                target=self._roll_up, args=(self.store,), name="watchkeeper-rollup", daemon=True
            )
            self._housekeeping.start()
        self._detection_ready.wait(timeout=30)

    def start_scraping(self) -> None:
        """Scrape the configured Prometheus targets into the store, each on its own thread."""
        if not self.config.scrape:
            return
        scraper = Scraper(self.config.scrape, self.store)
        self._scraping = threading.Thread(
            target=scraper.run_forever, args=(self._stop,), name="watchkeeper-scraper", daemon=True
        )
        self._scraping.start()
        log.info("scraping %d target(s)", len(self.config.scrape))

    def start(self) -> None:
        self.start_ingest()
        self.start_scraping()
        self.start_detection()

    def catch_up(self) -> tuple[int, int]:
        """Judge every window of stored history now, in this thread; (findings, transitions).

        The scheduled detector would do the same on its first run; doing it here lets a caller
        report when history has been judged before live detection starts.
        """
        alerts = AlertManager(
            self.config,
            self.config.storage.alert_state_file,
            console=self.console,
            clock=self.clock,
        )
        try:
            findings = Detector(self.store, self.config).run_once(self.clock())
            transitions = alerts.process(findings)
        finally:
            alerts.close()
        self._transitions += len(transitions)
        return len(findings), len(transitions)

    def _detect_and_alert(self) -> None:
        # Alerting's state connection belongs to the thread that uses it. Once started,
        # alerting flushes groups on its own ticker and delivers through one worker per
        # receiver URL, so a slow receiver never holds up detection.
        alerts = AlertManager(
            self.config,
            self.config.storage.alert_state_file,
            console=self.console,
            clock=self.clock,
            registry=self.registry,
        )
        alerts.start()
        detector = Detector(self.store, self.config)

        def on_findings(findings: list[Finding]) -> None:
            self._transitions += len(alerts.process(findings))

        self._detection_ready.set()
        try:
            detector.run_forever(self._stop, on_findings, clock=self.clock)
        finally:
            alerts.close()

    def _roll_up(self, store: SQLiteStore) -> None:
        """Keep the embedded store's per-minute and per-hour roll-ups current, so long-range
        queries (the dashboard's) read them instead of raw predictions."""
        while not self._stop.wait(ROLLUP_EVERY_S):
            try:
                store.rollup()
            except Exception:
                log.exception("roll-up failed; trying again in %ss", ROLLUP_EVERY_S)

    def stop(self) -> None:
        """Stop detection, then ingest; safe to call more than once."""
        self._stop.set()
        for thread in (self._detection, self._housekeeping, self._scraping):
            if thread is not None:
                thread.join(timeout=30)
        self._detection = self._housekeeping = self._scraping = None
        self._ingest.stop()
        self.store.close()

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
