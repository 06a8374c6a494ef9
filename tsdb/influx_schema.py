"""How records become InfluxDB points and how query rows become records again.

One measurement per kind: `samples`, `predictions`, `features` (one point per feature value of
a prediction), `labels` and `findings`. Only names of bounded cardinality are tags: model,
version (of samples, predictions and findings; a finding without one has no `version` tag),
sample name and sample labels (prefixed `label_`), feature, check and subject.
Prediction ids, outputs, label values and free text are fields, because every distinct tag
value creates a series and series cardinality is what InfluxDB scales by.

Timestamps are written in nanoseconds, computed exactly from the float seconds of the records
and read back exactly. InfluxDB identifies a point by measurement, tags and time, so two
predictions of one model version with the same timestamp would overwrite each other: inside a
batch they are spread 1 ns apart, which reads back as the same float seconds for any date
after 2004 (a float second there is 238 ns wide).

A scalar (feature value, output, label) is stored in one of three fields by type, `<name>`
(float; ints too), `<name>_bool` or `<name>_str`, because InfluxDB refuses a field that changes
type. String fields have backslash, newline and carriage return backslash-escaped: line
protocol cannot carry a raw newline (VictoriaMetrics drops such a line), and the escape is
undone on read.

>>> line = to_lines(samples=[Sample("m", "up", 1700000000.5, 1.0, "v1")])[0]
>>> line
'samples,model=m,name=up,version=v1 value=1 1700000000500000000'
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from influxdb_client.client.write.point import Point as _PointClass
from influxdb_client.domain.write_precision import WritePrecision

from .records import FeatureValue, Finding, Label, Prediction, Sample, Severity
from .validation import InvalidRecord

# influxdb-client ships `py.typed` but leaves most of its functions unannotated; going through
# `Any` keeps mypy strict for this module without an ignore at every call.
Point: Any = _PointClass

SAMPLES = "samples"
PREDICTIONS = "predictions"
FEATURES = "features"
LABELS = "labels"
FINDINGS = "findings"
MEASUREMENTS = (SAMPLES, PREDICTIONS, FEATURES, LABELS, FINDINGS)
LABEL_PREFIX = "label_"

NS = 1_000_000_000
_BAD_TAG = re.compile(r"[\n\r\t]")
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_UNESCAPE = {"\\": "\\", "n": "\n", "r": "\r"}


def to_ns(seconds: float) -> int:
    """Nanoseconds since the epoch nearest to `seconds`, computed without float rounding."""
    whole = math.floor(seconds)
    return whole * NS + round((seconds - whole) * NS)


def from_ns(ns: int) -> float:
    """Float seconds nearest to `ns` (int / int division is correctly rounded)."""
    return ns / NS


def encode_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def decode_text(text: str) -> str:
    return _ESCAPED.sub(lambda m: _UNESCAPE.get(m.group(1), m.group(0)), text)


def check_for_line_protocol(
    *,
    samples: Sequence[Sample] = (),
    predictions: Sequence[Prediction] = (),
    labels: Sequence[Label] = (),
    findings: Sequence[Finding] = (),
) -> None:
    """What line protocol cannot carry, beyond `validate_batch`: infinities, odd tag values.

    A tag value with a tab or newline would be escaped on the way in and never unescaped, and
    one ending in a backslash would escape the separator after it; refuse both by name.
    """
    for i, s in enumerate(samples):
        _tag("samples", i, "model", s.model)
        _tag("samples", i, "name", s.name)
        _tag("samples", i, "version", s.version)
        for key, value in s.labels:
            _tag("samples", i, "labels", key)
            _tag("samples", i, f"labels[{key!r}]", value)
    for i, p in enumerate(predictions):
        _tag("predictions", i, "model", p.model)
        _tag("predictions", i, "version", p.version)
        for key in p.features:
            _tag("predictions", i, "features", key)
    for i, x in enumerate(labels):
        _tag("labels", i, "model", x.model)
    for i, f in enumerate(findings):
        for field in ("model", "check", "subject"):
            _tag("findings", i, field, getattr(f, field))
        if f.version:
            _tag("findings", i, "version", f.version)
        for field in ("value", "threshold"):
            if math.isinf(getattr(f, field)):
                raise InvalidRecord(
                    "findings", i, field, "InfluxDB line protocol cannot store an infinite value"
                )


def _tag(kind: str, row: int, field: str, value: str) -> None:
    if _BAD_TAG.search(value):
        raise InvalidRecord(kind, row, field, "must not contain a tab, newline or carriage return")
    if value.endswith("\\"):
        raise InvalidRecord(kind, row, field, "must not end with a backslash")


def _scalar(point: Any, name: str, value: FeatureValue) -> Any:
    if value is None:
        return point
    if isinstance(value, bool):
        return point.field(f"{name}_bool", value)
    if isinstance(value, int | float):
        return point.field(name, float(value))
    return point.field(f"{name}_str", encode_text(value))


def _spread(used: set[tuple[object, ...]], key: tuple[object, ...], ns: int) -> int:
    while (*key, ns) in used:
        ns += 1
    used.add((*key, ns))
    return ns


def to_points(
    *,
    samples: Sequence[Sample] = (),
    predictions: Sequence[Prediction] = (),
    labels: Sequence[Label] = (),
    findings: Sequence[Finding] = (),
) -> list[Any]:
    """The points of one validated batch; repeated prediction ids in it are kept once."""
    points: list[Any] = []
    for s in samples:
        point = Point(SAMPLES).tag("model", s.model).tag("name", s.name).tag("version", s.version)
        for key, value in sorted(s.labels):
            point.tag(LABEL_PREFIX + key, value)
        points.append(point.field("value", float(s.value)).time(to_ns(s.timestamp)))
    used: set[tuple[object, ...]] = set()
    seen_ids: set[tuple[str, str]] = set()
    for p in predictions:
        if (p.model, p.prediction_id) in seen_ids:
            continue
        seen_ids.add((p.model, p.prediction_id))
        ns = _spread(used, (PREDICTIONS, p.model, p.version), to_ns(p.timestamp))
        point = (
            Point(PREDICTIONS)
            .tag("model", p.model)
            .tag("version", p.version)
            .field("prediction_id", encode_text(p.prediction_id))
            .field("error", bool(p.error))
            .field("sample_rate", float(p.sample_rate))
        )
        if p.latency_s is not None:
            point.field("latency_s", float(p.latency_s))
        points.append(_scalar(point, "output", p.output).time(ns))
        for feature, feature_value in p.features.items():
            fp = (
                Point(FEATURES)
                .tag("model", p.model)
                .tag("version", p.version)
                .tag("feature", feature)
                .field("prediction_id", encode_text(p.prediction_id))
            )
            points.append(_scalar(fp, "value", feature_value).time(ns))
    for x in labels:
        ns = _spread(used, (LABELS, x.model), to_ns(x.timestamp))
        point = (
            Point(LABELS).tag("model", x.model).field("prediction_id", encode_text(x.prediction_id))
        )
        points.append(_scalar(point, "label", x.label).time(ns))
    for f in findings:
        point = (
            Point(FINDINGS)
            .tag("model", f.model)
            .tag("check", f.check)
            .tag("subject", f.subject)
            .field("statistic", encode_text(f.statistic))
            .field("value", float(f.value))
            .field("threshold", float(f.threshold))
            .field("breached", bool(f.breached))
            .field("severity", f.severity)
            .field("window_start", float(f.window_start))
            .field("reference_id", encode_text(f.reference_id))
            .field("rule_hash", encode_text(f.rule_hash))
            .field("summary", encode_text(f.summary))
            .field("n", int(f.n))
        )
        if f.version:  # a tag (bounded cardinality); absent when the finding has none
            point.tag("version", f.version)
        if f.p_value is not None:
            point.field("p_value", float(f.p_value))
        if f.interval is not None:
            point.field("interval_low", float(f.interval[0]))
            point.field("interval_high", float(f.interval[1]))
        points.append(point.time(to_ns(f.window_end)))
    return points


def to_lines(
    *,
    samples: Sequence[Sample] = (),
    predictions: Sequence[Prediction] = (),
    labels: Sequence[Label] = (),
    findings: Sequence[Finding] = (),
) -> list[str]:
    """Line protocol (nanosecond precision) of one batch, one line per point."""
    return [
        p.to_line_protocol(precision=WritePrecision.NS)
        for p in to_points(
            samples=samples, predictions=predictions, labels=labels, findings=findings
        )
    ]


# --- reading back: rows are the `values` dicts of pivoted Flux records -------------------------


def _text(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    return "" if value is None else decode_text(str(value))


def _tag_value(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    return "" if value is None else str(value)


def read_scalar(row: Mapping[str, Any], name: str) -> FeatureValue:
    """The scalar stored by `_scalar` under `name`, None when no field of it is present."""
    number = row.get(name)
    if number is not None:
        return float(number)
    flag = row.get(f"{name}_bool")
    if flag is not None:
        return bool(flag)
    text = row.get(f"{name}_str")
    if text is not None:
        return decode_text(str(text))
    return None


def row_seconds(row: Mapping[str, Any]) -> float:
    """The row's time from the exact nanosecond column `ns` the queries add."""
    return from_ns(int(row["ns"]))


