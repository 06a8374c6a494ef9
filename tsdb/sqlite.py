"""Embedded store: one SQLite file in WAL mode, shared by several processes at once.

WAL lets the ingest server write while the detector and the dashboard read. Each `write` call
is one transaction, so a batch is stored whole or not at all, even if the process is killed in
the middle of it. Records that repeat an id already stored (a retried batch) are ignored.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .records import FeatureValue, Finding, Label, ModelInfo, Prediction, Sample
from .store import PredictionMetric, WriteResult

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY, first_seen REAL NOT NULL, last_seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS model_versions (
    model TEXT NOT NULL, version TEXT NOT NULL, first_seen REAL NOT NULL,
    PRIMARY KEY (model, version));
CREATE TABLE IF NOT EXISTS predictions (
    model TEXT NOT NULL, prediction_id TEXT NOT NULL, ts REAL NOT NULL, version TEXT NOT NULL,
    features TEXT NOT NULL, output TEXT, latency_s REAL, error INTEGER NOT NULL,
    sample_rate REAL NOT NULL, PRIMARY KEY (model, prediction_id));
CREATE INDEX IF NOT EXISTS predictions_model_ts ON predictions (model, ts);
CREATE TABLE IF NOT EXISTS labels (
    model TEXT NOT NULL, prediction_id TEXT NOT NULL, label TEXT, ts REAL NOT NULL,
    PRIMARY KEY (model, prediction_id));
CREATE TABLE IF NOT EXISTS samples (
    model TEXT NOT NULL, name TEXT NOT NULL, labels TEXT NOT NULL, ts REAL NOT NULL,
    version TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (model, name, labels, ts));
CREATE TABLE IF NOT EXISTS findings (
    model TEXT NOT NULL, check_name TEXT NOT NULL, subject TEXT NOT NULL,
    window_start REAL NOT NULL, window_end REAL NOT NULL, statistic TEXT NOT NULL,
    value REAL NOT NULL, threshold REAL NOT NULL, breached INTEGER NOT NULL,
    severity TEXT NOT NULL, p_value REAL, interval_low REAL, interval_high REAL,
    reference_id TEXT NOT NULL, rule_hash TEXT NOT NULL, summary TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (model, check_name, subject, window_end));
CREATE INDEX IF NOT EXISTS findings_model_end ON findings (model, window_end);
CREATE INDEX IF NOT EXISTS findings_end ON findings (window_end);
"""


def _dump(value: FeatureValue) -> str:
    return json.dumps(value)


def _load(text: str | None) -> FeatureValue:
    if text is None:
        return None
    value: FeatureValue = json.loads(text)
    return value


