"""Roll-ups of prediction fields in SQLite, and the SQL that reads a field from raw rows.

A roll-up row holds `(n, total, low, high)` of one numeric field of one model over one period
of `resolution` seconds (a minute and an hour). Long-range queries whose buckets are whole
periods read these instead of every raw prediction: 30 days of 20 features is 720 hourly rows
per feature, against one JSON document per prediction.

`meta.rolled_until` (a whole hour) says up to where periods are complete. `SQLiteStore.rollup`
moves it forward; predictions that arrive later for an already rolled period are added to
their periods in the same transaction that stores them, so roll-ups never miss a row and a
read can combine roll-ups before `rolled_until` with raw rows after it.
"""

from __future__ import annotations

import sqlite3

from .store import PREDICTION_FIELDS

RESOLUTIONS = (3600, 60)
"""Roll-up period lengths in seconds, coarsest first (queries use the coarsest that fits)."""

_NUMERIC = "('integer', 'real', 'true', 'false')"
_FEATURE_PREFIX = "features."

_BUILTIN_EXPRESSIONS = {
    "weight": "1.0 / sample_rate",
    "error": "error",
    "latency_s": "latency_s",
    "output": f"CASE WHEN json_type(output) IN {_NUMERIC} THEN json_extract(output, '$') END",
}
assert tuple(_BUILTIN_EXPRESSIONS) == PREDICTION_FIELDS

_MERGE = (
    "ON CONFLICT (model, field, resolution, period) DO UPDATE SET n = n + excluded.n, "
    "total = total + excluded.total, low = min(low, excluded.low), "
    "high = max(high, excluded.high)"
)


def field_expression(field: str) -> tuple[str, tuple[str, ...]]:
    """SQL for a prediction field's numeric value (NULL where it has none), and its params."""
    expression = _BUILTIN_EXPRESSIONS.get(field)
    if expression is not None:
        return expression, ()
    if field.startswith(_FEATURE_PREFIX) and len(field) > len(_FEATURE_PREFIX):
        name = field[len(_FEATURE_PREFIX) :]
        if '"' not in name:
            path = f'$."{name}"'
            return (
                f"CASE WHEN json_type(features, ?) IN {_NUMERIC} "
                "THEN json_extract(features, ?) END",
                (path, path),
            )
        return (
            "(SELECT j.value FROM json_each(features) AS j "
            f"WHERE j.key = ? AND j.type IN {_NUMERIC})",
            (name,),
        )
    raise ValueError(
        f"unknown prediction field {field!r}; expected one of {PREDICTION_FIELDS} "
        "or 'features.NAME'"
    )


def rollup_rows(conn: sqlite3.Connection, where: str, args: tuple[object, ...]) -> None:
    """Add the predictions matching `where` (over table alias `p`) to their roll-up periods."""
    for resolution in RESOLUTIONS:
        for name, expression in _BUILTIN_EXPRESSIONS.items():
            conn.execute(
                "INSERT INTO rollups (model, field, resolution, period, n, total, low, high) "
                "SELECT model, ?, ?, period, count(v), sum(v), min(v), max(v) FROM ("
                f" SELECT p.model AS model, CAST(p.ts / ? AS INTEGER) AS period, {expression} AS v"
                f" FROM predictions AS p WHERE {where}"
                f") WHERE v IS NOT NULL GROUP BY model, period {_MERGE}",
                (name, resolution, resolution, *args),
            )
        conn.execute(
            "INSERT INTO rollups (model, field, resolution, period, n, total, low, high) "
            f"SELECT p.model, '{_FEATURE_PREFIX}' || j.key, ?, CAST(p.ts / ? AS INTEGER) AS period,"
            " count(*), sum(j.value), min(j.value), max(j.value)"
            " FROM predictions AS p, json_each(p.features) AS j"
            f" WHERE {where} AND j.type IN {_NUMERIC}"
            f" GROUP BY p.model, j.key, period {_MERGE}",
            (resolution, resolution, *args),
        )


def rolled_until(conn: sqlite3.Connection) -> float:
    row = conn.execute("SELECT value FROM meta WHERE key = 'rolled_until'").fetchone()
    return 0.0 if row is None else float(row[0])


def set_rolled_until(conn: sqlite3.Connection, until: float) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('rolled_until', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (repr(float(until)),),
    )


def usable_resolution(start: float, step: float) -> int | None:
    """The coarsest roll-up whose periods tile the buckets `start + k * step` exactly."""
    for resolution in RESOLUTIONS:
        if start % resolution == 0 and step % resolution == 0:
            return resolution
    return None
