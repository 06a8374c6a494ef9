"""Records to SQLite rows, validated on the way: the write path's only per-row Python work.

Predictions (the bulk of ingest) first take a column-wise fast path: the batch's columns are
checked and encoded with built-ins that loop in C (`min`, `max`, `map`, `orjson.dumps`), and
the rows are zipped from them. Any doubt sends the whole batch down the row-by-row path, where
each row takes cheap type and range tests and falls back to the precise checks of
`validation.RecordChecker` (which raise `InvalidRecord` naming row and field) only when a fast
test fails. So both paths accept and refuse exactly the same batches.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import orjson

from .records import FeatureValue, Finding, Label, Prediction, Sample
from .validation import RecordChecker

_ENCODER = json.JSONEncoder(allow_nan=False)
_SCALARS = {float, int, str, bool, type(None)}
_INF = math.inf


def encode_features(features: dict[str, FeatureValue]) -> str:
    """Features as JSON text, refusing NaN and infinities (which orjson would write as null).

    orjson writes the same JSON as the standard library, without spaces, about ten times
    faster; at 20 features that is most of the store's per-prediction cost.
    """
    try:
        data = orjson.dumps(features)
    except TypeError:
        # An integer beyond 64 bits, which orjson can neither write nor read back as an int
        # (it reads it as a float). The standard library writes it; the leading space (valid
        # JSON) tells `decode_features` to read it back with the standard library too.
        return " " + _ENCODER.encode(features)
    if b"null" in data:  # a None, a NaN or an infinity (or just the word in a name)
        for value in features.values():
            if type(value) is float and not -_INF < value < _INF:
                raise ValueError(f"{value} is not JSON")
    return data.decode()


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
    if not _prediction_columns(check, predictions, rows):
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
                f.version,
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


def _finite(values: list[Any]) -> bool:
    """All numbers and finite (a NaN or an infinity makes the sum one; so may an overflow,
    which only costs the slow path)."""
    try:
        total: float = sum(values)
        return -_INF < total < _INF
    except TypeError:
        return False


def _prediction_columns(
    check: RecordChecker, predictions: Sequence[Prediction], rows: Rows
) -> bool:
    """Append the rows of `predictions` when every test passes column-wise; else append
    nothing and return False, for the row-by-row path to find and name the problem."""
    if not predictions:
        return True
    limits = check.limits
    max_name, max_text = limits.max_name_chars, limits.max_text_chars
    models = [p.model for p in predictions]
    versions = [p.version for p in predictions]
    keys = set(zip(models, versions, strict=True))
    for model, version in keys:
        if not (
            type(model) is str
            and 0 < len(model) <= max_name
            and (limits.models is None or model in limits.models)
            and type(version) is str
            and len(version) <= max_name
        ):
            return False
    pids = [p.prediction_id for p in predictions]
    stamps = [p.timestamp for p in predictions]
    latencies = [p.latency_s for p in predictions]
    measured = [x for x in latencies if x is not None]
    rates = [p.sample_rate for p in predictions]
    features = [p.features for p in predictions]
    outputs = [p.output for p in predictions]
    try:
        if not (
            set(map(type, pids)) == {str}
            and min(map(len, pids)) > 0
            and max(map(len, pids)) <= max_name
            and set(map(type, stamps)) == {float}
            and _finite(stamps)
            and min(stamps) >= 0.0
            and max(stamps) <= check.latest
            and set(map(type, measured)) <= {float}
            and _finite(measured)
            and (not measured or min(measured) >= 0.0)
            and set(map(type, rates)) <= {float, int}
            and _finite(rates)
            and min(rates) > 0
            and max(rates) <= 1
            and set(map(type, features)) == {dict}
            and max(map(len, features)) <= limits.max_features
        ):
            return False
        names = set(chain.from_iterable(features))
        if "" in names or (names and max(map(len, names)) > max_name):
            return False
        # Each text decoded at once: orjson's bytes, kept alive in hundreds, cost ten times
        # more to allocate than the short-lived ones.
        dumps = orjson.dumps
        encoded = [dumps(f).decode() for f in features]
        if max(map(len, encoded)) > max_text:
            return False
        # Values must be scalars: no "[" and no "{" but the opening ones (a string that holds
        # one only costs the slow path).
        joined = "".join(encoded)
        if "[" in joined or joined.count("{") != len(encoded):
            return False
        for text, values in zip(encoded, features, strict=True):
            if "null" in text and not _finite([v for v in values.values() if type(v) is float]):
                return False
        kinds = set(map(type, outputs))
        if kinds == {float} and _finite(outputs):
            texts = list(map(repr, outputs))
        elif kinds <= _SCALARS:
            texts = list(map(dump, outputs))
        else:
            return False
        if max(map(len, texts)) > max_text:
            return False
        errors = [int(p.error) for p in predictions]
    except (TypeError, ValueError):  # an integer beyond 64 bits, a NaN output, ...
        return False
    rows.predictions.extend(
        zip(
            models,
            pids,
            stamps,
            versions,
            encoded,
            texts,
            latencies,
            errors,
            rates,
            strict=True,
        )
    )
    if len(keys) == 1:
        model, version = next(iter(keys))
        rows.touch(model, version, min(stamps))
        rows.touch(model, version, max(stamps))
    else:
        for model, version, ts in zip(models, versions, stamps, strict=True):
            rows.touch(model, version, ts)
    rows.oldest_prediction = min(rows.oldest_prediction, min(stamps))
    return True


def _predictions(check: RecordChecker, predictions: Sequence[Prediction], rows: Rows) -> None:
    # The hot loop of ingest: a few hundred thousand rows a second go through it, so it keeps
    # to local names and one combined test per row.
    latest = check.latest
    limits = check.limits
    max_name, max_text, max_features = (
        limits.max_name_chars,
        limits.max_text_chars,
        limits.max_features,
    )
    known: set[tuple[str, str]] = set()
    spans: dict[tuple[str, str], list[float]] = {}  # (model, version) -> [first, last]
    append = rows.predictions.append
    encode = encode_features
    oldest = _INF
    for i, p in enumerate(predictions):
        ts = p.timestamp
        pid = p.prediction_id
        latency = p.latency_s
        rate = p.sample_rate
        features = p.features
        output = p.output
        key = (p.model, p.version)
        try:
            text = encode(features)
            out = repr(output) if type(output) is float and -_INF < output < _INF else dump(output)
            fast = (
                key in known
                and type(pid) is str
                and 0 < len(pid) <= max_name
                and type(ts) is float
                and 0.0 <= ts <= latest
                and (latency is None or (type(latency) is float and 0.0 <= latency < _INF))
                and 0.0 < rate <= 1.0
                and len(text) <= max_text
                and len(out) <= max_text
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
        append((key[0], pid, ts, key[1], text, out, latency, int(p.error), rate))
        span = spans.get(key)
        if span is None:
            spans[key] = [ts, ts]
        elif ts < span[0]:
            span[0] = ts
        elif ts > span[1]:
            span[1] = ts
        if ts < oldest:
            oldest = ts
    for (model, version), (first, last) in spans.items():
        rows.touch(model, version, first)
        rows.touch(model, version, last)
    rows.oldest_prediction = min(rows.oldest_prediction, oldest)


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
