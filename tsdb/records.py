"""The immutable records that cross component borders.

Every component talks to the others through these and through the Store; nothing downstream
mutates what it received, so they are frozen. Times are Unix seconds (float, UTC) everywhere:
one unit, no time-zone surprises, cheap to compare and to store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

FeatureValue = float | int | str | bool | None
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")


@dataclass(frozen=True, slots=True)
class Sample:
    """One numeric value of one series at one time (a health metric, pushed or scraped)."""

    model: str
    name: str
    timestamp: float
    value: float
    version: str = ""
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Prediction:
    """One inference as the model service saw it.

    `sample_rate` is the fraction of predictions the service logged, so that counts derived
    from stored predictions can be scaled back to true traffic.
    """

    model: str
    prediction_id: str
    timestamp: float
    features: dict[str, FeatureValue] = field(default_factory=dict)
    output: FeatureValue = None
    version: str = ""
    latency_s: float | None = None
    error: bool = False
    sample_rate: float = 1.0


@dataclass(frozen=True, slots=True)
class Label:
    """Ground truth for one prediction id, arriving any time after the prediction."""

    model: str
    prediction_id: str
    label: FeatureValue
    timestamp: float


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's verdict on one window, with what is needed to reproduce it later.

    `breached` is the verdict; findings are recorded whether or not the rule was breached, so
    that alerting sees a condition clear and a later reader sees what was judged healthy.
    `version` is the model version the judged data belongs to (the one with the most
    predictions in the window), None where the check has none (a window without data).
    It describes the verdict but is not part of its identity (`key`).
    """

    model: str
    check: str
    subject: str
    statistic: str
    value: float
    threshold: float
    breached: bool
    severity: Severity
    window_start: float
    window_end: float
    p_value: float | None = None
    interval: tuple[float, float] | None = None
    reference_id: str = ""
    rule_hash: str = ""
    summary: str = ""
    n: int = 0
    version: str | None = None

    @property
    def key(self) -> tuple[str, str, str, float]:
        """What makes a finding unique: one verdict per check, subject and window end."""
        return (self.model, self.check, self.subject, self.window_end)

    def to_json(self) -> str:
        return json.dumps(
            {
                "model": self.model,
                "check": self.check,
                "subject": self.subject,
                "statistic": self.statistic,
                "value": self.value,
                "threshold": self.threshold,
                "breached": self.breached,
                "severity": self.severity,
                "window_start": self.window_start,
                "window_end": self.window_end,
                "p_value": self.p_value,
                "interval": list(self.interval) if self.interval else None,
                "reference_id": self.reference_id,
                "rule_hash": self.rule_hash,
                "summary": self.summary,
                "n": self.n,
                "version": self.version,
            },
            sort_keys=True,
        )


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the store knows about one model: its versions and when it was last heard from."""

    name: str
    versions: tuple[str, ...]
    first_seen: float
    last_seen: float
