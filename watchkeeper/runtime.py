"""The serving process: ingest API, scraper, detector and alerting, wired together.

Data moves one way: ingest and the scraper write to the store, the detector reads the store
and writes findings back, and alerting follows the findings in the store
(`alerting.follow`) and turns them into alerts and notifications. Because the parts meet
only in the store, one process may run all of them (`watchkeeper serve`, the default) or
any subset (`serve --role ingest`, `watchkeeper detect --shard 1/2`, `serve --role alerting`)
so that a fleet can scale each part on its own; see docs/scaling.md.

When the store cannot be used, the detector stops judging (it would page on missing data)
and alerting raises a `watchkeeper`/`store` alert of its own; once the store is back, the
detector waits one more interval (`OUTAGE_GRACE_S` at least) so that what clients buffered
during the outage arrives before those windows are judged.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Collection
from types import TracebackType
from typing import TextIO

from prometheus_client import CollectorRegistry

from watchkeeper.alerting.follow import FindingsFollower
from watchkeeper.alerting.manager import AlertManager
from watchkeeper.audit import tokens_recorder
from watchkeeper.collectors.ingest import IngestServer, create_app
from watchkeeper.collectors.scraper import Scraper
from watchkeeper.config import Config
from watchkeeper.detector.engine import Detector
from watchkeeper.detector.shard import Shard
from watchkeeper.health import Health
from watchkeeper.roles import ROLES
from watchkeeper.tsdb import SQLiteStore, Store, open_store
from watchkeeper.tsdb.errors import is_store_error

log = logging.getLogger(__name__)

ROLLUP_EVERY_S = 60.0
OUTAGE_GRACE_S = 30.0


def probe_writable(store: Store) -> None:
    """Raise if the embedded store cannot take its write lock now (another process holds it
    past the busy timeout). Reads keep working then (WAL), so only a write tells; InfluxDB
    is unreachable for reads and writes alike, which the detector's reads show."""
    if isinstance(store, SQLiteStore):
        conn = sqlite3.connect(store.path, timeout=store.busy_timeout_s, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        finally:
            conn.close()


class StartupError(RuntimeError):
    """A part of the stack could not start (the message says which and why)."""


class Stack:
    """Runs some or all of ingest, scraper, detector and alerting on one configuration.

    `roles` picks the parts; `shard` restricts the detector to its share of the models and
    the scraper to its share of the targets. `status_port` gives a process without the
    ingest API its own `GET /healthz` and `GET /metrics` (None: none). A store outage that
    lasts `store_alert_after_s` raises alerting's `watchkeeper`/`store` alert.

    `start_ingest` and `start_detection` are separate so that the demo can fill history through
    the ingest API before the detector starts judging it.
    """

    def __init__(
        self,
        config: Config,
        *,
        roles: Collection[str] = ROLES,
        shard: Shard | None = None,
        status_port: int | None = None,
        store_alert_after_s: float = 60.0,
        console: TextIO | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        unknown = sorted(set(roles) - set(ROLES))
        if unknown or not roles:
            raise ValueError(f"roles must be some of {', '.join(ROLES)}; got {sorted(roles)}")
        self.config = config
        self.roles = frozenset(roles)
        self.shard = shard
        self.store_alert_after_s = store_alert_after_s
        self.console = console
        self.clock = clock
        self.health = Health(clock)
        # One registry for the whole process, served by GET /metrics.
        self.registry = CollectorRegistry()
        self.store: Store = open_store(config.storage, registry=self.registry)
        self._server: IngestServer | None = None
        if "ingest" in self.roles:
            self._server = IngestServer(
                create_app(
                    self.store,
                    config.ingest,
                    registry=self.registry,
                    health=self.health,
                    on_tokens_reload=tokens_recorder(config.storage.alert_state_file),
                ),
                config.ingest.host,
                config.ingest.port,
                ssl_certfile=config.ingest.tls_certfile,
                ssl_keyfile=config.ingest.tls_keyfile,
            )
        elif status_port is not None:
            from watchkeeper.status import create_status_app

            self._server = IngestServer(
                create_status_app(self.store, self.health, self.registry),
                config.ingest.host,
                status_port,
            )
        self._stop = threading.Event()
        self._detection: threading.Thread | None = None
        self._housekeeping: threading.Thread | None = None
        self._scraping: threading.Thread | None = None
        self._detection_ready = threading.Event()
        self._detection_failure: tuple[str, Exception] | None = None
        self._transitions = 0
        self._resume_at = float("-inf")

    @property
    def ingest_url(self) -> str:
        """The URL of this process's HTTP server (the ingest API, or the status app)."""
        if self._server is None:
            raise RuntimeError("this process serves no HTTP (no ingest role, no status port)")
        return self._server.url

    @property
    def serves_http(self) -> bool:
        return self._server is not None

    @property
    def transitions(self) -> int:
        """How many alert transitions alerting has made since start."""
        return self._transitions

    def start_ingest(self) -> None:
        """Start the HTTP server: the ingest API, or only health and metrics."""
        if self._server is None:
            return
        self._server.start()
        if "ingest" in self.roles:
            self.health.report("ingest", True, "accepting POST /v1/ingest")
            log.info("ingest API listening on %s", self._server.url)
        else:
            log.info("health and metrics on %s", self._server.url)

    def start_detection(self) -> None:
        """Start the detector and/or alerting on their own thread, and wait until they run."""
        if not self.roles & {"detector", "alerting"}:
            return
        self._detection = threading.Thread(
            target=self._detect_and_alert, name="watchkeeper-detector", daemon=True
        )
        self._detection.start()
        self._detection_ready.wait(timeout=30)
        if self._detection_failure is not None:
            part, failure = self._detection_failure
            raise StartupError(f"{part} could not start: {failure}") from failure
        if isinstance(self.store, SQLiteStore) and "detector" in self.roles:
            self._housekeeping = threading.Thread(
                target=self._roll_up, args=(self.store,), name="watchkeeper-rollup", daemon=True
            )
            self._housekeeping.start()

    def start_scraping(self) -> None:
        """Scrape the configured Prometheus targets (this shard's) into the store."""
        if "scraper" not in self.roles:
            return
        targets = [
            t for t in self.config.scrape if self.shard is None or self.shard.owns(str(t.url))
        ]
        if not targets:
            return
        scraper = Scraper(targets, self.store)
        self._scraping = threading.Thread(
            target=scraper.run_forever, args=(self._stop,), name="watchkeeper-scraper", daemon=True
        )
        self._scraping.start()
        self.health.report("scraper", True, f"scraping {len(targets)} target(s)")
        log.info("scraping %d target(s)", len(targets))

    def start(self) -> None:
        self.start_ingest()
        self.start_scraping()
        self.start_detection()

    def _alert_manager(self, *, background: bool) -> AlertManager:
        # Alerting's state connection belongs to the thread that uses it.
        return AlertManager(
            self.config,
            self.config.storage.alert_state_file,
            console=self.console,
            clock=self.clock,
            registry=self.registry if background else None,
        )

    def catch_up(self) -> tuple[int, int]:
        """Judge every window of stored history now, in this thread; (findings, transitions).

        The scheduled detector would do the same on its first run; doing it here lets a caller
        report when history has been judged before live detection starts.
        """
        alerts = self._alert_manager(background=False)
        follower = FindingsFollower(
            self.store, alerts, self.config.storage.alert_state_file, clock=self.clock
        )
        try:
            follower.poll()  # first start: from the newest stored window, not history
            findings = Detector(self.store, self.config, shard=self.shard).run_once(self.clock())
            transitions = follower.poll()
        finally:
            follower.close()
            alerts.close()
        self._transitions += len(transitions)
        return len(findings), len(transitions)

    def _detect_and_alert(self) -> None:
        # Once started, alerting flushes groups on its own ticker and delivers through one
        # worker per receiver URL, so a slow receiver never holds up detection.
        alerts: AlertManager | None = None
        follower: FindingsFollower | None = None
        detector = None
        part = "alerting"
        try:
            if "alerting" in self.roles:
                alerts = self._alert_manager(background=True)
                alerts.start()
                follower = FindingsFollower(
                    self.store,
                    alerts,
                    self.config.storage.alert_state_file,
                    clock=self.clock,
                    alert_after_s=self.store_alert_after_s,
                )
            part = "the detector"
            if "detector" in self.roles:
                detector = Detector(self.store, self.config, shard=self.shard)
        except Exception as exc:  # a receiver apprise refuses, an unusable state file, ...
            # `start_detection` raises it in the starting thread: a process that cannot
            # alert must not carry on looking healthy
            self._detection_failure = (part, exc)
            if alerts is not None:
                alerts.close()
            self._detection_ready.set()
            return
        interval = self.config.detector.interval
        self._detection_ready.set()
        try:
            while not self._stop.is_set():
                outage = self._detect(detector, interval) if detector is not None else None
                if follower is not None:
                    self._alert(follower, outage, interval)
                self._stop.wait(interval)
        finally:
            if follower is not None:
                follower.close()
            if alerts is not None:
                alerts.close()

    def _detect(self, detector: Detector, interval: float) -> str | None:
        """One detector run unless the store is out or just came back; why the store is out
        (None if it works)."""
        now = self.clock()
        stale_after = max(3 * interval, 60.0)
        shard = f" (shard {self.shard})" if self.shard is not None else ""
        if now < self._resume_at < float("inf"):
            self.health.report(
                "detector",
                True,
                f"waiting {self._resume_at - now:.0f} s after a store outage for buffered data",
                stale_after=stale_after,
            )
            return None
        try:
            probe_writable(self.store)
            findings = detector.run_once(now)
        except Exception as exc:
            failure: Exception | None = exc
            findings = []
        else:
            failure = next((e for e in detector.errors.values() if is_store_error(e)), None)
        if failure is not None and (is_store_error(failure) or not detector.errors):
            reason = f"{type(failure).__name__}: {failure}"
            self._resume_at = float("inf")
            self.health.report("store", False, reason)
            self.health.report(
                "detector", False, f"paused: the store cannot be used ({reason})",
                stale_after=stale_after,
            )  # fmt: skip
            log.error("detector: the store cannot be used, not judging: %s", reason)
            return reason
        if self._resume_at == float("inf"):  # the store is back: let buffered data arrive
            self._resume_at = now + max(interval, OUTAGE_GRACE_S)
            self.health.report("store", True, "works again")
            log.warning("detector: the store works again; judging resumes in a moment")
            return None
        self.health.report("store", True, "")
        failed = f"; {len(detector.errors)} model(s) failed" if detector.errors else ""
        self.health.report(
            "detector",
            not detector.errors,
            f"{detector.judged} model(s){shard}, {len(findings)} finding(s) in the last run"
            f"{failed}",
            stale_after=stale_after,
        )
        return None

    def _alert(self, follower: FindingsFollower, outage: str | None, interval: float) -> None:
        # What the detector saw counts as well as the follower's own reads (SQLite can be
        # readable while it cannot be written); a successful read ends an outage.
        if outage is not None:
            self._transitions += len(follower.report_store_failure(outage))
        else:
            self._transitions += len(follower.poll())
        problem = follower.store_outage
        self.health.report(
            "alerting",
            problem is None,
            "following findings" if problem is None else f"store alert firing: {problem}",
            stale_after=max(3 * interval, 60.0),
        )

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
        if self._server is not None:
            self._server.stop()
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
