"""Logging at most once a minute per kind of problem, so that a bad stream cannot flood logs."""

from __future__ import annotations

import logging
import time

__all__ = ["LimitedLog"]


class LimitedLog:
    """A logger wrapper that lets one message per key through every `every_s` seconds."""

    def __init__(self, logger: logging.Logger, every_s: float = 60.0) -> None:
        self.logger = logger
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def __call__(self, key: str, level: int, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is None or now - last >= self.every_s:
            self._last[key] = now
            self.logger.log(level, message, *args)
