"""The Flux queries behind `InfluxStore`'s read methods, built as text.

InfluxDB OSS does not bind query parameters (only Cloud does), so every value is spliced in as
a Flux literal: strings through `string_literal`, which escapes backslash, quote, newline and
`${` interpolation, and times as `time(v: <nanoseconds>)`, which is exact.

Each query that returns records ends with an `ns` column, the exact integer nanoseconds of
`_time` (the client turns `_time` into a `datetime`, which keeps only microseconds), and
pivots fields into columns so one row is one stored point.

>>> string_literal('say "hi" ${x}')
'"say \\\\"hi\\\\" \\\\${x}"'
"""

from __future__ import annotations

from collections.abc import Sequence

from .aggregate import parse_stat
from .influx_schema import FEATURES, FINDINGS, LABELS, PREDICTIONS, SAMPLES
from .store import PREDICTION_FIELDS

#: The whole time range for queries without bounds: 1970 up to the start of 2262, just inside
#: InfluxDB's signed 64-bit nanosecond clock.
ALL_START_NS = 0
ALL_STOP_NS = 9_200_000_000 * 1_000_000_000

_PIVOT = '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
_EXACT_TIME = "|> map(fn: (r) => ({r with ns: int(v: r._time)}))"
_TIDY = '|> drop(columns: ["_start", "_stop", "_measurement"])'


def string_literal(value: str) -> str:
    """A Flux string literal that evaluates to exactly `value`."""
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
        .replace("${", "\\${")
    )
    return f'"{escaped}"'


def _source(bucket: str, start_ns: int, stop_ns: int) -> str:
    return (
        f"from(bucket: {string_literal(bucket)})\n"
        f"  |> range(start: time(v: {start_ns}), stop: time(v: {stop_ns}))"
    )


def points(bucket: str, measurement: str, model: str, start_ns: int, stop_ns: int) -> str:
    """Every point of one model in a measurement, fields as columns, oldest first."""
    return "\n  ".join(
        [
            _source(bucket, start_ns, stop_ns),
            f"|> filter(fn: (r) => r._measurement == {string_literal(measurement)}"
            f" and r.model == {string_literal(model)})",
            _PIVOT,
            _TIDY,
            "|> group()",
            '|> sort(columns: ["_time"])',
            _EXACT_TIME,
        ]
    )


def predictions(bucket: str, model: str, start_ns: int, stop_ns: int) -> str:
    return points(bucket, PREDICTIONS, model, start_ns, stop_ns)


def features(bucket: str, model: str, start_ns: int, stop_ns: int) -> str:
    return points(bucket, FEATURES, model, start_ns, stop_ns)


def labels(bucket: str, model: str, encoded_ids: Sequence[str]) -> str:
    """Labels of the given (already field-encoded) prediction ids, over all time."""
    id_set = ", ".join(string_literal(i) for i in encoded_ids)
    return "\n  ".join(
        [
            _source(bucket, ALL_START_NS, ALL_STOP_NS),
            f"|> filter(fn: (r) => r._measurement == {string_literal(LABELS)}"
            f" and r.model == {string_literal(model)})",
            _PIVOT,
            f"|> filter(fn: (r) => contains(value: r.prediction_id, set: [{id_set}]))",
            _TIDY,
            "|> group()",
            '|> sort(columns: ["_time"])',
            _EXACT_TIME,
        ]
    )


def samples(bucket: str, model: str, name: str, start_ns: int, stop_ns: int) -> str:
    """One sample series (all its label sets), oldest first; each row keeps its tags."""
    return "\n  ".join(
        [
            _source(bucket, start_ns, stop_ns),
            f"|> filter(fn: (r) => r._measurement == {string_literal(SAMPLES)}"
            f" and r.model == {string_literal(model)} and r.name == {string_literal(name)}"
            ' and r._field == "value")',
            _TIDY,
            "|> group()",
            '|> sort(columns: ["_time"])',
            _EXACT_TIME,
        ]
    )


FEATURE_PREFIX = "features."

# Prediction fields as (measurement, stored fields, Flux expression of the numeric value).
_FIELDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "weight": (PREDICTIONS, ("sample_rate",), "1.0 / r._value"),
    "error": (PREDICTIONS, ("error",), "float(v: r._value)"),
    "latency_s": (PREDICTIONS, ("latency_s",), "r._value"),
    "output": (PREDICTIONS, ("output", "output_bool"), "float(v: r._value)"),
}


def _aggregate_fn(stat: str) -> str:
    q = parse_stat(stat)
    if q is None:
        return stat
    # InfluxDB has no linear-interpolation quantile; exact_mean averages the two values
    # around the rank, which equals it at the median and differs slightly elsewhere.
    return (
        f'(column, tables=<-) => tables |> quantile(q: {q!r}, column: column, method: "exact_mean")'
    )


def _windowed(source_and_filter: list[str], stat: str, start_ns: int, step_ns: int) -> str:
    """Aggregate `_value` of every matching series together per step-long window.

    Windows are aligned to the epoch plus `offset`, so the offset `start mod step` makes them
    start at `start`; `timeSrc: "_start"` labels each with its start, like the SQLite store.
    """
    if step_ns <= 0:
        raise ValueError(f"step must be positive, got {step_ns} ns")
    parts = [
        *source_and_filter,
        '|> keep(columns: ["_time", "_value"])',
        "|> group()",
        f"|> aggregateWindow(every: {step_ns}ns, offset: {start_ns % step_ns}ns,"
        f' fn: {_aggregate_fn(stat)}, createEmpty: false, timeSrc: "_start")',
        "|> map(fn: (r) => ({ns: int(v: r._time), _value: float(v: r._value)}))",
    ]
    return "\n  ".join(parts)


