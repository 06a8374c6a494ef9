"""Who may write to the ingest API: bearer tokens scoped to models, and a per-token rate limit.

Tokens are configured per service (`ingest.tokens` in `watchkeeper.yaml`) as the SHA-256 of
the token or the name of an environment variable that holds it, so the file never holds a
secret. A request's token is hashed and compared with every configured digest with
`hmac.compare_digest` (constant time, and no early exit that would tell which one nearly
matched). With no tokens configured, anyone may write any model.

Tokens rotate without a restart: `reload` swaps the whole set at once (a request sees the old
set or the new one, never a mix), and with `tokens_file` (`ingest.tokens_file`: a YAML list in
the format of `ingest.tokens`) the file is checked at most every `check_every_s` seconds, on
the next request, and reloaded when it changed. A file that cannot be read or is invalid keeps
the tokens in force and logs why. After a reload from the file, `on_reload` (if given) is told
which token names were added, removed or rotated (the audit log records them); never a token
or its digest.

The rate limit is a token bucket per credential (per client address without tokens) counted
in records: `rate` records per second, bursts of up to `burst`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError

from watchkeeper.config import IngestToken

logger = logging.getLogger(__name__)

_TOKEN_LIST = TypeAdapter(list[IngestToken])

#: How often, at most, a tokens file is checked for changes (seconds).
TOKENS_FILE_CHECK_S = 2.0

__all__ = [
    "ANY_MODEL",
    "Authenticator",
    "Credential",
    "RateLimiter",
    "TokenChange",
    "Unauthorized",
    "read_tokens_file",
]

ANY_MODEL = "*"


class Unauthorized(Exception):
    """No token, a malformed Authorization header, or a token nobody configured."""


@dataclass(frozen=True, slots=True)
class Credential:
    """A configured service: its name and the models it may write."""

    name: str
    models: frozenset[str]

    def may_write(self, model: str) -> bool:
        return ANY_MODEL in self.models or model in self.models


@dataclass(frozen=True, slots=True)
class TokenChange:
    """What a tokens file reload changed, by token name: names only, never secrets."""

    path: Path
    added: tuple[str, ...]
    removed: tuple[str, ...]
    rotated: tuple[str, ...]
    in_force: int


def _by_name(entries: Sequence[tuple[bytes, Credential]]) -> dict[str, list[tuple[bytes, str]]]:
    named: dict[str, list[tuple[bytes, str]]] = {}
    for digest, credential in entries:
        named.setdefault(credential.name, []).append((digest, ",".join(sorted(credential.models))))
    return {name: sorted(found) for name, found in named.items()}


class Authenticator:
    """Checks `Authorization: Bearer ...` headers against the configured token digests.

    `tokens` are always in force; with `tokens_file`, so are the file's, reread when the file
    changes (checked at most every `check_every_s` seconds, on requests), and `on_reload` is
    called with the `TokenChange` after each reread that changed something.
    """

    def __init__(
        self,
        tokens: Sequence[IngestToken],
        environ: Mapping[str, str] | None = None,
        *,
        tokens_file: Path | None = None,
        check_every_s: float = TOKENS_FILE_CHECK_S,
        clock: Callable[[], float] = time.monotonic,
        on_reload: Callable[[TokenChange], None] | None = None,
    ) -> None:
        self._static = list(tokens)
        self._on_reload = on_reload
        self._environ = environ
        self._file = None if tokens_file is None else Path(tokens_file)
        self.check_every_s = check_every_s
        self._clock = clock
        self._reloading = threading.Lock()
        self._entries: tuple[tuple[bytes, Credential], ...] = ()
        self._file_stamp: tuple[int, int, int] | None = None
        self._checked_at = clock()
        if self._file is None:
            self.reload(self._static, environ)
        else:
            try:
                stamp = _stamp(self._file)  # before reading: a change after it is seen later
            except OSError as exc:
                raise ValueError(f"{self._file}: cannot read: {exc.strerror or exc}") from None
            self.reload([*self._static, *read_tokens_file(self._file)], environ)
            self._file_stamp = stamp

    def __repr__(self) -> str:
        return f"Authenticator(tokens={[c.name for _, c in self._entries]!r})"

    @property
    def enabled(self) -> bool:
        """Whether requests must carry a token (some are configured, or a tokens file is)."""
        return bool(self._entries) or self._file is not None

    def reload(
        self, tokens: Sequence[IngestToken], environ: Mapping[str, str] | None = None
    ) -> None:
        """Replace every token in force by `tokens`, at once; on an error nothing changes."""
        env = os.environ if environ is None else environ
        entries: list[tuple[bytes, Credential]] = []
        for token in tokens:
            if token.env is not None:
                secret = env.get(token.env)
                if not secret:
                    raise ValueError(
                        f"ingest token {token.name!r}: environment variable {token.env} "
                        "is not set or empty"
                    )
                digest = hashlib.sha256(secret.encode("utf-8")).digest()
            else:
                assert token.sha256 is not None
                digest = bytes.fromhex(token.sha256)
            entries.append((digest, Credential(token.name, frozenset(token.models))))
        self._entries = tuple(entries)  # one reference swap: readers see old or new

    def authenticate(self, authorization: str | None) -> Credential:
        """The credential of a request's `Authorization` header; `Unauthorized` if none fits."""
        if self._file is not None:
            self._check_file()
        entries = self._entries  # one set for the whole check
        if not authorization:
            raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        digest = hashlib.sha256(token.strip().encode("utf-8")).digest()
        found: Credential | None = None
        for known, credential in entries:  # compare with all: no timing hint
            if hmac.compare_digest(digest, known) and found is None:
                found = credential
        if found is None:
            raise Unauthorized("unknown bearer token")
        return found

    def _check_file(self) -> None:
        """Reload the tokens file if it changed; at most every `check_every_s`, one thread."""
        now = self._clock()
        if now - self._checked_at < self.check_every_s or not self._reloading.acquire(False):
            return
        try:
            self._checked_at = now
            assert self._file is not None
            try:
                stamp = _stamp(self._file)
                if stamp == self._file_stamp:
                    return
                before = self._entries
                self.reload([*self._static, *read_tokens_file(self._file)], self._environ)
            except (OSError, ValueError) as exc:
                logger.error("ingest tokens file not reloaded, old tokens stay in force: %s", exc)
                return
            self._file_stamp = stamp
            logger.warning(
                "ingest tokens reloaded from %s: %d token(s) in force",
                self._file,
                len(self._entries),
            )
            self._tell(before)
        finally:
            self._reloading.release()

    def _tell(self, before: Sequence[tuple[bytes, Credential]]) -> None:
        """Call `on_reload` with what changed, if anything did; its failure is only logged."""
        old, new = _by_name(before), _by_name(self._entries)
        change = TokenChange(
            path=self._file or Path(),
            added=tuple(sorted(set(new) - set(old))),
            removed=tuple(sorted(set(old) - set(new))),
            rotated=tuple(sorted(n for n in set(old) & set(new) if old[n] != new[n])),
            in_force=len(self._entries),
        )
        if self._on_reload is None or not (change.added or change.removed or change.rotated):
            return
        try:
            self._on_reload(change)
        except Exception:  # the audit is bookkeeping; authentication goes on
            logger.exception("ingest tokens reload could not be reported")


def _stamp(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_mtime_ns, info.st_size, info.st_ino


def read_tokens_file(path: Path) -> list[IngestToken]:
    """The tokens a tokens file lists; `ValueError` naming the file and entry if it is bad."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a valid YAML file: {exc}") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return _TOKEN_LIST.validate_python([] if data is None else data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ValueError(f"{path}: {problems}") from None


class RateLimiter:
    """Token buckets by key: `rate` records per second, bursts of up to `burst` records."""

    def __init__(
        self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not (math.isfinite(rate) and rate > 0 and burst > 0):
            raise ValueError(f"rate and burst must be positive, got {rate!r} and {burst!r}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate}, burst={self.burst})"

    def take(self, key: str, n: int) -> float:
        """Take `n` records' worth for `key`: 0.0 when allowed, else seconds to wait first.

        A batch larger than the burst passes when the bucket is full and leaves it in debt,
        so that it is throttled, not refused forever.
        """
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            need = min(float(n), self.burst)
            if tokens < need:
                self._buckets[key] = (tokens, now)
                return (need - tokens) / self.rate
            self._buckets[key] = (tokens - n, now)
            return 0.0
