"""`watchkeeper reference set | show | clear`: re-baseline a model, see what each model uses.

`set` profiles a reference file, or a window of the model's stored history, stores the profile
in the data directory's `references.db` and records that the model uses it from now on; the
running detector picks it up at its next run (it reads the models' re-baselining every run),
without a restart. `clear` returns the model to its configured reference. Both are recorded
in the audit log (`watchkeeper audit`). `show` prints, per model, the profile in use: its id,
source, rows and when it was profiled.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import IO

from watchkeeper.config import Config, ConfigError, load_config, parse_time

from .frame import Batch
from .reference_store import FILE_NAME, ReferenceStore
from .references import References, Usage, iso

log = logging.getLogger(__name__)


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config).with_data_dir(args.data_dir)


def _no_reads(model: str, start: float, end: float) -> Batch:
    raise RuntimeError("this command reads no history")


def _by(args: argparse.Namespace) -> str:
    from watchkeeper.alerting.audit import os_user

    return str(args.by or os_user() or "unknown")


def _audit(
    config: Config, args: argparse.Namespace, action: str, detail: dict[str, object]
) -> None:
    """Record the re-baselining in the audit log; bookkeeping, never fatal."""
    model = args.model
    try:
        from watchkeeper.alerting.audit import Actor, AuditLog

        audit = AuditLog(config.storage.alert_state_file)
        try:
            audit.append(Actor.here(args.by, "cli"), action, model, detail, time.time())
        finally:
            audit.close()
    except Exception as exc:
        log.warning("audit log: %s of model %r not recorded: %s", action, model, exc)


def run(args: argparse.Namespace, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Run `reference set`, `show` or `clear`; the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=err)
        return 1
    profiles = ReferenceStore(
        config.storage.path / FILE_NAME, busy_timeout_s=config.storage.busy_timeout
    )
    if args.action == "show":
        return _show(config, profiles, args.model, out)
    references = References(profiles, config, _no_reads)
    if args.action == "clear":
        profiles.set_pin(args.model, None, _by(args))
        _audit(config, args, "reference.cleared", {})
        usage = references.usage(args.model)
        print(f"model {args.model}: back to its configured reference: {usage.source}", file=out)
        return 0
    return _set(args, config, profiles, out, err)


def _set(
    args: argparse.Namespace,
    config: Config,
    profiles: ReferenceStore,
    out: IO[str],
    err: IO[str],
) -> int:
    model = args.model
    if args.file is not None:
        path = Path(args.file).expanduser().resolve()
        if not path.is_file():
            print(f"watchkeeper reference set: no such file: {path}", file=err)
            return 2
        references = References(profiles, config, _no_reads)
        info = references.profile_file(model, path)
    else:
        try:
            start, end = parse_time(args.start), parse_time(args.end)
        except ValueError as exc:
            print(f"watchkeeper reference set: {exc}", file=err)
            return 2
        if end <= start:
            print(
                f"watchkeeper reference set: --end ({iso(end)}) must be after --start "
                f"({iso(start)})",
                file=err,
            )
            return 2
        from watchkeeper.tsdb import open_store

        from .engine import Detector

        store = open_store(config.storage)
        try:
            detector = Detector(store, config)
            found = detector.references.profile_window(model, "window", start, end)
        finally:
            store.close()
        if found is None:
            print(
                f"watchkeeper reference set: no predictions of model {model!r} in "
                f"[{iso(start)}, {iso(end)})",
                file=err,
            )
            return 1
        stored = profiles.info(found.reference_id)
        assert stored is not None
        info = stored
    profiles.set_pin(model, info.id, _by(args))
    detail: dict[str, object] = {"profile": info.id, "source": info.source, "rows": info.rows}
    if info.sha256:
        detail["sha256"] = info.sha256
    _audit(config, args, "reference.set", detail)
    print(
        f"model {model}: reference {info.id} ({info.source}, {info.rows} rows); the detector "
        "uses it from its next run",
        file=out,
    )
    return 0


def describe(usage: Usage) -> str:
    """One model's lines of `reference show`."""
    p = usage.profile
    head = (
        f"{usage.model}: {p.id}, {p.rows} rows, profiled {iso(int(p.created))}"
        if p is not None
        else f"{usage.model}: not profiled yet"
    )
    lines = [head, f"  source: {usage.source}"]
    if p is not None and p.sha256:
        lines.append(f"  sha256: {p.sha256}")
    if usage.pin is not None and usage.pin.profile_id is not None:
        lines.append(f"  set by {usage.pin.by} at {iso(int(usage.pin.at))}")
    return "\n".join(lines)


def _show(config: Config, profiles: ReferenceStore, model: str | None, out: IO[str]) -> int:
    references = References(profiles, config, _no_reads)
    if model is not None:
        models = [model]
    else:
        names = set(config.models) | set(profiles.pinned_models())
        names |= {p.model for p in profiles.profiles()}
        try:
            if config.storage.backend != "sqlite" or config.storage.store_file.is_file():
                from watchkeeper.tsdb import open_store

                store = open_store(config.storage)
                try:
                    names |= {m.name for m in store.models()}
                finally:
                    store.close()
        except Exception as exc:  # the profiles file still says what it knows
            log.warning("reference show: cannot list the store's models: %s", exc)
        models = sorted(names)
    if not models:
        print("no models", file=out)
    for name in models:
        print(describe(references.usage(name)), file=out)
    return 0
