"""Which reference profile each model's windows are judged against, profiled once and stored.

The source is, in order: the model's re-baselining (`watchkeeper reference set`, until
`reference clear`), else its configured `reference:` (a file, a fixed window, a trailing
window), else its first `checks.drift.reference` of data. Whatever it is, it is profiled once
into the `ReferenceStore` of the data directory and read back from there: a reference file is
not read again (a changed file is noticed by its size and modification time and logged, and
taken up by `reference set`), and the first-data reference stays put when retention deletes
that data or a restarted InfluxDB store reports a later first record.

Profile ids: `MODEL@START-END` for a window of history (Unix seconds, as findings had before),
`MODEL@sha256:DIGEST16` for a file, so the same data always gets the same id and a changed
file a new one.

>>> window_id("fraud", 1_700_000_000.0, 1_700_003_600.0)
'fraud@1700000000-1700003600'
>>> window_start = 1_700_100_000.0  # 2023-11-16T02:13:20Z
>>> [iso(t) for t in trailing_bounds(window_start, trailing=7 * 86400, lag=3600, refresh=86400)]
['2023-11-09T00:00:00Z', '2023-11-16T00:00:00Z']
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from watchkeeper.config import Config, format_duration
from watchkeeper.tsdb import SQLiteStore

from .frame import Batch
from .profile import ReferenceProfile, profile_batch
from .reference_store import FILE_NAME, Kind, Pin, ReferenceStore, StoredProfile

logger = logging.getLogger(__name__)

KEEP_TRAILING = 30
"""Trailing profiles kept per model; older ones are recomputed from the store on demand
(their id names their window) for as long as the data is kept."""

_WINDOW_ID = re.compile(r"^(?P<model>.*)@(?P<start>-?[0-9.]+)-(?P<end>-?[0-9.]+)$")

Reader = Callable[[str, float, float], Batch]
_T = TypeVar("_T")


def references_file(store: object, config: Config) -> Path:
    """`references.db` in the data directory: beside the SQLite store's file, else (InfluxDB)
    in `storage.path`, where alerting keeps its state too. (Only the type of `store` is
    looked at: wrappers of the `Store` protocol have nothing else to offer.)"""
    if isinstance(store, SQLiteStore):
        return store.path.parent / FILE_NAME
    return config.storage.path / FILE_NAME


def _seconds(t: float) -> str:
    return str(int(t)) if t == int(t) else repr(t)


def window_id(model: str, start: float, end: float) -> str:
    """The id of the profile of `model`'s history in `[start, end)`."""
    return f"{model}@{_seconds(start)}-{_seconds(end)}"


def trailing_bounds(
    window_start: float, *, trailing: float, lag: float, refresh: float
) -> tuple[float, float]:
    """The trailing reference of the window starting at `window_start`: it ends `lag` before
    the window, rounded down to a multiple of `refresh` (so every window of one `refresh`
    period shares one profile, whichever process judges it), and is `trailing` long."""
    end = math.floor((window_start - lag) / refresh) * refresh
    return end - trailing, end


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def profile_file(path: Path, reference_id: str) -> ReferenceProfile:
    """A reference file (the `replay --reference` format) profiled with its id."""
    from .tables import read_file, reference_batch_from_table

    return profile_batch(reference_batch_from_table(read_file(str(path))), reference_id)


@dataclass(frozen=True, slots=True)
class Usage:
    """What `watchkeeper reference show` says of one model: the source in words, the stored
    profile in use (None: not profiled yet) and the re-baselining in force, if any."""

    model: str
    source: str
    profile: StoredProfile | None
    pin: Pin | None


