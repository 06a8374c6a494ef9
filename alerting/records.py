"""The alert record that alerting keeps and the dashboard reads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

AlertState = Literal["pending", "firing", "resolved"]


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable identity for a label set: the same labels always give the same alert."""
    text = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Alert:
    """One rule instance over time, identified by its labels.

    Times are Unix seconds in data time (the window end of the finding that moved the alert),
    so a replay of old data and live running give the same history; `seen_at` alone is wall
    time: when alerting last received a finding for the alert (what NoData is judged on).
    `keep_firing_since` is when the condition of a firing alert first cleared while
    `keep_firing_for` holds it firing (None while it breaches).
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

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


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
