"""The durable outbound queue and the notification log, in alerting's SQLite state file.

A notification is written here before anyone tries to send it, together with the
notification-log entry that says what its group's receiver was told (one transaction): so a
crash, even SIGKILL, never loses one, and a restart does not decide to send it again. Each row
is one message to one target URL, so a partial failure is retried only where it failed; it is
marked sent after the send. If the process dies between a send and its mark, the message goes
out once more after restart, with the same `dedup_key`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nflog (
    group_key TEXT NOT NULL, receiver TEXT NOT NULL, firing TEXT NOT NULL,
    resolved TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (group_key, receiver));
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dedup_key TEXT NOT NULL, receiver TEXT NOT NULL,
    target TEXT NOT NULL, fingerprints TEXT NOT NULL, state TEXT NOT NULL,
    title TEXT NOT NULL, body TEXT NOT NULL, created_at REAL NOT NULL, deadline REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued', detail TEXT NOT NULL DEFAULT '', done_at REAL,
    lease_until REAL);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, target, next_attempt_at);
"""


def connect(path: Path, busy_timeout_s: float = 10.0) -> sqlite3.Connection:
    """A connection to alerting's state file in autocommit WAL mode, usable from any thread."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


T = TypeVar("T")


class NotificationLog(Protocol):
    """Where delivery outcomes are appended (`AlertStateStore`)."""

    def record_notification(
        self, fingerprint: str, state: str, receiver: str, ok: bool, detail: str, at: float
    ) -> None: ...


def read_only(path: Path, select: Callable[[sqlite3.Connection], list[T]]) -> list[T]:
    """`select` run on a read-only connection to a state file another process writes; `[]`
    when the file or its table does not exist yet. Never creates or changes the file, so a
    reader started before alerting (the dashboard, the CLI) leaves nothing behind."""
    if not path.is_file():
        return []
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
    try:
        return select(conn)
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


@dataclass(frozen=True, slots=True)
class LogEntry:
    """What a receiver was last told about a group: firing and resolved fingerprints, when."""

    firing: frozenset[str]
    resolved: frozenset[str]
    at: float


@dataclass(frozen=True, slots=True)
class Message:
    """One notification for one target, as queued."""

    dedup_key: str
    receiver: str
    target: str
    fingerprints: tuple[str, ...]
    state: str
    title: str
    body: str


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A queued message with its delivery bookkeeping."""

    id: int
    message: Message
    created_at: float
    deadline: float
    attempts: int
    next_attempt_at: float
    status: str
    detail: str


_ROW = (
    "id, dedup_key, receiver, target, fingerprints, state, title, body, created_at, deadline, "
    "attempts, next_attempt_at, status, detail"
)


def _queued(row: tuple[object, ...]) -> QueuedMessage:
    (id_, key, receiver, target, fps, state, title, body, created, deadline) = row[:10]
    attempts, next_at, status, detail = row[10:]
    return QueuedMessage(
        id=int(id_),  # type: ignore[call-overload]
        message=Message(
            str(key),
            str(receiver),
            str(target),
            tuple(json.loads(str(fps))),
            str(state),
            str(title),
            str(body),
        ),
        created_at=float(created),  # type: ignore[arg-type]
        deadline=float(deadline),  # type: ignore[arg-type]
        attempts=int(attempts),  # type: ignore[call-overload]
        next_attempt_at=float(next_at),  # type: ignore[arg-type]
        status=str(status),
        detail=str(detail),
    )


