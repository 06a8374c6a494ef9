"""The audit log: who made a silence, expired one, acknowledged an alert, or changed the
configuration or the ingest tokens, when, and from where.

It is a table (`audit_log`) in alerting's state file (`<data dir>/alerts.db`), next to the
silences and episodes it speaks of, so that a silence or an acknowledgement and its audit line
are written in one transaction: there is no silence without its line, and no line for a
silence that was not made. Rows are only ever appended; triggers refuse an UPDATE or DELETE,
so no code path of ours (nor a slip at the `sqlite3` prompt) rewrites history. That is not
tamper-proofing: whoever can write the file can drop the triggers; ship `watchkeeper audit
--json` off the machine for that. Other processes read it with `read_events`, which never
creates or changes the file. The tables are created when missing, so a state file written
before the audit log existed simply gains them on its next write.

Each event has a time, an actor (the name a person typed or logged in with; for configuration
and token files, the file's owner), an action (`silence.created`, `silence.expired`,
`alert.acknowledged`, `config.loaded`, `config.changed`, `tokens.reloaded`, and from
`watchkeeper reference` `reference.set` and `reference.cleared`), a target (a
silence id, an alert fingerprint, a file path), where it came from (`via`: cli, dashboard,
serve, ...), the OS user of the process and the remote address where known, and a detail
mapping. Details never hold secrets: configuration changes are recorded as key paths, and
per key only a keyed digest is kept (`audit_config`, never shown) so that the next load can
say which keys changed.

>>> diff_keys({"a": "1", "b": "2"}, {"b": "3", "c": "4"})
(['c'], ['a'], ['b'])
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .outbox import connect, read_only

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, via TEXT NOT NULL, os_user TEXT,
    remote TEXT, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS audit_config (
    path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, salt TEXT NOT NULL, keys TEXT NOT NULL,
    at REAL NOT NULL);
"""


def os_user() -> str:
    """The name of the user this process runs as (its uid when it has no name)."""
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "unknown"


def stamp(ts: float) -> str:
    """A Unix time as ISO 8601 UTC to the second, as the audit shows it."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something: the name given, where from, and what the machine knows besides."""

    name: str
    via: str
    os_user: str | None = None
    remote: str | None = None

    @classmethod
    def here(cls, name: str | None, via: str) -> Actor:
        """A person at this process (the CLI): `name` as given, else the OS user."""
        user = os_user()
        return cls(name=name or user, via=via, os_user=user)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One line of the audit log."""

    id: int
    at: float
    actor: str
    action: str
    target: str
    via: str
    os_user: str | None
    remote: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The event as one JSON object (`watchkeeper audit --json` prints one per line)."""
        return {
            "id": self.id,
            "time": stamp(self.at),
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "via": self.via,
            "os_user": self.os_user,
            "remote": self.remote,
            "detail": dict(self.detail),
        }


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on an autocommit connection: all of it or none of it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def append(
    conn: sqlite3.Connection,
    actor: Actor,
    action: str,
    target: str,
    detail: Mapping[str, Any],
    at: float,
) -> AuditEvent:
    """Append one event on `conn`, inside the caller's transaction."""
    text = json.dumps(dict(detail), sort_keys=True, ensure_ascii=False)
    cursor = conn.execute(
        "INSERT INTO audit_log (at, actor, action, target, via, os_user, remote, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (at, actor.name, action, target, actor.via, actor.os_user, actor.remote, text),
    )
    assert cursor.lastrowid is not None
    return AuditEvent(
        id=cursor.lastrowid,
        at=at,
        actor=actor.name,
        action=action,
        target=target,
        via=actor.via,
        os_user=actor.os_user,
        remote=actor.remote,
        detail=json.loads(text),
    )


def _select(
    conn: sqlite3.Connection, since: float | None, prefix: str | None, limit: int | None
) -> list[AuditEvent]:
    query = "SELECT id, at, actor, action, target, via, os_user, remote, detail FROM audit_log"
    where: list[str] = []
    params: list[object] = []
    if since is not None:
        where.append("at >= ?")
        params.append(since)
    if prefix:
        where.append("substr(action, 1, ?) = ?")
        params += [len(prefix), prefix]
    if where:
        query += " WHERE " + " AND ".join(where)
    query += " ORDER BY at DESC, id DESC"
    if limit is not None:
        query += " LIMIT ?"
        params.append(limit)
    return [
        AuditEvent(
            id=row[0],
            at=row[1],
            actor=row[2],
            action=row[3],
            target=row[4],
            via=row[5],
            os_user=row[6],
            remote=row[7],
            detail=json.loads(row[8]),
        )
        for row in conn.execute(query, params)
    ]


