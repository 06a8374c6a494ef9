"""Who may write to the ingest API: bearer tokens scoped to models, and a per-token rate limit.

Tokens are configured per service (`ingest.tokens` in `watchkeeper.yaml`) as the SHA-256 of
the token or the name of an environment variable that holds it, so the file never holds a
secret. A request's token is hashed and compared with every configured digest with
`hmac.compare_digest` (constant time, and no early exit that would tell which one nearly
matched). With no tokens configured, anyone may write any model.

The rate limit is a token bucket per credential (per client address without tokens) counted
in records: `rate` records per second, bursts of up to `burst`.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from watchkeeper.config import IngestToken

__all__ = ["ANY_MODEL", "Authenticator", "Credential", "RateLimiter", "Unauthorized"]

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


class Authenticator:
    """Checks `Authorization: Bearer ...` headers against the configured token digests."""

    def __init__(
        self, tokens: Sequence[IngestToken], environ: Mapping[str, str] | None = None
    ) -> None:
        env = os.environ if environ is None else environ
        self._entries: list[tuple[bytes, Credential]] = []
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
            self._entries.append((digest, Credential(token.name, frozenset(token.models))))

    def __repr__(self) -> str:
        return f"Authenticator(tokens={[c.name for _, c in self._entries]!r})"

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def authenticate(self, authorization: str | None) -> Credential:
        """The credential of a request's `Authorization` header; `Unauthorized` if none fits."""
        if not authorization:
            raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        digest = hashlib.sha256(token.strip().encode("utf-8")).digest()
        found: Credential | None = None
        for known, credential in self._entries:  # compare with all: no timing hint
            if hmac.compare_digest(digest, known) and found is None:
                found = credential
        if found is None:
            raise Unauthorized("unknown bearer token")
        return found


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
