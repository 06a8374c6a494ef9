"""Feedback from on-call: every firing episode, its acknowledgement and verdict, and a report.

Each time an alert fires, an episode is kept (fingerprint, model, check, when it fired and
resolved). On-call can acknowledge the latest episode of an alert and mark it a true or false
positive; `rule_report` then says, per rule (model and check), how many episodes fired, how
many were marked false, and the median time to resolve, so noisy rules can be found and tuned.

An episode keeps only its latest acknowledgement; every one of them is also appended to the
audit log (`alert.acknowledged`, in the same transaction), which keeps the history.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .audit import Actor, append, ensure_schema, immediate, stamp
from .outbox import connect, read_only
from .records import Alert

Verdict = Literal["true", "false"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (
    fingerprint TEXT NOT NULL, fired_at REAL NOT NULL, model TEXT NOT NULL,
    check_name TEXT NOT NULL, labels TEXT NOT NULL, resolved_at REAL, acked_by TEXT,
    acked_at REAL, verdict TEXT, note TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (fingerprint, fired_at));
"""


@dataclass(frozen=True, slots=True)
class Episode:
    """One firing of one alert, with what on-call said about it."""

    fingerprint: str
    fired_at: float
    model: str
    check: str
    labels: tuple[tuple[str, str], ...]
    resolved_at: float | None
    acked_by: str | None
    acked_at: float | None
    verdict: str | None
    note: str


@dataclass(frozen=True, slots=True)
class RuleStats:
    """Per rule: episodes fired, marked false, marked true, median seconds to resolve."""

    model: str
    check: str
    fired: int
    false_positives: int
    true_positives: int
    median_resolve_s: float | None


def _select(conn: sqlite3.Connection, fingerprint: str | None = None) -> list[Episode]:
    query = (
        "SELECT fingerprint, fired_at, model, check_name, labels, resolved_at, acked_by, "
        "acked_at, verdict, note FROM episodes"
    )
    params: tuple[str, ...] = ()
    if fingerprint is not None:
        query += " WHERE fingerprint = ?"
        params = (fingerprint,)
    rows = conn.execute(query + " ORDER BY fired_at DESC", params).fetchall()
    return [
        Episode(r[0], r[1], r[2], r[3], tuple((k, v) for k, v in json.loads(r[4])), *r[5:])
        for r in rows
    ]


def read_episodes(path: Path) -> list[Episode]:
    """Every episode in a state file written by another process, the latest first; `[]` if
    there is none yet. Read-only: never creates or changes the file."""
    return read_only(Path(path), _select)


class FeedbackStore:
    """Episodes and verdicts in alerting's state file; thread-safe."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn = connect(self.path, busy_timeout_s)
        with self._lock:
            self._conn.executescript(_SCHEMA)
            ensure_schema(self._conn)

    def __repr__(self) -> str:
        return f"FeedbackStore(path={str(self.path)!r})"

    def observe(self, alert: Alert) -> None:
        """Record a firing alert's episode, or its resolution."""
        if alert.fired_at is None:
            return
        labels = alert.label_map
        with self._lock:
            self._conn.execute(
                "INSERT INTO episodes (fingerprint, fired_at, model, check_name, labels, "
                "resolved_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint, fired_at) "
                "DO UPDATE SET resolved_at = excluded.resolved_at",
                (
                    alert.fingerprint,
                    alert.fired_at,
                    labels.get("model", ""),
                    labels.get("check", ""),
                    json.dumps(sorted(labels.items())),
                    alert.resolved_at,
                ),
            )

    def acknowledge(
        self,
        fingerprint: str,
        by: str,
        at: float,
        verdict: Verdict | None = None,
        note: str = "",
        actor: Actor | None = None,
    ) -> Episode:
        """Acknowledge the latest episode of the alert whose fingerprint starts with
        `fingerprint`, optionally marking it a true or false positive, and append the
        `alert.acknowledged` audit line (as `actor`, default `by`) in the same transaction."""
        with self._lock, immediate(self._conn):
            rows = self._conn.execute(
                "SELECT DISTINCT fingerprint FROM episodes WHERE fingerprint LIKE ?",
                (fingerprint + "%",),
            ).fetchall()
            if len(rows) != 1:
                found = "no alert" if not rows else f"{len(rows)} alerts"
                raise KeyError(f"{found} with a fingerprint starting {fingerprint!r}")
            full = rows[0][0]
            self._conn.execute(
                "UPDATE episodes SET acked_by = ?, acked_at = ?, "
                "verdict = COALESCE(?, verdict), note = ? WHERE fingerprint = ? "
                "AND fired_at = (SELECT MAX(fired_at) FROM episodes WHERE fingerprint = ?)",
                (by, at, verdict, note, full, full),
            )
            episode = _select(self._conn, full)[0]
            detail = {
                "fingerprint": full,
                "labels": dict(episode.labels),
                "fired": stamp(episode.fired_at),
                "verdict": verdict,
                "note": note,
                "acked_by": by,
            }
            who = actor if actor is not None else Actor(by, "api")
            append(self._conn, who, "alert.acknowledged", full, detail, at)
        return episode

    def episodes(self, fingerprint: str | None = None) -> list[Episode]:
        """Episodes (of one alert, or all), the latest first."""
        with self._lock:
            return _select(self._conn, fingerprint)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def rule_report(episodes: list[Episode]) -> list[RuleStats]:
    """Per (model, check), sorted by most false positives, then most fired."""
    rules: dict[tuple[str, str], list[Episode]] = {}
    for episode in episodes:
        rules.setdefault((episode.model, episode.check), []).append(episode)
    stats = []
    for (model, check), group in rules.items():
        durations = [e.resolved_at - e.fired_at for e in group if e.resolved_at is not None]
        stats.append(
            RuleStats(
                model=model,
                check=check,
                fired=len(group),
                false_positives=sum(e.verdict == "false" for e in group),
                true_positives=sum(e.verdict == "true" for e in group),
                median_resolve_s=statistics.median(durations) if durations else None,
            )
        )
    return sorted(stats, key=lambda s: (-s.false_positives, -s.fired, s.model, s.check))
