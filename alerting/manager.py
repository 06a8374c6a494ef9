"""The alert manager: findings in, alert state kept, people told.

For each finding, in data-time order: advance its alert one step (`lifecycle.advance`); on a
transition to `firing` or `resolved`, render it once and deliver it to every receiver, retrying
a retryable failure with a short exponential backoff; log every delivery; then persist the
alert. Persisting after delivering makes delivery at-least-once: a crash in between re-sends
on the next run rather than losing a page. A failing receiver never stops the others and
never raises out of `process`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TextIO

from watchkeeper.config import Config
from watchkeeper.tsdb import Finding

from .lifecycle import advance, alert_labels
from .notify import AppriseNotifier, ConsoleNotifier, Notifier, SendResult, render
from .records import Alert, NotificationRecord, Transition, fingerprint
from .state import AlertStateStore

logger = logging.getLogger(__name__)

#: Transitions that are sent to receivers; `pending` is only kept, like Prometheus.
NOTIFY_STATES = frozenset({"firing", "resolved"})


class AlertManager:
    """Keeps alert state in `state_path` and notifies `config.alerting.receivers`.

    `notifiers` replaces the configured receivers (tests, embedding); `console` is where the
    one-line console output goes when `config.alerting.console` is on (standard output when
    None). `max_attempts` and `retry_base_s` shape the retry of a retryable failure: waits of
    about `retry_base_s`, twice that, ..., each with up to 50% jitter either way.
    """

    def __init__(
        self,
        config: Config,
        state_path: Path,
        notifiers: Sequence[Notifier] | None = None,
        console: TextIO | None = None,
        *,
        max_attempts: int = 3,
        retry_base_s: float = 0.2,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.config = config
        self.state_path = Path(state_path)
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        if notifiers is None:
            notifiers = [AppriseNotifier(url) for url in config.alerting.receivers]
        self.notifiers: tuple[Notifier, ...] = tuple(notifiers)
        self._console = ConsoleNotifier(console) if config.alerting.console else None
        self._state = AlertStateStore(self.state_path)

    def __repr__(self) -> str:
        names = [n.name for n in self.notifiers]
        return f"AlertManager(state_path={str(self.state_path)!r}, notifiers={names!r})"

    def process(self, findings: Sequence[Finding]) -> list[Transition]:
        """Advance alerts by `findings` (sorted by window end here) and notify.

        Returns every transition made, `pending` ones included; only `firing` and `resolved`
        are sent to receivers.
        """
        transitions: list[Transition] = []
        for finding in sorted(findings, key=lambda f: f.window_end):
            model = self.config.model(finding.model)
            labels = alert_labels(finding, model.labels)
            key = fingerprint(labels)
            current = self._state.get(key)
            alert, moved = advance(current, finding, model.labels, self._for_s(finding))
            if moved is not None:
                transitions.append(moved)
                if moved.alert.state in NOTIFY_STATES:
                    self._notify(moved)
            if alert is None:
                if current is not None:
                    self._state.delete(key)
            elif alert != current:
                self._state.upsert(alert)
        return transitions

    def alerts(self, states: Collection[str] | None = None) -> list[Alert]:
        """Current alerts in any of `states` (all when None), the most recently started first."""
        return self._state.alerts(states)

    def notifications(self, limit: int = 100) -> list[NotificationRecord]:
        """The latest `limit` deliveries (ok or failed, masked receiver), newest first."""
        return self._state.notifications(limit)

    def close(self) -> None:
        self._state.close()

    def _for_s(self, finding: Finding) -> float:
        checks = self.config.model(finding.model).checks
        if finding.check not in type(checks).model_fields:
            return 0.0
        check = getattr(checks, finding.check)
        return float(getattr(check, "for_", 0.0))

    def _notify(self, transition: Transition) -> None:
        if self._console is not None:
            try:
                self._console.show(transition)
            except Exception:  # a closed or broken stream must not stop paging
                logger.exception("could not print an alert to the console")
        if not self.notifiers:
            return
        title, body = render(transition, self.config.alerting.dashboard_url)
        alert = transition.alert
        for notifier in self.notifiers:
            result, attempts = self._deliver(notifier, title, body)
            detail = result.detail if attempts == 1 else f"{result.detail} ({attempts} attempts)"
            if not result.ok:
                logger.warning(
                    "alert %s %s not delivered to %s: %s",
                    title,
                    alert.fingerprint,
                    notifier.name,
                    detail,
                )
            self._state.record_notification(
                alert.fingerprint, alert.state, notifier.name, result.ok, detail, time.time()
            )

    def _deliver(self, notifier: Notifier, title: str, body: str) -> tuple[SendResult, int]:
        """Send with retries; return the last result and the number of attempts made."""
        attempt = 0
        while True:
            attempt += 1
            try:
                result = notifier.send(title, body)
            except Exception as exc:  # a notifier bug must not stop the other receivers
                logger.exception("notifier %s raised", notifier.name)
                result = SendResult(ok=False, retryable=False, detail=f"raised {exc!r}")
            if result.ok or not result.retryable or attempt >= self.max_attempts:
                return result, attempt
            delay = self.retry_base_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            time.sleep(delay)
