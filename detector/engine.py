"""The detector: runs every model's checks on a fixed grid of windows and stores the findings.

Window ends are the multiples of a model's `every` since the Unix epoch, so every detector
process, restarted or not, judges the same windows. Each window's findings are written in one
transaction; because the store remembers the newest judged window end per model, a detector
that was killed resumes at the next window without duplicating or skipping any.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from watchkeeper.config import Config
from watchkeeper.tsdb import Finding, Sample, Store

from .frame import Batch, batch_from_predictions
from .judge import ModelJudge, lookback
from .profile import ReferenceProfile
from .reference_store import ReferenceStore
from .references import References, references_file
from .shard import Shard
from .tamper import ARTIFACT_SERIES, check_artifacts

logger = logging.getLogger(__name__)

_WINDOWS_PER_READ = 200
"""During catch-up, overlapping windows share one read of the store, this many at a time."""

_WARM_UP = 86400.0
"""History a fresh detector replays (without judging) for latency and throughput baselines."""

FALLBACK_SERIES = "fallbacks"
"""The sample series services report fallbacks in (one sample per fallback, label `reason`)."""


def _sort_key(finding: Finding) -> tuple[float, str, str, str]:
    return (finding.window_end, finding.model, finding.check, finding.subject)


class Detector:
    """Evaluates the configured checks of every model in `store`, window by window.

    `store` and `config` are public and read-only in spirit; the per-model cursors and judges
    (with their reference profiles and health history) are private running state, so a fresh
    `Detector` on the same store simply resumes from what the store says was judged last,
    replaying up to a day of history first for the latency and throughput baselines.
    `max_catch_up` bounds how many windows of one model a single `run_once` evaluates, so a
    detector that was down for a month catches up over several calls instead of stalling.
    With `shard`, only the models of that shard are judged (see `shard.py`), so several
    detector processes can split a fleet without judging any window twice.

    Reference profiles are profiled once and kept in `references.db` of the data directory
    (`references.py`); each run reads the models' re-baselining (`watchkeeper reference
    set`) again, so a new reference takes effect at the next run without a restart.
    """

    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        max_catch_up: int = 5000,
        shard: Shard | None = None,
    ) -> None:
        if max_catch_up < 1:
            raise ValueError(f"max_catch_up must be at least 1, got {max_catch_up}")
        self.store = store
        self.config = config
        self.max_catch_up = max_catch_up
        self.shard = shard
        self.errors: dict[str, Exception] = {}
        """Why models failed in the last `run_once` (they are retried on the next)."""
        self.judged = 0
        """How many models the last `run_once` evaluated (this shard's)."""
        self.references = References(
            ReferenceStore(
                references_file(store, config), busy_timeout_s=config.storage.busy_timeout
            ),
            config,
            self.read,
        )
        """Where the models' reference profiles come from and are stored."""
        self._cursors: dict[str, float] = {}
        self._judges: dict[str, ModelJudge] = {}
        self._first_seen: dict[str, float] = {}

    def __repr__(self) -> str:
        shard = f", shard={self.shard}" if self.shard is not None else ""
        return f"Detector(store={self.store!r}, max_catch_up={self.max_catch_up}{shard})"

    def read(self, model: str, start: float, end: float) -> Batch:
        """Predictions of `[start, end)` as a batch, with known labels and fallbacks."""
        predictions = self.store.predictions(model, start, end)
        checks = self.config.model(model).checks
        labels = None
        if checks.efficacy.enabled and predictions:
            labels = self.store.labels(model, [p.prediction_id for p in predictions])
        fallbacks: list[float] = []
        if checks.fallback_rate.enabled:
            fallbacks = [
                s.timestamp
                for s in self.store.samples(model, FALLBACK_SERIES, start, end)
                for _ in range(max(1, int(s.value)))
            ]
        return batch_from_predictions(predictions, labels, fallbacks)

    def evaluate(self, model: str, window_end: float) -> list[Finding]:
        """All enabled checks of `model` on the window `[window_end - window, window_end)`.

        Reads the store and computes with a fresh judge that first sees up to a day of
        earlier windows (for the latency and throughput baselines), against the reference
        profile the window was judged with (`reference_profile`); writes no finding. This is
        how `watchkeeper explain` recomputes a stored finding.
        """
        mc = self.config.model(model)
        judge = ModelJudge(model, mc, self.reference_profile(model, window_end - mc.window))
        first_seen = self._model_first_seen(model)
        k = round(window_end / mc.every)
        from_k = k - math.floor(_WARM_UP / mc.every)
        if first_seen is not None:
            from_k = max(from_k, math.ceil((first_seen + mc.every) / mc.every))
        batch = self.read(model, min(from_k * mc.every, window_end) - lookback(mc), window_end)
        for j in range(from_k, k):
            judge.record(batch, j * mc.every)
        reports = self._artifact_reports(model, window_end - mc.window, window_end)
        return judge.judge(batch, window_end) + self._artifact_findings(model, reports, window_end)

    def _artifact_reports(self, model: str, start: float, end: float) -> list[Sample]:
        """The model-file fingerprints services reported over `[start, end)`, if the model has
        registered artifacts to compare them with (see `tamper.py`)."""
        if not self.config.model(model).artifacts:
            return []
        return self.store.samples(model, ARTIFACT_SERIES, start, end)

    def _artifact_findings(
        self, model: str, reports: list[Sample], window_end: float
    ) -> list[Finding]:
        mc = self.config.model(model)
        start = window_end - mc.window
        in_window = [r for r in reports if start <= r.timestamp < window_end]
        finding = check_artifacts(model, in_window, mc.artifacts, start, window_end)
        return [] if finding is None else [finding]

    def reference_profile(self, model: str, window_start: float) -> ReferenceProfile | None:
        """The reference profile of the window starting at `window_start`: the one its stored
        findings name when it was judged already, else (not judged, or its findings name no
        reference: health checks only, or findings written by another tool) the one it would
        be judged against now (see `references.py`). `explain` and the dashboard show
        windows through this, so a re-baselining never changes how an earlier verdict is
        recomputed.
        """
        window_end = window_start + self.config.model(model).window
        judged = [
            f
            for f in self.store.findings(model, window_end - 0.5, window_end + 0.5)
            if abs(f.window_start - window_start) < 0.5
        ]
        ids = [f.reference_id for f in judged if f.reference_id and f.check != "efficacy"]
        ids = ids or [f.reference_id for f in judged if f.reference_id]
        if ids:
            return self.references.by_id(model, ids[0])
        self.references.refresh(model)
        return self.references.active(model, window_start, None, self._model_first_seen(model))

    def _model_first_seen(self, model: str) -> float | None:
        first_seen = self._first_seen.get(model)
        if first_seen is None:
            first_seen = next((m.first_seen for m in self.store.models() if m.name == model), None)
        return first_seen

    def _judge_for(self, model: str, window_start: float) -> ModelJudge:
        judge = self._judges.get(model)
        if judge is None:
            judge = ModelJudge(model, self.config.model(model))
            self._judges[model] = judge
        judge.profile = self.references.active(
            model, window_start, judge.profile, self._first_seen.get(model)
        )
        return judge

    def run_once(self, now: float) -> list[Finding]:
        """Evaluate and store every window that became due by `now`, oldest first.

        Returns the findings of this call sorted by `(window_end, model, check, subject)`. A
        model whose evaluation fails is logged, kept in `errors` and retried next call; the
        others go on. If the store cannot even list the models, this raises.
        """
        produced: list[Finding] = []
        self.errors = {}
        self.judged = 0
        models = self.store.models()
        self.references.refresh()  # a `watchkeeper reference set` since the last run
        for info in models:
            if self.shard is not None and not self.shard.owns(info.name):
                continue
            self.judged += 1
            try:
                self._first_seen[info.name] = info.first_seen
                produced.extend(self._run_model(info.name, info.first_seen, now))
            except Exception as exc:
                self.errors[info.name] = exc
                logger.exception("detector: evaluating model %r failed; will retry", info.name)
        produced.sort(key=_sort_key)
        return produced

    def _run_model(self, model: str, first_seen: float, now: float) -> list[Finding]:
        mc = self.config.model(model)
        every = mc.every
        if every <= 0:
            raise ValueError(f"model {model!r}: every must be positive, got {every}")
        stored = self.store.last_evaluated(model)
        done = max((t for t in (stored, self._cursors.get(model)) if t is not None), default=None)
        first_k = math.ceil((first_seen + every) / every)
        if done is None:
            k = first_k
        else:
            k = math.floor(done / every) + 1
            while k * every <= done:
                k += 1
        last_k = math.floor(now / every)
        due = max(0, last_k - k + 1)
        count = min(due, self.max_catch_up)
        produced: list[Finding] = []
        span = lookback(mc)
        if count and model not in self._judges:
            self._warm_up(model, max(first_k, k - math.floor(_WARM_UP / every)), k)
        for chunk_start in range(0, count, _WINDOWS_PER_READ):
            ends = [
                (k + i) * every
                for i in range(chunk_start, min(count, chunk_start + _WINDOWS_PER_READ))
            ]
            batch = self.read(model, ends[0] - span, ends[-1])
            reports = self._artifact_reports(model, ends[0] - mc.window, ends[-1])
            for window_end in ends:
                judge = self._judge_for(model, window_end - mc.window)
                findings = judge.judge(batch, window_end)
                findings += self._artifact_findings(model, reports, window_end)
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

    def _warm_up(self, model: str, from_k: int, to_k: int) -> None:
        """Let a fresh judge see the windows `from_k .. to_k - 1` (already judged before a
        restart) without judging them, so its baselines match an uninterrupted run."""
        mc = self.config.model(model)
        if from_k >= to_k:
            return
        judge = ModelJudge(model, mc)
        self._judges[model] = judge
        batch = self.read(model, from_k * mc.every - lookback(mc), (to_k - 1) * mc.every)
        for j in range(from_k, to_k):
            judge.record(batch, j * mc.every)

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
