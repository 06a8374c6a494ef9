"""Stored reference profiles: a small SQLite file in the data directory.

A profile is computed once (from a reference file or a window of a model's history) and kept
here under its id, with where it came from, the SHA-256 of the file, the window bounds, when
it was made and how many rows it has; the detector reads it back instead of the raw data. The
file also remembers which profile a configured reference file became (`sources`), and the
re-baselining log of `watchkeeper reference set` / `clear` (`pins`: the newest row of a model
wins; a cleared pin has no profile).

Why a file of its own rather than the `Store`: profiles are a few megabytes of arrays read
whole by id, not time series, and InfluxDB has no place for them; the data directory exists
with either backend (alerting keeps `alerts.db` there), so one format serves both.

Profiles are serialized as zlib-compressed JSON with every array's raw bytes in base64, so a
profile reads back bit for bit (floats keep their exact value; `explain` recomputes the same
numbers):

>>> import numpy as np
>>> from watchkeeper.detector.profile import profile_column, ReferenceProfile
>>> column = profile_column(np.arange(100.0))
>>> profile = ReferenceProfile("m@0-3600", 100, {"x": column})
>>> again = loads(dumps(profile))
>>> again.reference_id, again.columns["x"].edges.tolist() == column.edges.tolist()
('m@0-3600', True)
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sqlite3
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .profile import Baseline, CategoricalProfile, NumericProfile, ReferenceProfile

__all__ = ["FILE_NAME", "Kind", "ReferenceStore", "StoredProfile", "dumps", "loads"]

FILE_NAME = "references.db"
"""The file's name in the data directory."""

FORMAT = 1
"""Version of the serialized profile; a reader refuses others."""

