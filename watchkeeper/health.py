"""What each part of a watchkeeper process last said about itself, for `GET /healthz`.

A process runs some of ingest, scraper, detector and alerting (`serve --role`). Each part
reports here after every cycle: whether it could do its work and a short detail. A part that
stops reporting for longer than its `stale_after` is shown as not ok ("no report for 95 s"),
so a detector thread that hangs on a store is seen, not just one that fails.

`GET /healthz` answers 200 with `"status": "ok"` when every part is ok, 200 with
`"status": "degraded"` and the parts that are not when some are (the process still does
what it can: ingest keeps accepting data while alerting cannot deliver), and 503 only when
the store cannot be read at all, which is the one thing every part needs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Health", "Report"]


@dataclass(frozen=True, slots=True)
class Report:
    ok: bool
    detail: str
    at: float
    stale_after: float | None


class Health:
    """The latest report of each part of this process; safe to use from any thread."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._reports: dict[str, Report] = {}

    def report(
        self, part: str, ok: bool, detail: str = "", *, stale_after: float | None = None
    ) -> None:
        """Record how `part` is; it counts as failing if it says nothing for `stale_after` s."""
        with self._lock:
            self._reports[part] = Report(ok, detail, self.clock(), stale_after)

    def snapshot(self) -> dict[str, Any]:
        """`{"status": "ok"|"degraded", "components": {part: {...}}, "degraded": [parts]}`."""
        now = self.clock()
        with self._lock:
            reports = dict(self._reports)
        components: dict[str, dict[str, Any]] = {}
        for part, rep in sorted(reports.items()):
            ok, detail = rep.ok, rep.detail
            age = now - rep.at
            if rep.stale_after is not None and age > rep.stale_after:
                ok, detail = False, f"no report for {age:.0f} s (last: {rep.detail or 'ok'})"
            components[part] = {"ok": ok, "detail": detail, "reported_s_ago": round(age, 1)}
        degraded = [part for part, c in components.items() if not c["ok"]]
        return {
            "status": "degraded" if degraded else "ok",
            "components": components,
            "degraded": degraded,
        }
