"""Silences kept in alerting's state file: added, listed, expired, never deleted (audit).

Expiring a silence sets its end to the moment of expiry; the row stays, so who muted what,
when and why can always be looked up afterwards. Adding or expiring one appends its
`silence.created` or `silence.expired` line to the audit log (`audit`) in the same
transaction: if either cannot be written, neither is.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from watchkeeper.config import format_duration

from .audit import Actor, append, ensure_schema, immediate, stamp
from .muting import Silence, SilenceMuter
from .outbox import connect, read_only
from .routing import parse_matcher

_SCHEMA = """
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY, matchers TEXT NOT NULL, starts_at REAL NOT NULL, ends_at REAL NOT NULL,
    created_by TEXT NOT NULL, comment TEXT NOT NULL, created_at REAL NOT NULL,
    expired_at REAL);
"""


def _select(conn: sqlite3.Connection) -> list[Silence]:
    rows = conn.execute(
        "SELECT id, matchers, starts_at, ends_at, created_by, comment, created_at "
        "FROM silences ORDER BY created_at DESC, id"
    ).fetchall()
    return [
        Silence(
            id=r[0],
            matchers=tuple(parse_matcher(m) for m in json.loads(r[1])),
            starts_at=r[2],
            ends_at=r[3],
            created_by=r[4],
            comment=r[5],
            created_at=r[6],
        )
        for r in rows
    ]


def read_silences(path: Path) -> list[Silence]:
    """Every silence in a state file written by another process, newest first; `[]` if there
    is no file or no silence yet. Read-only: never creates or changes the file."""
    return read_only(Path(path), _select)


def _matchers(silence: Silence) -> list[str]:
    return [str(m) for m in silence.matchers]


class SilenceStore:
    """Silences over one SQLite file; thread-safe, readable by other processes.

    `add` and `expire` take the `Actor` who made the change for the audit log; without one,
    the silence's author (on add) or this process's OS user (on expire) is recorded.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn = connect(self.path, busy_timeout_s)
        with self._lock:
            self._conn.executescript(_SCHEMA)
            ensure_schema(self._conn)

    def __repr__(self) -> str:
        return f"SilenceStore(path={str(self.path)!r})"

    def add(self, silence: Silence, actor: Actor | None = None) -> Silence:
        """Keep `silence` and its `silence.created` audit line, in one transaction."""
        who = actor if actor is not None else Actor(silence.created_by, "api")
        detail = {
            "matchers": _matchers(silence),
            "starts": stamp(silence.starts_at),
            "ends": stamp(silence.ends_at),
            "duration": format_duration(round(silence.ends_at - silence.starts_at)),
            "created_by": silence.created_by,
            "comment": silence.comment,
        }
        with self._lock, immediate(self._conn):
            self._conn.execute(
                "INSERT INTO silences VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    silence.id,
                    json.dumps(_matchers(silence)),
                    silence.starts_at,
                    silence.ends_at,
                    silence.created_by,
                    silence.comment,
                    silence.created_at,
                ),
            )
            append(self._conn, who, "silence.created", silence.id, detail, silence.created_at)
        return silence

    def get(self, silence_id: str) -> Silence | None:
        matches = [s for s in self.silences() if s.id == silence_id]
        return matches[0] if matches else None

    def silences(self) -> list[Silence]:
        """Every silence ever made, the newest first."""
        with self._lock:
            return _select(self._conn)

    def expire(self, silence_id: str, now: float, actor: Actor | None = None) -> Silence:
        """End a silence at `now` and record who did (`silence.expired`), in one transaction;
        an expired one stays as it was, and nothing is recorded. Raise if unknown."""
        with self._lock, immediate(self._conn):
            row = self._conn.execute(
                "SELECT ends_at, matchers, created_by FROM silences WHERE id = ?", (silence_id,)
            ).fetchone()
            if row is None:
                raise KeyError(f"no silence with id {silence_id!r}")
            if row[0] > now:
                self._conn.execute(
                    "UPDATE silences SET ends_at = MAX(starts_at, ?), expired_at = ? WHERE id = ?",
                    (now, now, silence_id),
                )
                detail = {
                    "matchers": json.loads(row[1]),
                    "created_by": row[2],
                    "was_to_end": stamp(row[0]),
                }
                who = actor if actor is not None else Actor.here(None, "api")
                append(self._conn, who, "silence.expired", silence_id, detail, now)
        found = self.get(silence_id)
        assert found is not None
        return found

    def muter(self, now: float) -> SilenceMuter:
        """What the silences active at `now` mute."""
        return SilenceMuter(self.silences(), now)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
