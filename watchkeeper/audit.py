"""What watchkeeper's processes write to the audit log about their configuration and tokens.

Every `serve`, `detect` and `dashboard` that loads a configuration file compares the file's
SHA-256 with the last one recorded in the data directory's audit log
(`watchkeeper.alerting.audit`) and, when it differs, records `config.changed` with the key
paths added, removed and changed (`config.loaded` the first time). No value is ever recorded,
since any may be a secret: per key path only an HMAC-SHA256 of its value (keyed with a random
salt kept in the state file) is stored, never shown, so that the next load can tell which
keys changed. The event names the file, its SHA-256, owner and modification time, and the OS
user of the process; the actor is the file's owner, the best guess at who edited it.

A running ingest server that rereads `ingest.tokens_file` records `tokens.reloaded` with the
token *names* added, removed and rotated (a new digest or scope for the same name), never a
token or its digest.

Both are bookkeeping beside the real work: they never stop a process. A write that fails (the
state file is locked past `busy_timeout_s`, the directory is read-only) logs a warning.

>>> sorted(key_digests({"a": {"b": 1, "c": [True, "x"]}, "d": {}}, "salt"))
['a.b', 'a.c.0', 'a.c.1', 'd']
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from watchkeeper.alerting.audit import Actor, AuditEvent, AuditLog, os_user, stamp

if TYPE_CHECKING:
    from watchkeeper.collectors.auth import TokenChange

log = logging.getLogger(__name__)

#: How long an audit write waits for the state file's lock before it gives up (seconds).
BUSY_TIMEOUT_S = 2.0


def key_digests(data: Any, salt: str) -> dict[str, str]:
    """`{key path: HMAC-SHA256(salt, value)}` for every leaf of a parsed YAML document; list
    items are numbered (`ingest.tokens.0.name`), an empty mapping or list is a leaf."""
    found: dict[str, str] = {}
    key = salt.encode("utf-8")

    def walk(node: Any, path: str) -> None:
        children: list[tuple[str, Any]] = []
        if isinstance(node, dict):
            children = [(str(k), v) for k, v in node.items()]
        elif isinstance(node, list):
            children = [(str(i), v) for i, v in enumerate(node)]
        if children:
            for name, child in children:
                walk(child, f"{path}.{name}" if path else name)
        elif path:
            value = json.dumps(node, sort_keys=True, default=str).encode("utf-8")
            found[path] = hmac.new(key, value, hashlib.sha256).hexdigest()

    walk(data, "")
    return found


def file_owner(uid: int) -> str:
    """The user name of `uid`, or the number when it has none."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def record_config_load(
    config_path: Path,
    state_file: Path,
    via: str,
    *,
    create: bool = True,
    busy_timeout_s: float = BUSY_TIMEOUT_S,
) -> AuditEvent | None:
    """Record `config.loaded`/`config.changed` for `config_path` in `state_file`'s audit log
    when the file differs from the last one recorded there; the event, or None (unchanged,
    or not recorded: a warning says why). With `create=False` a missing state file is left
    missing (a dashboard pointed at an empty data directory creates nothing)."""
    try:
        if not create and not Path(state_file).is_file():
            return None
        path = Path(config_path).resolve()
        raw = path.read_bytes()
        info = path.stat()
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError:
            data = None  # `load_config` refused it already; the digest still tells it apart
        me = os_user()
        owner = file_owner(info.st_uid)
        detail = {
            "path": str(path),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "owner": owner,
            "mtime": stamp(info.st_mtime),
            "loaded_by": me,
        }
        audit = AuditLog(state_file, busy_timeout_s=busy_timeout_s)
        try:
            return audit.record_config(
                str(path),
                detail["sha256"],
                lambda salt: key_digests(data, salt),
                Actor(owner, via, os_user=me),
                detail,
                time.time(),
            )
        finally:
            audit.close()
    except Exception as exc:  # bookkeeping: the process carries on without it
        log.warning("audit log: loading %s not recorded in %s: %s", config_path, state_file, exc)
        return None


def record_tokens_reload(
    change: TokenChange, state_file: Path, via: str, *, busy_timeout_s: float = BUSY_TIMEOUT_S
) -> AuditEvent | None:
    """Append `tokens.reloaded` (token names only) to `state_file`'s audit log; None and a
    warning when it cannot be written."""
    try:
        try:
            info = os.stat(change.path)
            owner, mtime = file_owner(info.st_uid), stamp(info.st_mtime)
        except OSError:
            owner, mtime = "unknown", None
        detail = {
            "path": str(change.path),
            "owner": owner,
            "mtime": mtime,
            "added": list(change.added),
            "removed": list(change.removed),
            "rotated": list(change.rotated),
            "in_force": change.in_force,
        }
        audit = AuditLog(state_file, busy_timeout_s=busy_timeout_s)
        try:
            return audit.append(
                Actor(owner, via, os_user=os_user()),
                "tokens.reloaded",
                str(change.path),
                detail,
                time.time(),
            )
        finally:
            audit.close()
    except Exception as exc:  # bookkeeping: ingest carries on without it
        log.warning("audit log: tokens reload of %s not recorded: %s", change.path, exc)
        return None


def tokens_recorder(state_file: Path, via: str = "serve") -> Callable[[TokenChange], None]:
    """A callback for the ingest `Authenticator`: records each reload from a thread of its
    own, so that a request that happens to trigger the reload never waits on the state file."""

    def record(change: TokenChange) -> None:
        threading.Thread(
            target=record_tokens_reload,
            args=(change, state_file, via),
            name="audit-tokens",
            daemon=True,
        ).start()

    return record