Kind = Literal["file", "window", "trailing", "first"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS profiles ("
    " id TEXT PRIMARY KEY, model TEXT NOT NULL, kind TEXT NOT NULL, source TEXT NOT NULL,"
    " sha256 TEXT, start_s REAL, end_s REAL, created REAL NOT NULL, rows INTEGER NOT NULL,"
    " body BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS profiles_by_model ON profiles (model, kind, created)",
    "CREATE TABLE IF NOT EXISTS sources ("
    " model TEXT NOT NULL, key TEXT NOT NULL, profile_id TEXT NOT NULL,"
    " size INTEGER, mtime_ns INTEGER, PRIMARY KEY (model, key))",
    "CREATE TABLE IF NOT EXISTS pins ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, profile_id TEXT,"
    " at REAL NOT NULL, by TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS pins_by_model ON pins (model, seq)",
)

_COLUMNS = "id, model, kind, source, sha256, start_s, end_s, created, rows"


@dataclass(frozen=True, slots=True)
class StoredProfile:
    """What is known of a stored profile besides its arrays.

    `source` says where it came from in words (a file path, or the window and how it was
    chosen); `sha256` is the file's digest (None for a window); `start` and `end` the window
    bounds in Unix seconds (None for a file); `created` when it was profiled.
    """

    id: str
    model: str
    kind: Kind
    source: str
    sha256: str | None
    start: float | None
    end: float | None
    created: float
    rows: int


@dataclass(frozen=True, slots=True)
class Pin:
    """A `watchkeeper reference set` (or, with `profile_id` None, `clear`) of a model."""

    model: str
    profile_id: str | None
    at: float
    by: str


def _array(a: np.ndarray) -> dict[str, Any]:
    return {
        "dtype": a.dtype.str,
        "shape": list(a.shape),
        "data": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii"),
    }


def _from_array(doc: dict[str, Any]) -> np.ndarray:
    raw = base64.b64decode(doc["data"])
    return np.frombuffer(raw, dtype=np.dtype(doc["dtype"])).reshape(doc["shape"]).copy()


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__array__": _array(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__array__" in value:
            return _from_array(value["__array__"])
        if "__tuple__" in value:
            return tuple(_decode(v) for v in value["__tuple__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


_KINDS: dict[str, type[Any]] = {
    "numeric": NumericProfile,
    "categorical": CategoricalProfile,
    "baseline": Baseline,
}


def _record(obj: Any) -> dict[str, Any] | None:
    if obj is None:
        return None
    kind = next(name for name, cls in _KINDS.items() if isinstance(obj, cls))
    fields = {f.name: _encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return {"kind": kind, "fields": fields}


def _from_record(doc: dict[str, Any] | None) -> Any:
    if doc is None:
        return None
    return _KINDS[doc["kind"]](**_decode(doc["fields"]))


def dumps(profile: ReferenceProfile) -> bytes:
    """The profile as bytes that `loads` turns back into an equal profile."""
    doc = {
        "format": FORMAT,
        "reference_id": profile.reference_id,
        "n": profile.n,
        "columns": {name: _record(p) for name, p in profile.columns.items()},
        "prediction": _record(profile.prediction),
        "label": _record(profile.label),
        "baseline": _record(profile.baseline),
        "extras": _encode(profile.extras),
    }
    return zlib.compress(json.dumps(doc, separators=(",", ":")).encode("utf-8"), 6)


def loads(data: bytes) -> ReferenceProfile:
    """The profile `dumps` wrote."""
    doc = json.loads(zlib.decompress(data))
    if doc.get("format") != FORMAT:
        raise ValueError(f"unknown reference profile format {doc.get('format')!r}")
    return ReferenceProfile(
        reference_id=doc["reference_id"],
        n=int(doc["n"]),
        columns={name: _from_record(p) for name, p in doc["columns"].items()},
        prediction=_from_record(doc["prediction"]),
        label=_from_record(doc["label"]),
        baseline=_from_record(doc["baseline"]),
        extras=_decode(doc["extras"]),
    )


def _stored(row: tuple[Any, ...]) -> StoredProfile:
    id_, model, kind, source, sha256, start, end, created, rows = row
    return StoredProfile(id_, model, kind, source, sha256, start, end, created, int(rows))


class ReferenceStore:
    """The profiles file at `path` (created with its folder on the first write).

    Every call opens its own short-lived connection, so one object serves any thread and
    several processes (detector shards, a `reference set` at a shell) can share the file;
    writes wait up to `busy_timeout_s` for another writer.
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s

    def __repr__(self) -> str:
        return f"ReferenceStore(path={str(self.path)!r})"

    @contextmanager
    def _connect(self, write: bool) -> Iterator[sqlite3.Connection | None]:
        if not write and not self.path.is_file():
            yield None
            return
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            if write:
                conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            yield conn
            if write:
                conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def put(self, profile: ReferenceProfile, info: StoredProfile) -> StoredProfile:
        """Store `profile` under `info.id` unless a profile of that id is stored already;
        what is stored under the id either way."""
        body = dumps(profile)
        with self._connect(write=True) as conn:
            assert conn is not None
            conn.execute(
                f"INSERT OR IGNORE INTO profiles ({_COLUMNS}, body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*dataclasses.astuple(info), body),
            )
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM profiles WHERE id = ?", (info.id,)
            ).fetchone()
        return _stored(row)

    def get(self, profile_id: str) -> ReferenceProfile | None:
        """The stored profile of that id, or None."""
        with self._connect(write=False) as conn:
            row = None
            if conn is not None:
                row = conn.execute(
                    "SELECT body FROM profiles WHERE id = ?", (profile_id,)
                ).fetchone()
        return None if row is None else loads(row[0])

    def info(self, profile_id: str) -> StoredProfile | None:
        """What is known of the stored profile of that id, or None."""
        with self._connect(write=False) as conn:
            row = None
            if conn is not None:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM profiles WHERE id = ?", (profile_id,)
                ).fetchone()
        return None if row is None else _stored(row)

    def profiles(self, model: str | None = None) -> list[StoredProfile]:
        """Every stored profile (of `model`), oldest first."""
        with self._connect(write=False) as conn:
            if conn is None:
                return []
            where, args = ("WHERE model = ?", (model,)) if model is not None else ("", ())
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM profiles {where} ORDER BY created, id", args
            ).fetchall()
        return [_stored(r) for r in rows]

    def first_start(self, model: str) -> float | None:
        """Where the model's first data began when its first-data reference was profiled."""
        with self._connect(write=False) as conn:
            row = None
            if conn is not None:
                row = conn.execute(
                    "SELECT MIN(start_s) FROM profiles WHERE model = ? AND kind = 'first'",
                    (model,),
                ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def prune(self, model: str, kind: Kind, keep: int) -> int:
        """Delete all but the `keep` newest profiles of `model` of `kind` that no source or
        pin names; how many were deleted."""
        with self._connect(write=True) as conn:
            assert conn is not None
            cursor = conn.execute(
                "DELETE FROM profiles WHERE model = ? AND kind = ? AND id NOT IN ("
                " SELECT id FROM profiles WHERE model = ? AND kind = ?"
                " ORDER BY end_s DESC, created DESC LIMIT ?)"
                " AND id NOT IN (SELECT profile_id FROM sources)"
                " AND id NOT IN (SELECT profile_id FROM pins WHERE profile_id IS NOT NULL)",
                (model, kind, model, kind, keep),
            )
            return cursor.rowcount

    def source(self, model: str, key: str) -> tuple[str, int | None, int | None] | None:
        """The profile id a configured source (`key`) of `model` became, with the file's size
        and modification time (ns) when it was profiled."""
        with self._connect(write=False) as conn:
            row = None
            if conn is not None:
                row = conn.execute(
                    "SELECT profile_id, size, mtime_ns FROM sources WHERE model = ? AND key = ?",
                    (model, key),
                ).fetchone()
        return None if row is None else (str(row[0]), row[1], row[2])

    def set_source(
        self, model: str, key: str, profile_id: str, size: int | None, mtime_ns: int | None
    ) -> None:
        with self._connect(write=True) as conn:
            assert conn is not None
            conn.execute(
                "INSERT OR REPLACE INTO sources (model, key, profile_id, size, mtime_ns) "
                "VALUES (?, ?, ?, ?, ?)",
                (model, key, profile_id, size, mtime_ns),
            )

    def pin(self, model: str) -> Pin | None:
        """The model's newest `reference set`/`clear`, None if there never was one."""
        with self._connect(write=False) as conn:
            row = None
            if conn is not None:
                row = conn.execute(
                    "SELECT model, profile_id, at, by FROM pins WHERE model = ? "
                    "ORDER BY seq DESC LIMIT 1",
                    (model,),
                ).fetchone()
        return None if row is None else Pin(row[0], row[1], float(row[2]), row[3])

    def pins(self) -> dict[str, Pin]:
        """Every re-baselined model's newest `reference set`/`clear`, in one query."""
        with self._connect(write=False) as conn:
            if conn is None:
                return {}
            rows = conn.execute(
                "SELECT model, profile_id, at, by FROM pins WHERE seq IN "
                "(SELECT MAX(seq) FROM pins GROUP BY model)"
            ).fetchall()
        return {r[0]: Pin(r[0], r[1], float(r[2]), r[3]) for r in rows}

    def pinned_models(self) -> list[str]:
        """Every model that was ever re-baselined, sorted."""
        with self._connect(write=False) as conn:
            if conn is None:
                return []
            rows = conn.execute("SELECT DISTINCT model FROM pins ORDER BY model").fetchall()
        return [str(r[0]) for r in rows]

    def set_pin(self, model: str, profile_id: str | None, by: str, at: float | None = None) -> Pin:
        """Record that `model` now uses `profile_id` (None: its configured reference again)."""
        pin = Pin(model, profile_id, time.time() if at is None else at, by)
        with self._connect(write=True) as conn:
            assert conn is not None
            if profile_id is not None:
                known = conn.execute("SELECT 1 FROM profiles WHERE id = ?", (profile_id,))
                if known.fetchone() is None:
                    raise KeyError(f"no stored reference profile {profile_id!r}")
            conn.execute(
                "INSERT INTO pins (model, profile_id, at, by) VALUES (?, ?, ?, ?)",
                (pin.model, pin.profile_id, pin.at, pin.by),
            )
        return pin