class Outbox:
    """The queue and notification log over one SQLite file; thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn = connect(self.path)
        with self._lock:
            self._conn.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"Outbox(path={str(self.path)!r})"

    def entry(self, group_key: str, receiver: str) -> LogEntry | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT firing, resolved, at FROM nflog WHERE group_key = ? AND receiver = ?",
                (group_key, receiver),
            ).fetchone()
        if row is None:
            return None
        return LogEntry(frozenset(json.loads(row[0])), frozenset(json.loads(row[1])), row[2])

    def owed_fingerprints(self) -> set[str]:
        """Fingerprints some receiver was last told are firing (a resolve may be owed)."""
        with self._lock:
            rows = self._conn.execute("SELECT firing FROM nflog").fetchall()
        return {fp for (firing,) in rows for fp in json.loads(firing)}

    def record(
        self,
        group_key: str,
        receiver: str,
        entry: LogEntry,
        messages: Sequence[Message],
        queued_at: float,
        deadline: float,
    ) -> list[int]:
        """In one transaction: log what `receiver` is told about the group, queue `messages`.

        `queued_at` and `deadline` are wall-clock times: the messages are due at once.
        """
        ids: list[int] = []
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT OR REPLACE INTO nflog VALUES (?, ?, ?, ?, ?)",
                    (
                        group_key,
                        receiver,
                        json.dumps(sorted(entry.firing)),
                        json.dumps(sorted(entry.resolved)),
                        entry.at,
                    ),
                )
                for m in messages:
                    cursor = self._conn.execute(
                        "INSERT INTO outbox (dedup_key, receiver, target, fingerprints, state, "
                        "title, body, created_at, deadline, next_attempt_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            m.dedup_key,
                            m.receiver,
                            m.target,
                            json.dumps(list(m.fingerprints)),
                            m.state,
                            m.title,
                            m.body,
                            queued_at,
                            deadline,
                            queued_at,
                        ),
                    )
                    ids.append(int(cursor.lastrowid or 0))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return ids

    def due(self, target: str, now: float, limit: int = 50) -> list[QueuedMessage]:
        """Queued messages for `target` whose next attempt is due, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_ROW} FROM outbox WHERE status = 'queued' AND target = ? "
                "AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?) "
                "ORDER BY id LIMIT ?",
                (target, now, now, limit),
            ).fetchall()
        return [_queued(r) for r in rows]

    def next_due(self, target: str) -> float | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'queued' AND target = ?",
                (target,),
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def queued_targets(self) -> set[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT target FROM outbox WHERE status = 'queued'"
            ).fetchall()
        return {str(r[0]) for r in rows}

    def claim(self, message_id: int, now: float, lease_until: float) -> bool:
        """Take a queued message for one attempt until `lease_until`; False if it is done or
        another sender holds it. The attempt is counted before it is made, and a lease left
        by a sender that died runs out, so the message is tried again then."""
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, lease_until = ? WHERE id = ? "
                "AND status = 'queued' AND (lease_until IS NULL OR lease_until <= ?)",
                (lease_until, message_id, now),
            )
        return cursor.rowcount == 1

    def mark(
        self,
        message_id: int,
        status: str,
        detail: str,
        at: float,
        next_attempt_at: float | None = None,
    ) -> None:
        """`sent` or `failed` (done), or `queued` again with the next attempt's time."""
        with self._lock:
            if status == "queued":
                self._conn.execute(
                    "UPDATE outbox SET detail = ?, next_attempt_at = ?, lease_until = NULL "
                    "WHERE id = ?",
                    (detail, next_attempt_at if next_attempt_at is not None else at, message_id),
                )
            else:
                self._conn.execute(
                    "UPDATE outbox SET status = ?, detail = ?, done_at = ?, lease_until = NULL "
                    "WHERE id = ?",
                    (status, detail, at, message_id),
                )

    def messages(self, statuses: Iterable[str] | None = None) -> list[QueuedMessage]:
        """All messages (in any of `statuses`), oldest first."""
        query = f"SELECT {_ROW} FROM outbox"
        params: list[str] = []
        if statuses is not None:
            params = list(statuses)
            query += f" WHERE status IN ({', '.join('?' for _ in params)})"
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY id", params).fetchall()
        return [_queued(r) for r in rows]

    def depth(self) -> int:
        """How many messages wait to be sent."""
        with self._lock:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE status = 'queued'"
            ).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


#: The pipeline's last stage: `(message, masked target name, "sent" | "failed", detail, now)`.
RecordSent = Callable[[QueuedMessage, str, str, str, float], None]


def record_sent_stage(outbox: Outbox, log: NotificationLog | None = None) -> RecordSent:
    """Record-sent, the pipeline's last stage: after an attempt, mark the message's row done
    (`sent` or `failed`) and append the outcome, per alert, to the notification log (`log`;
    none: the outbox alone)."""

    def stage(queued: QueuedMessage, target: str, status: str, detail: str, now: float) -> None:
        message = queued.message
        outbox.mark(queued.id, status, detail, now)
        if log is not None:
            for fp in message.fingerprints or ("",):
                log.record_notification(fp, message.state, target, status == "sent", detail, now)

    return stage
