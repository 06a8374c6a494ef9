"""Alerting's input: the findings detectors wrote to the store, read in order, exactly once.

Detectors never hand findings to alerting directly; they write them to the store, one
transaction per model and window, and alerting follows the store. That is what lets the two
run apart (several detector shards, one alerting replica), and what makes a crash harmless:
the follower keeps, per model, the newest window end it has passed to alerting in alerting's
own state file, so after a restart (even SIGKILL between storing findings and alerting on
them) it picks up the findings it had not processed yet. If it dies after alerting processed
a batch but before the cursor moved, the batch is processed again, which changes nothing:
a finding no newer than an alert's last update is ignored (`lifecycle.advance`).

One shard writes all windows of a model in order, so a per-model cursor never skips a
finding that a slower shard writes later for another model.

The first time a follower starts on a store that already holds findings, it starts from the
newest window of each model rather than alerting on history (as a fresh Alertmanager would);
a model that appears later is followed from its first finding.

If the store cannot be read (or another part of the process reports that it cannot be
written), the follower raises a `watchkeeper`/`store` alert itself, since that alert cannot
come through the store, once the outage has lasted `alert_after_s` (a lock held for a
moment is not an outage), and resolves it once reads work again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchkeeper.tsdb import Finding, Store

from .manager import AlertManager
from .outbox import connect
from .records import Transition

__all__ = ["SELF_MODEL", "STORE_CHECK", "FindingsFollower"]

log = logging.getLogger(__name__)

SELF_MODEL = "watchkeeper"
"""The `model` label of alerts about watchkeeper itself."""

STORE_CHECK = "store"
"""The `check` label of the alert raised while the store cannot be used."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS finding_cursors (model TEXT PRIMARY KEY, window_end REAL NOT NULL);
CREATE TABLE IF NOT EXISTS follow_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class FindingsFollower:
    """Feeds `alerts` every finding in `store` it has not seen yet; cursors in `state_path`."""

    def __init__(
        self,
        store: Store,
        alerts: AlertManager,
        state_path: Path,
        *,
        clock: Callable[[], float] = time.time,
        alert_after_s: float = 60.0,
    ) -> None:
        self.store = store
        self.alerts = alerts
        self.clock = clock
        self.alert_after_s = alert_after_s
        self._lock = threading.Lock()
        self._conn = connect(Path(state_path))
        self._conn.executescript(_SCHEMA)
        self._outage_since: float | None = None
        self._outage_reason = ""

    def __repr__(self) -> str:
        return f"FindingsFollower(store={self.store!r})"

    @property
    def store_outage(self) -> str | None:
        """Why the store is unusable right now (None while it works)."""
        return self._outage_reason if self._outage_since is not None else None

    def cursors(self) -> dict[str, float]:
        """The newest window end passed to alerting, per model."""
        rows = self._conn.execute("SELECT model, window_end FROM finding_cursors")
        return {str(model): float(end) for model, end in rows}

    def poll(self) -> list[Transition]:
        """Process every new finding; the transitions made. A store failure raises the
        store alert instead of propagating (and its recovery resolves it)."""
        with self._lock:
            try:
                batches = self._read_new()
            except Exception as exc:  # any backend's read failure
                return self._store_failed(f"reading findings failed: {exc}")
            transitions = self._store_recovered()
            for model, findings in batches:
                transitions.extend(self.alerts.process(findings))
                with self._conn:
                    self._conn.execute(
                        "INSERT INTO finding_cursors (model, window_end) VALUES (?, ?) "
                        "ON CONFLICT (model) DO UPDATE SET window_end = excluded.window_end",
                        (model, max(f.window_end for f in findings)),
                    )
            return transitions

    def report_store_failure(self, reason: str) -> list[Transition]:
        """Tell alerting that another part of this process could not use the store (e.g. the
        detector's writes failed); the next successful `poll` ends the outage."""
        with self._lock:
            return self._store_failed(reason)

    def close(self) -> None:
        self._conn.close()

    def _read_new(self) -> list[tuple[str, list[Finding]]]:
        models = [m.name for m in self.store.models()]
        cursors = self.cursors()
        if self._conn.execute("SELECT 1 FROM follow_meta WHERE key = 'started'").fetchone() is None:
            self._start_from_newest(models, cursors)
        batches: list[tuple[str, list[Finding]]] = []
        for model in models:
            after = cursors.get(model)
            start = None if after is None else math.nextafter(after, math.inf)
            findings = self.store.findings(model, start)
            if findings:
                batches.append((model, findings))
        return batches

    def _start_from_newest(self, models: list[str], cursors: dict[str, float]) -> None:
        with self._conn:
            for model in models:
                newest = self.store.last_evaluated(model)
                if newest is not None and model not in cursors:
                    self._conn.execute(
                        "INSERT INTO finding_cursors (model, window_end) VALUES (?, ?)",
                        (model, newest),
                    )
                    cursors[model] = newest
            self._conn.execute(
                "INSERT INTO follow_meta (key, value) VALUES ('started', ?)", (str(self.clock()),)
            )
        if cursors:
            log.info(
                "alerting: following findings from the newest window of %d model(s)", len(cursors)
            )

    def _store_failed(self, reason: str) -> list[Transition]:
        now = self.clock()
        if self._outage_since is None:
            log.error("alerting: the store cannot be used: %s", reason)
            self._outage_since = now
        self._outage_reason = reason
        self.alerts.store_ok = False
        if now - self._outage_since < self.alert_after_s:
            return []
        return self.alerts.process([self._outage_finding(now, breached=True)])

    def _store_recovered(self) -> list[Transition]:
        if self._outage_since is None:
            return []
        log.warning(
            "alerting: the store works again after %.0f s", self.clock() - self._outage_since
        )
        finding = self._outage_finding(self.clock(), breached=False)
        self._outage_since = None
        self._outage_reason = ""
        self.alerts.store_ok = True
        return self.alerts.process([finding])

    def _outage_finding(self, now: float, *, breached: bool) -> Finding:
        since = self._outage_since if self._outage_since is not None else now
        began = time.strftime("%H:%M:%S", time.gmtime(since))
        summary = (
            f"watchkeeper cannot use its store since {began} UTC: {self._outage_reason}; "
            "models are not judged until it is back"
            if breached
            else "the store works again"
        )
        return Finding(
            model=SELF_MODEL,
            check=STORE_CHECK,
            subject="",
            statistic="store_unavailable_s",
            value=now - since,
            threshold=0.0,
            breached=breached,
            severity="critical",
            window_start=since,
            window_end=now,
            summary=summary,
        )
