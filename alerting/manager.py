"""The alert manager: findings in, alert state kept, people told through the pipeline.

For each finding, in data-time order: advance its alert one step (`lifecycle.advance`), persist
it, and put a `firing` or `resolved` alert into the notify pipeline (`build_pipeline`), which
groups, mutes, dedups and queues notifications durably. Time in the pipeline only moves
forward: it is the latest of the findings' data time and the clock, so replaying history gives
the notification times live running would have given, and live running follows the clock.

Delivery is synchronous by default (`process` ends by draining the queue, every target in
parallel, up to `max_attempts` tries each); after `start()` a ticker thread and one worker per
target deliver in the background instead, and `process` only queues.

NoData is judged on the wall clock (`clock`), against when findings *arrived*: at the end of
`process`, at every `tick` and on the background ticker, a pending or firing alert that has had
no finding for `no_data_after` goes to `no_data_state` and a `check="nodata"` alert fires for
its series (see `nodata`), resolved by the next finding of that series.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TextIO

from prometheus_client import CollectorRegistry

from watchkeeper.config import Config
from watchkeeper.tsdb import Finding

from .alertmanager import AlertmanagerHandoff
from .annotations import runbooks
from .delivery import Deliverer, RetryPolicy, target_key
from .feedback import FeedbackStore
from .lifecycle import advance, alert_labels
from .metrics import DeliveryMetrics
from .muting import Inhibitor
from .nodata import (
    NODATA_CHECK,
    apply_no_data,
    clear_no_data,
    is_stale,
    no_data_after,
    nodata_labels,
    raise_no_data,
)
from .notify import ConsoleNotifier, Notifier
from .outbox import Outbox
from .pipeline import Notice, Pipeline, build_pipeline
from .records import Alert, NotificationRecord, Transition, fingerprint
from .setup import inhibit_rules, receivers, route_tree
from .silences import SilenceStore
from .state import AlertStateStore

logger = logging.getLogger(__name__)

#: Transitions that are sent to receivers; `pending` is only kept, like Prometheus.
NOTIFY_STATES = frozenset({"firing", "resolved"})


class AlertManager:
    """Keeps alert state in `state_path` and notifies the configured receivers.

    `notifiers` replaces the default receiver's URLs (tests, embedding); `console` is where
    the one-line console output goes when `config.alerting.console` is on (standard output
    when None). `max_attempts` and `retry_base_s` shape synchronous delivery: up to that many
    tries per message, waits of about `retry_base_s`, twice that, ... with jitter. `registry`
    receives the delivery metrics; `clock` is the wall clock.
    """

    def __init__(
        self,
        config: Config,
        state_path: Path,
        notifiers: Sequence[Notifier] | None = None,
        console: TextIO | None = None,
        *,
        max_attempts: int = 3,
        retry_base_s: float | None = None,
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        alerting = config.alerting
        self.config = config
        self.state_path = Path(state_path)
        self.max_attempts = max_attempts
        self.clock = clock
        self._state = AlertStateStore(self.state_path)
        self._outbox = Outbox(self.state_path)
        self._silences = SilenceStore(self.state_path)
        self._feedback = FeedbackStore(self.state_path)
        self.receivers = receivers(alerting, notifiers)
        self.notifiers: tuple[Notifier, ...] = tuple(t for r in self.receivers for t in r.targets)
        self._console = ConsoleNotifier(console) if alerting.console else None
        self.metrics = DeliveryMetrics(registry) if registry is not None else None
        self._rules = inhibit_rules(alerting)
        runbook = runbooks(config)
        self.pipeline: Pipeline = build_pipeline(
            route_tree(alerting.route),
            self.receivers,
            self._outbox,
            inhibitor=self._inhibitor,
            silencer=self._silences.muter,
            log=self._state,
            deadline_s=alerting.delivery_deadline,
            dashboard_url=alerting.dashboard_url,
            runbook=runbook,
            on_queued=self._queued,
            clock=clock,
        )
        retry = RetryPolicy(
            base_s=retry_base_s if retry_base_s is not None else alerting.retry_backoff,
            max_s=alerting.retry_backoff_max,
        )
        self.deliverer = Deliverer(
            self._outbox,
            self._state,
            {target_key(r.name, t.name): t for r in self.receivers for t in r.targets},
            send_timeout_s=alerting.send_timeout,
            retry=retry,
            metrics=self.metrics,
            clock=clock,
            record_sent=self.pipeline.record_sent,
        )
        self.handoffs = [
            AlertmanagerHandoff(
                url,
                resend_s=alerting.alertmanager_resend,
                timeout_s=alerting.send_timeout,
                generator_url=alerting.dashboard_url,
                runbook=runbook,
            )
            for url in alerting.alertmanager_urls
        ]
        self._lock = threading.RLock()
        self._now = float("-inf")
        self._restored = False
        self._background = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._nodata: set[str] | None = None  # fingerprints of firing nodata alerts
        # False while the store cannot be read (set by the follower): no finding can arrive
        # then, so silence is not "no data" and stale alerts are left as they are.
        self.store_ok = True

    def __repr__(self) -> str:
        names = [n.name for n in self.notifiers]
        return f"AlertManager(state_path={str(self.state_path)!r}, notifiers={names!r})"

    def process(self, findings: Sequence[Finding]) -> list[Transition]:
        """Advance alerts by `findings` (sorted by window end here) and notify.

        Returns every transition made, `pending` ones included; only `firing` and `resolved`
        go into the pipeline.
        """
        transitions: list[Transition] = []
        with self._lock:
            arrived = self.clock()
            for finding in sorted(findings, key=lambda f: f.window_end):
                # Flushes due before this finding run first; those due at its time, after it.
                self._tick(finding.window_end, inclusive=False)
                model = self.config.model(finding.model)
                labels = alert_labels(finding, model.labels)
                key = fingerprint(labels)
                current = self._state.get(key)
                for_s, keep_firing_for_s = self._timing(finding)
                alert, moved = advance(current, finding, model.labels, for_s, keep_firing_for_s)
                news = current is None or finding.window_end > current.updated_at
                if news and alert is not None and alert.state != "resolved":
                    alert = dataclasses.replace(alert, seen_at=arrived)
                    if moved is not None:
                        moved = Transition(alert, moved.previous, moved.at)
                self._store(key, current, alert)
                if moved is not None:
                    transitions.append(moved)
                    self._announce(moved)
                if news:
                    transitions.extend(self._data_returned(labels, finding.window_end))
                self._tick(finding.window_end)
            self._tick(self.clock())
            transitions.extend(self._check_no_data(self.clock()))
        if not self._background:
            self.deliverer.drain(self.max_attempts)
            self._hand_off(force=bool(transitions))
        return transitions

    def tick(self, now: float | None = None) -> None:
        """Run the group flushes due by `now` (the clock when None); deliver when synchronous."""
        with self._lock:
            self._tick(self.clock() if now is None else now)
            self._check_no_data(self.clock())
        if not self._background:
            self.deliverer.drain(self.max_attempts)
            self._hand_off()

    def start(self, tick_every_s: float = 1.0) -> None:
        """Deliver in the background: a ticker thread and one worker per target URL."""
        if self._background:
            return
        self._background = True
        self.deliverer.start()
        self._ticker = threading.Thread(
            target=self._tick_forever, args=(tick_every_s,), name="alerting-ticker", daemon=True
        )
        self._ticker.start()

    def alerts(self, states: Collection[str] | None = None) -> list[Alert]:
        """Current alerts in any of `states` (all when None), the most recently started first."""
        return self._state.alerts(states)

    def notifications(self, limit: int = 100) -> list[NotificationRecord]:
        """The latest `limit` deliveries (ok or failed, masked receiver), newest first."""
        return self._state.notifications(limit)

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    @property
    def silences(self) -> SilenceStore:
        return self._silences

    def close(self) -> None:
        """Stop background delivery (queued messages stay queued) and close the state."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=15)
            self._ticker = None
        self.deliverer.stop()
        self._state.close()
        self._outbox.close()
        self._silences.close()
        self._feedback.close()

    def _tick_forever(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                with self._lock:
                    self._tick(self.clock())
                    self._check_no_data(self.clock())
                self._hand_off()
            except Exception:
                logger.exception("alerting tick failed; trying again in %ss", every_s)

    def _store(self, key: str, current: Alert | None, alert: Alert | None) -> None:
        if alert is None:
            if current is not None:
                self._state.delete(key)
        elif alert != current:
            self._state.upsert(alert)

    def _announce(self, moved: Transition) -> None:
        """Record, show and queue a transition that receivers hear about."""
        if moved.alert.state in NOTIFY_STATES:
            self._feedback.observe(moved.alert)
            self._show(moved)
            self.pipeline.insert(moved.alert, self._now)

    def _firing_nodata(self) -> set[str]:
        if self._nodata is None:
            self._nodata = {
                a.fingerprint
                for a in self._state.alerts(["firing"])
                if a.label_map.get("check") == NODATA_CHECK
            }
        return self._nodata

    def _data_returned(self, labels: dict[str, str], at: float) -> list[Transition]:
        """Resolve the nodata alert of the series `labels` names, if one fires."""
        key = fingerprint(nodata_labels(labels))
        firing = self._firing_nodata()
        if key not in firing:
            return []
        firing.discard(key)
        current = self._state.get(key)
        if current is None or current.state != "firing":
            return []
        resolved, moved = clear_no_data(current, max(at, self.clock()))
        self._state.upsert(resolved)
        self._announce(moved)
        return [moved]

    def _check_no_data(self, now: float) -> list[Transition]:
        """Move stale alerts to `no_data_state` and fire a nodata alert for each series."""
        transitions: list[Transition] = []
        if not self.store_ok:
            return transitions
        mode = self.config.alerting.no_data_state
        firing = self._firing_nodata()
        for alert in self._state.alerts(["pending", "firing"]):
            model = alert.label_map.get("model", "")
            after_s = no_data_after(self.config, model)
            if not is_stale(alert, now, after_s):
                continue
            signal = raise_no_data(alert, now, after_s)
            if signal.fingerprint not in firing:
                firing.add(signal.fingerprint)
                previous = self._state.get(signal.fingerprint)
                self._state.upsert(signal)
                raised = Transition(signal, previous.state if previous else None, now)
                transitions.append(raised)
                self._announce(raised)
            changed, moved = apply_no_data(alert, mode, now)
            self._store(alert.fingerprint, alert, changed)
            if moved is not None:
                transitions.append(moved)
                self._announce(moved)
        if transitions:
            self._tick(now)  # what group_wait lets go at once goes now, not at the next tick
        return transitions

    def _tick(self, now: float, *, inclusive: bool = True) -> None:
        if now > self._now:
            self._now = now
        if not self._restored:
            self._restore()
        self.pipeline.tick(self._now, inclusive=inclusive)

    def _restore(self) -> None:
        """After a restart, put back the alerts whose notifications may still be owed:
        firing ones, and resolved ones some receiver was last told are firing."""
        self._restored = True
        owed = self._outbox.owed_fingerprints()
        for alert in reversed(self._state.alerts(["firing", "resolved"])):
            if alert.state == "firing" or alert.fingerprint in owed:
                self.pipeline.insert(alert, self._now)

    def _hand_off(self, force: bool = False) -> None:
        """Post alerts to each Alertmanager whose re-send is due (or at once when `force`)."""
        if not self.handoffs:
            return
        now = self.clock()
        alerts = self._state.alerts(["firing", "resolved"])
        for handoff in self.handoffs:
            if force or handoff.due(now):
                handoff.push(alerts, now)

    def _inhibitor(self) -> Inhibitor:
        return Inhibitor(self._rules, [a.label_map for a in self._state.alerts(["firing"])])

    def _queued(self, notice: Notice) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth(self._outbox.depth())
        self.deliverer.wake()

    def _show(self, transition: Transition) -> None:
        if self._console is None:
            return
        try:
            self._console.show(transition)
        except Exception:  # a closed or broken stream must not stop paging
            logger.exception("could not print an alert to the console")

    def _timing(self, finding: Finding) -> tuple[float, float]:
        """The `for` and `keep_firing_for` of the check a finding comes from (0 if unknown)."""
        return self.config.model(finding.model).checks.timing(finding.check)
