"""Alerting's own small state: the current alert per fingerprint and the notification log.

It lives in its own SQLite file (WAL mode), apart from the samples store, like Alertmanager's
local state: alerting can be restarted, moved or wiped without touching monitoring data, and
the dashboard reads it from another process while alerting writes (`read_alerts`).

Files written by older versions are migrated when opened for writing: columns added since
(`ADDED_COLUMNS`) are appended with NULL, which is each field's default; a read-only reader
of an old file reads NULL for them without changing the file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Collection
from pathlib import Path

from .outbox import read_only
from .records import Alert, AlertState, NotificationRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    fingerprint TEXT PRIMARY KEY, labels TEXT NOT NULL, state TEXT NOT NULL,
    active_since REAL NOT NULL, updated_at REAL NOT NULL, fired_at REAL, resolved_at REAL,
    value REAL NOT NULL, threshold REAL NOT NULL, summary TEXT NOT NULL,
    keep_firing_since REAL, seen_at REAL, latest_version TEXT);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT, fingerprint TEXT NOT NULL, state TEXT NOT NULL,
    receiver TEXT NOT NULL, ok INTEGER NOT NULL, detail TEXT NOT NULL, at REAL NOT NULL);
"""

_COLUMNS = (
    "fingerprint, labels, state, active_since, updated_at, fired_at, resolved_at, "
    "value, threshold, summary, keep_firing_since, seen_at, latest_version"
)

#: Columns of the `alerts` table added after its first release, with their SQL types.
ADDED_COLUMNS = {"keep_firing_since": "REAL", "seen_at": "REAL", "latest_version": "TEXT"}

_Row = tuple[
    str, str, str, float, float, float | None, float | None, float, float, str,
    float | None, float | None, str | None,
]  # fmt: skip


def _present(conn: sqlite3.Connection) -> set[str]:
    return {str(row[1]) for row in conn.execute("PRAGMA table_info(alerts)")}


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Add the columns an older state file lacks; the names added."""
    present = _present(conn)
    added = []
    for name, kind in ADDED_COLUMNS.items():
        if name not in present:
            conn.execute(f"ALTER TABLE alerts ADD COLUMN {name} {kind}")
            added.append(name)
    return added


def _select_list(conn: sqlite3.Connection) -> str:
    """`_COLUMNS`, with NULL for added columns an unmigrated (read-only) file lacks."""
    present = _present(conn)
    names = [name.strip() for name in _COLUMNS.split(",")]
    return ", ".join(n if n in present else f"NULL AS {n}" for n in names)


def _to_alert(row: _Row) -> Alert:
    labels = tuple((str(k), str(v)) for k, v in json.loads(row[1]))
    state: AlertState = row[2]  # type: ignore[assignment]
    return Alert(
        fingerprint=row[0],
        labels=labels,
        state=state,
        active_since=row[3],
        updated_at=row[4],
        fired_at=row[5],
        resolved_at=row[6],
        value=row[7],
        threshold=row[8],
        summary=row[9],
        keep_firing_since=row[10],
        seen_at=row[11],
        latest_version=row[12],
    )


def _select_alerts(conn: sqlite3.Connection, states: Collection[str] | None) -> list[Alert]:
    query = f"SELECT {_select_list(conn)} FROM alerts"
    params: list[str] = []
    if states is not None:
        wanted = list(states)
        if not wanted:
            return []
        query += f" WHERE state IN ({', '.join('?' for _ in wanted)})"
        params = wanted
    query += " ORDER BY active_since DESC, fingerprint"
    return [_to_alert(row) for row in conn.execute(query, params)]


class AlertStateStore:
    """Current alerts and the notification log in one SQLite file; thread-safe.

    Each method is one transaction. Alerts are kept one row per fingerprint: a re-fired alert
    replaces its resolved predecessor, and the notification log keeps the history.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._conn.executescript(_SCHEMA)
            migrate(self._conn)

    def __repr__(self) -> str:
        return f"AlertStateStore(path={str(self.path)!r})"

    def get(self, fingerprint: str) -> Alert | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM alerts WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
        return _to_alert(row) if row else None

    def upsert(self, alert: Alert) -> None:
        """Store `alert` as the current state of its fingerprint."""
        values = (
            alert.fingerprint,
            json.dumps([list(pair) for pair in alert.labels]),
            alert.state,
            alert.active_since,
            alert.updated_at,
            alert.fired_at,
            alert.resolved_at,
            alert.value,
            alert.threshold,
            alert.summary,
            alert.keep_firing_since,
            alert.seen_at,
            alert.latest_version,
        )
        marks = ",".join("?" * len(values))
        with self._lock:
            self._conn.execute(
                f"INSERT OR REPLACE INTO alerts ({_COLUMNS}) VALUES ({marks})", values
            )

    def delete(self, fingerprint: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM alerts WHERE fingerprint = ?", (fingerprint,))

    def alerts(self, states: Collection[str] | None = None) -> list[Alert]:
        """Alerts in any of `states` (all when None), the most recently started first."""
        with self._lock:
            return _select_alerts(self._conn, states)

    def record_notification(
        self, fingerprint: str, state: str, receiver: str, ok: bool, detail: str, at: float
    ) -> None:
        """Append one delivery outcome; `receiver` must already be masked."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO notifications (fingerprint, state, receiver, ok, detail, at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (fingerprint, state, receiver, int(ok), detail, at),
            )

    def notifications(self, limit: int = 100) -> list[NotificationRecord]:
        """The latest `limit` deliveries, newest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT fingerprint, state, receiver, ok, detail, at FROM notifications "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            NotificationRecord(
                fingerprint=r[0], state=r[1], receiver=r[2], ok=bool(r[3]), detail=r[4], at=r[5]
            )
            for r in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def read_alerts(path: Path, states: Collection[str] | None = None) -> list[Alert]:
    """Alerts from a state file written by another process; `[]` if there is none yet.

    Opens the file read-only and never creates it, so a dashboard started before alerting
    neither fails nor leaves an empty file behind.
    """
    return read_only(Path(path), lambda conn: _select_alerts(conn, states))