def read_events(
    path: Path, *, since: float | None = None, prefix: str | None = None, limit: int | None = None
) -> list[AuditEvent]:
    """Events of a state file another process writes, newest first: those at or after
    `since`, whose action starts with `prefix`, at most `limit`. `[]` when there is no file
    or no audit log yet; read-only, never creates or changes the file."""
    return read_only(Path(path), lambda conn: _select(conn, since, prefix, limit))


def _text(value: object) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items() if v) or "-"
    return "-" if value is None or value == "" else str(value)


def summary(detail: Mapping[str, Any]) -> str:
    """An event's detail on one line for tables: `key=value`, lists joined by commas, file
    digests cut to 12 digits (the JSON form keeps everything).

    >>> summary({"added": ["a.b", "c"], "removed": [], "verdict": None, "sha256": "ab" * 32})
    'added=a.b,c  removed=-  verdict=-  sha256=abababababab'
    """
    return "  ".join(
        f"{k}={_text(v)[:12] if k.endswith('sha256') and v else _text(v)}"
        for k, v in detail.items()
    )


def diff_keys(
    old: Mapping[str, str], new: Mapping[str, str]
) -> tuple[list[str], list[str], list[str]]:
    """Key paths added, removed and changed between two `{key path: digest}` maps."""
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(k for k in set(old) & set(new) if old[k] != new[k])
    return added, removed, changed


class AuditLog:
    """The audit log of one state file, for events that stand alone (configuration and
    token files); silences and acknowledgements append theirs in their own transactions."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn = connect(self.path, busy_timeout_s)
        with self._lock:
            ensure_schema(self._conn)

    def __repr__(self) -> str:
        return f"AuditLog(path={str(self.path)!r})"

    def append(
        self,
        actor: Actor,
        action: str,
        target: str,
        detail: Mapping[str, Any],
        at: float,
    ) -> AuditEvent:
        with self._lock, immediate(self._conn):
            return append(self._conn, actor, action, target, detail, at)

    def record_config(
        self,
        key: str,
        sha256: str,
        digests: Callable[[str], dict[str, str]],
        actor: Actor,
        detail: Mapping[str, Any],
        at: float,
    ) -> AuditEvent | None:
        """Compare the file `key` (its SHA-256) with the last one recorded and, when it
        differs, append `config.changed` naming the key paths added, removed and changed
        (`config.loaded` the first time) and keep the new snapshot, all in one transaction:
        processes loading the same new file at once record it once. `digests(salt)` gives
        the file's `{key path: keyed digest}`. None when the file is as last recorded."""
        with self._lock, immediate(self._conn):
            row = self._conn.execute(
                "SELECT sha256, salt, keys FROM audit_config WHERE path = ?", (key,)
            ).fetchone()
            if row is not None and row[0] == sha256:
                return None
            salt = row[1] if row is not None else secrets.token_hex(16)
            keys = digests(salt)
            if row is None:
                action, what = "config.loaded", {**detail, "keys": len(keys)}
            else:
                added, removed, changed = diff_keys(json.loads(row[2]), keys)
                action = "config.changed"
                what = {
                    **detail,
                    "previous_sha256": row[0],
                    "added": added,
                    "removed": removed,
                    "changed": changed,
                }
            self._conn.execute(
                "INSERT OR REPLACE INTO audit_config VALUES (?, ?, ?, ?, ?)",
                (key, sha256, salt, json.dumps(keys, sort_keys=True), at),
            )
            return append(self._conn, actor, action, key, what, at)

    def events(
        self, *, since: float | None = None, prefix: str | None = None, limit: int | None = None
    ) -> list[AuditEvent]:
        """Events, newest first (see `read_events`)."""
        with self._lock:
            return _select(self._conn, since, prefix, limit)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
