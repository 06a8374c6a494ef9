"""Embedded store: one SQLite file in WAL mode, shared by several processes at once.

WAL lets the ingest server write while the detector and the dashboard read. Each `write` call
is stored whole or not at all, even if the process is killed in the middle of it: it is one
transaction, or one savepoint of a transaction shared with the writes other threads of the
process made at the same time (group commit, which the ingest server's concurrent requests
use), and it returns only once that transaction is committed. Records that repeat an id
already stored (a retried batch) are ignored. Records are validated before the transaction
opens (`validation.py`); the schema is versioned and migrated on open (`migrations.py`);
long-range aggregates read roll-ups (`sqlite_rollup.py`).
Durability and sharing between processes are described in docs/storage.md.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .aggregate import Partial, check_window, parse_stat, quantile
from .migrations import migrate
from .records import Finding, Label, ModelInfo, Prediction, Sample
from .sqlite_rollup import (
    RESOLUTIONS,
    field_expression,
    rolled_until,
    rollup_rows,
    set_rolled_until,
    usable_resolution,
)
from .sqlite_rows import Rows, build_rows, decode_features, load
from .store import RETENTION_KINDS, PredictionMetric, RetentionKind, Stat, WriteResult
from .validation import DEFAULT_LIMITS, Limits, RecordChecker

if TYPE_CHECKING:
    import pandas as pd


class SQLiteStore:
    """A `Store` on one SQLite file; safe to share between threads and processes.

    `limits` bounds what a write accepts (see `validation.Limits`). Opening a file migrates it
    to the current schema (see `migrations.py`).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_s: float = 10.0,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.limits = limits
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        # Each thread's connection, with its thread: a thread that ended cannot use its
        # connection again, so it is closed when the next thread opens one (thread pools
        # replace idle workers; keeping theirs would leak a file descriptor each).
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._lock = threading.Lock()
        # Writers of this process queue here, woken the moment the writer before them
        # commits; left to SQLite they would poll its lock with sleeps of up to 100 ms.
        self._write_lock = threading.Lock()
        self._queued: list[_Job] = []  # batches waiting for the next group commit
        self.schema_version = migrate(self._conn())

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
                alive = []
                for thread, old in self._connections:
                    if thread.is_alive():
                        alive.append((thread, old))
                    else:
                        old.close()
                alive.append((threading.current_thread(), conn))
                self._connections = alive
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._write_lock:
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
        """Store one batch all or nothing; `InvalidRecord` (a ValueError) for a bad record."""
        check = RecordChecker(self.limits, time.time())
        rows = build_rows(check, samples, predictions, labels, findings)
        return self._commit(rows)

    def _commit(self, rows: Rows) -> WriteResult:
        """Write `rows` in a transaction shared with the batches other threads of this process
        queued meanwhile (group commit), and return once it is committed.

        The thread that gets the write lock writes every queued batch, each inside its own
        savepoint, and commits once; the others find theirs done when they get the lock. A
        batch whose statements fail is rolled back to its savepoint alone and its caller gets
        the error; a failed commit fails every batch of the group (none of it is stored).
        """
        job = _Job(rows)
        with self._lock:
            self._queued.append(job)
        with self._write_lock:
            if not job.done:
                with self._lock:
                    jobs, self._queued = self._queued, []
                self._write_group(jobs)
        return job.outcome()

    def _write_group(self, jobs: list[_Job]) -> None:
        """One transaction for `jobs`; sets each job's result or error, then marks it done."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for i, job in enumerate(jobs):
                conn.execute(f"SAVEPOINT b{i}")
                try:
                    job.result = self._insert(conn, job.rows)
                except Exception as exc:
                    job.error = exc
                    if not conn.in_transaction:  # SQLite rolled it all back (disk full, ...)
                        raise
                    conn.execute(f"ROLLBACK TO b{i}")
                conn.execute(f"RELEASE b{i}")
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            for job in jobs:  # nothing of the group is stored
                job.result, job.error = None, job.error or exc
            if not isinstance(exc, Exception):
                raise
        finally:
            for job in jobs:
                job.done = True

    def _insert(self, conn: sqlite3.Connection, rows: Rows) -> WriteResult:
        """One batch's rows into the open transaction."""
        late = rows.oldest_prediction < rolled_until(conn)
        if late:
            (newest_rowid,) = conn.execute("SELECT max(rowid) FROM predictions").fetchone()
        n_samples = _insert_count(conn, "samples", 6, rows.samples)
        n_predictions = _insert_count(conn, "predictions", 9, rows.predictions)
        if late and n_predictions:
            # Rows for periods already rolled up join their periods now, in this same
            # transaction; rowids above the old maximum are exactly this batch's new rows.
            rollup_rows(conn, "p.rowid > ? AND p.ts < ?", (newest_rowid or 0, rolled_until(conn)))
        n_labels = _insert_count(conn, "labels", 4, rows.labels)
        n_findings = _insert_count(conn, "findings", 18, rows.findings)
        if rows.seen:
            conn.executemany(
                "INSERT INTO models VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "first_seen = min(first_seen, excluded.first_seen), "
                "last_seen = max(last_seen, excluded.last_seen)",
                [(m, low, high) for m, (low, high) in rows.seen.items()],
            )
        if rows.versions:
            conn.executemany(
                "INSERT INTO model_versions VALUES (?, ?, ?) ON CONFLICT (model, version) "
                "DO UPDATE SET first_seen = min(first_seen, excluded.first_seen)",
                [(m, v, ts) for (m, v), ts in rows.versions.items()],
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

    def series(self, model: str) -> list[str]:
        return [
            name
            for (name,) in self._conn().execute(
                "SELECT DISTINCT name FROM samples WHERE model = ? ORDER BY name", (model,)
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
                features=decode_features(features),
                output=load(output),
                latency_s=latency,
                error=bool(error),
                sample_rate=rate,
            )
            for pid, ts, version, features, output, latency, error, rate in rows
        ]

    def prediction_frame(self, model: str, start: float, end: float) -> pd.DataFrame:
        """Predictions of `[start, end)` oldest first, with their labels where known.

        Columns: `FRAME_COLUMNS`, then one per feature (NaN/None where a prediction lacks
        it); a feature whose name is one of `FRAME_COLUMNS` is called `features.NAME`.
        """
        import pandas as pd  # lazily: the client library must never pull pandas in

        rows = (
            self._conn()
            .execute(
                "SELECT p.prediction_id, p.ts, p.version, p.output, p.latency_s, p.error, "
                "p.sample_rate, l.label, l.ts, p.features FROM predictions AS p "
                "LEFT JOIN labels AS l ON l.model = p.model AND l.prediction_id = p.prediction_id "
                "WHERE p.model = ? AND p.ts >= ? AND p.ts < ? ORDER BY p.ts",
                (model, start, end),
            )
            .fetchall()
        )
        base = pd.DataFrame(
            [
                (r[0], r[1], r[2], load(r[3]), r[4], bool(r[5]), r[6], load(r[7]), r[8])
                for r in rows
            ],
            columns=list(FRAME_COLUMNS),
        )
        base["latency_s"] = base["latency_s"].astype("float64")
        base["label_timestamp"] = base["label_timestamp"].astype("float64")
        base["error"] = base["error"].astype("bool")
        features = pd.DataFrame.from_records(
            [decode_features(r[9]) for r in rows], index=base.index
        )
        features.columns = [
            f"features.{c}" if c in FRAME_COLUMNS else str(c) for c in features.columns
        ]
        return pd.concat([base, features], axis=1)

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
                found[pid] = Label(model, pid, load(label), ts)
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
        spec = _METRICS.get(metric)
        if spec is None:
            raise ValueError(f"unknown metric {metric!r}")
        return self.aggregate_prediction_field(model, spec[0], spec[1], start, end, step)

    def aggregate_prediction_field(
        self, model: str, field: str, stat: Stat, start: float, end: float, step: float
    ) -> list[tuple[float, float]]:
        """`stat` of a numeric prediction field per bucket; roll-ups where they tile buckets.

        >>> store = SQLiteStore(":memory:")
        >>> _ = store.write(predictions=[Prediction("m", "a", 5.0, {"x": 2}),
        ...                              Prediction("m", "b", 65.0, {"x": 4})])
        >>> store.aggregate_prediction_field("m", "features.x", "mean", 0.0, 120.0, 60.0)
        [(0.0, 2.0), (60.0, 4.0)]
        """
        check_window(start, end, step)
        q = parse_stat(stat)
        expression, params = field_expression(field)
        conn = self._conn()
        raw_from = start
        partials: dict[int, Partial] = {}
        resolution = usable_resolution(start, step) if q is None else None
        if resolution is not None:
            cover_end = min(math.floor(end / resolution) * resolution, rolled_until(conn))
            if cover_end > start:
                for period, n, total, low, high in conn.execute(
                    "SELECT period, n, total, low, high FROM rollups WHERE model = ? AND "
                    "field = ? AND resolution = ? AND period >= ? AND period < ?",
                    (model, field, resolution, start // resolution, cover_end // resolution),
                ):
                    _merge(
                        partials, int((period * resolution - start) // step), n, total, low, high
                    )
                raw_from = cover_end
        source = (
            f"SELECT ts, {expression} AS v FROM predictions WHERE model = ? AND ts >= ? AND ts < ?"
        )
        args = (*params, model, raw_from, end)
        if q is not None:
            return _quantiles(conn, source, args, start, step, q)
        for row in _raw_partials(conn, source, args, start, step):
            _merge(partials, *row)
        return [(start + b * step, partials[b].value(stat)) for b in sorted(partials)]

    def aggregate_samples(
        self, model: str, name: str, stat: Stat, start: float, end: float, step: float
    ) -> list[tuple[float, float]]:
        """`stat` of one series, all label sets together, per `step`-long bucket with data."""
        check_window(start, end, step)
        q = parse_stat(stat)
        conn = self._conn()
        source = (
            "SELECT ts, value AS v FROM samples WHERE model = ? AND name = ? AND ts >= ? AND ts < ?"
        )
        args = (model, name, start, end)
        if q is not None:
            return _quantiles(conn, source, args, start, step, q)
        partials: dict[int, Partial] = {}
        for row in _raw_partials(conn, source, args, start, step):
            _merge(partials, *row)
        return [(start + b * step, partials[b].value(stat)) for b in sorted(partials)]

    def rollup(self, until: float | None = None) -> float:
        """Complete roll-up periods up to `until` (default: 5 minutes ago); return the new
        `rolled_until`. Run it now and then (the runtime's housekeeping does); queries are
        right whether or not it ran, only faster after. One transaction per day of data."""
        target = time.time() - 300.0 if until is None else until
        target = math.floor(target / RESOLUTIONS[0]) * RESOLUTIONS[0]
        conn = self._conn()
        while True:
            with self._transaction():
                done = rolled_until(conn)
                if done >= target:
                    return done
                if done == 0.0:  # first run: start at the oldest prediction
                    (oldest,) = conn.execute("SELECT min(ts) FROM predictions").fetchone()
                    if oldest is None:
                        set_rolled_until(conn, target)
                        return target
                    done = math.floor(oldest / RESOLUTIONS[0]) * RESOLUTIONS[0]
                upto = min(done + 86400.0, target)
                for (model,) in conn.execute("SELECT name FROM models").fetchall():
                    rollup_rows(conn, "p.model = ? AND p.ts >= ? AND p.ts < ?", (model, done, upto))
                set_rolled_until(conn, upto)

    def retention(self, kind: RetentionKind, older_than: float) -> int:
        """Delete `kind` records older than `older_than` (Unix seconds); return how many.

        Deleting predictions keeps their roll-ups, so long-range counts, rates and means
        survive raw data (quantiles do not); keep roll-ups at least as long as predictions.
        """
        statements = {
            "samples": "DELETE FROM samples WHERE ts < ?",
            "predictions": "DELETE FROM predictions WHERE model = ? AND ts < ?",
            "labels": "DELETE FROM labels WHERE ts < ?",
            "findings": "DELETE FROM findings WHERE window_end < ?",
            "rollups": "DELETE FROM rollups WHERE (period + 1) * resolution <= ?",
        }
        sql = statements.get(kind)
        if sql is None:
            raise ValueError(f"unknown kind {kind!r}; expected one of {RETENTION_KINDS}")
        with self._transaction() as conn:
            before = conn.total_changes
            if kind == "predictions":
                models = [m for (m,) in conn.execute("SELECT name FROM models").fetchall()]
                conn.executemany(sql, [(m, older_than) for m in models])
            else:
                conn.execute(sql, (older_than,))
            return conn.total_changes - before

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
            f"rule_hash, summary, n, version FROM findings {where} "
            "ORDER BY window_end, model, check_name, "
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
            for _, conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()


FRAME_COLUMNS = (
    "prediction_id",
    "timestamp",
    "version",
    "output",
    "latency_s",
    "error",
    "sample_rate",
    "label",
    "label_timestamp",
)
"""The fixed columns of `prediction_frame`, before the feature columns."""

_METRICS: dict[str, tuple[str, Stat]] = {
    "count": ("weight", "sum"),
    "error_rate": ("error", "mean"),
    "latency_mean": ("latency_s", "mean"),
    "latency_p95": ("latency_s", "p95"),
}


def _merge(
    partials: dict[int, Partial], bucket: int, n: int, total: float, low: float, high: float
) -> None:
    new = Partial(n, total, low, high)
    old = partials.get(bucket)
    partials[bucket] = new if old is None else old.merge(new)


def _raw_partials(
    conn: sqlite3.Connection, source: str, args: tuple[object, ...], start: float, step: float
) -> list[tuple[int, int, float, float, float]]:
    return conn.execute(
        "SELECT CAST((ts - ?) / ? AS INTEGER) AS b, count(v), sum(v), min(v), max(v) "
        f"FROM ({source}) WHERE v IS NOT NULL GROUP BY b",
        (start, step, *args),
    ).fetchall()


def _quantiles(
    conn: sqlite3.Connection,
    source: str,
    args: tuple[object, ...],
    start: float,
    step: float,
    q: float,
) -> list[tuple[float, float]]:
    by_bucket: dict[int, list[float]] = {}
    for b, v in conn.execute(
        f"SELECT CAST((ts - ?) / ? AS INTEGER) AS b, v FROM ({source}) "
        "WHERE v IS NOT NULL ORDER BY b, v",
        (start, step, *args),
    ):
        by_bucket.setdefault(b, []).append(float(v))
    return [(start + b * step, quantile(values, q)) for b, values in sorted(by_bucket.items())]


class _Job:
    """One batch in a group commit: its rows, then its result or its error."""

    __slots__ = ("done", "error", "result", "rows")

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        self.done = False
        self.result: WriteResult | None = None
        self.error: BaseException | None = None

    def outcome(self) -> WriteResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def _insert_count(
    conn: sqlite3.Connection, table: str, width: int, rows: list[tuple[object, ...]]
) -> int:
    """Insert `rows` (`width` values each) unless already stored; how many were new.

    Many rows go in per statement, not one per `executemany` step: the sqlite3 module lets go
    of the GIL around every step, and while the ingest API's other threads wait for the GIL
    each of those hand-overs costs more than the row itself. Chunks are powers of two, so a
    connection prepares at most a handful of statements per table and its cache keeps them.
    """
    if not rows:
        return 0
    before = conn.total_changes
    most, allowed = _MAX_CHUNK, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    while most * width > allowed:
        most //= 2
    done, total = 0, len(rows)
    while done < total:
        size = min(most, 1 << ((total - done).bit_length() - 1))
        values = [v for row in rows[done : done + size] for v in row]
        conn.execute(_insert_sql(table, width, size), values)
        done += size
    return conn.total_changes - before


_MAX_CHUNK = 512  # rows per INSERT statement (fewer where SQLite allows fewer variables)


@functools.cache
def _insert_sql(table: str, width: int, rows: int) -> str:
    row = "(" + ", ".join("?" * width) + ")"
    return f"INSERT OR IGNORE INTO {table} VALUES " + ", ".join([row] * rows)


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
        version,
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
        version=version,
    )
