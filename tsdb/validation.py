"""Checks every record of a batch at the store boundary, before anything is written.

A store must not keep what it cannot give back faithfully: NaN has no SQL value, infinities
have no line-protocol form, a 10 MB "feature" is a bug upstream, and a timestamp years ahead
would pin `last_seen` in the future. The first bad value raises `InvalidRecord` (a
`ValueError`) naming the kind, the row index and the field, so the caller can fix the one row;
since validation runs before the transaction opens, nothing of the batch is written.

>>> from watchkeeper.tsdb import Sample
>>> validate_batch(samples=[Sample("m", "up", 1.0, 1.0), Sample("m", "up", 2.0, float("nan"))])
Traceback (most recent call last):
...
watchkeeper.tsdb.validation.InvalidRecord: samples[1].value: must be a finite number, got nan

Timestamps need not be in order, inside a batch or across batches: late data is normal (labels
arrive weeks later, clients flush from several threads) and reads sort by time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .records import SEVERITIES, FeatureValue, Finding, Label, Prediction, Sample


class InvalidRecord(ValueError):
    """A record the store refuses; the message starts with `kind[row].field`."""

    def __init__(self, kind: str, row: int, field: str, problem: str) -> None:
        self.kind = kind
        self.row = row
        self.field = field
        self.problem = problem
        super().__init__(f"{kind}[{row}].{field}: {problem}")


@dataclass(frozen=True, slots=True)
class Limits:
    """What the store accepts. Defaults are generous for real traffic and stop obvious bugs.

    `max_future_s` bounds how far past the writer's clock a timestamp may be (clock skew
    between hosts is seconds; a day ahead is a unit mistake such as milliseconds).
    `models`, when given, is the closed set of model names the store accepts.
    """

    max_name_chars: int = 256
    max_text_chars: int = 8192
    max_features: int = 2000
    max_future_s: float = 86400.0
    models: frozenset[str] | None = None


DEFAULT_LIMITS = Limits()


class RecordChecker:
    """Precise per-record checks: each method raises `InvalidRecord` at the first bad field."""

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits = limits
        self.latest = now + limits.max_future_s

    def name(self, kind: str, row: int, field: str, value: object, *, empty: bool = False) -> None:
        if not isinstance(value, str):
            raise InvalidRecord(kind, row, field, f"must be a string, got {type(value).__name__}")
        if not value and not empty:
            raise InvalidRecord(kind, row, field, "must not be empty")
        if len(value) > self.limits.max_name_chars:
            raise InvalidRecord(
                kind,
                row,
                field,
                f"is {len(value)} characters, over the limit of {self.limits.max_name_chars}",
            )

    def model(self, kind: str, row: int, value: object) -> None:
        self.name(kind, row, "model", value)
        known = self.limits.models
        if known is not None and value not in known:
            raise InvalidRecord(kind, row, "model", f"unknown model {value!r}")

    def text(self, kind: str, row: int, field: str, value: str) -> None:
        if len(value) > self.limits.max_text_chars:
            raise InvalidRecord(
                kind,
                row,
                field,
                f"is {len(value)} characters, over the limit of {self.limits.max_text_chars}",
            )

    def number(self, kind: str, row: int, field: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRecord(kind, row, field, f"must be a number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise InvalidRecord(kind, row, field, f"must be a finite number, got {value}")
        return float(value)

    def timestamp(self, kind: str, row: int, field: str, value: object) -> None:
        ts = self.number(kind, row, field, value)
        if ts < 0:
            raise InvalidRecord(kind, row, field, f"must not be before 1970, got {ts}")
        if ts > self.latest:
            raise InvalidRecord(
                kind,
                row,
                field,
                f"{ts} is more than {self.limits.max_future_s:g} s in the future",
            )

    def scalar(self, kind: str, row: int, field: str, value: FeatureValue) -> None:
        if value is None or isinstance(value, bool):
            return
        if isinstance(value, int):
            return
        if isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidRecord(kind, row, field, f"must be a finite number, got {value}")
            return
        if isinstance(value, str):
            self.text(kind, row, field, value)
            return
        raise InvalidRecord(
            kind,
            row,
            field,
            f"must be a number, string, boolean or null, got {type(value).__name__}",
        )

    def sample(self, i: int, s: Sample) -> None:
        self.model("samples", i, s.model)
        self.name("samples", i, "name", s.name)
        self.timestamp("samples", i, "timestamp", s.timestamp)
        self.number("samples", i, "value", s.value)
        self.name("samples", i, "version", s.version, empty=True)
        for key, value in s.labels:
            self.name("samples", i, "labels", key)
            self.name("samples", i, f"labels[{key!r}]", value, empty=True)

    def prediction(self, i: int, p: Prediction) -> None:
        kind = "predictions"
        self.model(kind, i, p.model)
        self.name(kind, i, "prediction_id", p.prediction_id)
        self.timestamp(kind, i, "timestamp", p.timestamp)
        self.name(kind, i, "version", p.version, empty=True)
        if not isinstance(p.features, dict):
            raise InvalidRecord(kind, i, "features", "must be a mapping")
        if len(p.features) > self.limits.max_features:
            raise InvalidRecord(
                kind,
                i,
                "features",
                f"has {len(p.features)} features, over the limit of {self.limits.max_features}",
            )
        for key, value in p.features.items():
            self.name(kind, i, "features", key)
            self.scalar(kind, i, f"features[{key!r}]", value)
        self.scalar(kind, i, "output", p.output)
        if p.latency_s is not None and self.number(kind, i, "latency_s", p.latency_s) < 0:
            raise InvalidRecord(kind, i, "latency_s", "must not be negative")
        rate = self.number(kind, i, "sample_rate", p.sample_rate)
        if not 0 < rate <= 1:
            raise InvalidRecord(kind, i, "sample_rate", f"must be in (0, 1], got {rate}")

    def label(self, i: int, x: Label) -> None:
        self.model("labels", i, x.model)
        self.name("labels", i, "prediction_id", x.prediction_id)
        self.scalar("labels", i, "label", x.label)
        self.timestamp("labels", i, "timestamp", x.timestamp)

    def finding(self, i: int, f: Finding) -> None:
        _finding(self, i, f)


def validate_batch(
    *,
    samples: Sequence[Sample] = (),
    predictions: Sequence[Prediction] = (),
    labels: Sequence[Label] = (),
    findings: Sequence[Finding] = (),
    limits: Limits = DEFAULT_LIMITS,
    now: float | None = None,
) -> None:
    """Raise `InvalidRecord` for the first value the store would refuse; return if all fit."""
    check = RecordChecker(limits, time.time() if now is None else now)
    for i, s in enumerate(samples):
        check.sample(i, s)
    for i, p in enumerate(predictions):
        check.prediction(i, p)
    for i, x in enumerate(labels):
        check.label(i, x)
    for i, f in enumerate(findings):
        check.finding(i, f)


def _finding(check: RecordChecker, i: int, f: Finding) -> None:
    check.model("findings", i, f.model)
    check.name("findings", i, "check", f.check)
    for field in ("subject", "statistic", "reference_id", "rule_hash"):
        check.name("findings", i, field, getattr(f, field), empty=True)
    check.text("findings", i, "summary", f.summary)
    if f.version is not None:
        check.name("findings", i, "version", f.version, empty=True)
    for field in ("value", "threshold"):
        value = getattr(f, field)
        # An infinite statistic or threshold is meaningful (a disabled rule); NaN is not.
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise InvalidRecord("findings", i, field, f"must be a number, got {value!r}")
    if f.p_value is not None:
        check.number("findings", i, "p_value", f.p_value)
    if f.interval is not None:
        check.number("findings", i, "interval[0]", f.interval[0])
        check.number("findings", i, "interval[1]", f.interval[1])
    check.timestamp("findings", i, "window_start", f.window_start)
    check.timestamp("findings", i, "window_end", f.window_end)
    if f.severity not in SEVERITIES:
        raise InvalidRecord("findings", i, "severity", f"must be one of {SEVERITIES}")
