"""Hand-off to an existing Prometheus Alertmanager: `POST /api/v2/alerts`, re-sent while firing.

For teams that run Alertmanager clusters for high availability: every `resend_s` seconds all
firing alerts are posted again (Alertmanager forgets an alert whose `endsAt` passes, so it
must hear from us, as from Prometheus, while the alert lasts), each valid for four re-send
periods; an alert that resolved since the last post is posted once more with its real end.
Alertmanager then does its own grouping, silencing and routing.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

from .annotations import Runbooks, alert_annotations, no_runbook
from .records import Alert

logger = logging.getLogger(__name__)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def am_alert(
    alert: Alert, now: float, valid_s: float, generator_url: str = "", runbook: str = ""
) -> dict[str, object]:
    """One alert in Alertmanager's v2 API shape: labels (empty ones dropped, `alertname` =
    check, `version` included: it is fixed for the alert's episode, so Alertmanager sees one
    alert per episode) and `alert_annotations`."""
    labels = {k: v for k, v in alert.labels if v}
    labels.setdefault("alertname", labels.get("check", "watchkeeper"))
    notes = alert_annotations(alert, generator_url, runbook)
    started = alert.since
    ends = alert.resolved_at if alert.state == "resolved" and alert.resolved_at else now + valid_s
    body: dict[str, object] = {
        "labels": labels,
        "annotations": notes,
        "startsAt": _iso(started),
        "endsAt": _iso(max(ends, started)),
    }
    if "dashboard" in notes:
        body["generatorURL"] = notes["dashboard"]
    return body


class AlertmanagerHandoff:
    """Posts alerts to one Alertmanager at `url` (e.g. `http://127.0.0.1:9093`)."""

    def __init__(
        self,
        url: str,
        *,
        resend_s: float = 60.0,
        timeout_s: float = 10.0,
        generator_url: str = "",
        runbook: Runbooks = no_runbook,
    ) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"expected an http:// or https:// Alertmanager URL, got {url!r}")
        self.url = url.rstrip("/")
        self.resend_s = resend_s
        self.timeout_s = timeout_s
        self.generator_url = generator_url
        self.runbook = runbook
        self._last_ok: float | None = None
        self._told_firing: set[str] = set()

    def __repr__(self) -> str:
        return f"AlertmanagerHandoff({self.url!r}, resend_s={self.resend_s!r})"

    def due(self, now: float) -> bool:
        return self._last_ok is None or now >= self._last_ok + self.resend_s

    def push(self, alerts: Sequence[Alert], now: float) -> bool:
        """Post firing alerts, and those resolved since the last post; True when accepted."""
        chosen = [
            a
            for a in alerts
            if a.state == "firing" or (a.state == "resolved" and a.fingerprint in self._told_firing)
        ]
        if not chosen and self._last_ok is not None and not self._told_firing:
            self._last_ok = now
            return True
        payload = [
            am_alert(a, now, 4 * self.resend_s, self.generator_url, self.runbook(a.label_map))
            for a in chosen
        ]
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                ok = 200 <= int(response.status) < 300
        except (urllib.error.URLError, OSError) as exc:
            logger.warning(
                "Alertmanager at %s did not take %d alerts: %s", self.url, len(chosen), exc
            )
            return False
        if ok:
            self._last_ok = now
            self._told_firing = {a.fingerprint for a in chosen if a.state == "firing"}
        return ok