def aggregate_prediction_field(
    bucket: str, model: str, field: str, stat: str, start_ns: int, stop_ns: int, step_ns: int
) -> str:
    """`stat` of a prediction field (`PREDICTION_FIELDS` or `features.NAME`) per window.

    Booleans count as 0 and 1; strings are not numbers and are left out, as in SQLite.
    """
    if field in _FIELDS:
        measurement, fields, value = _FIELDS[field]
        extra = ""
    elif field.startswith(FEATURE_PREFIX) and len(field) > len(FEATURE_PREFIX):
        measurement, fields, value = FEATURES, ("value", "value_bool"), "float(v: r._value)"
        extra = f" and r.feature == {string_literal(field[len(FEATURE_PREFIX) :])}"
    else:
        raise ValueError(
            f"unknown prediction field {field!r}; expected one of {PREDICTION_FIELDS}"
            " or 'features.NAME'"
        )
    which = " or ".join(f"r._field == {string_literal(f)}" for f in fields)
    return _windowed(
        [
            _source(bucket, start_ns, stop_ns),
            f"|> filter(fn: (r) => r._measurement == {string_literal(measurement)}"
            f" and r.model == {string_literal(model)}{extra} and ({which}))",
            f"|> map(fn: (r) => ({{r with _value: {value}}}))",
        ],
        stat,
        start_ns,
        step_ns,
    )


def aggregate_samples(
    bucket: str, model: str, name: str, stat: str, start_ns: int, stop_ns: int, step_ns: int
) -> str:
    """`stat` of one sample series, all its label sets together, per window."""
    return _windowed(
        [
            _source(bucket, start_ns, stop_ns),
            f"|> filter(fn: (r) => r._measurement == {string_literal(SAMPLES)}"
            f" and r.model == {string_literal(model)} and r.name == {string_literal(name)}"
            ' and r._field == "value")',
        ],
        stat,
        start_ns,
        step_ns,
    )


def series(bucket: str, model: str) -> str:
    """Distinct sample names of the model, from the tag index rather than the data."""
    return (
        'import "influxdata/influxdb/schema"\n'
        f'schema.tagValues(bucket: {string_literal(bucket)}, tag: "name",'
        f" predicate: (r) => r._measurement == {string_literal(SAMPLES)}"
        f" and r.model == {string_literal(model)}, start: time(v: {ALL_START_NS}))"
    )


def count_before(bucket: str, measurement: str, field: str, stop_ns: int) -> str:
    """How many points of `measurement` (counted by one field every point has) precede stop."""
    return "\n  ".join(
        [
            _source(bucket, ALL_START_NS, stop_ns),
            f"|> filter(fn: (r) => r._measurement == {string_literal(measurement)}"
            f" and r._field == {string_literal(field)})",
            '|> keep(columns: ["_value"])',
            "|> group()",
            "|> count()",
        ]
    )


def _newest(bucket: str, condition: str) -> str:
    return "\n  ".join(
        [
            _source(bucket, ALL_START_NS, ALL_STOP_NS),
            f"|> filter(fn: (r) => {condition})",
            "|> last()",
            '|> keep(columns: ["_time"])',
            "|> group()",
            '|> sort(columns: ["_time"], desc: true)',
            "|> limit(n: 1)",
            _EXACT_TIME,
        ]
    )


_ACTIVITY = (
    f'(r._measurement == "{PREDICTIONS}" and r._field == "sample_rate"'
    f' or r._measurement == "{SAMPLES}" and r._field == "value")'
)


def last_seen(bucket: str, model: str) -> str:
    """Time of the newest prediction or sample of the model (one row, or none)."""
    return _newest(bucket, f"r.model == {string_literal(model)} and {_ACTIVITY}")


def last_evaluated(bucket: str, model: str) -> str:
    """Window end of the newest finding of the model (one row, or none)."""
    return _newest(
        bucket,
        f'r._measurement == "{FINDINGS}" and r.model == {string_literal(model)}'
        ' and r._field == "value"',
    )


def models(bucket: str) -> str:
    """First and last time of every (model, version) series that has predictions or samples."""
    return "\n".join(
        [
            "data = " + _source(bucket, ALL_START_NS, ALL_STOP_NS),
            f"  |> filter(fn: (r) => {_ACTIVITY})",
            "union(tables: [data |> first(), data |> last()])",
            '  |> keep(columns: ["_time", "model", "version"])',
            "  |> group()",
            "  " + _EXACT_TIME,
        ]
    )


def findings(
    bucket: str,
    model: str | None,
    start_ns: int,
    stop_ns: int,
    *,
    breached_only: bool,
) -> str:
    """Findings whose window end (the point's time) is in `[start, stop)`, oldest first.

    `version` is a tag that findings without a version lack: their pivoted tables have no
    such column, and after `group()` their rows read it as null (`Finding.version` None).
    """
    condition = f'r._measurement == "{FINDINGS}"'
    if model is not None:
        condition += f" and r.model == {string_literal(model)}"
    parts = [_source(bucket, start_ns, stop_ns), f"|> filter(fn: (r) => {condition})", _PIVOT]
    if breached_only:
        parts.append("|> filter(fn: (r) => r.breached == true)")
    parts += [
        _TIDY,
        "|> group()",
        '|> sort(columns: ["_time", "model", "check", "subject"])',
        _EXACT_TIME,
    ]
    return "\n  ".join(parts)
