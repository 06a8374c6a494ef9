"""The alert record that alerting keeps and the dashboard reads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

AlertState = Literal["pending", "firing", "resolved"]


#: Labels that describe an alert but do not identify it: a model version deployed while an
#: alert fires continues (or resolves) that alert instead of starting another one.
DESCRIPTIVE_LABELS = frozenset({"version"})


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable identity for a label set: the same labels always give the same alert.

    `DESCRIPTIVE_LABELS` (the model `version`) are left out, so alerts keep the identity
    they had before findings carried a version, and a deployment does not split an alert.
    """
    identity = sorted((k, v) for k, v in labels.items() if k not in DESCRIPTIVE_LABELS)
    text = json.dumps(identity, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Alert:
    """One rule instance over time, identified by its labels.

    Times are Unix seconds in data time (the window end of the finding that moved the alert),
    so a replay of old data and live running give the same history; `seen_at` alone is wall
    time: when alerting last received a finding for the alert (what NoData is judged on).
    `keep_firing_since` is when the condition of a firing alert first cleared while
    `keep_firing_for` holds it firing (None while it breaches). The `version` label is the
    model version when the episode began and stays for the episode (a stable label set, as
    Alertmanager wants); `latest_version` is the version of the latest finding.
    """

    fingerprint: str
    labels: tuple[tuple[str, str], ...]
    state: AlertState
    active_since: float
    updated_at: float
    fired_at: float | None = None
    resolved_at: float | None = None
    value: float = 0.0
    threshold: float = 0.0
    summary: str = ""
    keep_firing_since: float | None = None
    seen_at: float | None = None
    latest_version: str | None = None

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def since(self) -> float:
        """When the alert began firing (when it became active, if it never fired)."""
        return self.fired_at if self.fired_at is not None else self.active_since


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert entering a new state at a time; what notifications are made from."""

    alert: Alert
    previous: AlertState | None
    at: float


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """One delivery of one transition to one receiver, as kept in the notification log.

    `receiver` is the masked name (never the raw URL), so the log is safe to show anyone.
    """

    fingerprint: str
    state: AlertState
    receiver: str
    ok: bool
    detail: str
    at: float
