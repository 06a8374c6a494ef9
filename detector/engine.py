"""The detector: runs every model's checks on a fixed grid of windows and stores the findings.

Window ends are the multiples of a model's `every` since the Unix epoch, so every detector
process, restarted or not, judges the same windows. Each window's findings are written in one
transaction; because the store remembers the newest judged window end per model, a detector
that was killed resumes at the next window without duplicating or skipping any.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from watchkeeper.config import Config
from watchkeeper.tsdb import Finding, Prediction, Store

from .checks import DriftReference, check_drift, check_error_rate, check_up, feature_column

logger = logging.getLogger(__name__)

_WINDOWS_PER_READ = 200
"""During catch-up, overlapping windows share one read of the store, this many at a time."""


@dataclass(frozen=True, slots=True)
class _Reference:
    """A model's drift reference: the period of its first predictions, reduced for testing."""

    end: float
    sample: DriftReference


class _Window:
    """Predictions read once for several overlapping windows, sliced per window by time.

    Feature columns are extracted once for all the windows that share the read.
    """

    def __init__(self, predictions: list[Prediction]) -> None:
        self.predictions = predictions
        self._times = [p.timestamp for p in predictions]
        self._columns: dict[str, np.ndarray] = {}

    def _bounds(self, start: float, end: float) -> tuple[int, int]:
        return bisect.bisect_left(self._times, start), bisect.bisect_left(self._times, end)

    def between(self, start: float, end: float) -> list[Prediction]:
        low, high = self._bounds(start, end)
        return self.predictions[low:high]

    def values(self, features: Iterable[str], start: float, end: float) -> dict[str, np.ndarray]:
        """Each feature's real-number values among the predictions in `[start, end)`."""
        low, high = self._bounds(start, end)
        found = {}
        for feature in features:
            column = self._columns.get(feature)
            if column is None:
                column = feature_column(self.predictions, feature)
                self._columns[feature] = column
            window = column[low:high]
            found[feature] = window[~np.isnan(window)]
        return found


def _sort_key(finding: Finding) -> tuple[float, str, str, str]:
    return (finding.window_end, finding.model, finding.check, finding.subject)