class References:
    """Resolves, profiles (once) and stores the reference profiles of a detector's models.

    `read(model, start, end)` gives a window of history as a batch (the detector's reader,
    labels included). Running state is private: the re-baselining read per run (`refresh`),
    the file profiles and first-data anchors resolved so far, and profiles kept in memory
    only when the profiles file cannot be written (logged; detection goes on).
    """

    def __init__(self, profiles: ReferenceStore, config: Config, read: Reader) -> None:
        self.profiles = profiles
        self.config = config
        self._read = read
        self._pins: dict[str, str | None] = {}
        self._all_pins = False
        self._files: dict[str, str] = {}
        self._anchors: dict[str, float] = {}
        self._memory: dict[str, ReferenceProfile] = {}
        self._warned: set[str] = set()
        self._looked: set[str] = set()
        """Models and window ids found empty or unanchored in this run: not looked up again
        for every window of a catch-up (`refresh` forgets them)."""

    def __repr__(self) -> str:
        return f"References(profiles={self.profiles!r})"

    def refresh(self, model: str | None = None) -> None:
        """Read the re-baselining of `model` (None: of every model, in one query) again; the
        detector does so at the start of every run."""
        if model is None:
            pins = self._safe(self.profiles.pins, None)
            if pins is not None:
                self._pins = {name: pin.profile_id for name, pin in pins.items()}
                self._all_pins = True
            self._looked = set()
            return
        pin = self._safe(lambda: self.profiles.pin(model), None)
        if pin is not None or model not in self._pins:
            self._pins[model] = None if pin is None else pin.profile_id
        self._looked = {key for key in self._looked if not key.startswith(f"{model}@")}

    def active(
        self,
        model: str,
        window_start: float,
        current: ReferenceProfile | None,
        first_seen: float | None,
    ) -> ReferenceProfile | None:
        """The profile the window starting at `window_start` is judged against now; `current`
        (the judge's) when it is that one already, None while a window reference is not
        complete (the window starts before its end) or has no data."""
        if model not in self._pins and not self._all_pins:
            self.refresh(model)
        pinned = self._pins.get(model)
        if pinned is not None:
            return self.by_id(model, pinned, current)
        rc = self.config.model(model).reference
        if rc.file is not None:
            return self._file(model, rc.file, current)
        bounds = self._bounds(model, window_start, first_seen)
        if bounds is None or window_start < bounds[1]:
            return None
        return self._window(model, rc.kind, *bounds, current=current)

    def _bounds(
        self, model: str, window_start: float, first_seen: float | None
    ) -> tuple[float, float] | None:
        mc = self.config.model(model)
        rc = mc.reference
        if rc.start is not None and rc.end is not None:
            return rc.start, rc.end
        if rc.trailing is not None:
            start, end = trailing_bounds(
                window_start, trailing=rc.trailing, lag=rc.lag, refresh=rc.refresh
            )
            if first_seen is not None and start < first_seen:
                # history shorter than the trailing window: what there is, once it holds
                # at least the first-data reference's length
                start = first_seen
                if end - start < mc.checks.drift.reference:
                    return None
            return start, end
        anchor = self._anchors.get(model)
        if anchor is None:
            if f"{model}@first" not in self._looked:
                anchor = self._safe(lambda: self.profiles.first_start(model), None)
                self._looked.add(f"{model}@first")
            if anchor is None:
                if first_seen is None:
                    return None
                anchor = first_seen
            else:
                self._anchors[model] = anchor
        return anchor, anchor + mc.checks.drift.reference

    def by_id(
        self, model: str, profile_id: str, current: ReferenceProfile | None = None
    ) -> ReferenceProfile | None:
        """The profile of that id: `current`, a stored one, or, for a window id no longer
        stored, profiled again from the store (not stored); None and a warning otherwise."""
        if current is not None and current.reference_id == profile_id:
            return current
        found = self._memory.get(profile_id) or self._safe(
            lambda: self.profiles.get(profile_id), None
        )
        if found is not None:
            return found
        match = _WINDOW_ID.match(profile_id)
        if match is not None and match["model"] == model:
            batch = self._read(model, float(match["start"]), float(match["end"]))
            if batch.n:
                return profile_batch(batch, profile_id)
        self._warn(profile_id, "detector: reference profile %r of model %r is not stored", model)
        return None

    def _file(self, model: str, path: Path, current: ReferenceProfile | None) -> ReferenceProfile:
        key = f"file:{path}"
        known = self._files.get(model)
        if known is None:
            row = self._safe(lambda: self.profiles.source(model, key), None)
            if row is not None:
                known, size, mtime_ns = row
                self._check_unchanged(model, path, size, mtime_ns, known)
        if known is not None:
            self._files[model] = known
            profile = self.by_id(model, known, current)
            if profile is not None:
                return profile
        stat = path.stat()
        info = self.profile_file(model, path, kind="file")
        self._save_source(model, key, info.id, stat.st_size, stat.st_mtime_ns)
        self._files[model] = info.id
        found = self.by_id(model, info.id)
        assert found is not None
        return found

    def _check_unchanged(
        self, model: str, path: Path, size: int | None, mtime_ns: int | None, known: str
    ) -> None:
        try:
            stat = path.stat()
        except OSError:
            return  # gone: the stored profile is all the detector needs
        if (stat.st_size, stat.st_mtime_ns) != (size, mtime_ns):
            logger.warning(
                "detector: reference file %s of model %r changed since it was profiled; "
                "model %r keeps profile %s until `watchkeeper reference set %s --file %s`",
                path,
                model,
                model,
                known,
                model,
                path,
            )

    def profile_file(self, model: str, path: Path, *, kind: Kind = "file") -> StoredProfile:
        """Profile a reference file for `model` (or find it stored: same bytes, same id)."""
        digest = file_digest(path)
        profile_id = f"{model}@sha256:{digest[:16]}"
        stored = self._safe(lambda: self.profiles.info(profile_id), None)
        if stored is not None:
            return stored
        profile = profile_file(path, profile_id)
        info = StoredProfile(
            profile_id, model, kind, f"file {path}", digest, None, None, _now(), profile.n
        )
        return self._save(profile, info)

    def profile_window(
        self, model: str, kind: Kind, start: float, end: float, *, store: bool = True
    ) -> ReferenceProfile | None:
        """Profile `model`'s history in `[start, end)` (or read it back, stored); None when
        that window holds no prediction."""
        profile_id = window_id(model, start, end)
        found = self._memory.get(profile_id) or self._safe(
            lambda: self.profiles.get(profile_id), None
        )
        if found is not None:
            return found
        batch = self._read(model, start, end)
        if batch.n == 0:
            return None
        profile = profile_batch(batch, profile_id)
        if store:
            source = _describe_window(kind, start, end)
            info = StoredProfile(profile_id, model, kind, source, None, start, end, _now(), batch.n)
            self._save(profile, info)
            if kind == "first":
                self._anchors[model] = start
            elif kind == "trailing":
                self._prune(model)
        return profile

    def _window(
        self, model: str, kind: Kind, start: float, end: float, *, current: ReferenceProfile | None
    ) -> ReferenceProfile | None:
        profile_id = window_id(model, start, end)
        if current is not None and current.reference_id == profile_id:
            return current
        if profile_id in self._looked:
            return None
        profile = self.profile_window(model, kind, start, end)
        if profile is None:
            self._looked.add(profile_id)
            self._warn(
                profile_id,
                "detector: no predictions of model %r in its reference window %s; "
                "judging without drift and data-quality checks (see `watchkeeper reference`)",
                model,
                f"[{iso(start)}, {iso(end)})",
            )
        return profile

    def _save(self, profile: ReferenceProfile, info: StoredProfile) -> StoredProfile:
        try:
            stored = self.profiles.put(profile, info)
        except (sqlite3.Error, OSError) as exc:
            self._memory[info.id] = profile
            self._warn(
                "save:" + str(self.profiles.path),
                "detector: cannot store reference profiles in %s (%s); keeping them in memory",
                self.profiles.path,
                exc,
            )
            return info
        logger.info(
            "reference profile %s of model %r stored (%s)", info.id, info.model, info.source
        )
        return stored

    def _save_source(self, model: str, key: str, profile_id: str, size: int, mtime_ns: int) -> None:
        # on failure `_save` warned already, and this process remembers it in `_files`
        with contextlib.suppress(sqlite3.Error, OSError):
            self.profiles.set_source(model, key, profile_id, size, mtime_ns)

    def _prune(self, model: str) -> None:
        with contextlib.suppress(sqlite3.Error, OSError):
            self.profiles.prune(model, "trailing", KEEP_TRAILING)

    def _safe(self, call: Callable[[], _T], default: _T) -> _T:
        """`call()`, or `default` and a warning (once) when the profiles file cannot be read:
        detection goes on with what this process knows."""
        try:
            return call()
        except (sqlite3.Error, OSError) as exc:
            self._warn(
                "read:" + str(self.profiles.path),
                "detector: cannot read reference profiles from %s (%s)",
                self.profiles.path,
                exc,
            )
            return default

    def _warn(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)

    def usage(self, model: str) -> Usage:
        """Which reference `model` uses (for `watchkeeper reference show`); reads only."""
        pin = self.profiles.pin(model)
        if pin is not None and pin.profile_id is not None:
            info = self.profiles.info(pin.profile_id)
            source = info.source if info is not None else f"stored profile {pin.profile_id}"
            return Usage(model, f"set by `reference set`: {source}", info, pin)
        mc = self.config.model(model)
        rc = mc.reference
        if rc.file is not None:
            row = self.profiles.source(model, f"file:{rc.file}")
            info = None if row is None else self.profiles.info(row[0])
            return Usage(model, f"file {rc.file}", info, pin)
        if rc.start is not None and rc.end is not None:
            info = self.profiles.info(window_id(model, rc.start, rc.end))
            return Usage(model, _describe_window("window", rc.start, rc.end), info, pin)
        stored = self.profiles.profiles(model)
        if rc.trailing is not None:
            text = (
                f"trailing {format_duration(rc.trailing)} ending {format_duration(rc.lag)} "
                f"before each window, re-profiled every {format_duration(rc.refresh)}"
            )
            latest = [p for p in stored if p.kind == "trailing"]
            newest = max(latest, key=lambda p: p.end or 0.0) if latest else None
            return Usage(model, text, newest, pin)
        length = mc.checks.drift.reference
        match = next(
            (
                p
                for p in stored
                if p.kind == "first" and (p.end or 0.0) - (p.start or 0.0) == length
            ),
            None,
        )
        return Usage(model, f"first {format_duration(length)} of data", match, pin)


def _describe_window(kind: Kind, start: float, end: float) -> str:
    what = {"first": "first data", "trailing": "trailing window", "window": "window"}.get(
        kind, kind
    )
    return f"{what} [{iso(start)}, {iso(end)})"


def _now() -> float:
    import time

    return time.time()