class SQLiteStore:
    """A `Store` on one SQLite file; safe to share between threads and processes."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        conn = self._conn()
        conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )

    def __repr__(self) -> str:
        return f"SQLiteStore(path={str(self.path)!r})"

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def write(
        self,
        *,
        samples: Sequence[Sample] = (),
        predictions: Sequence[Prediction] = (),
        labels: Sequence[Label] = (),
        findings: Sequence[Finding] = (),
    ) -> WriteResult:
        seen: dict[str, tuple[float, float]] = {}
        versions: dict[tuple[str, str], float] = {}

        def touch(model: str, version: str, ts: float) -> None:
            low, high = seen.get(model, (ts, ts))
            seen[model] = (min(low, ts), max(high, ts))
            if version:
                versions[(model, version)] = min(versions.get((model, version), ts), ts)

        for p in predictions:
            touch(p.model, p.version, p.timestamp)
        for s in samples:
            touch(s.model, s.version, s.timestamp)
        with self._transaction() as conn:
            n_samples = _insert_count(
                conn,
                "INSERT OR IGNORE INTO samples VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (s.model, s.name, json.dumps(sorted(s.labels)), s.timestamp, s.version, s.value)
                    for s in samples
                ],
            )
            n_predictions = _insert_count(
                conn,
                "INSERT OR IGNORE INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        p.model,
                        p.prediction_id,
                        p.timestamp,
                        p.version,
                        json.dumps(p.features, sort_keys=True),
                        _dump(p.output),
                        p.latency_s,
                        int(p.error),
                        p.sample_rate,
                    )
                    for p in predictions
                ],
            )
            n_labels = _insert_count(
                conn,
                "INSERT OR IGNORE INTO labels VALUES (?, ?, ?, ?)",
                [(x.model, x.prediction_id, _dump(x.label), x.timestamp) for x in labels],
            )
            n_findings = _insert_count(
                conn,
                "INSERT OR IGNORE INTO findings VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
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
                    for f in findings
                ],
            )
            conn.executemany(
                "INSERT INTO models VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "first_seen = min(first_seen, excluded.first_seen), "
                "last_seen = max(last_seen, excluded.last_seen)",
                [(m, low, high) for m, (low, high) in seen.items()],
            )
            conn.executemany(
                "INSERT INTO model_versions VALUES (?, ?, ?) ON CONFLICT (model, version) "
                "DO UPDATE SET first_seen = min(first_seen, excluded.first_seen)",
                [(m, v, ts) for (m, v), ts in versions.items()],
            )
        return WriteResult(n_samples, n_predictions, n_labels, n_findings)

    def models(self) -> list[ModelInfo]:
        conn = self._conn()
        versions: dict[str, list[str]] = {}
        for model, version in conn.execute(
            "SELECT model, version FROM model_versions ORDER BY model, first_seen"
        ):
            versions.setdefault(model, []).append(version)
        return [
            ModelInfo(name, tuple(versions.get(name, ())), first, last)
            for name, first, last in conn.execute(
                "SELECT name, first_seen, last_seen FROM models ORDER BY name"
            )
        ]

    def predictions(self, model: str, start: float, end: float) -> list[Prediction]:
        rows = self._conn().execute(
            "SELECT prediction_id, ts, version, features, output, latency_s, error, sample_rate "
            "FROM predictions WHERE model = ? AND ts >= ? AND ts < ? ORDER BY ts",
            (model, start, end),
        )
        return [
            Prediction(
                model=model,
                prediction_id=pid,
                timestamp=ts,
                version=version,
                features=json.loads(features),
                output=_load(output),
                latency_s=latency,
                error=bool(error),
                sample_rate=rate,
            )
            for pid, ts, version, features, output, latency, error, rate in rows
        ]

    def labels(self, model: str, prediction_ids: Sequence[str]) -> dict[str, Label]:
        conn = self._conn()
        found: dict[str, Label] = {}
        ids = list(prediction_ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for pid, label, ts in conn.execute(
                f"SELECT prediction_id, label, ts FROM labels "
                f"WHERE model = ? AND prediction_id IN ({marks})",
                (model, *chunk),
            ):
                found[pid] = Label(model, pid, _load(label), ts)
        return found

    def samples(self, model: str, name: str, start: float, end: float) -> list[Sample]:
        rows = self._conn().execute(
            "SELECT ts, value, version, labels FROM samples "
            "WHERE model = ? AND name = ? AND ts >= ? AND ts < ? ORDER BY ts",
            (model, name, start, end),
        )
        return [
            Sample(model, name, ts, value, version, tuple(tuple(x) for x in json.loads(lab)))
            for ts, value, version, lab in rows
        ]

    def aggregate_predictions(
        self, model: str, metric: PredictionMetric, start: float, end: float, step: float
    ) -> list[tuple[float, float]]:
        if step <= 0:
            raise ValueError(f"step must be positive, got {step}")
        conn = self._conn()
        bucket = "CAST((ts - ?) / ? AS INTEGER)"
        where = "FROM predictions WHERE model = ? AND ts >= ? AND ts < ?"
        args = (start, step, model, start, end)
        if metric == "latency_p95":
            by_bucket: dict[int, list[float]] = {}
            for b, latency in conn.execute(
                f"SELECT {bucket} AS b, latency_s {where} AND latency_s IS NOT NULL", args
            ):
                by_bucket.setdefault(b, []).append(latency)
            return [
                (start + b * step, _quantile(sorted(values), 0.95))
                for b, values in sorted(by_bucket.items())
            ]
        expression = {
            "count": "SUM(1.0 / sample_rate)",
            "error_rate": "AVG(error)",
            "latency_mean": "AVG(latency_s)",
        }.get(metric)
        if expression is None:
            raise ValueError(f"unknown metric {metric!r}")
        rows = conn.execute(
            f"SELECT {bucket} AS b, {expression} {where} GROUP BY b ORDER BY b", args
        )
        return [(start + b * step, float(v)) for b, v in rows if v is not None]

    def last_seen(self, model: str) -> float | None:
        row = (
            self._conn().execute("SELECT last_seen FROM models WHERE name = ?", (model,)).fetchone()
        )
        return None if row is None else float(row[0])

    def findings(
        self,
        model: str | None = None,
        start: float | None = None,
        end: float | None = None,
        *,
        breached_only: bool = False,
    ) -> list[Finding]:
        clauses: list[str] = []
        args: list[object] = []
        if model is not None:
            clauses.append("model = ?")
            args.append(model)
        if start is not None:
            clauses.append("window_end >= ?")
            args.append(start)
        if end is not None:
            clauses.append("window_end < ?")
            args.append(end)
        if breached_only:
            clauses.append("breached = 1")
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._conn().execute(
            "SELECT model, check_name, subject, statistic, value, threshold, breached, severity, "
            "window_start, window_end, p_value, interval_low, interval_high, reference_id, "
            f"rule_hash, summary, n FROM findings {where} ORDER BY window_end, model, check_name, "
            "subject",
            args,
        )
        return [_finding(row) for row in rows]

    def last_evaluated(self, model: str) -> float | None:
        row = (
            self._conn()
            .execute("SELECT max(window_end) FROM findings WHERE model = ?", (model,))
            .fetchone()
        )
        return None if row is None or row[0] is None else float(row[0])

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()


def _insert_count(conn: sqlite3.Connection, sql: str, rows: list[tuple[object, ...]]) -> int:
    if not rows:
        return 0
    before = conn.total_changes
    conn.executemany(sql, rows)
    return conn.total_changes - before


def _quantile(values: list[float], q: float) -> float:
    """Linear-interpolation quantile of sorted values (numpy's default method)."""
    position = (len(values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def _finding(row: tuple[Any, ...]) -> Finding:
    (
        model,
        check,
        subject,
        statistic,
        value,
        threshold,
        breached,
        severity,
        window_start,
        window_end,
        p_value,
        low,
        high,
        reference_id,
        rule_hash,
        summary,
        n,
    ) = row
    return Finding(
        model=model,
        check=check,
        subject=subject,
        statistic=statistic,
        value=float(value),
        threshold=float(threshold),
        breached=bool(breached),
        severity=severity,
        window_start=float(window_start),
        window_end=float(window_end),
        p_value=None if p_value is None else float(p_value),
        interval=None if low is None else (float(low), float(high)),
        reference_id=reference_id,
        rule_hash=rule_hash,
        summary=summary,
        n=int(n),
    )