def sample_from_row(model: str, name: str, row: Mapping[str, Any]) -> Sample:
    labels = tuple(
        sorted(
            (key[len(LABEL_PREFIX) :], str(value))
            for key, value in row.items()
            if key.startswith(LABEL_PREFIX) and value is not None
        )
    )
    return Sample(
        model=model,
        name=name,
        timestamp=row_seconds(row),
        value=float(row["_value"]),
        version=_tag_value(row, "version"),
        labels=labels,
    )


def prediction_from_row(
    model: str, row: Mapping[str, Any], features: dict[str, FeatureValue]
) -> Prediction:
    latency = row.get("latency_s")
    rate = row.get("sample_rate")
    return Prediction(
        model=model,
        prediction_id=_text(row, "prediction_id"),
        timestamp=row_seconds(row),
        features=features,
        output=read_scalar(row, "output"),
        version=_tag_value(row, "version"),
        latency_s=None if latency is None else float(latency),
        error=bool(row.get("error")),
        sample_rate=1.0 if rate is None else float(rate),
    )


def features_by_id(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, FeatureValue]]:
    """Feature values grouped by prediction id, from pivoted rows of `features`."""
    found: dict[str, dict[str, FeatureValue]] = {}
    for row in rows:
        found.setdefault(_text(row, "prediction_id"), {})[_tag_value(row, "feature")] = read_scalar(
            row, "value"
        )
    return found


def label_from_row(model: str, row: Mapping[str, Any]) -> Label:
    return Label(
        model=model,
        prediction_id=_text(row, "prediction_id"),
        label=read_scalar(row, "label"),
        timestamp=row_seconds(row),
    )


def finding_from_row(row: Mapping[str, Any]) -> Finding:
    low, high, p_value = row.get("interval_low"), row.get("interval_high"), row.get("p_value")
    severity = cast(Severity, str(row.get("severity") or "info"))
    return Finding(
        model=_tag_value(row, "model"),
        check=_tag_value(row, "check"),
        subject=_tag_value(row, "subject"),
        statistic=_text(row, "statistic"),
        value=float(row["value"]),
        threshold=float(row["threshold"]),
        breached=bool(row.get("breached")),
        severity=severity,
        window_start=float(row["window_start"]),
        window_end=row_seconds(row),
        p_value=None if p_value is None else float(p_value),
        interval=None if low is None or high is None else (float(low), float(high)),
        reference_id=_text(row, "reference_id"),
        rule_hash=_text(row, "rule_hash"),
        summary=_text(row, "summary"),
        n=int(row.get("n") or 0),
        version=_tag_value(row, "version") or None,
    )
