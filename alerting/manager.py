"""The alert manager: findings in, alert state kept, people told through the pipeline.

For each finding, in data-time order: advance its alert one step (`lifecycle.advance`), persist
it, and put a `firing` or `resolved` alert into the notify pipeline (`build_pipeline`), which
groups, mutes, dedups and queues notifications durably. Time in the pipeline only moves
forward: it is the latest of the findings' data time and the clock, so replaying history gives
the notification times live running would have given, and live running follows the clock.

Delivery is synchronous by default (`process` ends by draining the queue, every target in
parallel, up to `max_attempts` tries each); after `start()` a ticker thread and one worker per
target deliver in the background instead, and `process` only queues.
"""

from __future__ import annotations

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
from .delivery import Deliverer, RetryPolicy, target_key
from .feedback import FeedbackStore
from .lifecycle import advance, alert_labels
from .metrics import DeliveryMetrics
from .muting import Inhibitor
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
        self.pipeline: Pipeline = build_pipeline(
            route_tree(alerting.route),
            self.receivers,
            self._outbox,
            inhibitor=self._inhibitor,
            silencer=self._silences.muter,
            deadline_s=alerting.delivery_deadline,
            dashboard_url=alerting.dashboard_url,
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
        )
        self.handoffs = [
            AlertmanagerHandoff(
                url,
                resend_s=alerting.alertmanager_resend,
                timeout_s=alerting.send_timeout,
                generator_url=alerting.dashboard_url,
            )
            for url in alerting.alertmanager_urls
        ]
        self._lock = threading.RLock()
        self._now = float("-inf")
        self._restored = False
        self._background = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

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
            for finding in sorted(findings, key=lambda f: f.window_end):
                # Flushes due before this finding run first; those due at its time, after it.
                self._tick(finding.window_end, inclusive=False)
                model = self.config.model(finding.model)
                labels = alert_labels(finding, model.labels)
                key = fingerprint(labels)
                current = self._state.get(key)
                alert, moved = advance(current, finding, model.labels, self._for_s(finding))
                if alert is None:
                    if current is not None:
                        self._state.delete(key)
                elif alert != current:
                    self._state.upsert(alert)
                if moved is not None:
                    transitions.append(moved)
                    if moved.alert.state in NOTIFY_STATES:
                        self._feedback.observe(moved.alert)
                        self._show(moved)
                        self.pipeline.insert(moved.alert, self._now)
                self._tick(finding.window_end)
            self._tick(self.clock())
        if not self._background:
            self.deliverer.drain(self.max_attempts)
            self._hand_off(force=bool(transitions))
        return transitions

    def tick(self, now: float | None = None) -> None:
        """Run the group flushes due by `now` (the clock when None); deliver when synchronous."""
        with self._lock:
            self._tick(self.clock() if now is None else now)
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
                self._hand_off()
            except Exception:
                logger.exception("alerting tick failed; trying again in %ss", every_s)

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

    def _for_s(self, finding: Finding) -> float:
        check = self.config.model(finding.model).checks.settings(finding.check)
        return 0.0 if check is None else float(getattr(check, "for_", 0.0))
