"""Which models a detector process judges when several split the fleet (`--shard I/N`).

A model belongs to exactly one of N shards, chosen by a stable hash of its name (SHA-256, so
the same on every machine, Python version and restart; Python's own `hash()` is salted per
process). Shards are numbered 1..N as written on the command line.

Changing N moves models between shards. A detector resumes each model from the newest window
the store holds for it, so a model that moves is picked up where its old shard stopped; what
must not happen is the old and the new assignment running at the same time (two processes
judging the same window). Stop every detector, then start the new set.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = ["Shard", "parse_shard"]

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` of `count`, 1-based (`Shard(1, 2)` and `Shard(2, 2)` cover everything)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"shard count must be at least 1, got {self.count}")
        if not 1 <= self.index <= self.count:
            raise ValueError(f"shard index must be between 1 and {self.count}, got {self.index}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, key: str) -> bool:
        """Whether `key` (a model name, a scrape target URL) falls in this shard."""
        if self.count == 1:
            return True
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1


def parse_shard(text: str) -> Shard:
    """`"2/3"` -> `Shard(2, 3)`; a `ValueError` saying what is expected otherwise."""
    match = _SPEC.match(text)
    if match is None:
        raise ValueError(f"expected a shard as I/N (e.g. 1/2, 2/2), got {text!r}")
    return Shard(int(match.group(1)), int(match.group(2)))