class Detector:
    """Evaluates the configured checks of every model in `store`, window by window.

    `store` and `config` are public and read-only in spirit; the per-model cursors and the
    cached drift references are private running state, so a fresh `Detector` on the same
    store simply resumes from what the store says was judged last. `max_catch_up` bounds how
    many windows of one model a single `run_once` evaluates, so a detector that was down for
    a month catches up over several calls instead of stalling on one.
    """

    def __init__(self, store: Store, config: Config, *, max_catch_up: int = 5000) -> None:
        if max_catch_up < 1:
            raise ValueError(f"max_catch_up must be at least 1, got {max_catch_up}")
        self.store = store
        self.config = config
        self.max_catch_up = max_catch_up
        self._cursors: dict[str, float] = {}
        self._references: dict[str, _Reference] = {}

    def __repr__(self) -> str:
        return f"Detector(store={self.store!r}, max_catch_up={self.max_catch_up})"

    def _lookback(self, model: str) -> float:
        """How far before a window's end its checks look (the up check may look further)."""
        mc = self.config.model(model)
        up = mc.checks.up
        return max(mc.window, up.staleness) if up.enabled else mc.window

    def evaluate(self, model: str, window_end: float) -> list[Finding]:
        """All enabled checks of `model` on the window `[window_end - window, window_end)`.

        Reads the store and computes; writes nothing.
        """
        read_start = window_end - self._lookback(model)
        data = _Window(self.store.predictions(model, read_start, window_end))
        return self._evaluate(model, window_end, data)

    def _evaluate(self, model: str, window_end: float, data: _Window) -> list[Finding]:
        mc = self.config.model(model)
        checks = mc.checks
        window_start = window_end - mc.window
        read_start = window_end - self._lookback(model)
        recent = data.between(read_start, window_end)
        current = data.between(window_start, window_end)
        findings: list[Finding] = []
        if checks.up.enabled:
            last = max((p.timestamp for p in recent), default=None)
            findings.append(check_up(model, window_end, last, read_start, checks.up))
        if checks.error_rate.enabled:
            findings.append(
                check_error_rate(model, current, window_start, window_end, checks.error_rate)
            )
        if checks.drift.enabled:
            reference = self._reference(model, window_start)
            if reference is not None:
                values = data.values(reference.values, window_start, window_end)
                findings.extend(
                    check_drift(model, reference, values, window_start, window_end, checks.drift)
                )
        return findings

    def _reference(self, model: str, window_start: float) -> DriftReference | None:
        """The model's first `drift.reference` seconds of predictions, if `window_start` is
        past them; None for windows that still overlap the reference period.

        Read once, only when the period is over (so it is complete), then cached.
        """
        cached = self._references.get(model)
        if cached is not None:
            return cached.sample if window_start >= cached.end else None
        first_seen = next((m.first_seen for m in self.store.models() if m.name == model), None)
        if first_seen is None:
            return None
        end = first_seen + self.config.model(model).checks.drift.reference
        if window_start < end:
            return None
        predictions = self.store.predictions(model, first_seen, end)
        reference_id = f"{model}@{int(first_seen)}-{int(end)}"
        sample = DriftReference.from_predictions(reference_id, predictions)
        self._references[model] = _Reference(end, sample)
        return sample

    def run_once(self, now: float) -> list[Finding]:
        """Evaluate and store every window that became due by `now`, oldest first.

        Returns the findings of this call sorted by `(window_end, model, check, subject)`. A
        model whose evaluation fails is logged and retried next call; the others go on.
        """
        produced: list[Finding] = []
        for info in self.store.models():
            try:
                produced.extend(self._run_model(info.name, info.first_seen, now))
            except Exception:
                logger.exception("detector: evaluating model %r failed; will retry", info.name)
        produced.sort(key=_sort_key)
        return produced

    def _run_model(self, model: str, first_seen: float, now: float) -> list[Finding]:
        every = self.config.model(model).every
        if every <= 0:
            raise ValueError(f"model {model!r}: every must be positive, got {every}")
        stored = self.store.last_evaluated(model)
        done = max((t for t in (stored, self._cursors.get(model)) if t is not None), default=None)
        if done is None:
            k = math.ceil((first_seen + every) / every)
        else:
            k = math.floor(done / every) + 1
            while k * every <= done:
                k += 1
        last_k = math.floor(now / every)
        due = max(0, last_k - k + 1)
        count = min(due, self.max_catch_up)
        produced: list[Finding] = []
        lookback = self._lookback(model)
        for chunk_start in range(0, count, _WINDOWS_PER_READ):
            ends = [
                (k + i) * every
                for i in range(chunk_start, min(count, chunk_start + _WINDOWS_PER_READ))
            ]
            data = _Window(self.store.predictions(model, ends[0] - lookback, ends[-1]))
            for window_end in ends:
                findings = self._evaluate(model, window_end, data)
                if findings:
                    self.store.write(findings=findings)
                self._cursors[model] = window_end
                produced.extend(findings)
        if count > 1 or due > count:
            logger.info(
                "detector: caught up %d windows of model %r%s",
                count,
                model,
                f"; {due - count} more next time" if due > count else "",
            )
        elif count == 1:
            logger.debug("detector: evaluated 1 window of model %r", model)
        return produced

    def run_forever(
        self,
        stop: threading.Event,
        on_findings: Callable[[list[Finding]], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Call `run_once(clock())` every `config.detector.interval` seconds until `stop`.

        Non-empty results go to `on_findings`. Any exception is logged and the loop goes on:
        the detector must outlive a locked database or a bad batch of data.
        """
        interval = self.config.detector.interval
        while not stop.is_set():
            try:
                findings = self.run_once(clock())
                if findings:
                    on_findings(findings)
            except Exception:
                logger.exception("detector: run failed; retrying in %ss", interval)
            stop.wait(interval)
