"""Records to SQLite rows, validated on the way: the write path's only per-row Python work.

Each row takes a fast path of cheap type and range tests, and falls back to the precise
checks of `validation.RecordChecker` (which raise `InvalidRecord` naming row and field) only
when a fast test fails. NaN and infinities in features or outputs are caught by the JSON
encoder itself (`allow_nan=False`), so a row is serialised and checked in one pass.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from .records import FeatureValue, Finding, Label, Prediction, Sample
from .validation import RecordChecker

_ENCODER = json.JSONEncoder(allow_nan=False)
_INF = math.inf


def encode_features(features: dict[str, FeatureValue]) -> str:
    """Features as JSON text, refusing NaN and infinities (which orjson would write as null).

    orjson writes the same JSON as the standard library, without spaces, about ten times
    faster; at 20 features that is most of the store's per-prediction cost.
    """
    for value in features.values():
        if type(value) is float and not -_INF < value < _INF:
            raise ValueError(f"{value} is not JSON")
    try:
        return orjson.dumps(features).decode()
    except TypeError:
        # An integer beyond 64 bits, which orjson can neither write nor read back as an int
        # (it reads it as a float). The standard library writes it; the leading space (valid
        # JSON) tells `decode_features` to read it back with the standard library too.
        return " " + _ENCODER.encode(features)


def decode_features(text: str) -> dict[str, FeatureValue]:
    """The features `encode_features` wrote, exactly (integers of any size included)."""
    features: dict[str, FeatureValue] = (
        json.loads(text) if text.startswith(" ") else orjson.loads(text)
    )
    return features


def dump(value: FeatureValue) -> str:
    """A scalar as JSON text; floats by `repr`, which is what the encoder would write."""
    kind = type(value)
    if kind is float:
        if not -_INF < value < _INF:  # type: ignore[operator]
            raise ValueError(f"{value} is not JSON")
        return repr(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    return _ENCODER.encode(value)


def load(text: str | None) -> FeatureValue:
    if text is None:
        return None
    value: FeatureValue = json.loads(text)
    return value


@dataclass
class Rows:
    """One batch as rows per table, plus what it says about models and their versions."""

    samples: list[tuple[Any, ...]] = field(default_factory=list)
    predictions: list[tuple[Any, ...]] = field(default_factory=list)
    labels: list[tuple[Any, ...]] = field(default_factory=list)
    findings: list[tuple[Any, ...]] = field(default_factory=list)
    seen: dict[str, list[float]] = field(default_factory=dict)  # model -> [first, last]
    versions: dict[tuple[str, str], float] = field(default_factory=dict)
    oldest_prediction: float = _INF

    def touch(self, model: str, version: str, ts: float) -> None:
        span = self.seen.get(model)
        if span is None:
            self.seen[model] = [ts, ts]
        elif ts < span[0]:
            span[0] = ts
        elif ts > span[1]:
            span[1] = ts
        if version:
            key = (model, version)
            if ts < self.versions.get(key, _INF):
                self.versions[key] = ts


def build_rows(
    check: RecordChecker,
    samples: Sequence[Sample],
    predictions: Sequence[Prediction],
    labels: Sequence[Label],
    findings: Sequence[Finding],
) -> Rows:
    """Validate and convert a batch; raises `InvalidRecord` before anything is written."""
    rows = Rows()
    _samples(check, samples, rows)
    _predictions(check, predictions, rows)
    _labels(check, labels, rows)
    for i, f in enumerate(findings):
        check.finding(i, f)
        rows.findings.append(
            (
                f.model,
                f.check,
                f.subject,
                f.window_start,
                f.window_end,
                f.statistic,
                f.value,
                f.threshold,
                int(f.breached),
                f.severity,
                f.p_value,
                f.interval[0] if f.interval else None,
                f.interval[1] if f.interval else None,
                f.reference_id,
                f.rule_hash,
                f.summary,
                f.n,
            )
        )
    return rows


def _samples(check: RecordChecker, samples: Sequence[Sample], rows: Rows) -> None:
    latest = check.latest
    known: set[tuple[str, str, str]] = set()
    append = rows.samples.append
    for i, s in enumerate(samples):
        ts = s.timestamp
        value = s.value
        key = (s.model, s.name, s.version)
        try:
            fast = (
                key in known
                and not s.labels
                and type(ts) is float
                and 0.0 <= ts <= latest
                and type(value) is float
                and -_INF < value < _INF
            )
        except TypeError:
            fast = False
        if not fast:
            check.sample(i, s)
            known.add(key)
        text = json.dumps(sorted(s.labels)) if s.labels else "[]"
        append((s.model, s.name, text, ts, s.version, value))
        rows.touch(s.model, s.version, ts)


def _predictions(check: RecordChecker, predictions: Sequence[Prediction], rows: Rows) -> None:
    latest = check.latest
    limits = check.limits
    max_name, max_text, max_features = (
        limits.max_name_chars,
        limits.max_text_chars,
        limits.max_features,
    )
    known: set[tuple[str, str]] = set()
    append = rows.predictions.append
    encode = encode_features
    oldest = _INF
    for i, p in enumerate(predictions):
        ts = p.timestamp
        pid = p.prediction_id
        latency = p.latency_s
        rate = p.sample_rate
        features = p.features
        key = (p.model, p.version)
        try:
            text = encode(features)
            output = dump(p.output)
            fast = (
                key in known
                and type(pid) is str
                and 0 < len(pid) <= max_name
                and type(ts) is float
                and 0.0 <= ts <= latest
                and (latency is None or (type(latency) is float and 0.0 <= latency < _INF))
                and 0.0 < rate <= 1.0
                and len(text) <= max_text
                and len(output) <= max_text
                and len(features) <= max_features
                and (len(text) <= max_name or max(map(len, features)) <= max_name)
                and "" not in features
            )
        except (TypeError, ValueError) as exc:
            check.prediction(i, p)
            raise ValueError(f"predictions[{i}]: {exc}") from exc
        if not fast:
            check.prediction(i, p)
            known.add(key)
        append((p.model, pid, ts, p.version, text, output, latency, int(p.error), rate))
        rows.touch(p.model, p.version, ts)
        if ts < oldest:
            oldest = ts
    rows.oldest_prediction = oldest


def _labels(check: RecordChecker, labels: Sequence[Label], rows: Rows) -> None:
    latest = check.latest
    max_name, max_text = check.limits.max_name_chars, check.limits.max_text_chars
    known: set[str] = set()
    append = rows.labels.append
    for i, x in enumerate(labels):
        ts = x.timestamp
        pid = x.prediction_id
        try:
            label = dump(x.label)
            fast = (
                x.model in known
                and type(pid) is str
                and 0 < len(pid) <= max_name
                and type(ts) is float
                and 0.0 <= ts <= latest
                and len(label) <= max_text
            )
        except (TypeError, ValueError) as exc:
            check.label(i, x)
            raise ValueError(f"labels[{i}]: {exc}") from exc
        if not fast:
            check.label(i, x)
            known.add(x.model)
        append((x.model, pid, label, ts))
