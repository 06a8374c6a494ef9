"""The SQLite schema as an ordered list of migrations, each applied in one transaction.

`meta.schema_version` records how far a file has come. Opening a store applies every later
migration in order, each inside `BEGIN IMMEDIATE ... COMMIT`, so a file is always at exactly one
version, even if the process dies mid-migration, and two processes opening an old file at once
migrate it once (the second sees the new version under the write lock and does nothing).
Append new migrations; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3

V1 = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS models ("
    " name TEXT PRIMARY KEY, first_seen REAL NOT NULL, last_seen REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS model_versions ("
    " model TEXT NOT NULL, version TEXT NOT NULL, first_seen REAL NOT NULL,"
    " PRIMARY KEY (model, version))",
    "CREATE TABLE IF NOT EXISTS predictions ("
    " model TEXT NOT NULL, prediction_id TEXT NOT NULL, ts REAL NOT NULL, version TEXT NOT NULL,"
    " features TEXT NOT NULL, output TEXT, latency_s REAL, error INTEGER NOT NULL,"
    " sample_rate REAL NOT NULL, PRIMARY KEY (model, prediction_id))",
    "CREATE INDEX IF NOT EXISTS predictions_model_ts ON predictions (model, ts)",
    "CREATE TABLE IF NOT EXISTS labels ("
    " model TEXT NOT NULL, prediction_id TEXT NOT NULL, label TEXT, ts REAL NOT NULL,"
    " PRIMARY KEY (model, prediction_id))",
    "CREATE TABLE IF NOT EXISTS samples ("
    " model TEXT NOT NULL, name TEXT NOT NULL, labels TEXT NOT NULL, ts REAL NOT NULL,"
    " version TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (model, name, labels, ts))",
    "CREATE TABLE IF NOT EXISTS findings ("
    " model TEXT NOT NULL, check_name TEXT NOT NULL, subject TEXT NOT NULL,"
    " window_start REAL NOT NULL, window_end REAL NOT NULL, statistic TEXT NOT NULL,"
    " value REAL NOT NULL, threshold REAL NOT NULL, breached INTEGER NOT NULL,"
    " severity TEXT NOT NULL, p_value REAL, interval_low REAL, interval_high REAL,"
    " reference_id TEXT NOT NULL, rule_hash TEXT NOT NULL, summary TEXT NOT NULL,"
    " n INTEGER NOT NULL, PRIMARY KEY (model, check_name, subject, window_end))",
    "CREATE INDEX IF NOT EXISTS findings_model_end ON findings (model, window_end)",
    "CREATE INDEX IF NOT EXISTS findings_end ON findings (window_end)",
)

V2 = (
    # Range reads of one series across all its label sets (the primary key puts labels
    # before ts, which would make a time range scan every label set's whole history).
    "CREATE INDEX IF NOT EXISTS samples_model_name_ts ON samples (model, name, ts)",
    # Per-period partial aggregates of prediction fields; see `rollup.py`.
    "CREATE TABLE IF NOT EXISTS rollups ("
    " model TEXT NOT NULL, field TEXT NOT NULL, resolution INTEGER NOT NULL,"
    " period INTEGER NOT NULL, n INTEGER NOT NULL, total REAL NOT NULL, low REAL NOT NULL,"
    " high REAL NOT NULL, PRIMARY KEY (model, field, resolution, period)) WITHOUT ROWID",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('rolled_until', '0')",
)

V3 = (
    # The model version a finding's data belongs to (NULL: none, and every finding stored
    # before this column existed); it becomes the `version` label of alerts.
    "ALTER TABLE findings ADD COLUMN version TEXT",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (V1, V2, V3)
"""Migration `i` (0-based) takes a file from schema version `i` to `i + 1`."""

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(RuntimeError):
    """The file's schema is newer than this code knows: refuse rather than corrupt it."""


def schema_version(conn: sqlite3.Connection) -> int:
    """The file's schema version; 0 for an empty file."""
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if has_meta is None:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the file up to `target`, one transaction per migration; return the version."""
    while True:
        if schema_version(conn) >= target:  # cheap check without the write lock
            break
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = schema_version(conn)
            if current > SCHEMA_VERSION:
                raise SchemaError(
                    f"store schema version {current} is newer than this watchkeeper knows "
                    f"({SCHEMA_VERSION}); upgrade watchkeeper"
                )
            if current >= target:
                conn.execute("COMMIT")
                break
            for statement in MIGRATIONS[current]:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(current + 1),),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"store schema version {version} is newer than this watchkeeper knows "
            f"({SCHEMA_VERSION}); upgrade watchkeeper"
        )
    return version
